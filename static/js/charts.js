/* Shared helpers of every page: charts (Chart.js 4, vendored, where a page draws one), numbers,
   requests and the one polling loop of the live pages. */
"use strict";

window.Trainwatch = (function () {
  const palette = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
                   "#ca8a04", "#db2777", "#4b5563", "#65a30d", "#7c3aed", "#0d9488"];

  function lineChart(canvas, options) {
    const yScale = {
      type: options.logY ? "logarithmic" : "linear",
      title: { display: true, text: options.yLabel },
    };
    if (options.logY) yScale.ticks = { callback: logTick };
    if (options.suggestedMin !== undefined) yScale.suggestedMin = options.suggestedMin;
    if (options.suggestedMax !== undefined) yScale.suggestedMax = options.suggestedMax;
    if (options.yMin !== undefined) yScale.min = options.yMin;
    if (options.yMax !== undefined) yScale.max = options.yMax;
    return new Chart(canvas, {
      type: "line",
      data: { datasets: options.datasets.map((d) => Object.assign({
        data: [], borderWidth: 1.5, pointRadius: 0, pointHitRadius: 6, tension: 0, spanGaps: false,
      }, d, d.markers ? { pointRadius: markerRadius } : {})) },
      options: {
        parsing: false,
        normalized: true,
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: {
          x: { type: "linear", min: 0, title: { display: true, text: options.xLabel || "epoch" } },
          y: yScale,
        },
        plugins: {
          // drag a box (or ctrl + wheel) to zoom, shift + drag to pan; zooming re-reads the range
          zoom: options.zoom === false ? false : {
            zoom: { drag: { enabled: true, backgroundColor: "rgba(37, 99, 235, 0.12)" },
                    wheel: { enabled: true, modifierKey: "ctrl" }, mode: "x",
                    onZoomComplete: ({ chart }) => chart.$onRange && chart.$onRange(chart) },
            pan: { enabled: true, mode: "x", modifierKey: "shift",
                   onPanComplete: ({ chart }) => chart.$onRange && chart.$onRange(chart) },
          },
          legend: { display: options.legend !== false, labels: { boxWidth: 12 } },
          tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label}: ${formatNumber(ctx.parsed.y)}` } },
        },
      },
    });
  }

  /* Log-axis labels: 1, 2 and 5 times a power of ten, written as 2e-3 rather than 0.002000. */
  function logTick(value) {
    const exponent = Math.floor(Math.log10(value) + 1e-9);
    const mantissa = value / Math.pow(10, exponent);
    const shown = [1, 2, 5].find((m) => Math.abs(mantissa - m) < 1e-6);
    return shown ? `${shown}e${exponent}` : null;
  }

  /* Per-epoch markers help while there are few points and become a smear on long runs. */
  function markerRadius(context) {
    return context.dataset.data.length > 60 ? 0 : 2.5;
  }

  /* Exponential moving average with bias correction (docs: training dynamics, section 3):
     v_t = beta * v_{t-1} + (1 - beta) * x_t, shown as v_t / (1 - beta^t). `state` carries over
     between calls so that new points extend the curve without recomputing it. */
  function emaExtend(points, beta, state) {
    const out = [];
    for (const p of points) {
      if (p.y === null || !Number.isFinite(p.y)) { out.push({ x: p.x, y: null }); continue; }
      state.t += 1;
      state.v = beta * state.v + (1 - beta) * p.y;
      out.push({ x: p.x, y: state.v / (1 - Math.pow(beta, state.t)) });
    }
    return out;
  }

  /* Piecewise-linear y at x over increasing xs, by binary search. Outside [xs[0], xs[n-1]]:
     the end value, or with `extrapolate` the line of the nearest segment. The one
     interpolation of every page (learning rate at a step, wall time at a step and back). */
  function interp(xs, ys, x, extrapolate) {
    const n = xs.length;
    if (!n) return null;
    if (n === 1) return ys[0];
    let low = 0, high = n - 1;
    if (x <= xs[0]) { if (!extrapolate) return ys[0]; high = 1; }
    else if (x >= xs[n - 1]) { if (!extrapolate) return ys[n - 1]; low = n - 2; }
    else {
      while (high - low > 1) {
        const mid = (low + high) >> 1;
        if (xs[mid] <= x) low = mid; else high = mid;
      }
    }
    const span = xs[high] - xs[low];
    return span ? ys[low] + ((ys[high] - ys[low]) * (x - xs[low])) / span : ys[low];
  }

  /* Wall time of training at a step, and the step at a wall time, from the seconds logged at
     epoch ends (`wall_time`): 0 s before the first step, linear between epoch ends, and past
     the last one at the pace of the last epoch (a running run's current epoch). */
  function wallClock(steps, seconds) {
    const xs = [-1, ...steps], ys = [0, ...seconds];
    return {
      known: steps.length > 0,
      at: (step) => interp(xs, ys, step, true),
      stepAt: (time) => interp(ys, xs, time, true),
    };
  }

  function formatNumber(value) {
    if (value === null || value === undefined) return "–";
    const magnitude = Math.abs(value);
    if (magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e5)) return value.toExponential(2);
    return value.toPrecision(4);
  }

  function formatSeconds(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
    return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  }

  async function fetchJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  /* The one polling loop of the live pages: `step` runs every `every` ms and returns false when
     there is nothing more to wait for (every run shown has ended), true to go on. A failed step
     is retried after three times the interval; a hidden tab is not polled until it is shown
     again. When it stops, body[data-polling-stopped] is "1".
     `first`: ms before the first step (default: one interval). A second loop of a page (its
     console) gives itself a `name`: its marks are then body[data-<name>-polling-stopped] and
     body[data-<name>-last-poll], so that the page's own loop keeps its marks. */
  function poll(step, every, first = every, name = "") {
    const stopped = name ? `${name}PollingStopped` : "pollingStopped";
    const lastPoll = name ? `${name}LastPoll` : "lastPoll";
    let timer = null;
    async function tick() {
      timer = null;
      if (document.hidden) {
        document.addEventListener("visibilitychange", () => { if (!timer) tick(); }, { once: true });
        return;
      }
      let next = every;
      try {
        if ((await step()) === false) { document.body.dataset[stopped] = "1"; return; }
      } catch (error) {
        console.warn("refresh failed, retrying:", error.message);
        next = every * 3;
      }
      document.body.dataset[lastPoll] = String(Date.now());
      timer = setTimeout(tick, next);
    }
    timer = setTimeout(tick, first);
  }

  /* Smoothing of a dataset's raw values: bias-corrected EMA (docs, section 3) or a
     plain moving average over about 1 / (1 - weight) points. */
  function smooth(values, method, weight) {
    if (!weight) return values.slice();
    if (method === "average") {
      const window = Math.max(1, Math.round(1 / (1 - weight)));
      const out = [];
      let sum = 0, count = 0;
      const queue = [];
      for (const v of values) {
        if (v === null || !Number.isFinite(v)) { out.push(null); continue; }
        queue.push(v); sum += v; count += 1;
        if (queue.length > window) { sum -= queue.shift(); count -= 1; }
        out.push(sum / count);
      }
      return out;
    }
    const state = { t: 0, v: 0 };
    return emaExtend(values.map((y) => ({ x: 0, y })), weight, state).map((p) => p.y);
  }

  /* The data of a chart as CSV: one row per point, in long form. */
  function toCSV(chart, xName) {
    const rows = [`series,step,${xName},value`];
    for (const dataset of chart.data.datasets) {
      if (dataset.label.startsWith("_")) continue;
      for (const point of dataset.data) {
        const label = `"${dataset.label.replaceAll('"', '""')}"`;
        rows.push(`${label},${point.step ?? ""},${point.x},${point.raw ?? point.y ?? ""}`);
      }
    }
    return rows.join("\n") + "\n";
  }

  function download(filename, text) {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
    link.download = filename;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }

  /* Buttons above a chart: linear/log y, reset zoom, CSV. */
  function toolbar(figure, chart, options) {
    const bar = document.createElement("div");
    bar.className = "chart-tools";
    const scale = document.createElement("button");
    scale.type = "button";
    const showScale = () => { scale.textContent = chart.options.scales.y.type === "logarithmic" ? "log y" : "linear y"; };
    scale.addEventListener("click", () => {
      chart.options.scales.y.type = chart.options.scales.y.type === "logarithmic" ? "linear" : "logarithmic";
      chart.options.scales.y.ticks = chart.options.scales.y.type === "logarithmic" ? { callback: logTick } : {};
      showScale();
      chart.update("none");
    });
    showScale();
    const reset = document.createElement("button");
    reset.type = "button";
    reset.textContent = "reset zoom";
    reset.className = "reset-zoom";
    reset.addEventListener("click", () => { chart.resetZoom(); if (options.onReset) options.onReset(chart); });
    const csv = document.createElement("button");
    csv.type = "button";
    csv.textContent = "CSV";
    csv.className = "csv";
    csv.addEventListener("click", () => download(`${options.name}.csv`, toCSV(chart, options.xName())));
    bar.append(scale, reset, csv);
    figure.querySelector("figcaption").append(bar);
  }

  function withAlpha(hex, alpha) {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
  }

  /* The datasets of a comparison (GET /api/compare/, a report's chart block): one line per run,
     or per group its mean between two band edges (min..max, or mean ± std), on an x axis of
     steps, epochs or wall time; the learning rate on an "lr" axis when asked. The one drawing of
     compared runs: the compare page, a report, its share view and its export all call this.
     options: {x: "step"|"epoch"|"wall", band: "minmax"|"std", lr: bool, smoothing: 0..0.99,
     prefix: a label's start (the metric, where a chart shows several), dash: its lines' dash}. */
  function comparisonDatasets(body, options) {
    const out = [];
    const prefix = options.prefix || "";
    const dash = options.dash ? { borderDash: options.dash } : {};
    const smoothing = options.smoothing || 0;
    const toX = (step, stepsPerEpoch, clock) => {
      if (options.x === "wall") return clock.known ? clock.at(step) : null;
      return options.x === "epoch" && stepsPerEpoch ? (step + 1) / stepsPerEpoch : step;
    };
    const points = (steps, values, stepsPerEpoch, clock) =>
      steps.map((s, i) => ({ x: toX(s, stepsPerEpoch, clock), y: values[i] })).filter((p) => p.x !== null);
    const smoothed = (values) => (smoothing ? smooth(values, "ema", smoothing) : values);
    const stepsPerEpoch = Object.fromEntries(body.runs.map((run) => [run.id, run.steps_per_epoch]));
    const walls = Object.fromEntries(body.runs.map((run) => [run.id, wallClock(run.wall.steps, run.wall.values)]));
    if (body.groups) {
      Object.entries(body.groups).forEach(([name, group], index) => {
        const color = palette[index % palette.length];
        const spe = stepsPerEpoch[group.runs[0]];
        const wall = walls[group.runs[0]];  // the group's first run's clock
        const offset = (sign) => group.mean.map((m, i) => (m === null || group.std[i] === null ? null : m + sign * group.std[i]));
        const [lower, upper] = options.band === "std" ? [offset(-1), offset(1)] : [group.min, group.max];
        out.push({ label: `_low ${prefix}${name}`, data: points(group.steps, lower, spe, wall), borderWidth: 0, pointRadius: 0 });
        out.push({ label: `_high ${prefix}${name}`, data: points(group.steps, upper, spe, wall), borderWidth: 0, pointRadius: 0,
                   fill: "-1", backgroundColor: withAlpha(color, 0.15) });
        out.push({ label: `${prefix}${name} (mean of ${group.runs.length})`, data: points(group.steps, smoothed(group.mean), spe, wall),
                   borderColor: color, borderWidth: 2, pointRadius: 0, ...dash });
      });
    } else {
      body.runs.forEach((run, index) => {
        out.push({ label: `${prefix}#${run.id} ${run.label}`, data: points(run.steps, smoothed(run.values), run.steps_per_epoch, walls[run.id]),
                   borderColor: palette[index % palette.length], borderWidth: 1.5, pointRadius: 0, ...dash });
      });
    }
    if (options.lr) {
      body.runs.forEach((run, index) => {
        if (!run.lr) return;
        out.push({ label: `lr #${run.id}`, data: points(run.lr.steps, run.lr.values, run.steps_per_epoch, walls[run.id]),
                   borderColor: palette[index % palette.length], borderDash: [4, 3], borderWidth: 1,
                   pointRadius: 0, yAxisID: "lr" });
      });
    }
    return out;
  }

  /* A comparison drawn on a canvas (see comparisonDatasets), or several (one per metric, on one
     axis: each named in its labels, the second dashed, the third dotted); band edges stay out
     of the legend. */
  const METRIC_DASHES = [undefined, [6, 3], [2, 2], [8, 3, 2, 3]];

  function comparisonChart(canvas, bodies, options) {
    const list = Array.isArray(bodies) ? bodies : [bodies];
    const several = list.length > 1;
    const chart = lineChart(canvas, {
      yLabel: list.map((body) => body.metric).join(", "), xLabel: options.x === "wall" ? "wall time (s)" : options.x,
      logY: options.y === "log", zoom: options.zoom,
      datasets: list.flatMap((body, index) => comparisonDatasets(body, {
        ...options, prefix: several ? `${body.metric}: ` : "", dash: METRIC_DASHES[index % METRIC_DASHES.length] })),
    });
    chart.options.plugins.legend.labels.filter = (item) => !item.text.startsWith("_");
    if (options.lr) {
      chart.options.scales.lr = { type: "logarithmic", position: "right", title: { display: true, text: "learning rate" },
                                  grid: { drawOnChartArea: false }, ticks: { callback: logTick } };
    }
    if (options.xMin !== undefined && options.xMin !== null) chart.options.scales.x.min = options.xMin;
    if (options.xMax !== undefined && options.xMax !== null) chart.options.scales.x.max = options.xMax;
    chart.update("none");
    return chart;
  }

  /* A layer x step heatmap's colour (log10 update ratio: blue below the diagnosis's low
     threshold, green around its target, red above its high one, a decade past each; dead and
     saturated fractions in red; other quantities on their own range). */
  function heatmapColour(value, quantity, range, limits) {
    if (value === null) return "rgba(0, 0, 0, 0.04)";
    if (quantity === "update_ratio") {
      const low = Math.log10(limits.ratio_low) - 1, high = Math.log10(limits.ratio_high) + 1;
      const t = Math.min(1, Math.max(0, (value - low) / (high - low)));
      return `hsl(${240 - 240 * t}, 70%, ${45 + 10 * Math.abs(t - 0.5)}%)`;
    }
    if (quantity === "dead_fraction" || quantity === "saturated_fraction") {
      return `rgba(220, 38, 38, ${0.08 + 0.92 * Math.min(1, Math.max(0, value))})`;
    }
    const t = range[1] > range[0] ? (value - range[0]) / (range[1] - range[0]) : 0.5;
    return `hsl(${260 - 200 * t}, 65%, ${30 + 35 * t}%)`;
  }

  /* A run's layer matrix (GET /api/runs/<id>/layers/) as a heatmap (chartjs-chart-matrix): the
     run page's and a report's. options: {limits, xOf(step), xTitle, onClick(tensor)}. */
  function layerHeatmap(canvas, body, options) {
    const xOf = options.xOf || ((step) => step);
    canvas.parentElement.style.height = `${Math.min(640, Math.max(160, body.rows.length * 14 + 60))}px`;
    const finite = body.values.flat().filter((v) => v !== null);
    const range = finite.length ? [Math.min(...finite), Math.max(...finite)] : [0, 1];
    // cells sit on bucket indices; only the tick labels speak the chosen x unit
    const cells = [];
    body.rows.forEach((row, r) => body.values[r].forEach((v, c) => {
      cells.push({ x: c, y: row, v, step: body.steps[c] });
    }));
    const xs = body.steps;
    return new Chart(canvas, {
      type: "matrix",
      data: { datasets: [{
        label: body.quantity, data: cells,
        backgroundColor: (ctx) => heatmapColour(ctx.raw ? ctx.raw.v : null, body.quantity, range, options.limits),
        borderWidth: 0,
        width: ({ chart }) => Math.max(1, (chart.chartArea || { width: 0 }).width / Math.max(1, xs.length)),
        height: ({ chart }) => Math.max(1, (chart.chartArea || { height: 0 }).height / Math.max(1, body.rows.length)),
      }] },
      options: {
        animation: false, maintainAspectRatio: false,
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: {
            title: (items) => items[0].raw.y,
            label: (item) => {
              const v = item.raw.v;
              const shown = v === null ? "no data" : body.log10 ? `${Math.pow(10, v).toExponential(2)} (log10 ${v})` : v.toFixed(3);
              return `step ${item.raw.step}: ${shown}`;
            } } },
        },
        scales: {
          x: { type: "linear", min: -0.5, max: xs.length - 0.5, offset: false, grid: { display: false },
               title: { display: true, text: options.xTitle || "step" },
               ticks: { callback: (index) => (Number.isInteger(index) && index < xs.length
                 ? Number(xOf(xs[index]).toPrecision(3)) : null) } },
          // the matrix chart reverses y by default; the input layer goes on top, as in a model summary
          y: { type: "category", labels: body.rows, offset: true, reverse: false, grid: { display: false },
               ticks: { autoSkip: true, font: { size: 10 } } },
        },
        onClick: (event, elements) => {
          if (elements.length && options.onClick) options.onClick(body.rows.length ? cells[elements[0].index].y : null);
        },
      },
    });
  }

  function heatmapLegend(body, limits) {
    const unit = body.log10 ? "log10 of the value" : "fraction";
    return `${body.rows.length} tensors x ${body.steps.length} step buckets; colour: ${unit}` +
      (body.quantity === "update_ratio"
        ? ` (blue < ${limits.ratio_low}, green about ${limits.ratio_target}, red > ${limits.ratio_high})` : "");
  }

  /* An image of uint8 pixels (base64, 1 or 3 channels) on a canvas, scaled up to about `size`
     pixels with its pixels kept sharp: the first layer's filters. */
  function drawPixels(canvas, img, size) {
    const bytes = Uint8Array.from(atob(img.pixels), (c) => c.charCodeAt(0));
    const pixels = new ImageData(img.width, img.height);
    for (let i = 0; i < img.width * img.height; i++) {
      const rgb = img.channels === 3 ? [bytes[3 * i], bytes[3 * i + 1], bytes[3 * i + 2]] : [bytes[i], bytes[i], bytes[i]];
      pixels.data.set([...rgb, 255], 4 * i);
    }
    canvas.width = img.width;
    canvas.height = img.height;
    const scale = Math.max(1, Math.floor(size / Math.max(img.width, img.height)));
    canvas.style.width = `${img.width * scale}px`;
    canvas.style.height = `${img.height * scale}px`;
    canvas.getContext("2d").putImageData(pixels, 0, 0);
  }

  /* A study's runs on parallel axes (chartjs-chart-pcp): each searched key, then the metric
     (`metricLabel`: best validation accuracy); `rows` best first, the better the darker.
     Log-scale keys get a log axis. The study page's and a report's leaderboard block's. */
  function parallelCoordinates(canvas, rows, keys, logKeys, metricLabel) {
    const axes = [...keys, metricLabel];
    return new Chart(canvas, {
      type: "pcp",
      data: {
        labels: rows.map((r) => `#${r.id}`),
        datasets: axes.map((axis) => ({
          label: axis,
          type: logKeys.includes(axis) ? "logarithmicPcp" : "pcp",
          data: rows.map((r) => (axis === metricLabel ? r.best_val_accuracy : r.values[axis])),
        })),
      },
      options: {
        animation: false, maintainAspectRatio: false,
        elements: { lineSegment: { borderColor: (ctx) => {
          const row = rows[ctx.dataIndex];
          const best = rows[0] ? rows[0].best_val_accuracy : 1, worst = rows.length ? rows[rows.length - 1].best_val_accuracy : 0;
          const t = row && best > worst ? (row.best_val_accuracy - worst) / (best - worst) : 1;
          return `rgba(37, 99, 235, ${0.15 + 0.85 * t})`;
        } } },
        plugins: { legend: { display: false } },
      },
    });
  }

  return { palette, lineChart, logTick, markerRadius, smooth, toCSV, toolbar, emaExtend, formatNumber, formatSeconds,
           fetchJSON, interp, wallClock, poll, comparisonDatasets, comparisonChart, layerHeatmap, heatmapLegend, drawPixels, parallelCoordinates };
})();
