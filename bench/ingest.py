"""Ingest and read-back speed of metric storage, through the worker's own path.

1,000,000 points (20 keys x 50,000 steps) go through tracker.worker.sink.DatabaseSink
exactly as a worker sends them: hand-offs of 1,000 steps for every key, one
flush each (one chunk per key per flush). Then one 50,000-point key is read
back with tracker.core.storage.read_series (median of 20 reads).

    make bench          # or: python -m tracker.dev.launcher run -- python bench/ingest.py
Ends with one line: ingest_points_per_s=<N> read_ms=<M>
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")

import django

django.setup()

import numpy as np  # noqa: E402

from tracker.core.storage import read_series  # noqa: E402
from tracker.models import Project, Run  # noqa: E402
from tracker.worker.sink import DatabaseSink  # noqa: E402

KEYS = 20
STEPS = 50_000
STEPS_PER_FLUSH = 1_000
READS = 20


def main() -> None:
    project, _ = Project.objects.get_or_create(name="bench")
    run = Run.objects.create(project=project, name="bench/ingest", config={}, status="running")
    try:
        rng = np.random.default_rng(0)
        keys = [f"bench/key{i:02d}" for i in range(KEYS)]
        # values prepared up front, so that only storage is timed
        values = {key: rng.standard_normal(STEPS) for key in keys}
        sink = DatabaseSink(run, flush_seconds=0.0)  # the worker's sink; flush at every hand-off

        started = time.perf_counter()
        for start in range(0, STEPS, STEPS_PER_FLUSH):
            steps = np.arange(start, start + STEPS_PER_FLUSH, dtype=np.int64)
            sink.scalars({key: (steps, values[key][start : start + STEPS_PER_FLUSH]) for key in keys})
        ingest_s = time.perf_counter() - started
        points = KEYS * STEPS

        timings = []
        for _ in range(READS):
            t0 = time.perf_counter()
            steps, read_values = read_series(run.pk, keys[0])
            timings.append(time.perf_counter() - t0)
        assert len(steps) == STEPS and np.array_equal(read_values, values[keys[0]]), "read-back mismatch"
        read_ms = statistics.median(timings) * 1000

        print(
            f"ingested {points:,} points ({KEYS} keys x {STEPS:,} steps, {STEPS // STEPS_PER_FLUSH} flushes) "
            f"in {ingest_s:.3f} s: {points / ingest_s:,.0f} points/s"
        )
        print(
            f"read one {STEPS:,}-point key: median {read_ms:.2f} ms over {READS} reads "
            f"(min {min(timings) * 1000:.2f} ms, max {max(timings) * 1000:.2f} ms)"
        )
        print(f"ingest_points_per_s={points / ingest_s:.0f} read_ms={read_ms:.2f}")
    finally:
        run.delete()


if __name__ == "__main__":
    main()
