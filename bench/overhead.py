"""Cost of the default instrumentation, as a ratio of step times: on the digits MLP, or on a
CNN on CIFAR-size synthetic images (channels 64, 128, 256, batch 256: enough to keep a GPU busy).

In one process, alternately: a plain training loop (same model, data, optimizer,
schedule and batch order; the validation pass every epoch, nothing else) and
trainer.loop.train with the default instrumentation (per-step loss and lr,
update ratios and norms every 20 steps, histograms every 250 steps, ratios four times
as often and activation histograms every 25 steps during the dense start of the first
100 steps, first-layer images every epoch, hand-offs to a sink), and the same without the dense start. Step time = the time from the first
step to the end of the last epoch / the steps, so set-up (loading the data,
building the model) is left out of both.

On CUDA it also counts the host synchronisations of one instrumented run (PyTorch's sync
debug mode), by phase: per step (expected 0), per hand-off and per epoch end.

    python bench/overhead.py [--device cpu|cuda] [--model mlp|cnn] [--precision fp32|amp|bf16|fp16]
                             [--epochs 30] [--repeats 5]
Ends with one line: overhead_ratio=<R> steady_overhead_ratio=<R without the dense start>
overhead_us_per_step=<microseconds the instrumentation adds to a step> (and, on CUDA,
step_syncs_per_step=<S> handoff_syncs=<H> handoffs=<N>). The ratio depends on how long the
plain step takes on the machine; the added time, mostly op dispatch, much less.

With --model resnet18, transformer or watched-mlp it measures the client instead, on models
teams bring and on the digits MLP (bench/real_models.py): a script's loop with and without run.watch(model, optimizer), stepped
side by side in one process, over a --steps run (1,000) with the defaults, dense start
included, --repeats times (5). Ends with overhead_ratio_<model>=<median ratio>
overhead_ms_per_step_<model>=<median milliseconds added a step>. Stepped side by side, the
plain and watched steps share whatever else the machine does: the added time of a 0.3 ms step
reads within a few microseconds from one run to the next, where alternating whole runs moves
it by tens.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Protocol

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from trainer.config import RunConfig
from trainer.data import load_dataset
from trainer.loop import evaluate, mixed_precision, resolve_device, train
from trainer.models import build_loss, build_model
from trainer.optim import build_optimizer
from trainer.schedules import Schedule
from trainer.sink import MemorySink, Progress


class Window(Protocol):
    """What else marks the timed part of a run (bench/instructions.py counts instructions in it)."""

    def open(self) -> None: ...

    def close(self) -> None: ...


def plain_step_seconds(config: RunConfig, window: Window | None = None) -> float:
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    data = load_dataset(config.data, config.data_seed).to(device)
    model = build_model(config.model, data.num_features, data.num_classes, data.image_shape).to(device)
    loss_fn = build_loss(config.loss)
    optimizer = build_optimizer(config.optimizer, model.parameters())
    n = len(data.y_train)
    steps_per_epoch = math.ceil(n / config.batch_size)
    schedule = Schedule(config.schedule, optimizer, steps_per_epoch, config.epochs)
    autocast, scaler, _ = mixed_precision(config, device)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    if window is not None:
        window.open()
    started = time.perf_counter()
    for _ in range(config.epochs):
        order = torch.randperm(n, device=device, generator=generator)
        for start in range(0, n, config.batch_size):
            index = order[start : start + config.batch_size]
            with autocast:
                loss = loss_fn(model(data.x_train[index]).float(), data.y_train[index])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            schedule.after_iteration()
        _, val_loss = evaluate(model, loss_fn, data.x_val, data.y_val)
        schedule.after_epoch(val_loss.item())
    seconds = time.perf_counter() - started
    if window is not None:
        window.close()
    return seconds / (steps_per_epoch * config.epochs)


class TimingSink(MemorySink):
    """Keeps what a sink keeps (the hand-offs counted), and when training started and last reported progress."""

    def start(self, info) -> None:
        super().start(info)
        self.started = time.perf_counter()

    def progress(self, progress: Progress) -> None:
        super().progress(progress)
        self.last = time.perf_counter()


def instrumented_step_seconds(config: RunConfig) -> float:
    sink = TimingSink()
    result = train(config, sink)
    assert result.status == "succeeded" and sink.info is not None, result.message
    return (sink.last - sink.started) / sink.info.total_steps


def synthetic_images(folder: Path, n: int = 50_000, seed: int = 0) -> Path:
    """A CIFAR-size set (CIFAR-10's 50,000 training images of 3 x 32 x 32, 10 classes) as an
    .npz: each class a fixed random pattern, each example its pattern plus noise, so that a CNN
    learns it in a few epochs."""
    rng = np.random.default_rng(seed)
    patterns = rng.standard_normal(size=(10, 3, 32, 32), dtype=np.float32)
    labels = rng.integers(0, 10, n)
    images = rng.standard_normal(size=(n, 3, 32, 32), dtype=np.float32)
    images += patterns[labels] * 0.2
    path = folder / "cifar_size.npz"
    np.savez(path, X=images, y=labels)
    return path


def bench_config(model: str, device: str, precision: str, epochs: int, folder: Path) -> RunConfig:
    if model == "mlp":
        raw = {"model": {"hidden": [64]}, "batch_size": 64}
    else:
        raw = {
            "data": {"name": "npz", "path": str(synthetic_images(folder))},
            "model": {"kind": "cnn", "channels": [64, 128, 256]},
            "batch_size": 256,
        }
    return RunConfig.from_dict({**raw, "epochs": epochs, "device": device, "precision": precision})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--model", default="mlp", choices=["mlp", "cnn", "resnet18", "transformer", "watched-mlp"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "amp", "bf16", "fp16"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1000, help="resnet18, transformer, watched-mlp: the run's steps")
    args = parser.parse_args()
    if args.model in ("resnet18", "transformer", "watched-mlp"):
        watched_model(args)
        return
    with tempfile.TemporaryDirectory() as folder:
        config = bench_config(args.model, args.device, args.precision, args.epochs, Path(folder))
        compare(config, args)


def watched_model(args: argparse.Namespace) -> None:
    from bench.real_models import side_by_side, workload

    model = args.model.removeprefix("watched-")
    side_by_side(model, 20)  # warm-up: imports, allocator, the client's first run
    ratios, added = [], []
    for repeat in range(args.repeats):
        plain, watched, sender = side_by_side(model, args.steps, seed=repeat)
        ratios.append((watched + sender) / plain)
        added.append((watched + sender - plain) * 1e3)
        print(
            f"repeat {repeat + 1}: plain {plain * 1e3:.3f} ms/step, watched {watched * 1e3:.3f} ms/step"
            f" + sender thread {sender * 1e3:.3f} ms/step: ratio {ratios[-1]:.4f}",
            flush=True,
        )
    print(
        f"{workload(model, 1, 0).describe}; {args.steps} steps x {args.repeats} repeats on cpu "
        f"({torch.get_num_threads()} threads), torch {torch.__version__}"
    )
    name = args.model.replace("-", "_")  # watched_mlp: the digits MLP through the client
    print(
        f"overhead_ratio_{name}={statistics.median(ratios):.4f} overhead_ms_per_step_{name}={statistics.median(added):.3f}"
    )


def compare(config: RunConfig, args: argparse.Namespace) -> None:
    steady = RunConfig.from_dict(
        {**config.to_dict(), "instrument": {**config.to_dict()["instrument"], "dense_steps": 0}}
    )
    plain_step_seconds(config)  # warm-up: imports, allocator, data set cache, cuDNN's choice of kernels
    plain, instrumented, undense = [], [], []
    for _ in range(args.repeats):
        plain.append(plain_step_seconds(config))
        instrumented.append(instrumented_step_seconds(config))
        undense.append(instrumented_step_seconds(steady))
    p, i, u = statistics.median(plain), statistics.median(instrumented), statistics.median(undense)
    described = (
        "digits MLP (64 hidden, batch 64)"
        if args.model == "mlp"
        else "CNN (channels 64, 128, 256; 50,000 synthetic 3x32x32 images, batch 256)"
    )
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{torch.get_num_threads()} threads"
    print(
        f"{described} on {args.device} ({where}), {args.precision}, {args.epochs} epochs x {args.repeats} repeats, "
        f"torch {torch.__version__}"
    )
    print(f"plain loop:            median {p * 1e3:.4f} ms/step  (runs: {', '.join(f'{x * 1e3:.4f}' for x in plain)})")
    print(
        f"default instrumentation: median {i * 1e3:.4f} ms/step  (runs: {', '.join(f'{x * 1e3:.4f}' for x in instrumented)})"
    )
    print(f"without the dense start: median {u * 1e3:.4f} ms/step")
    figures = f"overhead_ratio={i / p:.3f} steady_overhead_ratio={u / p:.3f} overhead_us_per_step={(i - p) * 1e6:.1f}"
    if args.device == "cuda":
        from trainer.syncs import count_host_syncs

        sink = TimingSink()
        result, syncs = count_host_syncs(lambda: train(config, sink))
        assert result.status == "succeeded", result.message
        steps = result.steps
        print(
            f"host synchronisations of one instrumented run ({steps} steps, {sink.handoffs} hand-offs, {config.epochs} epochs):"
        )
        for line, n in syncs.lines.most_common():
            print(f"  {n:6d}  {line}")
        figures += (
            f" step_syncs_per_step={syncs.phases['step'] / steps:.3f} handoff_syncs={syncs.phases['hand-off']}"
            f" handoffs={sink.handoffs} epoch_end_syncs={syncs.phases['epoch end']}"
        )
    print(figures)


if __name__ == "__main__":
    main()
