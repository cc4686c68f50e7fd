"""A small classifier trained the way a team's script would, through the client's `run`."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import trainwatch

PARAMS = {
    "lr": {"type": "float", "min": 1e-6, "max": 10.0, "default": 0.05, "help": "learning rate"},
    "hidden": {"type": "int", "min": 1, "max": 1024, "default": 32},
    "optimizer": {"type": "choice", "choices": ["sgd", "adam"], "default": "sgd"},
    "batches": {"type": "int", "min": 1, "max": 1000, "default": 20, "help": "steps per epoch"},
    "step_seconds": {"type": "float", "min": 0.0, "max": 5.0, "default": 0.0, "help": "a pause per step"},
    "fail_at_step": {"type": "int", "min": -1, "max": 1_000_000, "default": -1},
    "checkpoint_every": {"type": "int", "min": 0, "max": 1_000_000, "default": 0, "help": "0: each epoch end"},
    "keep_model": {
        "type": "choice",
        "choices": ["no", "yes"],
        "default": "no",
        "help": "log the trained model as the artifact spiral-mlp",
    },
}


def spiral(n: int, classes: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(classes).repeat_interleave(n)
    radius = torch.linspace(0.05, 1.0, n).repeat(classes)
    angle = labels * (2 * math.pi / classes) + radius * 4 + 0.2 * torch.randn(n * classes, generator=generator)
    points = torch.stack([radius * torch.sin(angle), radius * torch.cos(angle)], dim=1)
    return points, labels


@trainwatch.job(params=PARAMS, epochs=3)
def train(run: Any) -> None:
    """A two-layer MLP on a spiral, with checkpoints, resume and cancel."""
    config = run.config
    device = run.device
    generator = torch.Generator().manual_seed(config["seed"])
    x, y = spiral(200, 3, generator)
    order = torch.randperm(len(x), generator=generator)
    x, y = x[order].to(device), y[order].to(device)
    train_x, train_y, val_x, val_y = x[:480], y[:480], x[480:], y[480:]
    torch.manual_seed(config["seed"])
    model = nn.Sequential(nn.Linear(2, config["hidden"]), nn.ReLU(), nn.Linear(config["hidden"], 3)).to(device)
    make = torch.optim.SGD if config["optimizer"] == "sgd" else torch.optim.Adam
    optimizer = make(model.parameters(), lr=config["lr"])
    batches, epochs = config["batches"], config["epochs"]
    run.plan(total_steps=batches * epochs, steps_per_epoch=batches)
    run.watch(model, optimizer, loss="cross_entropy", classes=3)
    step = 0
    saved = run.restore()
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        step = saved["step"]
    size = len(train_x) // batches
    while step < batches * epochs:
        batch = step % batches
        xb, yb = train_x[batch * size : (batch + 1) * size], train_y[batch * size : (batch + 1) * size]
        logits = model(xb)
        loss = nn.functional.cross_entropy(logits, yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == config["fail_at_step"]:
            raise RuntimeError(f"planted failure at step {step}")
        accuracy = (logits.argmax(1) == yb).float().mean()
        run.log({"loss": loss.detach(), "train_acc": accuracy}, step=step)
        step += 1
        if step % batches == 0:
            with torch.no_grad():
                val_acc = (model(val_x).argmax(1) == val_y).float().mean()
            run.log({"val_acc": val_acc, "epoch": step // batches}, step=step - 1)
        every = config["checkpoint_every"] or batches
        if step % every == 0:
            run.checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step})
        if config["step_seconds"]:
            time.sleep(config["step_seconds"])
        if run.should_stop:
            return
    if config["keep_model"] == "yes":
        with tempfile.TemporaryDirectory() as folder:
            torch.save(model.state_dict(), Path(folder) / "model.pt")
            run.log_artifact(Path(folder) / "model.pt", name="spiral-mlp", type="model", aliases=["trained"])


def check_checked(params: dict[str, Any]) -> dict[str, Any]:
    """Params validated by code: `width` must be even."""
    errors = {name: "unknown; allowed: width" for name in params if name != "width"}
    width = params.get("width", 16)
    if isinstance(width, bool) or not isinstance(width, int) or width <= 0 or width % 2:
        errors["width"] = f"must be an even whole number > 0, got {width!r}"
    if errors:
        raise trainwatch.ConfigError(errors)
    return {"width": width}


@trainwatch.job(params=check_checked, epochs=1)
def train_checked(run: Any) -> None:
    """A few steps of a linear model whose params a function checks."""
    model = nn.Linear(4, run.config["width"]).to(run.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run.watch(model, optimizer)
    for step in range(10):
        loss = model(torch.randn(8, 4, device=run.device)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        run.log({"loss": loss.detach()}, step=step)
