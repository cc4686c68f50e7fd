"""Optimizers from torch.optim, built from the validated config.

How torch's formulations relate to the notes (docs/training-dynamics.md, section 3;
tests/trainer/test_optimizers.py checks each against the notes' rule in NumPy):
- momentum: torch keeps v' = mu*v' + g and steps x -= lr*v'. With a constant lr this
  is the notes' v = mu*v - lr*g, x += v, with v = -lr*v'.
- nesterov: torch steps x -= lr*(g + mu*v'), the same sequence of iterates as the
  notes' x += -mu*v_prev + (1 + mu)*v.
- rmsprop: `decay` is torch's alpha. Its `momentum` is classical momentum on the
  scaled step; torch has no RMSprop with Nesterov momentum (NAdam is Adam's).
- weight_decay is lambda of the notes' L2 term lambda/2*||w||^2 (torch adds lambda*w
  to the gradient), i.e. coupled; Adam's `decoupled_weight_decay` and AdamW shrink
  the weights directly instead (decoupled).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from trainer.config import OptimizerConfig


def build_optimizer(config: OptimizerConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    c = config
    if c.name == "sgd":
        return torch.optim.SGD(params, lr=c.lr, weight_decay=c.weight_decay)
    if c.name in ("momentum", "nesterov"):
        return torch.optim.SGD(
            params, lr=c.lr, momentum=c.momentum, nesterov=c.name == "nesterov", weight_decay=c.weight_decay
        )
    if c.name == "adagrad":
        return torch.optim.Adagrad(params, lr=c.lr, eps=c.eps, weight_decay=c.weight_decay)
    if c.name == "rmsprop":
        return torch.optim.RMSprop(
            params,
            lr=c.lr,
            alpha=c.decay,
            eps=c.eps,
            momentum=c.momentum,
            centered=c.centered,
            weight_decay=c.weight_decay,
        )
    if c.name == "adam":
        return torch.optim.Adam(
            params,
            lr=c.lr,
            betas=c.betas,
            eps=c.eps,
            amsgrad=c.amsgrad,
            weight_decay=c.weight_decay,
            decoupled_weight_decay=c.decoupled_weight_decay,
        )
    if c.name == "adamw":
        return torch.optim.AdamW(
            params, lr=c.lr, betas=c.betas, eps=c.eps, amsgrad=c.amsgrad, weight_decay=c.weight_decay
        )
    if c.name == "adadelta":
        return torch.optim.Adadelta(params, lr=c.lr, rho=c.rho, eps=c.eps, weight_decay=c.weight_decay)
    raise ValueError(f"optimizer.name: unknown optimizer {c.name!r}")  # config validation prevents this
