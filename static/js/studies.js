// The studies page. "Edit the preset as a spec": start from a preset and change it.
"use strict";

document.getElementById("preset-to-spec").addEventListener("click", () => {
  const presets = JSON.parse(JSON.parse(document.getElementById("presets-data").textContent));
  const select = document.getElementById("id_preset");
  if (!select.value) return;
  document.getElementById("id_spec").value = JSON.stringify(presets[select.value], null, 2);
  if (!document.getElementById("id_name").value) document.getElementById("id_name").value = select.value;
  select.value = "";
});
