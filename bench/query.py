"""Chart queries on long runs: loss series of 1, 3 and 10 million points (the first with 60
other series of 10,000 points), and a comparison of 50 runs of a million points each.

Stores each run through the worker's write path (DatabaseSink, 2,000 steps a flush), then
the end-of-run compaction, then times on the server (Django's request handling, in process,
median of REPEATS):
- the downsampled full-range request of the loss (max_points=1000),
- a zoomed request (a 10,000-step window at full resolution, up to 1000 points),
- `/api/compare/` of the 50 runs' loss,
and the time until the run page's charts are drawn in headless Chromium (from navigation
start to the loss chart holding data, median of 5 loads), against a gunicorn server.

    python -m tracker.dev.launcher run -- python bench/query.py
Also the layers heatmap (`/api/runs/<id>/layers/`) and the diagnosis of a 5M-step run with
62 series (25M points).
Ends with one line: query_full_ms_10m=<A> query_zoom_ms_10m=<B> compare50_ms=<C> page_draw_ms=<D>
(and query_full_ms / query_zoom_ms of the 1M run, layers_ms_5m / diagnose_ms_5m)
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402

from tracker.core.findings import diagnose_run  # noqa: E402
from tracker.core.storage import compact_series  # noqa: E402
from tracker.dev.launcher import web_server_command  # noqa: E402
from tracker.models import Project, Run  # noqa: E402
from tracker.worker.sink import DatabaseSink  # noqa: E402
from trainer.sink import ScalarBatch  # noqa: E402

SIZES = (1_000_000, 3_000_000, 10_000_000)
LONG_STEPS = 5_000_000  # the layers heatmap and the diagnosis: loss and lr every step, 60 ratios every 20
COMPARED_RUNS = 50
OTHER_SERIES = 60
OTHER_POINTS = 10_000
STEPS_PER_FLUSH = 2_000  # about what a fast worker flushes per second
REPEATS = 7
USER, PASSWORD = "bench-query", "bench-query-password"


def build_run(user, points: int, others: int, name: str = "bench/query", quiet: bool = False) -> Run:
    project, _ = Project.objects.get_or_create(name="bench")
    project.members.add(user)  # the bench user reads the run as a member would
    run = Run.objects.create(
        project=project,
        name=name,
        config={"epochs": 1000, "optimizer": {"name": "sgd", "lr": 0.1}},
        status="succeeded",
        steps_per_epoch=points // 1000,
        total_steps=points,
    )
    sink = DatabaseSink(run, flush_seconds=0.0)
    rng = np.random.default_rng(run.pk)
    loss = 2.3 * np.exp(-np.arange(points) / (points / 5)) + 0.05 * rng.standard_normal(points)
    every = max(1, points // OTHER_POINTS)
    for start in range(0, points, STEPS_PER_FLUSH):
        steps = np.arange(start, start + STEPS_PER_FLUSH, dtype=np.int64)
        batch = {"loss": (steps, loss[start : start + STEPS_PER_FLUSH])}
        sparse = steps[steps % every == 0]
        for index in range(others):
            batch[f"update_ratio/layer{index:02d}.weight"] = (
                sparse,
                1e-3 * (1 + 0.1 * rng.standard_normal(len(sparse))),
            )
        sink.scalars(batch)
    before = run.chunks.count()
    t0 = time.perf_counter()
    saved = compact_series(run.pk)  # what the worker does when a run ends
    if not quiet:
        print(f"compacted {before:,} chunks into {before - saved:,} in {time.perf_counter() - t0:.2f} s")
    return run


def build_long_run(user) -> Run:
    """A 5M-step run with 62 series (25M points): loss and lr at every step, 60 update ratios
    every 20 steps, through the worker's write path, then compacted."""
    project, _ = Project.objects.get_or_create(name="bench")
    run = Run.objects.create(
        project=project,
        name="bench/long",
        config={"epochs": 1000, "optimizer": {"name": "sgd", "lr": 0.1}},
        status="succeeded",
        steps_per_epoch=LONG_STEPS // 1000,
        total_steps=LONG_STEPS,
        tensors=[f"layer{index:02d}.weight" for index in range(OTHER_SERIES)],
    )
    sink = DatabaseSink(run, flush_seconds=0.0)
    for batch in long_run_batches():
        sink.scalars(batch)
    compact_series(run.pk)
    return run


def long_run_batches(steps: int = LONG_STEPS, flush: int = 20_000) -> Iterator[ScalarBatch]:
    """The flushes of a long run: loss and lr at every step, 60 update ratios every 20 steps."""
    rng = np.random.default_rng(1)
    for start in range(0, steps, flush):
        at = np.arange(start, start + flush, dtype=np.int64)
        loss = 2.3 * np.exp(-at / 1e6) + 0.05 * rng.standard_normal(flush)
        batch = {"loss": (at, loss), "lr": (at, np.full(flush, 0.1))}
        sparse = at[::20]
        for index in range(OTHER_SERIES):
            batch[f"update_ratio/layer{index:02d}.weight"] = (
                sparse,
                1e-3 * np.exp(0.1 * rng.standard_normal(len(sparse))),
            )
        yield batch


def storage_bytes(run_ids: list[int]) -> tuple[int, int]:
    """Bytes of the points and of the summaries of these runs' chunks."""
    from django.db import connection

    from tracker.core.storage import GROUP_COLUMNS

    summaries = " + ".join(f"coalesce(sum(octet_length({column})), 0)" for column in GROUP_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT sum(octet_length(steps) + octet_length(values)), {summaries} FROM tracker_serieschunk"
            " WHERE run_id = ANY(%s)",
            [run_ids],
        )
        raw, groups = cursor.fetchone()
    return int(raw), int(groups)


