"""Cost of run.watch() on models teams train, in the client's hands: torchvision's resnet18
(batch 32 of CIFAR-size synthetic images, SGD momentum 0.9, cosine), an nn.TransformerEncoder
classifier (AdamW with warmup) and, for the time added to a tiny step, the digits MLP, each a script's own loop watched with the defaults
(`run.watch(model, optimizer)`, `run.log({"loss": loss})` every step, an offline run spooling in
the background).

Two copies of the model (same initialisation, same batches) are stepped in turn, one plain and
one watched, so that whatever else the machine is doing falls on both alike; each step is timed
on its own. The watched side is charged with its steps and with the CPU time of the client's
sender thread (which runs beside training and would otherwise slow the plain steps as much as
the watched ones). Used by bench/overhead.py (--model resnet18 | transformer | watched-mlp).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass

import psutil
import torch
import torch.nn.functional as F
from torch import nn

import trainwatch
from tests.zoo.models import SEQUENCE, VOCABULARY, EncoderClassifier, resnet18

BATCH = 32


@dataclass
class Workload:
    describe: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    x: torch.Tensor
    y: torch.Tensor
    image_shape: tuple[int, int, int] | None


def workload(model: str, steps: int, seed: int) -> Workload:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    if model == "resnet18":
        net = resnet18()
        optimizer: torch.optim.Optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        schedule: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        x = torch.randn(2048, 3, 32, 32, generator=generator)
        y = torch.randint(0, 10, (2048,), generator=generator)
        return Workload(
            "torchvision resnet18, batch 32 of 3x32x32, SGD momentum 0.9 + cosine",
            net,
            optimizer,
            schedule,
            x,
            y,
            (3, 32, 32),
        )
    if model == "mlp":
        from trainer.config import DataConfig
        from trainer.data import load_dataset

        data = load_dataset(DataConfig(), seed)  # the bundled digits, as bench/overhead.py's MLP
        net = nn.Sequential(nn.Linear(data.num_features, 64), nn.ReLU(), nn.Linear(64, data.num_classes))
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        return Workload(
            "digits MLP (64 hidden), batch 32, SGD momentum 0.9 + cosine",
            net,
            optimizer,
            schedule,
            data.x_train,
            data.y_train,
            None,
        )
    net = EncoderClassifier(width=128, layers=4)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    x = torch.randint(0, VOCABULARY, (2048, SEQUENCE), generator=generator)
    y = torch.randint(0, 4, (2048,), generator=generator)
    return Workload(
        "nn.TransformerEncoder classifier (width 128, 4 layers, 4 heads), batch 32 of 12 tokens, AdamW + warmup",
        net,
        optimizer,
        schedule,
        x,
        y,
        None,
    )


def step(work: Workload, index: torch.Tensor) -> torch.Tensor:
    loss = F.cross_entropy(work.model(work.x[index]), work.y[index])
    work.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    work.optimizer.step()
    work.schedule.step()
    return loss.detach()


def side_by_side(model: str, steps: int, seed: int = 0) -> tuple[float, float, float]:
    """(plain seconds a step, watched seconds a step, the sender thread's CPU seconds a step)."""
    os.environ.setdefault("TRAINWATCH_DIR", tempfile.mkdtemp(prefix="trainwatch-bench-"))
    logging.getLogger("trainwatch").setLevel(logging.ERROR)
    plain, watched = workload(model, steps, seed), workload(model, steps, seed)
    generator = torch.Generator().manual_seed(seed)
    run = trainwatch.init(project="bench", name=f"overhead {model}", mode="offline", total_steps=steps)
    run.watch(watched.model, watched.optimizer, loss="cross_entropy", classes=10, image_shape=watched.image_shape)
    sender = next(t for t in psutil.Process().threads() if t.id == run._sender.native_id)
    sender_started = sender.user_time + sender.system_time
    plain_seconds = watched_seconds = 0.0
    for number in range(steps):
        index = torch.randint(0, len(plain.y), (BATCH,), generator=generator)
        # the order alternates too: neither side always runs first after the other's hand-off
        for side in (plain, watched) if number % 2 == 0 else (watched, plain):
            started = time.perf_counter()
            loss = step(side, index)
            if side is watched:
                run.log({"loss": loss}, step=number)
                watched_seconds += time.perf_counter() - started
            else:
                plain_seconds += time.perf_counter() - started
    sender = next(t for t in psutil.Process().threads() if t.id == run._sender.native_id)
    sender_seconds = sender.user_time + sender.system_time - sender_started
    started = time.perf_counter()
    run.finish()  # the last hand-off, written by the training thread's wait
    watched_seconds += time.perf_counter() - started
    return plain_seconds / steps, watched_seconds / steps, sender_seconds / steps
