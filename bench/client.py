"""The client's costs and speed, each measured on this machine.

- client_points_per_s: points logged with run.log() (50 keys a step, Python numbers) until
  they are committed in PostgreSQL, through a gunicorn server on loopback (the embedded or
  given servers: run it through the launcher); median of 3.
- log_call_us: the median time of one run.log({"loss": t, "acc": t}) with tensors on the
  training device (CPU here), over 20,000 calls.
- watch_overhead_ratio: the digits MLP (64 hidden, batch 64, 30 epochs), the same plain loop
  alternately without and with the client (run.watch(model, optimizer) with the defaults and
  run.log({"loss": loss}) every step, its sender thread spooling in the background), in one
  process; the ratio of the median step times over 9 repeats.

    python -m tracker.dev.launcher run -- python bench/client.py
Ends with one line: client_points_per_s=N log_call_us=M watch_overhead_ratio=R finish_s=S end_written_s=E
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")
os.environ["TRAINWATCH_DIR"] = tempfile.mkdtemp(prefix="trainwatch-bench-")

import django

django.setup()

import torch  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db.models import Sum  # noqa: E402

import trainwatch  # noqa: E402
from tracker.dev.launcher import upkeep_worker_command, web_server_command  # noqa: E402
from tracker.models import ApiToken, Run, Series  # noqa: E402
from trainer.config import RunConfig  # noqa: E402
from trainer.data import load_dataset  # noqa: E402
from trainer.loop import evaluate  # noqa: E402
from trainer.models import build_loss, build_model  # noqa: E402
from trainer.optim import build_optimizer  # noqa: E402

KEYS = 50
STEPS = 20_000
REPEATS = 9


def server() -> tuple[list[subprocess.Popen[bytes]], str]:
    """The web server and the upkeep queue's worker, as `make demo` starts them."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    processes = [
        subprocess.Popen(
            command,
            env={**os.environ, "ALLOWED_HOSTS": "127.0.0.1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for command in (
            web_server_command(port),
            upkeep_worker_command(f"bench-upkeep-{port}@localhost", settings.TRAINWATCH_UPKEEP_QUEUE),
        )
    ]
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return processes, f"http://127.0.0.1:{port}"


def points_per_second(url: str, token: str) -> float:
    Run.objects.filter(name="bench/client throughput").delete()  # an interrupted bench's
    run = trainwatch.init(project="bench", name="bench/client throughput", url=url, token=token)
    keys = [f"bench/key{i:02d}" for i in range(KEYS)]
    started = time.perf_counter()
    for step in range(STEPS):
        run.log({key: step * 0.001 + i for i, key in enumerate(keys)}, step=step)
    run.finish()
    elapsed = time.perf_counter() - started
    # the logged keys only: the client also samples the process's CPU and memory (system/...)
    logged = Series.objects.filter(run__name="bench/client throughput", key__startswith="bench/")
    stored = logged.aggregate(total=Sum("count"))["total"]
    assert stored == KEYS * STEPS, f"{stored} points stored of {KEYS * STEPS}"
    ended("bench/client throughput")  # its compaction by the upkeep worker done before the delete
    Run.objects.filter(name="bench/client throughput").delete()
    return KEYS * STEPS / elapsed


def ended(name: str) -> None:
    started = time.perf_counter()
    while not Run.objects.filter(name=name, status="succeeded").exists():
        if time.perf_counter() - started > 120:
            raise AssertionError(f"{name}: its end was not written within 120 s: is the upkeep worker running?")
        time.sleep(0.01)


def finish_seconds(url: str, token: str) -> tuple[float, float]:
    """How long `run.finish()` takes at the end of a 5,000-step run with 60 series (the loss,
    the rate, and 29 tensors' update ratios and gradient norms): the last hand-off stored and
    answered; and how long from its call until the run's end is written by the upkeep queue's
    worker (compaction, final diagnosis)."""
    name = "bench/client finish"
    Run.objects.filter(name=name).delete()
    run = trainwatch.init(project="bench", name=name, url=url, token=token, total_steps=5000, steps_per_epoch=100)
    tensors = [f"layer{i:02d}.weight" for i in range(29)]
    for step in range(5000):
        values = {"loss": 2.3 * 0.999**step, "lr": 0.1}
        values.update({f"update_ratio/{tensor}": 1e-3 for tensor in tensors})
        values.update({f"grad_norm/{tensor}": 0.5 for tensor in tensors})
        run.log(values, step=step)
    time.sleep(2)  # the sender has sent what was logged; finish() waits for the rest and the answer
    started = time.perf_counter()
    run.finish()
    elapsed = time.perf_counter() - started
    ended(name)
    ended_after = time.perf_counter() - started
    stored = Series.objects.filter(run__name=name).exclude(key__startswith="system/").count()
    assert stored == 60, f"{stored} series stored of 60"
    assert Run.objects.get(name=name).findings is not None  # diagnosed before its end is written
    Run.objects.filter(name=name).delete()
    return elapsed, ended_after


