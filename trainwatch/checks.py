"""The classic checks on any model (docs/training-dynamics.md, section 2), with the worker's
own code (trainer.checks), their results shown on the run's page when a run is given."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from trainer import checks
from trainer.payloads import GradientPartDict, SanityCheckDict
from trainwatch.run import Run


def gradient_check(
    model: nn.Module,
    loss_fn: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    run: Run | None = None,
    h: float = 1e-5,
    dims_per_tensor: int = 10,
    l2: float = 0.0,
    seed: int = 0,
) -> list[GradientPartDict]:
    """Analytic against numerical gradients (centred differences, double precision, on a copy
    of the model) for a few examples x, y: the data loss, then the L2 term when l2 > 0. Kinks
    (ReLU-like modules, max-pooling) crossed between x+h and x-h are counted, not failed."""
    results = checks.gradient_check(model, loss_fn, x, y, h=h, dims_per_tensor=dims_per_tensor, seed=seed, l2=l2)
    parts = [
        GradientPartDict(**dataclasses.asdict(part), max_relative_error=part.max_relative_error)  # type: ignore[typeddict-item]
        for part in results
    ]
    if run is not None:
        run.attach_checks(gradient=parts)
    return parts


def sanity_checks(
    model: nn.Module,
    loss_fn: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    classes: int,
    loss: str = "cross_entropy",
    l2: float = 0.0,
    make_optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer] | None = None,
    run: Run | None = None,
) -> list[SanityCheckDict]:
    """Before training: the initial loss against ln(C) (C - 1 for an SVM), raising the L2 strength
    raises the loss, and a copy of the model overfits 20 examples (to a loss below 0.05 within 500
    full-batch steps of `make_optimizer`, Adam 1e-3 by default)."""
    was_training = model.training
    model.eval()
    try:
        found = [
            checks.initial_loss_check(model, loss_fn, loss, x, y, classes),
            checks.regularisation_check(model, loss_fn, x, y, l2),
        ]
    finally:
        model.train(was_training)
    tiny = copy.deepcopy(model)
    optimizer = (make_optimizer or (lambda params: torch.optim.Adam(params, lr=1e-3)))(list(tiny.parameters()))
    found.append(checks.overfit_check(tiny, optimizer, loss_fn, x, y))
    results = [SanityCheckDict(**dataclasses.asdict(check)) for check in found]  # type: ignore[typeddict-item]
    if run is not None:
        run.attach_checks(sanity=results)
    return results
