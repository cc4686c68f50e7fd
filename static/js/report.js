/* A report: its blocks drawn from their data (fetched from the report's API, or embedded in an
   exported file), live blocks re-read while their runs train; for its members, blocks edited,
   moved, frozen and removed, text previewed as typed and saved by itself. Every text that comes
   from people or runs is put in the page as text (textContent), never as HTML: a text block's
   HTML is the server's sanitised rendering. */
"use strict";

(function () {
  const T = window.Trainwatch;
  const page = JSON.parse(document.getElementById("report-data").textContent);
  const charts = {};
  const live = new Set();
  let blocks = page.blocks;
  let version = page.version;

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function cellText(value, column) {
    if (value === null || value === undefined || value === "") return "–";
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : T.formatNumber(value);
    if (typeof value === "object") return value.name !== undefined ? String(value.name) : JSON.stringify(value);
    if (column === "created") return value.slice(0, 16).replace("T", " ");
    return String(value);
  }

  function runLink(id, name) {
    if (page.editable) {
      const link = element("a", `#${id} ${name}`);
      link.href = `/runs/${id}/`;
      return link;
    }
    return element("span", `#${id} ${name}`);  // a share link opens the report, not the runs
  }

  function table(head, rows) {
    const out = element("table", undefined, "checks");
    const thead = out.createTHead().insertRow();
    head.forEach((text) => thead.append(element("th", text)));
    const body = out.createTBody();
    rows.forEach((cells) => {
      const tr = body.insertRow();
      cells.forEach((cell) => {
        const td = tr.insertCell();
        if (cell instanceof Node) td.append(cell); else td.textContent = cell;
      });
    });
    const box = element("div", undefined, "table-scroll");
    box.append(out);
    return box;
  }

  const drawers = {
    chart(block, data, body) {
      if (charts[block.id]) charts[block.id].destroy();
      if (!data.series.length) { body.replaceChildren(element("p", "No run to draw.", "muted")); return; }
      let canvas = body.querySelector("canvas");
      if (!canvas) {
        const box = element("div", undefined, "canvas-box tall");
        canvas = element("canvas");
        box.append(canvas);
        body.replaceChildren(box);
      }
      const chart = T.comparisonChart(canvas, data.series, {
        x: block.x, y: block.y, band: block.band, smoothing: block.smoothing, xMin: block.x_min, xMax: block.x_max,
        zoom: page.embedded ? false : undefined,
      });
      charts[block.id] = chart;
      const points = chart.data.datasets.reduce((sum, dataset) => sum + dataset.data.length, 0);
      body.closest(".report-block").dataset.points = String(points);
    },
    runs(block, data, body) {
      const rows = data.rows.map((row) => row.cells.map((value, index) => (
        data.columns[index] === "name" ? runLink(row.id, value) : cellText(value, data.columns[index]))));
      body.replaceChildren(table(data.columns.map((column) => column.replaceAll("_", " ")), rows));
    },
    config_diff(block, data, body) {
      const keys = Object.keys(data.diff);
      if (!keys.length) { body.replaceChildren(element("p", "The configs are identical.", "muted")); return; }
      const rows = keys.map((key) => [key, ...data.diff[key].map((v) => (v === null || v === undefined ? "–" : JSON.stringify(v)))]);
      body.replaceChildren(table(["config key", ...data.runs.map((run) => `#${run.id} ${run.name}`)], rows));
    },
    findings(block, data, body) {
      const list = element("div", undefined, "report-findings");
      data.runs.forEach((run) => {
        const head = element("h3");
        head.append(runLink(run.id, run.name), " ", element("span", run.health || "–", `health health-${run.health || "none"}`));
        list.append(head);
        if (!run.findings.length) list.append(element("p", "No finding.", "muted"));
        run.findings.forEach((finding) => {
          const item = element("div", undefined, `finding finding-${finding.severity}`);
          item.append(element("strong", `${finding.severity}: ${finding.title}`));
          if (finding.evidence) item.append(element("p", finding.evidence));
          if (finding.advice) item.append(element("p", finding.advice, "muted"));
          list.append(item);
        });
      });
      body.replaceChildren(list);
    },
    leaderboard(block, data, body) {
      const head = ["rank", "run", ...data.keys, "best val acc", "final loss", "status", "diagnosis"];
      const rows = data.rows.map((row, index) => [String(index + 1), runLink(row.id, row.name),
        ...data.keys.map((key) => cellText(row.values[key], key)), cellText(row.best_val_accuracy),
        cellText(row.final_loss), row.status, row.finding || "–"]);
      body.replaceChildren(table(head, rows));
      // the searched numeric values against the best accuracy, the scored runs best first
      const keys = data.keys.filter((key) => key !== "seed" && data.rows.some((r) => typeof r.values[key] === "number"));
      const scored = data.rows.filter((r) => r.scored).sort((a, b) => b.best_val_accuracy - a.best_val_accuracy);
      if (charts[block.id]) { charts[block.id].destroy(); delete charts[block.id]; }
      if (block.parallel && keys.length && scored.length && window.Chart && Chart.registry.controllers.get("pcp")) {
        const box = element("div", undefined, "canvas-box");
        const canvas = element("canvas");
        box.append(canvas);
        body.append(box);
        charts[block.id] = T.parallelCoordinates(canvas, scored, keys, data.log_keys, "best val. acc.");
      }
    },
  };

  Object.assign(drawers, {
    layers(block, data, body) {
      if (charts[block.id]) charts[block.id].destroy();
      delete charts[block.id];
      if (!data.rows.length) { body.replaceChildren(element("p", "No per-tensor measurement to show.", "muted")); return; }
      const box = element("div", undefined, "canvas-box");
      const canvas = element("canvas");
      box.append(canvas);
      const legend = element("p", T.heatmapLegend(data, data.thresholds), "muted small");
      body.replaceChildren(box, legend);
      const spe = data.run.steps_per_epoch;
      charts[block.id] = T.layerHeatmap(canvas, data, {
        limits: data.thresholds, xOf: (step) => (spe ? (step + 1) / spe : step), xTitle: spe ? "epoch" : "step",
      });
    },
    first_layer(block, data, body) {
      const row = element("div", undefined, "first-layer-row");
      data.images.forEach((image) => {
        const figure = element("figure", undefined, "image-box");
        const canvas = element("canvas");
        T.drawPixels(canvas, image, 220);
        const epoch = data.run.steps_per_epoch ? `, epoch ${Number(((image.step + 1) / data.run.steps_per_epoch).toFixed(2))}` : "";
        figure.append(canvas, element("figcaption", `step ${image.step}${epoch}`));
        row.append(figure);
      });
      body.replaceChildren(row);
    },
  });

  function section(id) {
    return document.querySelector(`.report-block[data-block-id="${id}"]`);
  }

  async function dataOf(block) {
    if (page.embedded) return page.embedded[block.id];
    return T.fetchJSON(`${page.data_url}${block.id}/`);
  }

  async function drawBlock(block) {
    const box = section(block.id);
    if (!box || block.type === "markdown") return false;
    const data = await dataOf(block);
    const missing = box.querySelector(".missing");
    missing.hidden = !data.missing;
    missing.textContent = data.missing || "";
    drawers[block.type](block, data, box.querySelector(".block-body"));
    box.dataset.drawn = String(Date.now());
    if (data.live) live.add(block.id); else live.delete(block.id);
    return data.live;
  }

  async function drawAll() {
    await Promise.all(blocks.map((block) => drawBlock(block).catch((error) => {
      const box = section(block.id);
      if (box) { box.querySelector(".missing").hidden = false; box.querySelector(".missing").textContent = error.message; }
    })));
    document.body.dataset.loaded = String(Date.now());
    if (live.size && !page.embedded) {
      T.poll(async () => {
        await Promise.all(blocks.filter((block) => live.has(block.id)).map(drawBlock));
        return live.size > 0;
      }, 5000);
    } else {
      document.body.dataset.pollingStopped = "1";
    }
  }

  // --- editing (members only) ------------------------------------------------------------------

  const status = document.getElementById("report-status");

  function say(text, isError) {
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  async function save(what, changes) {
    say("Saving…");
    try {
      const saved = await T.sendJSON("PUT", `/api/reports/${page.id}/`, { ...changes, version, what });
      version = saved.version;
      blocks = saved.blocks;
      document.body.dataset.version = String(version);
      say(`Saved: version ${version}.`);
      return saved;
    } catch (error) {
      say(error.status === 409 ? `${error.message} (your change is not saved)` : error.message, true);
      throw error;
    }
  }

  function debounce(run, wait) {
    let timer = null;
    return (...args) => { clearTimeout(timer); timer = setTimeout(() => run(...args), wait); };
  }

  async function preview(text, into) {
    const answer = await T.sendJSON("POST", "/api/markdown/", { text });
    into.innerHTML = answer.html;  // sanitised by the server (tracker.core.markdown)
  }

  function editText(block, box) {
    const body = box.querySelector(".block-body");
    if (box.querySelector("textarea")) return;
    const editor = element("div", undefined, "markdown-editor");
    const area = element("textarea");
    area.value = block.text;
    area.rows = Math.max(6, block.text.split("\n").length + 1);
    area.setAttribute("aria-label", "Markdown");
    const shown = element("div", undefined, "markdown-preview");
    shown.innerHTML = body.innerHTML;
    editor.append(area, shown);
    body.replaceWith(editor);
    const done = element("button", "Done");
    done.type = "button";
    box.querySelector(".block-tools").append(done);
    const store = debounce(async () => {
      const next = blocks.map((b) => (b.id === block.id ? { ...b, text: area.value } : b));
      await save("edited text", { blocks: next });
    }, 800);
    const show = debounce(() => preview(area.value, shown).catch((error) => say(error.message, true)), 250);
    area.addEventListener("input", () => { show(); store(); });
    done.addEventListener("click", () => {
      const rendered = element("div", undefined, "block-body markdown");
      rendered.innerHTML = shown.innerHTML;
      editor.replaceWith(rendered);
      done.remove();
    });
    area.focus();
  }

  const list = (text) => text.split(",").map((item) => item.trim()).filter(Boolean);
  const option = (value, text) => `<option value="${value}">${text || value}</option>`;

  /* Each kind of block's settings: the form's fields, how they are filled from the block, and
     the block they make. Values people type are set as values, never as HTML. */
  const settings = {
    chart: {
      fields: `<label>Metrics <input name="metrics" size="30" title="one or more series keys, comma-separated (at most 4)"></label>
        <label>x axis <select name="x"><option>epoch</option><option>step</option><option value="wall">wall time</option></select></label>
        <label>y axis <select name="y"><option>linear</option><option>log</option></select></label>
        <label>band <select name="band"><option value="minmax">min..max</option><option value="std">mean ± std</option></select></label>
        <label>smoothing <input name="smoothing" type="number" min="0" max="0.99" step="0.01"></label>
        <label>group by <input name="group" size="30"></label>`,
      fill(form, block) {
        form.metrics.value = block.metrics.join(", ");
        form.x.value = block.x;
        form.y.value = block.y;
        form.band.value = block.band;
        form.smoothing.value = block.smoothing;
        form.group.value = block.group.join(", ");
      },
      read: (form) => ({ metrics: list(form.metrics.value), x: form.x.value, y: form.y.value, band: form.band.value,
                         smoothing: Number(form.smoothing.value) || 0, group: list(form.group.value) }),
    },
    runs: {
      fields: () => `<fieldset class="columns"><legend>Columns</legend>${page.columns.map((column) =>
          `<label><input type="checkbox" name="columns" value="${column}"> ${column.replaceAll("_", " ")}</label>`).join(" ")}</fieldset>
        <label>sort <select name="sort">${page.sorts.map((sort) => option(`-${sort}`, `${sort} ▼`) + option(sort, `${sort} ▲`)).join("")}</select></label>`,
      fill(form, block) {
        form.querySelectorAll("input[name=columns]").forEach((box) => { box.checked = block.columns.includes(box.value); });
        form.sort.value = block.sort;
      },
      read: (form) => ({ columns: [...form.querySelectorAll("input[name=columns]:checked")].map((box) => box.value),
                         sort: form.sort.value }),
    },
    layers: {
      fields: () => `<label>quantity <select name="quantity">${page.quantities.map((q) => option(q, q.replaceAll("_", " "))).join("")}</select></label>`,
      fill(form, block) { form.quantity.value = block.quantity; },
      read: (form) => ({ quantity: form.quantity.value }),
    },
    first_layer: {
      fields: `<label>steps <input name="steps" size="30" title="up to 8 steps, comma-separated; empty: the latest image"></label>`,
      fill(form, block) { form.steps.value = block.steps.join(", "); },
      read: (form) => ({ steps: list(form.steps.value).map(Number) }),
    },
    leaderboard: {
      fields: `<label><input type="checkbox" name="parallel"> parallel coordinates</label>`,
      fill(form, block) { form.parallel.checked = block.parallel; },
      read: (form) => ({ parallel: form.parallel.checked }),
    },
    config_diff: { fields: "", fill() {}, read: () => ({}) },
    findings: { fields: "", fill() {}, read: () => ({}) },
  };

  function editSettings(block, box) {
    if (box.querySelector("form.block-settings")) return;
    const kind = settings[block.type];
    const form = element("form", undefined, "controls block-settings");
    const fields = typeof kind.fields === "function" ? kind.fields() : kind.fields;
    form.innerHTML = `<label>Title <input name="title" maxlength="200"></label>${fields}<button type="submit">Apply</button>`;
    form.elements.title.value = block.title;
    kind.fill(form, block);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const changed = { ...block, title: form.elements.title.value, ...kind.read(form) };
      // a refused change keeps the form, and the status line says which field and why
      await changeBlocks(`edited a ${block.type.replaceAll("_", " ")} block`,
                         blocks.map((b) => (b.id === block.id ? changed : b))).catch(() => {});
    });
    box.querySelector(".block-body").before(form);
  }

  async function changeBlocks(what, next) {
    await save(what, { blocks: next });
    await rebuild();
  }

  async function setFrozen(block, frozen) {
    say("Saving…");
    try {
      const saved = await T.sendJSON("POST", `/api/reports/${page.id}/blocks/${block.id}/freeze/`, { frozen });
      version = saved.version;
      blocks = saved.blocks;
      document.body.dataset.version = String(version);
      say(`Saved: version ${version}.`);
      await rebuild();
    } catch (error) {
      say(error.message, true);
    }
  }

  function tools(block, box) {
    const bar = box.querySelector(".block-tools");
    if (!bar) return;
    const index = blocks.findIndex((b) => b.id === block.id);
    const button = (text, name, run) => {
      const b = element("button", text);
      b.type = "button";
      b.dataset.action = name;
      b.addEventListener("click", run);
      bar.append(b);
    };
    if (index > 0) button("↑", "up", () => {
      const next = blocks.slice(); [next[index - 1], next[index]] = [next[index], next[index - 1]];
      changeBlocks("moved a block up", next);
    });
    if (index < blocks.length - 1) button("↓", "down", () => {
      const next = blocks.slice(); [next[index], next[index + 1]] = [next[index + 1], next[index]];
      changeBlocks("moved a block down", next);
    });
    button("Edit", "edit", () => (block.type === "markdown" ? editText(block, box) : editSettings(block, box)));
    if (block.type !== "markdown") {
      button(block.frozen ? "Make live" : "Freeze", block.frozen ? "unfreeze" : "freeze", () => setFrozen(block, !block.frozen));
    }
    button("Remove", "remove", () => {
      if (!window.confirm("Remove this block? (The report's history keeps it.)")) return;
      changeBlocks(`removed a ${block.type} block`, blocks.filter((b) => b.id !== block.id));
    });
  }

  function frozenNote(block) {
    if (!block.frozen) return "";
    const when = block.frozen.at ? ` on ${block.frozen.at.slice(0, 10)}` : "";
    return `frozen${when}: ${block.frozen.runs.length} runs, to step ${block.frozen.step}`;
  }

  /* The page's blocks from `blocks` (after a move, a removal, a freeze): text from what the
     server rendered before, or previewed. */
  async function rebuild() {
    const container = document.getElementById("report-blocks");
    const rendered = Object.fromEntries([...container.querySelectorAll(".report-block")].map((box) => {
      const markdown = box.querySelector(".markdown, .markdown-preview");
      return [box.dataset.blockId, markdown ? markdown.innerHTML : null];
    }));
    Object.values(charts).forEach((chart) => chart.destroy());
    Object.keys(charts).forEach((key) => delete charts[key]);
    const boxes = [];
    for (const block of blocks) {
      const box = element("section", undefined, "panel report-block");
      box.dataset.blockId = block.id;
      box.dataset.type = block.type;
      if (block.frozen) box.dataset.frozen = "1";
      const head = element("div", undefined, "block-head");
      head.append(element("h2", block.title || ""));
      if (block.frozen) head.append(element("span", frozenNote(block), "tag frozen"));
      if (block.source) {
        const source = element("a", "from this page", "small block-source");
        source.href = block.source;  // a path of this site (the server checks it)
        head.append(source);
      }
      head.append(element("span", undefined, "block-tools"));
      const missing = element("p", undefined, "missing muted");
      missing.hidden = true;
      const body = element("div", undefined, block.type === "markdown" ? "block-body markdown" : "block-body");
      if (block.type === "markdown") {
        if (rendered[block.id] !== undefined && rendered[block.id] !== null) body.innerHTML = rendered[block.id];
        else await preview(block.text, body);
      }
      box.append(head, missing, body);
      boxes.push(box);
    }
    container.replaceChildren(...boxes);
    blocks.forEach((block) => tools(block, section(block.id)));
    live.clear();
    await Promise.all(blocks.map((block) => drawBlock(block).catch((error) => say(error.message, true))));
    document.body.dataset.loaded = String(Date.now());
  }

  function startEditing() {
    blocks.forEach((block) => tools(block, section(block.id)));
    const addText = document.getElementById("add-text");
    if (addText) addText.addEventListener("click", async () => {
      const next = [...blocks, { type: "markdown", text: "" }];
      await changeBlocks("added a text block", next);
      const last = blocks[blocks.length - 1];
      editText(last, section(last.id));
    });
    const title = document.getElementById("report-title-input");
    if (title) title.addEventListener("change", () => save("renamed", { title: title.value }).then((saved) => {
      document.getElementById("report-title").textContent = saved.title;
      document.title = `${saved.title} · Trainwatch`;
    }).catch(() => {}));
  }

  /* Canvases as the page drew them, side by side on white (a canvas is transparent), each at
     the size it is shown, as one PNG data URL. */
  function png(...drawn) {
    const sizes = drawn.map((canvas) => [canvas.clientWidth || canvas.width, canvas.clientHeight || canvas.height]);
    const canvas = document.createElement("canvas");
    canvas.width = sizes.reduce((sum, [w]) => sum + w, 0) + 8 * (drawn.length - 1);
    canvas.height = Math.max(...sizes.map(([, h]) => h));
    const context = canvas.getContext("2d");
    context.fillStyle = "#fff";
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.imageSmoothingEnabled = false;  // a filter's pixels stay sharp
    let x = 0;
    drawn.forEach((source, index) => {
      context.drawImage(source, x, 0, sizes[index][0], sizes[index][1]);
      x += sizes[index][0] + 8;
    });
    return canvas.toDataURL("image/png");
  }

  function startExports() {
    const markdown = document.getElementById("export-markdown");
    if (markdown) markdown.addEventListener("click", async () => {
      say("Exporting…");
      const images = Object.fromEntries(Object.entries(charts).map(([id, chart]) => [id, png(chart.canvas)]));
      document.querySelectorAll(".report-block[data-type=first_layer]").forEach((box) => {
        const canvases = [...box.querySelectorAll("canvas")];
        if (canvases.length) images[box.dataset.blockId] = png(...canvases);
      });
      const meta = document.querySelector('meta[name="csrf-token"]');
      const response = await fetch(`/reports/${page.id}/export.md.zip`, {
        method: "POST", credentials: "same-origin", body: JSON.stringify({ images }),
        headers: { "Content-Type": "application/json", "X-CSRFToken": meta ? meta.content : "" },
      });
      if (!response.ok) { say(`Export failed: HTTP ${response.status}`, true); return; }
      const link = document.createElement("a");
      link.href = URL.createObjectURL(await response.blob());
      link.download = (response.headers.get("Content-Disposition") || "").split('filename="')[1]?.replace('"', "") || "report.zip";
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 1000);
      say("Exported.");
    });
    const print = document.getElementById("print-report");
    if (print) print.addEventListener("click", () => window.print());
  }

  if (page.editable) startEditing();
  startExports();
  drawAll();
  window.trainwatchReport = { charts, blocks: () => blocks };  // read by the browser tests
})();
