"""Each schedule against its formula (Caffe's where the notes name one), at many t."""

import math

import numpy as np
import pytest
import torch

from trainer.config import RunConfig
from trainer.schedules import Schedule

LR0 = 0.5
T = 200


def lrs(schedule: dict, steps_per_epoch: int = 10, epochs: int = 20, val_losses=None) -> list[float]:
    """The rate each unit of the schedule's interval uses, from t = 0."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=LR0)
    config = RunConfig.from_dict({"schedule": schedule, "epochs": epochs}).schedule
    sched = Schedule(config, optimizer, steps_per_epoch, epochs)
    out = []
    if config.interval == "iteration":
        for _ in range(steps_per_epoch * epochs):
            out.append(sched.lr)
            optimizer.step()
            sched.after_iteration()
    else:
        for epoch in range(epochs):
            out.append(sched.lr)
            for _ in range(steps_per_epoch):
                optimizer.step()
                sched.after_iteration()
            sched.after_epoch(val_losses[epoch] if val_losses else 1.0)
    return out


def check(actual: list[float], formula) -> None:
    expected = [formula(t) for t in range(len(actual))]
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-15)


def test_fixed():
    check(lrs({"name": "fixed"}), lambda t: LR0)


def test_caffe_step_per_iteration():
    check(
        lrs({"name": "step", "interval": "iteration", "gamma": 0.1, "step_size": 30}),
        lambda t: LR0 * 0.1 ** math.floor(t / 30),
    )


def test_step_per_epoch_halves_every_five_epochs():
    check(lrs({"name": "step", "gamma": 0.5, "step_size": 5}), lambda t: LR0 * 0.5 ** (t // 5))


def test_caffe_multistep():
    milestones = [20, 50, 120]
    check(
        lrs({"name": "multistep", "interval": "iteration", "gamma": 0.3, "milestones": milestones}),
        lambda t: LR0 * 0.3 ** sum(t >= m for m in milestones),
    )


def test_caffe_exp():
    check(lrs({"name": "exp", "interval": "iteration", "gamma": 0.99}), lambda t: LR0 * 0.99**t)


def test_caffe_inv():
    check(lrs({"name": "inv", "gamma": 1e-3, "power": 0.75}), lambda t: LR0 * (1 + 1e-3 * t) ** -0.75)


def test_caffe_poly_reaches_zero_at_max_iter():
    check(
        lrs({"name": "poly", "interval": "iteration", "power": 2.0, "max_iter": 150}),
        lambda t: LR0 * (1 - min(t, 150) / 150) ** 2,
    )


def test_poly_defaults_to_the_run_length():
    rates = lrs({"name": "poly", "interval": "iteration", "power": 1.0})
    check(rates, lambda t: LR0 * (1 - t / T))


def test_caffe_sigmoid():
    check(
        lrs({"name": "sigmoid", "interval": "iteration", "gamma": -0.05, "step_size": 100}),
        lambda t: LR0 / (1 + math.exp(0.05 * (t - 100))),
    )


def test_linear_decay_to_a_hundredth_at_tau_then_constant():
    check(lrs({"name": "linear", "interval": "iteration", "tau": 80}), lambda t: LR0 * (1 - 0.99 * min(t, 80) / 80))


def test_cosine():
    check(
        lrs({"name": "cosine", "interval": "iteration", "t_max": T, "eta_min": 0.01}),
        lambda t: 0.01 + (LR0 - 0.01) * (1 + math.cos(math.pi * t / T)) / 2,
    )


def test_plateau_halves_when_the_validation_loss_stops_improving():
    losses = [1.0, 0.9, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7] + [0.7] * 10
    rates = lrs({"name": "plateau", "factor": 0.5, "patience": 2}, val_losses=losses)
    # improvements at epochs 0-2 and 6; the rate halves after 3 epochs without one
    assert rates[:6] == [LR0] * 6
    assert rates[6] == LR0 / 2
    assert rates[10] == LR0 / 4


def test_warmup_rises_linearly_from_a_hundredth_then_hands_over_to_the_schedule():
    rates = lrs({"name": "exp", "interval": "iteration", "gamma": 0.99, "warmup_steps": 10})
    warm = [0.01 + 0.99 * min(t, 10) / 10 for t in range(T)]
    check(rates, lambda t: LR0 * warm[t] * 0.99**t)


@pytest.mark.parametrize(
    "schedule, field",
    [
        ({"name": "plateau", "interval": "iteration"}, "schedule.interval"),
        ({"name": "multistep", "milestones": [50, 20]}, "schedule.milestones"),
        ({"name": "step", "gamma": 1.5}, "schedule.gamma"),
        ({"name": "cosine", "gamma": 0.5}, "schedule.gamma"),
    ],
)
def test_invalid_schedules_are_refused_naming_the_field(schedule, field):
    from trainer.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        RunConfig.from_dict({"schedule": schedule})
    assert field in caught.value.errors
