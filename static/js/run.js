/* Run page: draws every stored series and, while the run is running, polls the
   series API for the points after the last step it has, about once a second.
   Every point keeps its step and raw value, so the x axis (epoch, step, wall time)
   and the smoothing can change without asking the server again; zooming asks the
   server for the visible range at full resolution. */
"use strict";

(function () {
  const T = window.Trainwatch;
  const page = JSON.parse(document.getElementById("run-data").textContent);
  const runId = page.run.id;
  const POLL_MS = 1000;
  const BASE_KEYS = ["loss", "loss_reg", "lr", "train_acc", "val_acc", "val_loss", "wall_time", "system/cpu_percent",
                     "system/memory_mb", "system/gpu_percent", "system/gpu_memory_mb"];
  // Polls append full-resolution points. Past this many on one line, the next poll
  // re-reads every series over the full range, downsampled by the server.
  const MAX_LOCAL_POINTS = 3000;

  const view = { x: "epoch", method: "ema", weight: 0.9 };
  const LIMITS = page.thresholds;  // the diagnosis's own (trainer/diagnosis/thresholds.py), from the server

  const charts = {
    loss: T.lineChart(document.getElementById("chart-loss"), {
      yLabel: "loss", datasets: [
        { label: "loss (raw)", borderColor: "rgba(37, 99, 235, 0.25)", borderWidth: 1 },
        { label: "loss (smoothed)", borderColor: "#2563eb", borderWidth: 2 },
        { label: "validation loss", borderColor: "#dc2626", borderWidth: 2, markers: true },
        { label: "regularisation loss", borderColor: "#9333ea", borderWidth: 1.5 },
      ] }),
    accuracy: T.lineChart(document.getElementById("chart-accuracy"), {
      yLabel: "accuracy", yMin: 0, yMax: 1, datasets: [
        { label: "train", borderColor: "#2563eb", markers: true },
        { label: "validation", borderColor: "#dc2626", markers: true,
          fill: { target: 0, above: "rgba(220, 38, 38, 0.08)", below: "rgba(37, 99, 235, 0.12)" } },
      ] }),
    lr: T.lineChart(document.getElementById("chart-lr"), {
      yLabel: "learning rate", legend: false, datasets: [{ label: "learning rate", borderColor: "#16a34a" }] }),
    ratio: T.lineChart(document.getElementById("chart-ratio"), {
      // the range always shows the healthy band around the target, so a line's place is readable at a glance
      yLabel: "update / weight", logY: true, suggestedMin: LIMITS.ratio_low, suggestedMax: LIMITS.ratio_high,
      datasets: [] }),
    grad: T.lineChart(document.getElementById("chart-grad"), { yLabel: "gradient norm", logY: true, datasets: [] }),
    units: T.lineChart(document.getElementById("chart-units"), {
      yLabel: "fraction of units", yMin: 0, yMax: 1, datasets: [] }),
    system: T.lineChart(document.getElementById("chart-system"), {
      yLabel: "CPU / GPU %", yMin: 0, datasets: [
        { label: "CPU %", borderColor: "#2563eb", markers: true },
        { label: "memory (MB)", borderColor: "#9333ea", markers: true, yAxisID: "memory" },
        { label: "GPU %", borderColor: "#16a34a", markers: true },
        { label: "GPU memory (MB)", borderColor: "#ea580c", markers: true, yAxisID: "memory" },
      ] }),
  };
  charts.system.options.scales.memory = { type: "linear", position: "right", min: 0,
                                          title: { display: true, text: "MB" }, grid: { drawOnChartArea: false } };
  // the notes' healthy region of the update-to-weight ratio, and its target
  charts.ratio.options.plugins.annotation = { annotations: {
    healthy: { type: "box", yMin: LIMITS.ratio_low, yMax: LIMITS.ratio_high, backgroundColor: "rgba(22, 163, 74, 0.07)",
               borderWidth: 0, label: { display: true, content: `${LIMITS.ratio_low} .. ${LIMITS.ratio_high}`,
                                        position: { x: "end", y: "start" }, color: "#15803d", font: { size: 10 } } },
    target: { type: "line", yMin: LIMITS.ratio_target, yMax: LIMITS.ratio_target, borderColor: "rgba(22, 163, 74, 0.8)",
              borderWidth: 1, borderDash: [6, 4],
              label: { display: true, content: `target ${LIMITS.ratio_target}`, position: "start",
                       backgroundColor: "rgba(22, 163, 74, 0.8)", font: { size: 10 } } },
  } };
  charts.ratio.update("none");
  window.trainwatchCharts = charts;  // read by the browser tests

  // key -> [chart, dataset index or a per-tensor spec]
  const FIXED = { loss: ["loss", 0], val_loss: ["loss", 2], loss_reg: ["loss", 3], train_acc: ["accuracy", 0],
                  val_acc: ["accuracy", 1], lr: ["lr", 0], "system/cpu_percent": ["system", 0],
                  "system/memory_mb": ["system", 1], "system/gpu_percent": ["system", 2],
                  "system/gpu_memory_mb": ["system", 3] };
  const PER_TENSOR = [
    { prefix: "update_ratio/", chart: "ratio", group: "parameters", label: (name) => name, positive: true },
    { prefix: "grad_norm/", chart: "grad", group: "parameters", label: (name) => name, positive: true },
    { prefix: "dead_fraction/", chart: "units", group: "units", label: (name) => `${name} dead` },
    { prefix: "saturated_fraction/", chart: "units", group: "units", label: (name) => `${name} saturated` },
  ];
  // Past this many lines a group's per-tensor charts are neither drawn nor polled: the layer
  // heatmap shows them all (its quantity menu), and a tensor's lines open on demand. Parameter
  // tensors are counted by their ratios; activation layers by their dead and saturated lines.
  const MAX_LINES = { parameters: 16, units: 32 };
  const specOf = (key) => PER_TENSOR.find((p) => key.startsWith(p.prefix));
  const linesOf = (keys, group) => keys.filter((k) => {
    const spec = specOf(k);
    return spec && spec.group === group && (group === "units" || spec.chart === "ratio");
  }).length;
  const crowdedGroups = (keys) => Object.keys(MAX_LINES).filter((group) => linesOf(keys, group) > MAX_LINES[group]);
  let crowded = crowdedGroups(page.keys);
  const drawn = (key) => { const spec = specOf(key); return Boolean(spec) && !crowded.includes(spec.group); };
  let tensorKeys = page.keys.filter(drawn);
  let cursor = {};  // key -> last step received by polling
  let refetchAll = false;
  let stepsPerEpoch = page.steps_per_epoch || page.run.steps_per_epoch || 0;
  const wallTime = { steps: [], seconds: [] };  // step -> seconds since the start, at epoch ends
  let wallClock = T.wallClock([], []);

  /* The learning rate a step used, from the lr series on the page. */
  function lrAt(step) {
    const points = charts.lr.data.datasets[0].data;
    return T.interp(points.map((p) => p.step), points.map((p) => p.raw), step, false);
  }

  function xOf(step) {
    if (view.x === "step") return step;
    if (view.x === "lr") return lrAt(step);
    if (view.x === "time") return wallClock.known ? wallClock.at(step) : 0;
    return stepsPerEpoch ? (step + 1) / stepsPerEpoch : step;
  }

  function stepOf(x) {
    if (view.x === "step") return x;
    if (view.x === "lr") return null;  // not a function of the step: zooming keeps the points it has
    if (view.x === "time") return wallClock.known ? wallClock.stepAt(x) : x;
    return stepsPerEpoch ? x * stepsPerEpoch - 1 : x;
  }

  function xTitle() {
    return { epoch: "epoch", step: "step", time: "wall time (s)", lr: "learning rate" }[view.x];
  }

  function datasetFor(key) {
    if (key in FIXED) {
      const [chart, index] = FIXED[key];
      return { chart: charts[chart], dataset: charts[chart].data.datasets[index], positive: false };
    }
    const spec = PER_TENSOR.find((p) => key.startsWith(p.prefix));
    if (!spec) return null;
    const chart = charts[spec.chart];
    const label = spec.label(key.slice(spec.prefix.length));
    let dataset = chart.data.datasets.find((d) => d.label === label);
    if (!dataset) {
      const color = T.palette[chart.data.datasets.length % T.palette.length];
      dataset = { label, data: [], borderColor: color, borderWidth: 1.5, pointRadius: T.markerRadius,
                  pointHitRadius: 6, spanGaps: false, smoothable: true };
      chart.data.datasets.push(dataset);
    }
    return { chart, dataset, positive: spec.positive };
  }

  function toPoints(series, positive) {
    const out = [];
    series.steps.forEach((step, i) => {
      const value = series.values[i];
      if (positive && !(value > 0)) return;  // a log axis cannot show 0 or less
      out.push({ x: xOf(step), y: value, step, raw: value });
    });
    return out;
  }

  /* Put a series' points on its chart: appended after the last step, or replacing all. */
  function place(key, series, replace) {
    if (key === "wall_time") {
      if (replace) { wallTime.steps = []; wallTime.seconds = []; }
      wallTime.steps.push(...series.steps);
      wallTime.seconds.push(...series.values);
      wallClock = T.wallClock(wallTime.steps, wallTime.seconds);
      return;
    }
    const target = datasetFor(key);
    if (!target) return;
    const pts = toPoints(series, target.positive);
    if (replace) target.dataset.data = pts;
    else target.dataset.data.push(...pts);
    if (key === "loss" && charts.loss.data.datasets[0].data.length > MAX_LOCAL_POINTS) refetchAll = true;
  }

  /* Displayed values from the raw ones: the smoothed loss line and every per-tensor line. */
  function restyle() {
    const raw = charts.loss.data.datasets[0].data;
    const smoothed = T.smooth(raw.map((p) => p.raw), view.method, view.weight);
    charts.loss.data.datasets[1].data = raw.map((p, i) => ({ x: p.x, y: smoothed[i], step: p.step, raw: p.raw }));
    for (const chart of [charts.ratio, charts.grad, charts.units]) {
      for (const dataset of chart.data.datasets) {
        const values = T.smooth(dataset.data.map((p) => p.raw), view.method, view.weight);
        dataset.data.forEach((p, i) => { p.y = values[i]; });
      }
    }
  }

  function render() {
    restyle();
    Object.values(charts).forEach((chart) => {
      chart.options.scales.x.title.text = xTitle();
      chart.update("none");
    });
  }

  function clearCharts() {
    Object.values(charts).forEach((chart) => chart.data.datasets.forEach((d) => { d.data = []; }));
    cursor = {};
  }

  function showRun(run) {
    const status = document.getElementById("run-status");
    status.textContent = run.status;
    status.className = `status status-${run.status}`;
    // an external run knows its length only when its script says; one that ended early says where
    const share = run.total_steps ? Math.round((100 * run.steps_done) / run.total_steps) : null;
    const early = run.finished && run.total_steps && run.steps_done < run.total_steps;
    document.getElementById("run-progress").textContent = run.total_steps
      ? `${early ? `${run.status} at ` : ""}epoch ${run.epoch} / ${run.epochs} (step ${run.steps_done} / ${run.total_steps}${early ? `, ${share} %` : ""})`
      : run.steps_done ? `step ${run.steps_done}${run.epoch ? `, epoch ${run.epoch}` : ""}` : "–";
    const cancel = document.getElementById("cancel-run");
    if (cancel) cancel.hidden = run.finished;
    document.getElementById("run-best").textContent = T.formatNumber(run.best_val_accuracy);
    document.getElementById("run-loss").textContent = T.formatNumber(run.final_loss);
    document.getElementById("run-duration").textContent = T.formatSeconds(run.seconds);
    document.getElementById("run-device").textContent = run.device || "–";
    const worker = document.getElementById("run-worker");  // an external run has a host instead
    if (worker) {
      worker.textContent = run.worker || "–";
      worker.title = run.worker || "";
    }
    document.getElementById("run-message").textContent = run.message || "";
    showFindings(run);
  }

  // "step 460 (23 % of the run)", or "step 460" when the run's length is not known
  function atStep(step, fraction) {
    return fraction == null ? `step ${step}` : `step ${step} (${Math.round(fraction * 100)} % of the run)`;
  }

  function showFindings(run) {
    const badge = document.getElementById("run-health");
    badge.textContent = run.health || "not yet";
    badge.className = `health health-${run.health || "none"}`;
    const list = document.getElementById("findings");
    list.replaceChildren(...run.findings.map((finding) => {
      const item = document.createElement("li");
      item.dataset.rule = finding.rule;
      const title = document.createElement("div");
      const severity = document.createElement("span");
      severity.className = `health health-${finding.severity}`;
      severity.textContent = finding.severity;
      const text = document.createElement("span");
      text.className = "title";
      text.textContent = ` ${finding.title}`;
      title.append(severity, text);
      if (finding.raised_step != null) {
        const raised = document.createElement("span");
        raised.className = "raised muted";
        // the step its evidence starts at, and the one a diagnosis first saw it (the diagnosis
        // runs every few seconds, so the two differ)
        const since = finding.step != null && finding.step !== finding.raised_step ? ` since step ${finding.step},` : "";
        raised.textContent = `${since} raised at ${atStep(finding.raised_step, finding.raised_fraction)}`;
        if (finding.missed) raised.textContent += `; not found by the last ${finding.missed} diagnoses`;
        title.append(raised);
      }
      const evidence = document.createElement("div");
      evidence.className = "evidence";
      evidence.textContent = finding.evidence;
      const advice = document.createElement("div");
      advice.className = "advice";
      advice.textContent = `Advice: ${finding.advice}`;
      item.append(title, evidence, advice);
      return item;
    }));
    if (!run.findings.length) {
      const item = document.createElement("li");
      item.className = "muted";
      item.textContent = run.health === "ok" ? "Nothing wrong found." : `The diagnosis runs every ${page.diagnose_seconds} s while the run trains.`;
      list.append(item);
    }
    showHistory(run.finding_history || []);
    showWaiting(run);
  }

  /* The rules that cannot read the run, by what they miss, and how a script gives it. */
  function showWaiting(run) {
    const waiting = run.rules_waiting || [];
    document.getElementById("rules-waiting-panel").hidden = !waiting.length;
    document.getElementById("rules-waiting-yet").textContent = run.finished ? "" : " (yet)";
    document.getElementById("rules-waiting").replaceChildren(...waiting.map((group) => {
      const item = document.createElement("li");
      const rules = document.createElement("strong");
      rules.textContent = group.rules.join(", ");
      const how = document.createElement("span");
      how.className = "advice";
      how.textContent = group.how;
      item.append(rules, ` need ${group.needs}: `, how);
      return item;
    }));
  }

  function showHistory(events) {
    document.getElementById("finding-history-panel").hidden = !events.length;
    document.getElementById("finding-history-count").textContent = events.length;
    document.getElementById("finding-history").replaceChildren(...events.map((event) => {
      const item = document.createElement("li");
      item.dataset.event = event.event;
      item.dataset.rule = event.rule;
      const what = {raised: "raised", changed: `now ${event.severity} (was ${event.previous})`, retracted: "retracted"}[event.event];
      const head = document.createElement("span");
      head.className = `health health-${event.event === "retracted" ? "none" : event.severity}`;
      head.textContent = event.event === "retracted" ? "retracted" : event.severity;
      const text = document.createElement("span");
      text.textContent = ` ${event.title}: ${what} at ${atStep(event.step, event.fraction)}`;
      const detail = document.createElement("div");
      detail.className = "evidence";
      detail.textContent = event.reason || event.evidence || "";
      item.append(head, text, detail);
      return item;
    }));
  }

  async function poll() {
    const keys = BASE_KEYS.concat(tensorKeys);
    const full = refetchAll;
    refetchAll = false;
    const spec = keys.map((k) => (!full && k in cursor ? `${k}:${cursor[k]}` : k)).join(",");
    let body;
    try {
      body = await T.fetchJSON(`/api/runs/${runId}/series/?series=${encodeURIComponent(spec)}`);
    } catch (error) {
      refetchAll = refetchAll || full;
      throw error;  // T.poll tries again, later
    }
    stepsPerEpoch = body.run.steps_per_epoch || stepsPerEpoch;
    if (full) clearCharts();
    // wall time first: the other series' x positions may depend on it
    const entries = Object.entries(body.series).sort(([a], [b]) => (a === "wall_time" ? -1 : b === "wall_time" ? 1 : 0));
    for (const [key, series] of entries) {
      if (series.steps.length) cursor[key] = series.steps[series.steps.length - 1];
      place(key, series, false);
    }
    const nowCrowded = crowdedGroups(body.keys).filter((group) => !crowded.includes(group));
    if (nowCrowded.length) {
      crowded = crowded.concat(nowCrowded);
      tensorKeys = tensorKeys.filter(drawn);
      PER_TENSOR.filter((p) => nowCrowded.includes(p.group)).forEach((p) => { charts[p.chart].data.datasets = []; });
      showCrowded(body.keys);
    }
    const newTensorKeys = body.keys.filter((k) => drawn(k) && !tensorKeys.includes(k));
    tensorKeys = tensorKeys.concat(newTensorKeys);
    if (body.keys.some((k) => k.startsWith("update_ratio/"))) {
      window.TrainwatchLayers.refresh(full).catch((error) => console.warn("layers:", error.message));
    }
    render();
    showRun(body.run);
    document.body.dataset.lastPoll = String(Date.now());
    if (body.keys.includes("epoch")) refreshImages().catch((error) => console.warn("images:", error.message));
    if (newTensorKeys.length) return poll();  // their points, in the same refresh
    return !body.run.finished;
  }

  /* Zoomed: the visible step range of this chart's series, at full resolution up to 1000 points. */
  function chartKeys(name) {
    const fixed = Object.entries(FIXED).filter(([, [chart]]) => chart === name).map(([key]) => key);
    const spec = PER_TENSOR.filter((p) => p.chart === name).map((p) => p.prefix);
    return fixed.concat(tensorKeys.filter((key) => spec.some((prefix) => key.startsWith(prefix))));
  }

  async function zoomTo(name, chart) {
    if (view.x === "lr") return;
    const from = Math.max(0, Math.floor(stepOf(chart.scales.x.min)));
    const until = Math.ceil(stepOf(chart.scales.x.max));
    const keys = chartKeys(name);
    const body = await T.fetchJSON(`/api/runs/${runId}/series/?series=${encodeURIComponent(keys.join(","))}`
                                   + `&from=${from}&until=${until}&max_points=1000`);
    for (const [key, series] of Object.entries(body.series)) place(key, series, true);
    restyle();
    chart.update("none");
    chart.$zoomedRange = [from, until];
    document.body.dataset.lastZoom = `${name}:${from}-${until}`;
  }

  Object.entries(charts).forEach(([name, chart]) => {
    chart.$onRange = (c) => zoomTo(name, c).catch((error) => console.warn("zoom:", error.message));
    T.toolbar(chart.canvas.closest("figure"), chart, {
      name: `run-${runId}-${name}`, xName: xTitle,
      onReset: () => { refetchAll = true; chart.$zoomedRange = null; if (document.body.dataset.pollingStopped) poll().catch((error) => console.warn(error.message)); },
    });
  });

  // view controls: x axis and smoothing apply to every chart
  document.getElementById("x-axis").addEventListener("change", (event) => {
    view.x = event.target.value;
    Object.values(charts).forEach((chart) => {
      chart.data.datasets.forEach((d) => d.data.forEach((p) => { if (p.step !== undefined) p.x = xOf(p.step); }));
      // rates span decades: against the learning rate the x axis is logarithmic
      chart.options.scales.x.type = view.x === "lr" ? "logarithmic" : "linear";
      chart.options.scales.x.min = view.x === "lr" ? undefined : 0;
      chart.options.scales.x.ticks = view.x === "lr" ? { callback: T.logTick } : {};
    });
    Object.values(charts).forEach((chart) => chart.resetZoom("none"));
    render();
    window.TrainwatchLayers.refresh(true).catch((error) => console.warn("layers:", error.message));
  });
  const slider = document.getElementById("smoothing");
  const method = document.getElementById("smoothing-method");
  const showSmoothing = () => { document.getElementById("smoothing-value").textContent = view.weight.toFixed(2); };
  slider.addEventListener("input", () => { view.weight = Number(slider.value); showSmoothing(); render(); });
  method.addEventListener("change", () => { view.method = method.value; render(); });
  showSmoothing();

  // first-layer weights: the image list is re-read at most every few seconds while the run runs
  const image = { steps: [], shown: null, lastFetch: 0 };
  const imageSlider = document.getElementById("first-layer-slider");

  function drawImage(img) {
    T.drawPixels(document.getElementById("first-layer"), img, 260);
    const epoch = stepsPerEpoch ? ` (epoch ${Number(((img.step + 1) / stepsPerEpoch).toFixed(2))})` : "";
    document.getElementById("first-layer-step").textContent = `step ${img.step}${epoch}`;
    image.shown = img.step;
  }

  // how much the filters look like white noise (1), from smooth (near 0): the diagnosis's measure
  function showRoughness(roughness) {
    const label = document.getElementById("first-layer-roughness");
    if (roughness == null) {
      label.textContent = "";
      return;
    }
    const reading = roughness >= LIMITS.filters_noise ? "noise: the layer has not learnt"
      : roughness < LIMITS.filters_smooth ? "smooth" : "learnt, not smooth";
    label.textContent = `roughness ${roughness.toFixed(3)} (${reading}; white noise 1)`;
    label.className = roughness >= LIMITS.filters_noise ? "warning-text" : "muted";
  }

  async function refreshImages(step) {
    const now = Date.now();
    if (step === undefined && now - image.lastFetch < 3000) return;
    image.lastFetch = now;
    const query = step === undefined ? "" : `&step=${step}`;
    const body = await T.fetchJSON(`/api/runs/${runId}/images/?key=first_layer${query}`);
    if (!body.image) return;
    document.getElementById("first-layer-panel").hidden = false;
    const following = step === undefined && Number(imageSlider.value) >= image.steps.length - 1;
    image.steps = body.steps;
    imageSlider.max = String(Math.max(0, image.steps.length - 1));
    if (following) imageSlider.value = imageSlider.max;
    if (step !== undefined || following) {
      drawImage(body.image);
      showRoughness(body.roughness);
    }
  }

  imageSlider.addEventListener("input", () => refreshImages(image.steps[Number(imageSlider.value)])
    .catch((error) => console.warn("images:", error.message)));

  function showCrowded(keys) {
    const notes = {
      parameters: `${linesOf(keys, "parameters")} parameter tensors: their update ratios and gradient norms are in the Layers heatmap above; click a row for its lines.`,
      units: `${linesOf(keys, "units")} dead and saturated fractions of activation layers: pick them as the Layers heatmap's quantity above; click a row for its line.`,
    };
    for (const group of crowded) {
      document.querySelectorAll(`[data-lines="${group}"]`).forEach((figure) => { figure.hidden = true; });
      const note = document.getElementById(`crowded-${group}`);
      note.hidden = false;
      note.textContent = notes[group];
    }
  }

  if (crowded.length) showCrowded(page.keys);
  window.TrainwatchLayers.init(runId, xOf, xTitle, LIMITS).catch((error) => console.warn("layers:", error.message));
  showRun(page.run);
  T.poll(poll, POLL_MS, 0);
})();
