"""How soon a measured point can be read, and how soon a cancel stops a run, through the
worker's own path: the trainer (trainer.loop.train) runs in a thread with the worker's
DatabaseSink, as a worker runs it, while the main thread reads as a page does.

- point lag: for each epoch end, from the trainer handing its validation accuracy to the
  sink to the series API (GET /api/runs/<id>/series/, through Django's test client) answering
  with it; the main thread asks every 0.1 s (the run page asks every 1 s: add up to 1 s).
- cancel: from tracker.core.lifecycle.request_cancel to the trainer returning, 5 times, at
  random moments.

    make bench          # or: python -m tracker.dev.launcher run -- python bench/latency.py
Ends with one line: point_lag_ms=<median> point_lag_max_ms=<max> cancel_ms=<median>
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from tracker.core.lifecycle import request_cancel  # noqa: E402
from tracker.models import Project, Run  # noqa: E402
from tracker.worker.sink import DatabaseSink  # noqa: E402
from trainer.config import RunConfig  # noqa: E402
from trainer.loop import RunResult, train  # noqa: E402
from trainer.sink import ScalarBatch  # noqa: E402

POLL_SECONDS = 0.1
CANCELS = 5


class TimedSink(DatabaseSink):
    """The worker's sink, noting when each epoch's validation accuracy was handed to it."""

    handed: dict[int, float]

    def scalars(self, batch: ScalarBatch) -> None:
        if "val_acc" in batch:
            now = time.perf_counter()
            self.handed.update({int(step): now for step in batch["val_acc"][0]})
        super().scalars(batch)


def train_in_thread(run: Run, config: RunConfig, sink: DatabaseSink) -> tuple[threading.Thread, list[RunResult]]:
    results: list[RunResult] = []

    def work() -> None:
        try:
            results.append(train(config, sink))
            sink.flush()
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=work)
    thread.start()
    return thread, results


def new_run(name: str, raw: dict[str, object]) -> tuple[Run, RunConfig]:
    config = RunConfig.from_dict(raw)
    project, _ = Project.objects.get_or_create(name="bench")
    return Run.objects.create(project=project, name=name, config=config.to_dict(), status="running"), config


def point_lags(client: Client) -> list[float]:
    run, config = new_run("bench/latency points", {"epochs": 40, "batch_size": 8})
    sink = TimedSink(run)
    sink.handed = {}
    thread, _ = train_in_thread(run, config, sink)
    seen: dict[int, float] = {}
    cursor = -1
    while thread.is_alive() or len(seen) < config.epochs:
        body = client.get(f"/api/runs/{run.pk}/series/?series=val_acc:{cursor}").json()
        now = time.perf_counter()
        for step in body["series"]["val_acc"]["steps"]:
            seen.setdefault(step, now)
            cursor = max(cursor, step)
        if not thread.is_alive() and len(seen) >= len(sink.handed):
            break
        time.sleep(POLL_SECONDS)
    thread.join()
    run.delete()
    return [seen[step] - handed for step, handed in sink.handed.items() if step in seen]


def cancel_seconds() -> float:
    run, config = new_run("bench/latency cancel", {"epochs": 2000, "batch_size": 8})
    sink = DatabaseSink(run)
    thread, results = train_in_thread(run, config, sink)
    # well under way, at a moment unrelated to the sink's flush cadence
    time.sleep(2.0 + random.uniform(0.0, 1.5))
    asked = time.perf_counter()
    request_cancel(run)
    thread.join()
    stopped = time.perf_counter() - asked
    assert results and results[0].status == "cancelled", results
    run.delete()
    return stopped


def main() -> None:
    random.seed(0)
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    lags = point_lags(client)
    cancels = [cancel_seconds() for _ in range(CANCELS)]
    lag_ms, worst_ms = statistics.median(lags) * 1000, max(lags) * 1000
    cancel_ms = statistics.median(cancels) * 1000
    print(f"point lag (hand-off to the API), {len(lags)} epoch ends: median {lag_ms:.0f} ms, max {worst_ms:.0f} ms")
    print(f"cancel to stop, {CANCELS} runs: " + ", ".join(f"{s * 1000:.0f} ms" for s in cancels))
    print(f"point_lag_ms={lag_ms:.0f} point_lag_max_ms={worst_ms:.0f} cancel_ms={cancel_ms:.0f}")


if __name__ == "__main__":
    main()
