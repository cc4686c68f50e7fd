"""One training loop for every zoo model, as a team writes it with the client: the usual
recipes, and the mistakes that really happen on such models planted on purpose."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import trainwatch
from tests.zoo.models import Task


@dataclass(frozen=True)
class Recipe:
    optimizer: str  # sgd (momentum 0.9) | adamw
    lr: float
    schedule: str = "cosine"  # cosine | warmup_cosine | onecycle | constant
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    clip: float | None = None
    zero_grad: bool = True  # False: the forgotten optimizer.zero_grad()
    eval_mode: bool = True  # False: the forgotten model.eval() before validating


def optimizer_for(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    parameters = [p for p in model.parameters() if p.requires_grad]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay)
    return torch.optim.AdamW(parameters, lr=recipe.lr, weight_decay=recipe.weight_decay)


def schedule_for(optimizer: torch.optim.Optimizer, recipe: Recipe, total: int) -> torch.optim.lr_scheduler.LRScheduler:
    scheduler = torch.optim.lr_scheduler
    if recipe.schedule == "cosine":
        return scheduler.CosineAnnealingLR(optimizer, total)
    if recipe.schedule == "onecycle":
        return scheduler.OneCycleLR(optimizer, recipe.lr, total_steps=total)
    if recipe.schedule == "warmup_cosine":
        warmup = max(1, total // 10)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        return scheduler.LambdaLR(optimizer, factor)
    return scheduler.LambdaLR(optimizer, lambda step: 1.0)


def accuracy(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (scores.argmax(1) == y).float().mean()


def fit(
    name: str,
    model: nn.Module,
    task: Task,
    recipe: Recipe,
    *,
    epochs: int,
    batch: int = 32,
    plant: Callable[[nn.Module], None] | None = None,
    seed: int = 0,
) -> trainwatch.Run:
    """Train `model` on `task` with the client's defaults (watch() as docs/client.md shows it);
    `plant` changes the model before training (a zero initialisation, a frozen layer)."""
    torch.manual_seed(seed)
    if plant is not None:
        plant(model)
    steps_per_epoch = math.ceil(len(task.y_train) / batch)
    total = steps_per_epoch * epochs
    optimizer = optimizer_for(model, recipe)
    schedule = schedule_for(optimizer, recipe, total)
    step = 0
    with trainwatch.init(
        project="zoo", name=name, config={"recipe": recipe.__dict__}, total_steps=total, steps_per_epoch=steps_per_epoch
    ) as run:
        run.watch(model, optimizer, loss="cross_entropy", classes=task.classes, image_shape=task.image_shape)
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(task.y_train))
            for start in range(0, len(order), batch):
                index = order[start : start + batch]
                scores = model(task.x_train[index])
                loss = F.cross_entropy(scores, task.y_train[index], label_smoothing=recipe.label_smoothing)
                if recipe.zero_grad:
                    optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if recipe.clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), recipe.clip)
                optimizer.step()
                schedule.step()
                run.log({"loss": loss.detach()}, step=step)
                step += 1
            if recipe.eval_mode:
                model.eval()
            with torch.no_grad():
                subset = slice(0, len(task.y_val))
                train_scores = model(task.x_train[subset])
                val_scores = model(task.x_val)
                run.log(
                    {
                        "train_acc": accuracy(train_scores, task.y_train[subset]),
                        "val_acc": accuracy(val_scores, task.y_val),
                        "val_loss": F.cross_entropy(val_scores, task.y_val),
                        "epoch": epoch + 1,
                    },
                    step=step - 1,
                )
    return run
