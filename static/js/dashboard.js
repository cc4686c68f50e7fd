/* Dashboard: live mini loss charts and progress of the running jobs, refreshed every 3 s. */
"use strict";

(function () {
  const T = window.Trainwatch;
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

  function show(runs) {
    for (const run of runs) {
      const card = document.querySelector(`.card[data-run-id="${run.id}"]`);
      if (!card) continue;  // new runs appear on the next page load
      card.querySelector(".bar").style.width = `${run.total_steps ? (100 * run.steps_done) / run.total_steps : 0}%`;
      card.querySelector("[data-field=facts]").textContent = facts(run);
      spark(card, run);
    }
    document.body.dataset.lastRefresh = String(Date.now());
  }

  async function refresh() {
    try {
      const body = await T.fetchJSON("/api/dashboard/");
      show(body.running);
      document.getElementById("queue-count").textContent = String(body.queued);
    } catch (error) {
      console.warn("dashboard:", error.message);
    }
    setTimeout(refresh, 3000);
  }

  show(JSON.parse(document.getElementById("running-data").textContent));
  setTimeout(refresh, 3000);
})();
