"""The checks of a built-in run's config, as a preflight or a check job stores them: the
sanity checks and the gradient check (trainer.checks) on the config's model and data."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict

import torch

from trainer.checks import SanityCheck, gradient_check, initial_loss_check, overfit_check, regularisation_check
from trainer.config import RunConfig
from trainer.data import Dataset, load_dataset
from trainer.models import build_loss, build_model
from trainer.optim import build_optimizer
from trainer.payloads import CheckResults, GradientPartDict, SanityCheckDict

SANITY_EXAMPLES = 512  # the initial-loss and regularisation checks average over this many


def sanity_checks(config: RunConfig, data: Dataset) -> list[SanityCheck]:
    """The three checks for a built-in run's config."""
    torch.manual_seed(config.seed)
    model = build_model(config.model, data.num_features, data.num_classes, data.image_shape).to(data.x_train.device)
    model.eval()  # dropout off for the measurements
    loss_fn = build_loss(config.loss)
    x, y = data.x_train[:SANITY_EXAMPLES], data.y_train[:SANITY_EXAMPLES]
    torch.manual_seed(config.seed)
    tiny = build_model(
        dataclasses.replace(config.model, dropout=0.0), data.num_features, data.num_classes, data.image_shape
    ).to(data.x_train.device)
    optimizer = build_optimizer(dataclasses.replace(config.optimizer, weight_decay=0.0), tiny.parameters())
    return [
        initial_loss_check(model, loss_fn, config.loss, x, y, data.num_classes),
        regularisation_check(model, loss_fn, x, y, config.optimizer.weight_decay),
        overfit_check(tiny, optimizer, loss_fn, data.x_train, data.y_train),
    ]


def run_checks(config: RunConfig) -> CheckResults:
    """Sanity checks and the gradient check for a run's config; JSON-ready."""
    checks = config.checks
    data = load_dataset(config.data, config.data_seed)
    sanity = sanity_checks(config, data)
    torch.manual_seed(config.seed)
    model = build_model(config.model, data.num_features, data.num_classes, data.image_shape)
    loss_fn = build_loss(config.loss)
    if checks.warmup_steps:
        # a wrong gradient can look right at initialisation with tiny weights
        optimizer = build_optimizer(config.optimizer, model.parameters())
        for step in range(checks.warmup_steps):
            start = (step * config.batch_size) % max(1, len(data.y_train) - config.batch_size)
            x, y = data.x_train[start : start + config.batch_size], data.y_train[start : start + config.batch_size]
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    l2 = (
        config.optimizer.weight_decay
        if config.optimizer.name != "adamw" and not config.optimizer.decoupled_weight_decay
        else 0.0
    )
    x, y = data.x_train[: checks.examples], data.y_train[: checks.examples]
    gradient = gradient_check(
        model, loss_fn, x, y, h=checks.h, dims_per_tensor=checks.dims_per_tensor, seed=config.seed, l2=l2
    )
    return CheckResults(
        sanity=[SanityCheckDict(**asdict(check)) for check in sanity],  # type: ignore[typeddict-item]
        gradient=[
            GradientPartDict(**asdict(part), max_relative_error=part.max_relative_error)  # type: ignore[typeddict-item]
            for part in gradient
        ],
        passed=all(check.passed for check in sanity) and all(part.verdict in ("good", "ok") for part in gradient),
    )
