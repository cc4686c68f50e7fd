"""Learning-rate schedules, from torch.optim.lr_scheduler, following Caffe's
policies where the notes name them (docs/training-dynamics.md, section 4).

t counts the schedule's intervals (iterations or epochs) since the start:
  step      lr0 * gamma ^ floor(t / step_size)                 StepLR
  multistep lr0 * gamma ^ (milestones passed)                  MultiStepLR
  exp       lr0 * gamma ^ t                                    ExponentialLR (Caffe 'exp')
  inv       lr0 * (1 + gamma * t) ^ (-power)                   LambdaLR (Caffe 'inv')
  poly      lr0 * (1 - t / max_iter) ^ power, 0 after          PolynomialLR (Caffe 'poly')
  sigmoid   lr0 / (1 + exp(-gamma * (t - step_size)))          LambdaLR (Caffe 'sigmoid')
  linear    lr0 -> lr0 / 100 linearly until tau, then constant LinearLR
  cosine    eta_min + (lr0 - eta_min) * (1 + cos(pi t / t_max)) / 2   CosineAnnealingLR
  plateau   x factor when the validation loss has not improved for `patience` epochs
A warm-up multiplies the first `warmup_steps` iterations by a factor rising
linearly from 1/100 to 1 (LinearLR, composed with the schedule).
"""

from __future__ import annotations

import math

import torch
from torch.optim import lr_scheduler

from trainer.config import ScheduleConfig

WARMUP_START_FACTOR = 0.01


def _inv(gamma: float, power: float):
    return lambda t: (1.0 + gamma * t) ** (-power)


def _sigmoid(gamma: float, step_size: int):
    def factor(t: int) -> float:
        z = -gamma * (t - step_size)
        # 1 / (1 + e^z) without overflow for large |z|
        return math.exp(-z) / (1.0 + math.exp(-z)) if z > 0 else 1.0 / (1.0 + math.exp(z))

    return factor


class Schedule:
    """Steps the learning rate at iteration and epoch boundaries as configured."""

    def __init__(self, config: ScheduleConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int):
        self.config = config
        self.optimizer = optimizer
        length = steps_per_epoch * epochs if config.interval == "iteration" else epochs
        # Warm-up first: its constructor scales the current lr, then the main schedule
        # takes that lr as its own start; both are chainable, so their factors multiply.
        self.warmup = (
            lr_scheduler.LinearLR(optimizer, WARMUP_START_FACTOR, 1.0, total_iters=config.warmup_steps)
            if config.warmup_steps
            else None
        )
        self.main = self._main(config, optimizer, length)
        self.plateau = isinstance(self.main, lr_scheduler.ReduceLROnPlateau)

    @staticmethod
    def _main(c: ScheduleConfig, optimizer: torch.optim.Optimizer, length: int):
        if c.name == "fixed":
            return None
        if c.name == "step":
            return lr_scheduler.StepLR(optimizer, step_size=c.step_size, gamma=c.gamma)
        if c.name == "multistep":
            return lr_scheduler.MultiStepLR(optimizer, milestones=list(c.milestones), gamma=c.gamma)
        if c.name == "exp":
            return lr_scheduler.ExponentialLR(optimizer, gamma=c.gamma)
        if c.name == "inv":
            return lr_scheduler.LambdaLR(optimizer, _inv(c.gamma, c.power))
        if c.name == "poly":
            return lr_scheduler.PolynomialLR(optimizer, total_iters=c.max_iter or length, power=c.power)
        if c.name == "sigmoid":
            return lr_scheduler.LambdaLR(optimizer, _sigmoid(c.gamma, c.step_size))
        if c.name == "linear":
            return lr_scheduler.LinearLR(optimizer, 1.0, 0.01, total_iters=c.tau or length)
        if c.name == "cosine":
            return lr_scheduler.CosineAnnealingLR(optimizer, T_max=c.t_max or length, eta_min=c.eta_min)
        if c.name == "plateau":
            return lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=c.factor, patience=c.patience, threshold=c.threshold
            )
        raise ValueError(f"schedule.name: unknown schedule {c.name!r}")  # validation prevents this

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def after_iteration(self) -> None:
        if self.warmup is not None and self.warmup.last_epoch < self.config.warmup_steps:
            self.warmup.step()
        if self.main is not None and not self.plateau and self.config.interval == "iteration":
            self.main.step()

    def after_epoch(self, val_loss: float) -> None:
        if self.main is None or self.config.interval != "epoch":
            return
        if self.plateau:
            self.main.step(val_loss)
        else:
            self.main.step()

    def state_dict(self) -> dict:
        return {
            "warmup": self.warmup.state_dict() if self.warmup is not None else None,
            "main": self.main.state_dict() if self.main is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        if self.warmup is not None and state["warmup"] is not None:
            self.warmup.load_state_dict(state["warmup"])
        if self.main is not None and state["main"] is not None:
            self.main.load_state_dict(state["main"])