def median_ms(client: Client, url: str, repeats: int = REPEATS) -> float:
    timings = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        response = client.get(url)
        timings.append(time.perf_counter() - t0)
        assert response.status_code == 200, (url, response.status_code, response.content[:300])
    return statistics.median(timings) * 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def page_draw_ms(run: Run) -> float:
    from playwright.sync_api import sync_playwright

    port = free_port()
    server = subprocess.Popen(web_server_command(port), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        chromium = os.environ.get("TRAINWATCH_CHROMIUM", "/usr/bin/chromium")
        args = [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=args)
            # the page runs under the site's CSP; the timing probes below are evaluated strings
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
            # a page that never draws says why
            page.on(
                "console", lambda message: print("browser console:", message.text) if message.type == "error" else None
            )
            page.on("pageerror", lambda error: print("browser page error:", error))
            base = f"http://127.0.0.1:{port}"
            page.goto(f"{base}/accounts/login/")
            page.fill("input[name=username]", USER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/")
            timings = []
            for _ in range(5):
                page.goto(f"{base}/runs/{run.pk}/", wait_until="commit")
                # the loss chart has its points, and the layer heatmap (which stands in for the
                # per-tensor lines past 16 tensors) has a row for each of the 60 tensors
                page.wait_for_function(
                    "window.trainwatchCharts && window.trainwatchCharts.loss.data.datasets[0].data.length > 0"
                    " && window.trainwatchHeatmap"
                    " && window.trainwatchHeatmap.options.scales.y.labels.length >= 60",
                    timeout=30_000,
                )
                timings.append(page.evaluate("performance.now()"))
            browser.close()
        return statistics.median(timings)
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    users = get_user_model()
    user, _ = users.objects.get_or_create(username=USER)
    user.set_password(PASSWORD)
    user.save()
    client = Client(HTTP_HOST="127.0.0.1")  # an allowed host, as a browser would send
    client.force_login(user)
    rows, figures = [], {}
    for points in SIZES:
        t0 = time.perf_counter()
        others = OTHER_SERIES if points == SIZES[0] else 0
        run = build_run(user, points, others)
        print(
            f"stored {points:,} loss points and {others} series of {OTHER_POINTS:,} in {time.perf_counter() - t0:.1f} s"
        )
        base = f"/api/runs/{run.pk}/series/?max_points=1000&series="
        middle = points // 2
        full = median_ms(client, base + "loss")
        zoom = median_ms(client, base + f"loss&from={middle}&until={middle + 10_000}")
        raw, groups = storage_bytes([run.pk])
        rows.append((points, full, zoom, groups / raw))
        figures[points] = (full, zoom)
        if points == SIZES[0]:
            every = median_ms(
                client, base + ",".join(["loss"] + [f"update_ratio/layer{i:02d}.weight" for i in range(OTHER_SERIES)])
            )
            print(f"all 61 series of the 1M run in one request: median {every:.1f} ms over {REPEATS}")
            draw = page_draw_ms(run)
            print(f"run page, navigation to charts drawn: median {draw:.0f} ms over 5 loads (headless Chromium)")
        run.delete()

    t0 = time.perf_counter()
    long_run = build_long_run(user)
    print(f"stored and compacted a {LONG_STEPS:,}-step run with 62 series in {time.perf_counter() - t0:.1f} s")
    try:
        layers = median_ms(client, f"/api/runs/{long_run.pk}/layers/?quantity=update_ratio")
        diagnosis_times = []
        for _ in range(REPEATS):
            t1 = time.perf_counter()
            diagnose_run(long_run.pk, save=False)
            diagnosis_times.append(time.perf_counter() - t1)
        diagnose = statistics.median(diagnosis_times) * 1000
        print(f"layers heatmap of the 5M-step run: {layers:.1f} ms; its diagnosis: {diagnose:.1f} ms")
    finally:
        long_run.delete()

    t0 = time.perf_counter()
    compared = [build_run(user, SIZES[0], 0, f"bench/compare {i}", quiet=True) for i in range(COMPARED_RUNS)]
    print(f"stored and compacted {COMPARED_RUNS} runs of {SIZES[0]:,} loss points in {time.perf_counter() - t0:.1f} s")
    try:
        ids = ",".join(str(run.pk) for run in compared)
        compare = median_ms(client, f"/api/compare/?runs={ids}&metric=loss&max_points=1000")
    finally:
        for run in compared:
            run.delete()

    print(f"\nserver time, median of {REPEATS} (max_points=1000)")
    print("| loss points | full range | zoom to 10,000 steps | summaries / points stored |")
    print("| --- | --- | --- | --- |")
    for points, full, zoom, share in rows:
        print(f"| {points:,} | {full:.1f} ms | {zoom:.1f} ms | {share * 100:.1f} % |")
    print(f"/api/compare/ of {COMPARED_RUNS} runs of {SIZES[0]:,} points: {compare:.1f} ms")
    full_1m, zoom_1m = figures[SIZES[0]]
    full_10m, zoom_10m = figures[SIZES[-1]]
    print(
        f"query_full_ms_10m={full_10m:.1f} query_zoom_ms_10m={zoom_10m:.1f} compare50_ms={compare:.1f} "
        f"page_draw_ms={draw:.0f} query_full_ms={full_1m:.1f} query_zoom_ms={zoom_1m:.1f} "
        f"layers_ms_5m={layers:.1f} diagnose_ms_5m={diagnose:.1f}"
    )


if __name__ == "__main__":
    main()
