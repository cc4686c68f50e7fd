/* Run page, Console panel: the last lines of the run's output, then, while it runs, the lines
   after the newest chunk it has, about once a second (following the end unless unticked); a
   search asks the server for the lines that hold the text. */
"use strict";

(function () {
  const T = window.Trainwatch;
  const page = JSON.parse(document.getElementById("run-data").textContent);
  const runId = page.run.id;
  const box = document.getElementById("console-lines");
  const empty = document.getElementById("console-empty");
  const size = document.getElementById("console-size");
  const search = document.getElementById("console-search");
  const follow = document.getElementById("console-follow");
  const MAX_SHOWN = 5000;  // lines kept on the page; the download has them all
  let last = null;
  let live = true;

  function stamp(seconds) {
    return new Date(seconds * 1000).toISOString().slice(11, 23);
  }

  function render(lines, replace) {
    if (replace) box.textContent = "";
    const fragment = document.createDocumentFragment();
    for (const [, at, stream, text] of lines) {
      const line = document.createElement("span");
      line.className = `line ${stream}`;
      line.textContent = `${stamp(at)} ${text}\n`;
      fragment.append(line);
    }
    box.append(fragment);
    while (box.childElementCount > MAX_SHOWN) box.firstElementChild.remove();
    empty.hidden = box.childElementCount > 0;
    if (follow.checked) box.scrollTop = box.scrollHeight;
  }

  function summary(answer) {
    const kept = answer.bytes.toLocaleString();
    size.textContent = answer.dropped
      ? `${kept} bytes kept; ${answer.dropped.toLocaleString()} bytes past the cap not kept`
      : (answer.bytes ? `${kept} bytes` : "");
  }

  async function load(query) {
    const params = new URLSearchParams({ tail: "500" });
    if (query) params.set("q", query);
    const answer = await T.fetchJSON(`/api/runs/${runId}/console/?${params}`);
    render(answer.lines, true);
    summary(answer);
    last = answer.last;
    live = answer.live;
  }

  async function step() {
    if (search.value) return live;  // a search shows what it found; following resumes when it is cleared
    const answer = await T.fetchJSON(`/api/runs/${runId}/console/?after=${last}`);
    render(answer.lines, false);
    summary(answer);
    if (answer.lines.length) last = answer.lines[answer.lines.length - 1][0];
    live = answer.live;
    return live;
  }

  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => load(search.value).catch((error) => console.warn(error.message)), 300);
  });

  load("").then(() => { if (live) T.poll(step, 1000, 1000, "console"); }).catch((error) => console.warn(error.message));
})();
