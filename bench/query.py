"""Chart queries on a long run: a 1,000,000-point loss series and 60 other series.

Stores the run through the worker's write path (DatabaseSink), then times, on the
server (Django's request handling, in process, median of 20):
- the downsampled full-range request of the loss (max_points=1000),
- a zoomed request (a 10,000-step window at full resolution, up to 1000 points),
and the time until the run page's charts are drawn in headless Chromium (from
navigation start to the loss chart holding data, median of 5 loads), against a
gunicorn server started here.

    make bench-query   # or: python -m tracker.dev.launcher run -- python bench/query.py
Ends with one line: query_full_ms=<A> query_zoom_ms=<B> page_draw_ms=<C>
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402

from tracker.core.storage import compact_series  # noqa: E402
from tracker.dev.launcher import web_server_command  # noqa: E402
from tracker.models import Project, Run  # noqa: E402
from tracker.worker.sink import DatabaseSink  # noqa: E402

LOSS_POINTS = 1_000_000
OTHER_SERIES = 60
OTHER_POINTS = 10_000
STEPS_PER_FLUSH = 2_000  # about what a fast worker flushes per second
REPEATS = 20
USER, PASSWORD = "bench-query", "bench-query-password"


def build_run(user) -> Run:
    project, _ = Project.objects.get_or_create(name="bench")
    project.members.add(user)  # the bench user reads the run as a member would
    run = Run.objects.create(
        project=project,
        name="bench/query",
        config={"epochs": 1000},
        status="succeeded",
        steps_per_epoch=1000,
        total_steps=LOSS_POINTS,
    )
    sink = DatabaseSink(run, flush_seconds=0.0)
    rng = np.random.default_rng(0)
    loss = 2.3 * np.exp(-np.arange(LOSS_POINTS) / 2e5) + 0.05 * rng.standard_normal(LOSS_POINTS)
    every = LOSS_POINTS // OTHER_POINTS
    for start in range(0, LOSS_POINTS, STEPS_PER_FLUSH):
        steps = np.arange(start, start + STEPS_PER_FLUSH, dtype=np.int64)
        batch = {"loss": (steps, loss[start : start + STEPS_PER_FLUSH])}
        sparse = steps[steps % every == 0]
        for index in range(OTHER_SERIES):
            batch[f"update_ratio/layer{index:02d}.weight"] = (
                sparse,
                1e-3 * (1 + 0.1 * rng.standard_normal(len(sparse))),
            )
        sink.scalars(batch)
    before = run.chunks.count()
    t0 = time.perf_counter()
    saved = compact_series(run.pk)  # what the worker does when a run ends
    print(f"compacted {before:,} chunks into {before - saved:,} in {time.perf_counter() - t0:.2f} s")
    return run


def median_ms(client: Client, url: str) -> float:
    timings = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        response = client.get(url)
        timings.append(time.perf_counter() - t0)
        assert response.status_code == 200, response.content[:300]
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
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
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
    t0 = time.perf_counter()
    run = build_run(user)
    print(
        f"stored {LOSS_POINTS:,} loss points and {OTHER_SERIES} series of {OTHER_POINTS:,} in {time.perf_counter() - t0:.1f} s"
    )
    try:
        client = Client(HTTP_HOST="127.0.0.1")  # an allowed host, as a browser would send
        client.force_login(user)
        base = f"/api/runs/{run.pk}/series/?max_points=1000&series="
        full = median_ms(client, base + "loss")
        zoom = median_ms(client, base + "loss&from=400000&until=410000")
        every = median_ms(
            client, base + ",".join(["loss"] + [f"update_ratio/layer{i:02d}.weight" for i in range(OTHER_SERIES)])
        )
        print(f"full-range loss, downsampled to 1000: median {full:.1f} ms over {REPEATS}")
        print(f"zoomed loss (10,000 steps):          median {zoom:.1f} ms over {REPEATS}")
        print(f"all 61 series in one request:        median {every:.1f} ms over {REPEATS}")
        draw = page_draw_ms(run)
        print(f"run page, navigation to charts drawn: median {draw:.0f} ms over 5 loads (headless Chromium)")
        print(f"query_full_ms={full:.1f} query_zoom_ms={zoom:.1f} page_draw_ms={draw:.0f}")
    finally:
        run.delete()


if __name__ == "__main__":
    main()
