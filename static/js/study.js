/* Study page and report: the leaderboard (sortable, top k % filter), the metric against
   each hyperparameter (log axis where the search was log-scale), parallel coordinates,
   and the diagnosis summary. Runs without an accuracy (diverged, failed, not finished)
   are listed apart, so that they neither rank nor flatten a scale. */
"use strict";

(function () {
  const T = window.Trainwatch;
  let data = JSON.parse(document.getElementById("study-data").textContent);
  const METRIC = "best val. acc.";
  const charts = {};
  let sortKey = "best_val_accuracy";
  let sortDescending = true;
  let topPercent = 100;

  function label(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value === "object" && !Array.isArray(value)) return value.name || JSON.stringify(value);
    if (Array.isArray(value)) return value.join("x");
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : T.formatNumber(value);
    return String(value);
  }

  const numericKeys = () => data.keys.filter((key) => data.rows.some((r) => typeof r.values[key] === "number")
                                                      && key !== "seed");
  const scored = () => data.rows.filter((r) => r.scored);

  function shownRows() {
    const ranked = scored().slice().sort((a, b) => b.best_val_accuracy - a.best_val_accuracy);
    return ranked.slice(0, Math.max(1, Math.ceil(ranked.length * topPercent / 100)));
  }

  function cell(tr, content, className) {
    const td = document.createElement("td");
    if (content instanceof Node) td.append(content); else td.textContent = content;
    if (className) td.className = className;
    tr.append(td);
  }

  function runLink(row) {
    const a = document.createElement("a");
    a.href = row.url;
    a.textContent = `#${row.id} ${row.name}`;
    return a;
  }

  function sortValue(row, key) {
    if (key.startsWith("values.")) {
      const v = row.values[key.slice(7)];
      return typeof v === "number" ? v : label(v);
    }
    return row[key];
  }

  function renderLeaderboard() {
    const table = document.getElementById("leaderboard") || document.getElementById("report-leaderboard");
    const columns = [["rank", "#"], ["name", "run"], ...data.keys.map((k) => [`values.${k}`, k]),
                     ["best_val_accuracy", METRIC], ["final_loss", "final loss (smoothed)"], ["seconds", "duration"],
                     ["status", "status"], ["finding", "diagnosis"]];
    const head = document.createElement("tr");
    columns.forEach(([key, text]) => {
      const th = document.createElement("th");
      th.textContent = text + (key === sortKey ? (sortDescending ? " ▼" : " ▲") : "");
      if (key !== "rank") {
        th.className = "sortable";
        th.addEventListener("click", () => {
          sortDescending = key === sortKey ? !sortDescending : key === "best_val_accuracy";
          sortKey = key;
          renderLeaderboard();
        });
      }
      head.append(th);
    });
    table.tHead.replaceChildren(head);
    const ranked = scored().slice().sort((a, b) => b.best_val_accuracy - a.best_val_accuracy);
    const rank = new Map(ranked.map((row, i) => [row.id, i + 1]));
    const shown = new Set(shownRows().map((r) => r.id));
    const rows = ranked.slice().sort((a, b) => {
      const x = sortValue(a, sortKey), y = sortValue(b, sortKey);
      const order = x === y ? 0 : (x === null || x === undefined) ? 1 : (y === null || y === undefined) ? -1 : x < y ? -1 : 1;
      return sortDescending ? -order : order;
    });
    table.tBodies[0].replaceChildren(...rows.map((row) => {
      const tr = document.createElement("tr");
      tr.dataset.runId = row.id;
      if (!shown.has(row.id)) tr.className = "top-k-hidden";
      cell(tr, String(rank.get(row.id)));
      cell(tr, runLink(row));
      data.keys.forEach((key) => cell(tr, label(row.values[key]), typeof row.values[key] === "number" ? "num" : ""));
      cell(tr, row.best_val_accuracy.toFixed(4), "num");
      cell(tr, row.final_loss === null ? "–" : T.formatNumber(row.final_loss), "num");
      cell(tr, row.seconds === null ? "–" : T.formatSeconds(row.seconds), "num");
      cell(tr, row.status === "stopped" ? "stopped early" : row.status);
      cell(tr, row.finding || row.health || "–");
      return tr;
    }));
    const unscored = document.getElementById("unscored");
    if (unscored) {
      const others = data.rows.filter((r) => !r.scored);
      document.getElementById("unscored-title").hidden = !others.length;
      unscored.tBodies[0].replaceChildren(...others.map((row) => {
        const tr = document.createElement("tr");
        tr.dataset.runId = row.id;
        cell(tr, runLink(row));
        data.keys.forEach((key) => cell(tr, label(row.values[key])));
        cell(tr, row.status);
        cell(tr, row.message || row.finding || "");
        return tr;
      }));
    }
  }

  function renderCompareLink() {
    const link = document.getElementById("compare-top");
    if (!link) return;
    const ids = shownRows().slice(0, 50).map((r) => r.id);
    const query = new URLSearchParams({ runs: ids.join(","), metric: "val_acc" });
    if (data.group_by.length) query.set("group", data.group_by.join(","));
    link.href = `/compare/?${query}`;
    link.textContent = `Compare the top ${ids.length} runs` + (data.group_by.length ? ` by ${data.group_by.join(", ")}` : "");
  }

  function scatter(key) {
    const box = document.getElementById("scatters");
    let figure = document.getElementById(`scatter-${key}`);
    if (!figure) {
      figure = document.createElement("figure");
      figure.className = "chart";
      figure.id = `scatter-${key}`;
      figure.innerHTML = '<figcaption></figcaption><div class="canvas-box"><canvas></canvas></div>';
      box.append(figure);
    }
    const log = data.log_keys.includes(key);
    figure.querySelector("figcaption").textContent = `${METRIC} against ${key}${log ? " (log axis)" : ""}`;
    const numeric = data.rows.some((r) => typeof r.values[key] === "number");
    const shown = shownRows();
    const floor = shown.length ? Math.min(...shown.map((r) => r.best_val_accuracy)) : 0;
    const failed = data.rows.filter((r) => !r.scored && ["diverged", "failed", "lost"].includes(r.status));
    const x = (row) => (numeric ? row.values[key] : label(row.values[key]));
    const datasets = [
      { label: "ranked runs", data: shown.map((r) => ({ x: x(r), y: r.best_val_accuracy, id: r.id })),
        backgroundColor: T.palette[0], pointRadius: 4 },
    ];
    if (failed.length) {
      datasets.push({ label: "diverged or failed (no accuracy; drawn at the bottom)",
                      data: failed.map((r) => ({ x: x(r), y: floor, id: r.id })),
                      backgroundColor: T.palette[1], borderColor: T.palette[1], pointStyle: "crossRot", pointRadius: 6 });
    }
    if (charts[key]) charts[key].destroy();
    const categories = numeric ? undefined : [...new Set(data.rows.map((r) => label(r.values[key])))];
    charts[key] = new Chart(figure.querySelector("canvas"), {
      type: "scatter",
      data: { datasets },
      options: {
        animation: false, maintainAspectRatio: false,
        scales: {
          x: numeric ? { type: log ? "logarithmic" : "linear", title: { display: true, text: key },
                         ticks: log ? { callback: T.logTick } : {} }
                     : { type: "category", labels: categories, title: { display: true, text: key } },
          y: { title: { display: true, text: METRIC } },
        },
        plugins: { tooltip: { callbacks: { label: (ctx) => `#${ctx.raw.id}: ${key}=${label(ctx.raw.x)}, ${METRIC} ${ctx.raw.y.toFixed(4)}` } } },
        onClick: (_, elements, chart) => {
          if (elements.length) location.href = `/runs/${chart.data.datasets[elements[0].datasetIndex].data[elements[0].index].id}/`;
        },
      },
    });
  }

  function renderPCP() {
    const figure = document.getElementById("pcp-figure");
    if (!figure) return;
    const keys = numericKeys();
    figure.hidden = keys.length === 0;
    if (!keys.length) return;
    const shown = shownRows();
    if (charts.pcp) charts.pcp.destroy();
    charts.pcp = T.parallelCoordinates(document.getElementById("chart-pcp"), shown, keys, data.log_keys, METRIC);
    window.trainwatchPCP = charts.pcp;  // read by the browser tests
  }

  function renderDiagnosis() {
    const list = document.getElementById("diagnosis-summary");
    if (!list) return;
    const counts = {};
    data.rows.forEach((r) => { if (r.finding) counts[r.finding] = (counts[r.finding] || 0) + 1; });
    const items = Object.entries(counts).sort((a, b) => b[1] - a[1]);
    list.replaceChildren(...(items.length ? items : [["no finding", ""]]).map(([title, n]) => {
      const li = document.createElement("li");
      li.textContent = n ? `${title}: ${n} run${n > 1 ? "s" : ""}` : title;
      return li;
    }));
  }

  function render() {
    renderLeaderboard();
    renderCompareLink();
    renderPCP();
    data.keys.filter((k) => k !== "seed").forEach(scatter);
    renderDiagnosis();
    window.trainwatchStudy = { data, charts };
    document.body.dataset.loaded = String(Date.now());
  }

  const topSelect = document.getElementById("top-percent");
  if (topSelect) topSelect.addEventListener("change", () => { topPercent = Number(topSelect.value); render(); });

  async function poll() {
    if (data.status !== "running" || !document.getElementById("leaderboard")) return false;
    data = await T.fetchJSON(`/api/studies/${data.id}/`);
    render();
    const facts = document.getElementById("study-status");
    if (facts) facts.textContent = data.status;
    return data.status === "running";
  }

  render();
  T.poll(poll, 3000);
})();

// the report's Print button (no inline handler: the Content-Security-Policy allows none)
document.getElementById("print-report")?.addEventListener("click", () => window.print());
