/* Runs list: while any shown run is queued or running, refresh its cells every 2 s. */
"use strict";

(function () {
  const T = window.Trainwatch;
  const live = JSON.parse(document.getElementById("runs-live").textContent);
  const table = document.getElementById("runs-table");
  if (!live || !table) return;

  function format(run, field) {
    if (field === "status") return run.status;
    if (field === "health") return run.health || "–";
    if (field === "progress") return run.total_steps ? `${run.epoch} / ${run.epochs} epochs` : "–";
    if (field === "seconds") return run.seconds === null ? "–" : `${run.seconds.toFixed(1)} s`;
    const value = run[field];
    return value === null || value === undefined ? "–" : value.toFixed(4);
  }

  async function refresh() {
    let body;
    try {
      const response = await fetch("/api/runs/", { credentials: "same-origin" });
      body = await response.json();
    } catch (error) {
      setTimeout(refresh, 5000);
      return;
    }
    let anyLive = false;
    for (const run of body.runs) {
      const row = table.querySelector(`tr[data-run-id="${run.id}"]`);
      if (!row) continue;
      anyLive = anyLive || !run.finished;
      row.querySelectorAll("[data-field]").forEach((cell) => {
        cell.textContent = format(run, cell.dataset.field);
        if (cell.dataset.field === "status") cell.className = `status status-${run.status}`;
        if (cell.dataset.field === "health") cell.className = `health health-${run.health || "none"}`;
      });
    }
    if (anyLive) setTimeout(refresh, 2000);
  }
  setTimeout(refresh, 2000);
})();

/* Selecting runs to compare them. */
(function () {
  const boxes = [...document.querySelectorAll(".run-select")];
  const button = document.getElementById("compare-selected");
  const all = document.getElementById("select-all");
  if (!button) return;

  function refresh() {
    const chosen = boxes.filter((box) => box.checked).map((box) => box.value);
    button.disabled = chosen.length < 1;
    document.getElementById("selected-count").textContent =
      chosen.length ? `${chosen.length} selected` : "select runs to compare them";
    button.dataset.runs = chosen.join(",");
  }

  boxes.forEach((box) => box.addEventListener("change", refresh));
  all.addEventListener("change", () => { boxes.forEach((box) => { box.checked = all.checked; }); refresh(); });
  button.addEventListener("click", () => { location.href = `/compare/?runs=${button.dataset.runs}&metric=loss`; });
  refresh();
})();
