/* Runs list: while any shown run is queued or running, refresh its cells every 2 s. */
"use strict";

(function () {
  const T = window.Trainwatch;
  const live = JSON.parse(document.getElementById("runs-live").textContent);
  const table = document.getElementById("runs-table");
  if (!live || !table) return;

  // what changes while a run is live, written as the server's template writes it; the other
  // cells (name, optimizer, schedule, learning rate) never change and are left alone
  const FORMAT = {
    status: (run) => run.status,
    health: (run) => run.health || "–",
    progress: (run) => (run.total_steps ? `${run.epoch} / ${run.epochs} epochs` : "–"),
    best_val_accuracy: (run) => (run.best_val_accuracy === null ? "–" : run.best_val_accuracy.toFixed(4)),
    final_loss: (run) => (run.final_loss === null ? "–" : run.final_loss.toFixed(4)),
    seconds: (run) => (run.seconds === null ? "–" : `${run.seconds.toFixed(1)} s`),
  };

  async function refresh() {
    const body = await T.fetchJSON("/api/runs/");
    let anyLive = false;
    for (const run of body.runs) {
      const row = table.querySelector(`tr[data-run-id="${run.id}"]`);
      if (!row) continue;
      anyLive = anyLive || !run.finished;
      row.querySelectorAll("[data-field]").forEach((cell) => {
        const format = FORMAT[cell.dataset.field];
        if (!format) return;
        cell.textContent = format(run);
        if (cell.dataset.field === "status") cell.className = `status status-${run.status}`;
        if (cell.dataset.field === "health") cell.className = `health health-${run.health || "none"}`;
      });
    }
    return anyLive;
  }
  T.poll(refresh, 2000);
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
