/* Dashboard: every panel refreshed every 3 s from /api/dashboard/ (the server renders the
   panels' HTML with the page's own templates); the running runs' mini loss charts and
   progress are updated in place. */
"use strict";

(function () {
  const T = window.Trainwatch;
  const REFRESH_MS = 3000;
  const sparks = {};  // run id -> chart
  window.trainwatchSparks = sparks;  // read by the browser tests

  function spark(card, run) {
    const points = run.loss.steps.map((s, i) => ({ x: s, y: run.loss.values[i] }));
    if (sparks[run.id]) {
      sparks[run.id].data.datasets[0].data = points;
      sparks[run.id].update("none");
      return;
    }
    sparks[run.id] = new Chart(card.querySelector("canvas"), {
      type: "line",
      data: { datasets: [{ data: points, borderColor: "#2563eb", borderWidth: 1.2, pointRadius: 0 }] },
      options: { parsing: false, animation: false, maintainAspectRatio: false, events: [],
                 plugins: { legend: { display: false }, tooltip: { enabled: false } },
                 scales: { x: { type: "linear", display: false }, y: { display: false } } },
    });
  }

  function facts(run) {
    const eta = run.eta_seconds === null ? "" : ` · about ${T.formatSeconds(run.eta_seconds)} left`;
    const best = run.best_val_accuracy === null ? "" : ` · best val. ${run.best_val_accuracy.toFixed(3)}`;
    return `epoch ${run.epoch} / ${run.epochs} · step ${run.steps_done} / ${run.total_steps}${eta}${best}`;
  }

  function showRunning(runs, html) {
    const shown = [...document.querySelectorAll("#running-cards .card")].map((card) => Number(card.dataset.runId));
    if (html !== undefined && shown.join() !== runs.map((run) => run.id).join()) {
      // runs started or ended: new cards from the server's template, new charts
      Object.keys(sparks).forEach((id) => { sparks[id].destroy(); delete sparks[id]; });
      document.getElementById("panel-running").innerHTML = html;
    }
    for (const run of runs) {
      const card = document.querySelector(`.card[data-run-id="${run.id}"]`);
      if (!card) continue;
      card.querySelector(".bar").style.width = `${run.total_steps ? (100 * run.steps_done) / run.total_steps : 0}%`;
      card.querySelector("[data-field=facts]").textContent = facts(run);
      spark(card, run);
    }
  }

  async function refresh() {
    const body = await T.fetchJSON("/api/dashboard/");
    showRunning(body.running, body.panels.running);
    for (const name of ["queue", "attention", "best", "workers"]) {
      document.getElementById(`panel-${name}`).innerHTML = body.panels[name];
    }
    document.body.dataset.lastRefresh = String(Date.now());
    return true;  // the dashboard watches for new runs, whatever it shows now
  }

  showRunning(JSON.parse(document.getElementById("running-data").textContent));
  document.body.dataset.lastRefresh = String(Date.now());
  T.poll(refresh, REFRESH_MS);
})();
