"""Cost of the default instrumentation on the digits MLP, as a ratio of step times.

In one process, alternately: a plain training loop (same model, data, optimizer,
schedule and batch order; the validation pass every epoch, nothing else) and
trainer.loop.train with the default instrumentation (per-step loss and lr,
update ratios and norms every 20 steps, histograms every 250 steps, four times as
often during the dense start of the first 100 steps, first-layer images every
epoch, hand-offs to a sink), and the same without the dense start. Step time = the time from the first
step to the end of the last epoch / the steps, so set-up (loading the data,
building the model) is left out of both.

    python bench/overhead.py [--device cpu|cuda] [--epochs 30] [--repeats 5]
Ends with one line: overhead_ratio=<R> steady_overhead_ratio=<R without the dense start>
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from trainer.config import RunConfig
from trainer.data import load_dataset
from trainer.loop import evaluate, resolve_device, train
from trainer.models import build_loss, build_model
from trainer.optim import build_optimizer
from trainer.schedules import Schedule
from trainer.sink import MemorySink, Progress


def plain_step_seconds(config: RunConfig) -> float:
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    data = load_dataset(config.data, config.data_seed).to(device)
    model = build_model(config.model, data.num_features, data.num_classes, data.image_shape).to(device)
    loss_fn = build_loss(config.loss)
    optimizer = build_optimizer(config.optimizer, model.parameters())
    n = len(data.y_train)
    steps_per_epoch = math.ceil(n / config.batch_size)
    schedule = Schedule(config.schedule, optimizer, steps_per_epoch, config.epochs)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    started = time.perf_counter()
    for _ in range(config.epochs):
        order = torch.randperm(n, device=device, generator=generator)
        for start in range(0, n, config.batch_size):
            index = order[start : start + config.batch_size]
            loss = loss_fn(model(data.x_train[index]), data.y_train[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.after_iteration()
        _, val_loss = evaluate(model, loss_fn, data.x_val, data.y_val)
        schedule.after_epoch(val_loss.item())
    return (time.perf_counter() - started) / (steps_per_epoch * config.epochs)


class TimingSink(MemorySink):
    """Keeps what a sink keeps, and when training started and last reported progress."""

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = RunConfig.from_dict(
        {"epochs": args.epochs, "device": args.device, "model": {"hidden": [64]}, "batch_size": 64}
    )
    steady = RunConfig.from_dict(
        {**config.to_dict(), "instrument": {**config.to_dict()["instrument"], "dense_steps": 0}}
    )
    plain_step_seconds(config)  # warm-up: imports, allocator, data set cache
    plain, instrumented, undense = [], [], []
    for _ in range(args.repeats):
        plain.append(plain_step_seconds(config))
        instrumented.append(instrumented_step_seconds(config))
        undense.append(instrumented_step_seconds(steady))
    p, i, u = statistics.median(plain), statistics.median(instrumented), statistics.median(undense)
    print(
        f"digits MLP (64 hidden, batch 64) on {args.device}, {args.epochs} epochs x {args.repeats} repeats, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"plain loop:            median {p * 1e3:.4f} ms/step  (runs: {', '.join(f'{x * 1e3:.4f}' for x in plain)})")
    print(
        f"default instrumentation: median {i * 1e3:.4f} ms/step  (runs: {', '.join(f'{x * 1e3:.4f}' for x in instrumented)})"
    )
    print(f"without the dense start: median {u * 1e3:.4f} ms/step")
    print(f"overhead_ratio={i / p:.3f} steady_overhead_ratio={u / p:.3f}")


if __name__ == "__main__":
    main()