def log_call_seconds() -> float:
    run = trainwatch.init(project="bench", mode="offline")
    loss, accuracy = torch.tensor(2.3), torch.tensor(0.1)
    timings = []
    for step in range(20_000):
        started = time.perf_counter()
        run.log({"loss": loss, "acc": accuracy}, step=step)
        timings.append(time.perf_counter() - started)
    run.finish()
    return statistics.median(timings)


def plain_loop_seconds(config: RunConfig, tracked: bool) -> float:
    """The digits MLP's own loop; with `tracked`, watched and logged by the client."""
    torch.manual_seed(config.seed)
    data = load_dataset(config.data, config.data_seed)
    model = build_model(config.model, data.num_features, data.num_classes, data.image_shape)
    loss_fn = build_loss(config.loss)
    optimizer = build_optimizer(config.optimizer, model.parameters())
    n = len(data.y_train)
    steps_per_epoch = math.ceil(n / config.batch_size)
    generator = torch.Generator().manual_seed(config.seed)
    run = trainwatch.init(project="bench", mode="offline") if tracked else None
    if run is not None:
        run.watch(model, optimizer)
    step = 0
    started = time.perf_counter()
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, config.batch_size):
            index = order[start : start + config.batch_size]
            loss = loss_fn(model(data.x_train[index]), data.y_train[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if run is not None:
                run.log({"loss": loss}, step=step)
            step += 1
        accuracy, val_loss = evaluate(model, loss_fn, data.x_val, data.y_val)
        if run is not None:
            run.log({"val_acc": accuracy, "val_loss": val_loss}, step=step - 1)
    elapsed = time.perf_counter() - started
    if run is not None:
        run.finish()
    return elapsed / (steps_per_epoch * config.epochs)


def main() -> None:
    logging.getLogger("trainwatch").setLevel(logging.ERROR)  # the offline runs' "recorded in ..." notes
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    _, token = ApiToken.issue(user, "bench/client.py")
    processes, url = server()
    try:
        throughputs = [points_per_second(url, token) for _ in range(3)]
        finishes, ends = zip(*[finish_seconds(url, token) for _ in range(3)], strict=True)
    finally:
        for process in processes:
            process.terminate()
            process.wait()
    log_us = log_call_seconds() * 1e6
    config = RunConfig.from_dict({"epochs": 30, "model": {"hidden": [64]}, "batch_size": 64})
    plain_loop_seconds(config, tracked=False)  # warm-up
    plain, tracked = [], []
    for _ in range(REPEATS):
        plain.append(plain_loop_seconds(config, tracked=False))
        tracked.append(plain_loop_seconds(config, tracked=True))
    ratio = statistics.median(tracked) / statistics.median(plain)
    print(
        f"log() to committed rows, {KEYS} keys x {STEPS:,} steps over HTTP: "
        + ", ".join(f"{t:,.0f}" for t in throughputs)
        + " points/s"
    )
    print("finish() of a 5,000-step run with 60 series: " + ", ".join(f"{s:.2f}" for s in finishes) + " s")
    print("... and its end written by the upkeep worker: " + ", ".join(f"{s:.2f}" for s in ends) + " s after")
    print(f"one run.log() of 2 tensors: median {log_us:.2f} us over 20,000 calls")
    print(
        f"digits MLP, plain loop {statistics.median(plain) * 1e3:.4f} ms/step, with run.watch + run.log "
        f"{statistics.median(tracked) * 1e3:.4f} ms/step ({REPEATS} repeats, {torch.get_num_threads()} threads)"
    )
    shutil.rmtree(os.environ["TRAINWATCH_DIR"], ignore_errors=True)
    print(
        f"client_points_per_s={statistics.median(throughputs):.0f} log_call_us={log_us:.2f} "
        f"watch_overhead_ratio={ratio:.3f} finish_s={statistics.median(finishes):.2f} "
        f"end_written_s={statistics.median(ends):.2f}"
    )


if __name__ == "__main__":
    main()
