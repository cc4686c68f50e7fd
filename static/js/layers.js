/* Per-layer view of a run: one layer x step heatmap (chartjs-chart-matrix) of a chosen
   quantity, and the detailed charts of one tensor only when it is opened; deep models
   with hundreds of tensors stay responsive. */
"use strict";

window.TrainwatchLayers = (function () {
  const T = window.Trainwatch;
  const BUCKETS = 100;
  let runId = null;
  let xOf = (step) => step;
  let xTitle = () => "step";
  let heatmap = null;
  let detail = null;
  let lastFetch = 0;
  let activationKeys = null;  // the run's activation histogram keys, read once

  let limits = null;  // the diagnosis's update-ratio thresholds, from the run page

  function draw(body) {
    const canvas = document.getElementById("layer-heatmap");
    if (heatmap) heatmap.destroy();
    heatmap = T.layerHeatmap(canvas, body, { limits, xOf, xTitle: xTitle(), onClick: open });
    window.trainwatchHeatmap = heatmap;  // read by the browser tests
    document.getElementById("layer-legend").textContent = T.heatmapLegend(body, limits);
  }

  async function refresh(force) {
    if (!force && Date.now() - lastFetch < 5000) return;
    lastFetch = Date.now();
    const quantity = document.getElementById("layer-quantity").value;
    const body = await T.fetchJSON(`/api/runs/${runId}/layers/?quantity=${quantity}&buckets=${BUCKETS}`);
    document.getElementById("layers-panel").hidden = body.rows.length === 0 && quantity === "update_ratio";
    draw(body);
    if (body.quantity === "update_ratio" || body.quantity === "grad_norm" || body.quantity === "weight_norm") {
      const names = document.getElementById("tensor-names");
      if (names.children.length !== body.rows.length) {
        names.replaceChildren(...body.rows.map((row) => Object.assign(document.createElement("option"), { value: row })));
      }
    }
  }

  async function open(tensor) {
    if (!tensor) return;
    const keys = ["update_ratio", "grad_norm", "weight_norm"].map((q) => `${q}/${tensor}`);
    const body = await T.fetchJSON(`/api/runs/${runId}/series/?series=${encodeURIComponent(keys.join(","))}`);
    const panel = document.getElementById("layer-detail");
    panel.hidden = false;
    document.getElementById("layer-detail-name").textContent = tensor;
    if (detail) detail.destroy();
    detail = T.lineChart(document.getElementById("layer-detail-chart"), {
      yLabel: "value (log scale)", logY: true, datasets: keys.map((key, i) => ({
        label: key.split("/")[0], borderColor: T.palette[i],
        data: body.series[key].steps.map((s, j) => ({ x: xOf(s), y: body.series[key].values[j], step: s }))
          .filter((p) => p.y > 0),
      })) });
    window.trainwatchLayerDetail = detail;
    await openDistributions(tensor);
  }

  /* The activation layer a tensor feeds: in Trainwatch's models fc3.weight -> act3 and conv2.bias
     -> act_conv2; in any other, an activation module beside the tensor's module (layer1.0.conv1.weight
     -> layer1.0.relu), or the next one of a Sequential (0.weight -> 1). */
  async function activationOf(tensor) {
    if (activationKeys === null) {
      const body = await T.fetchJSON(`/api/runs/${runId}/histograms/`);
      activationKeys = body.keys.filter((k) => k.startsWith("activation/")).map((k) => k.slice("activation/".length));
    }
    const parts = tensor.split(".");
    const head = parts[0];
    const ours = head.startsWith("conv") ? `act_conv${head.slice(4)}` : head.startsWith("fc") ? `act${head.slice(2)}` : null;
    if (ours && activationKeys.includes(ours)) return ours;
    const module = parts.slice(0, -1);
    for (let depth = module.length - 1; depth >= 0; depth--) {
      const prefix = module.slice(0, depth).join(".");
      const last = module[depth];
      if (/^\d+$/.test(last)) {  // a Sequential: the module right after
        const next = [...module.slice(0, depth), String(Number(last) + 1)].join(".");
        if (activationKeys.includes(next)) return next;
      }
      const sibling = activationKeys.find((name) => name.startsWith(prefix ? `${prefix}.` : "")
                                          && name.split(".").length === depth + 1);
      if (sibling) return sibling;
    }
    return null;
  }

  const distributions = {};  // kind -> {chart, body}
  let stepChart = null;

  function drawDistribution(kind, body) {
    const canvas = document.getElementById(`dist-${kind}`);
    const figure = canvas.closest("figure");
    if (distributions[kind]) distributions[kind].chart.destroy();
    const m = body.matrix;
    figure.hidden = !m.steps.length;
    if (!m.steps.length) { delete distributions[kind]; return; }
    const cells = [];
    m.fractions.forEach((column, c) => column.forEach((f, r) => cells.push({ x: c, y: r, v: f })));
    const mid = (r) => (m.edges[r] + m.edges[r + 1]) / 2;
    const chart = new Chart(canvas, {
      type: "matrix",
      data: { datasets: [{ data: cells, borderWidth: 0,
        backgroundColor: (ctx) => `rgba(29, 78, 216, ${ctx.raw ? Math.min(1, Math.sqrt(ctx.raw.v)) : 0})`,
        width: ({ chart }) => Math.max(1, (chart.chartArea || { width: 0 }).width / m.steps.length),
        height: ({ chart }) => Math.max(1, (chart.chartArea || { height: 0 }).height / (m.edges.length - 1)) }] },
      options: { animation: false, maintainAspectRatio: false,
        plugins: { legend: { display: false }, tooltip: { callbacks: {
          title: (items) => `step ${m.steps[items[0].raw.x]}`,
          label: (item) => `${(item.raw.v * 100).toFixed(1)}% near ${mid(item.raw.y).toPrecision(3)}` } } },
        scales: {
          x: { type: "linear", min: -0.5, max: m.steps.length - 0.5, grid: { display: false }, title: { display: true, text: xTitle() },
               ticks: { callback: (i) => (Number.isInteger(i) && i < m.steps.length ? Number(xOf(m.steps[i]).toPrecision(3)) : null) } },
          y: { type: "linear", min: -0.5, max: m.edges.length - 1.5, reverse: false, grid: { display: false },  // values up
               title: { display: true, text: "value" },
               ticks: { callback: (r) => (Number.isInteger(r) && r < m.edges.length - 1 ? Number(mid(r).toPrecision(2)) : null) } },
        } },
    });
    distributions[kind] = { chart, body };
  }

  function drawStep() {
    const kind = document.getElementById("dist-kind").value;
    const entry = distributions[kind];
    if (!entry) return;
    const slider = document.getElementById("dist-step");
    const histograms = entry.body.histograms;
    slider.max = String(histograms.length - 1);
    const h = histograms[Math.min(Number(slider.value), histograms.length - 1)];
    // a tensor that held NaN or infinite values (a run diverging) has no range: nothing to bin
    const unranged = h.nonfinite > 0 || h.low === null || h.high === null;
    const width = unranged ? 0 : (h.high - h.low) / h.counts.length;
    const labels = h.counts.map((_, i) => (unranged ? "" : Number((h.low + width * (i + 0.5)).toPrecision(3))));
    if (stepChart) stepChart.destroy();
    stepChart = new Chart(document.getElementById("dist-at-step"), {
      type: "bar", data: { labels, datasets: [{ label: `${kind} at step ${h.step}`, data: h.counts,
                                                backgroundColor: "rgba(37, 99, 235, 0.6)", barPercentage: 1, categoryPercentage: 1 }] },
      options: { animation: false, maintainAspectRatio: false, plugins: { legend: { display: false } },
                 scales: { x: { title: { display: true, text: "value" }, ticks: { maxTicksLimit: 8 } },
                           y: { title: { display: true, text: "count" } } } },
    });
    document.getElementById("dist-step-label").textContent = unranged
      ? `step ${h.step}: ${Number(h.nonfinite).toLocaleString()} values NaN or infinite; no range to draw`
      : `step ${h.step}: mean ${T.formatNumber(h.mean)}, std ${T.formatNumber(h.std)}, zeros ${(h.zero_fraction * 100).toFixed(1)}%`
        + (h.saturated_fraction ? `, saturated ${(h.saturated_fraction * 100).toFixed(1)}%` : "");
    window.trainwatchDistributionAtStep = stepChart;
  }

  async function openDistributions(tensor) {
    const activation = await activationOf(tensor);
    const kinds = { weight: `weight/${tensor}`, gradient: `gradient/${tensor}`, activation: activation && `activation/${activation}` };
    await Promise.all(Object.entries(kinds).map(async ([kind, key]) => {
      if (!key) { drawDistribution(kind, { matrix: { steps: [] }, histograms: [] }); return; }
      const body = await T.fetchJSON(`/api/runs/${runId}/histograms/?key=${encodeURIComponent(key)}`);
      drawDistribution(kind, body);
    }));
    // the latest histogram first: the range must be set before the value, or the value is clamped
    const shown = distributions[document.getElementById("dist-kind").value];
    const slider = document.getElementById("dist-step");
    slider.max = String(shown ? shown.body.histograms.length - 1 : 0);
    slider.value = slider.max;
    drawStep();
    window.trainwatchDistributions = Object.fromEntries(Object.entries(distributions).map(([k, v]) => [k, v.chart]));
  }

  function init(id, xMapping, xName, thresholds) {
    limits = thresholds;
    document.getElementById("dist-kind").addEventListener("change", drawStep);
    document.getElementById("dist-step").addEventListener("input", drawStep);
    runId = id;
    xOf = xMapping;
    xTitle = xName;
    document.getElementById("layer-quantity").addEventListener("change", () => refresh(true));
    document.getElementById("tensor-picker").addEventListener("change", (event) => {
      open(event.target.value.trim()).catch((error) => console.warn("layers:", error.message));
    });
    document.getElementById("layer-detail-close").addEventListener("click", () => {
      document.getElementById("layer-detail").hidden = true;
    });
    return refresh(true);
  }

  return { init, refresh, open };
})();
