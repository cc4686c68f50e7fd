/* Comparison page: the selected runs overlaid, one colour per run, or per group its
   mean with a min..max band; the learning rate on a second axis when asked. The page
   state lives in the URL, so a comparison can be shared. */
"use strict";

(function () {
  const T = window.Trainwatch;
  const params = new URLSearchParams(location.search);
  const state = {
    runs: params.get("runs") || "",
    metric: params.get("metric") || "loss",
    x: ["step", "wall"].includes(params.get("x")) ? params.get("x") : "epoch",
    y: params.get("y") === "log" ? "log" : "linear",
    lr: params.get("lr") === "1",
    group: (params.get("group") || "").split(",").filter(Boolean),
    band: params.get("band") === "std" ? "std" : "minmax",
  };
  let chart = null;
  let lastBody = null;
  let loadSeq = 0;  // a slow answer to an older request must not overwrite a newer one

  function saveState() {
    const query = new URLSearchParams({ runs: state.runs, metric: state.metric, x: state.x, y: state.y, band: state.band });
    if (state.group.length) query.set("group", state.group.join(","));
    if (state.lr) query.set("lr", "1");
    history.replaceState(null, "", `?${query}`);
  }

  function draw(body) {
    if (chart) chart.destroy();
    chart = T.comparisonChart(document.getElementById("chart-compare"), body,
                              { x: state.x, y: state.y, band: state.band, lr: state.lr });
    window.trainwatchCompare = chart;  // read by the browser tests
    document.getElementById("compare-caption").textContent =
      `${body.metric} of ${body.runs.length} runs` + (body.groups ? `, grouped by ${state.group.join(", ")} `
        + `(band: ${state.band === "std" ? "mean ± std" : "min..max"} over each group's runs)` : "");
  }

  function fillControls(body) {
    const metric = document.getElementById("metric");
    metric.replaceChildren(...body.keys.map((key) => new Option(key, key, false, key === body.metric)));
    const fieldset = document.getElementById("group-by");
    fieldset.querySelectorAll("label").forEach((label) => label.remove());
    Object.keys(body.diff).forEach((key) => {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = key;
      box.checked = state.group.includes(key);
      box.addEventListener("change", () => {
        state.group = [...fieldset.querySelectorAll("input:checked")].map((input) => input.value);
        load();
      });
      label.append(box, ` ${key}`);
      fieldset.append(label);
    });
    document.getElementById("x-axis").value = state.x;
    document.getElementById("y-axis").value = state.y;
    document.getElementById("lr-overlay").checked = state.lr;
    document.getElementById("band").value = state.band;
    document.getElementById("compare-count").textContent = `${body.runs.length} runs`;
  }

  function fillDiff(body) {
    const table = document.getElementById("diff-table");
    const head = document.createElement("tr");
    head.append(...["config key", ...body.runs.map((run) => `#${run.id} ${run.name}`)].map((text) => {
      const th = document.createElement("th");
      th.textContent = text;
      return th;
    }));
    table.tHead.replaceChildren(head);
    const rows = Object.entries(body.diff).map(([key, values]) => {
      const tr = document.createElement("tr");
      [key, ...values.map((v) => (v === null || v === undefined ? "–" : JSON.stringify(v)))].forEach((text) => {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      });
      return tr;
    });
    if (!rows.length) {
      const tr = document.createElement("tr");
      tr.innerHTML = '<td class="muted">The configs are identical.</td>';
      rows.push(tr);
    }
    table.tBodies[0].replaceChildren(...rows);
  }

  // Axis and band changes only redraw what is already loaded: no request, no race.
  function redraw() {
    saveState();
    if (lastBody) draw(lastBody);
  }

  async function load() {
    saveState();
    const seq = ++loadSeq;
    const query = new URLSearchParams({ runs: state.runs, metric: state.metric });
    if (state.group.length) query.set("group", state.group.join(","));
    if (state.lr) query.set("lr", "1");
    const response = await fetch(`/api/compare/?${query}`, { credentials: "same-origin" });
    const body = await response.json();
    if (seq !== loadSeq) return;
    const error = document.getElementById("compare-error");
    if (!response.ok) {
      error.hidden = false;
      error.textContent = Object.entries(body.errors || {}).map(([field, message]) => `${field}: ${message}`).join("; ");
      return;
    }
    error.hidden = true;
    lastBody = body;
    fillControls(body);
    fillDiff(body);
    draw(body);
    document.body.dataset.loaded = String(Date.now());
  }

  document.getElementById("metric").addEventListener("change", (event) => { state.metric = event.target.value; load(); });
  document.getElementById("x-axis").addEventListener("change", (event) => { state.x = event.target.value; redraw(); });
  document.getElementById("y-axis").addEventListener("change", (event) => { state.y = event.target.value; redraw(); });
  document.getElementById("band").addEventListener("change", (event) => { state.band = event.target.value; redraw(); });
  document.getElementById("lr-overlay").addEventListener("change", (event) => { state.lr = event.target.checked; load(); });
  document.getElementById("compare-controls").addEventListener("submit", (event) => event.preventDefault());
  T.addToReport(document.getElementById("add-to-report-button"), () => [{
    type: "chart",
    title: document.getElementById("compare-caption").textContent,
    select: { runs: state.runs.split(",").map(Number).filter((id) => id > 0) },
    metrics: [state.metric], group: state.group, x: state.x, y: state.y, band: state.band,
    source: location.pathname + location.search,
  }]);
  load().catch((error) => console.warn("compare:", error.message));
})();
