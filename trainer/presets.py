"""Ready-made studies: the questions users ask first."""

from __future__ import annotations

from typing import Any

# The digits MLP, sized so that a run takes a few seconds on one core: the whole
# optimizer comparison (7 x 3 runs) fits in a few minutes on a 2-core machine.
DIGITS_MLP: dict[str, Any] = {
    "model": {"kind": "mlp", "hidden": [128], "activation": "relu"},
    "data": {"name": "digits", "seed": 0},
    "batch_size": 32,
    "epochs": 15,
    "instrument": {"ratio_every": 10, "histogram_every": 200},
}

# Learning rates that work for each optimizer on this problem out of the box
# (docs/training-dynamics.md, section 3's usual defaults).
TUNED_OPTIMIZERS: list[dict[str, Any]] = [
    {"name": "sgd", "lr": 0.1},
    {"name": "momentum", "lr": 0.01, "momentum": 0.9},
    {"name": "nesterov", "lr": 0.01, "momentum": 0.9},
    {"name": "adagrad", "lr": 0.01},
    {"name": "rmsprop", "lr": 0.001},
    {"name": "adam", "lr": 0.001},
    {"name": "adadelta", "lr": 1.0},
]

PRESETS: dict[str, dict[str, Any]] = {
    "compare-optimizers": {
        "title": "Compare optimizers: SGD, Momentum, Nesterov, Adagrad, RMSprop, Adam and AdaDelta on the digits MLP",
        "spec": {
            "kind": "comparison",
            "base": DIGITS_MLP,
            "seeds": 3,
            "ensemble_k": 3,
            "choices": {"optimizer": TUNED_OPTIMIZERS},
        },
        "group_by": ["optimizer.name"],
    },
    "compare-schedules": {
        "title": "Compare learning-rate schedules (step, exponential, 1/t, plateau) with momentum SGD",
        "spec": {
            "kind": "comparison",
            "base": {**DIGITS_MLP, "optimizer": {"name": "momentum", "lr": 0.05}},
            "seeds": 3,
            "choices": {
                "schedule": [
                    {"name": "fixed"},
                    {"name": "step", "step_size": 5, "gamma": 0.5, "interval": "epoch"},
                    {"name": "exp", "gamma": 0.85, "interval": "epoch"},
                    {"name": "inv", "gamma": 0.5, "power": 1.0, "interval": "epoch"},
                    {"name": "plateau", "factor": 0.5, "patience": 1, "interval": "epoch"},
                ]
            },
        },
        "group_by": ["schedule.name"],
    },
    "random-lr": {
        "title": "Random search of the learning rate (log-uniform 1e-6..10) and dropout, 20 runs",
        "spec": {
            "kind": "random",
            "base": {**DIGITS_MLP, "epochs": 3, "optimizer": {"name": "adam"}},
            "runs": 20,
            "params": {
                "optimizer.lr": {"distribution": "log_uniform", "low": 1e-6, "high": 10},
                "model.dropout": {"distribution": "uniform", "low": 0.0, "high": 0.6},
            },
        },
        "group_by": [],
    },
    "coarse-to-fine-lr": {
        "title": "Coarse-to-fine search of the learning rate and weight decay: 16 one-epoch runs, then 6 of ten",
        "spec": {
            "kind": "coarse_to_fine",
            "base": {**DIGITS_MLP, "optimizer": {"name": "momentum", "momentum": 0.9}},
            "top_k": 3,
            "stages": [{"runs": 16, "epochs": 1}, {"runs": 6, "epochs": 10}],
            "params": {
                "optimizer.lr": {"distribution": "log_uniform", "low": 1e-5, "high": 1},
                "optimizer.weight_decay": {"distribution": "log_uniform", "low": 1e-6, "high": 1e-1},
            },
        },
        "group_by": [],
    },
}
