"""Run configs that really produce each pathology of the notes on the bundled digits
data, and healthy ones: one source for the diagnosis tests and the demo
(`make demo DEMO_ARGS=--pathologies` queues them all). docs/diagnosis.md lists them."""

from __future__ import annotations

from typing import Any

# histograms every 50 steps, so that the short runs have several of them
INSTRUMENT = {"histogram_every": 50}

HEALTHY: dict[str, dict[str, Any]] = {
    "sgd": {"epochs": 15},
    "adam": {"epochs": 15, "optimizer": {"name": "adam"}},
    "momentum": {"epochs": 15, "optimizer": {"name": "momentum", "lr": 0.01}},
    "tanh with xavier": {"epochs": 15, "model": {"activation": "tanh", "init": "xavier_uniform"}},
    "rmsprop": {"epochs": 15, "optimizer": {"name": "rmsprop"}},
    "step schedule with dropout": {
        "epochs": 15,
        "optimizer": {"name": "momentum", "lr": 0.01},
        "schedule": {"name": "step", "step_size": 5, "gamma": 0.5},
        "model": {"dropout": 0.2},
    },
    "svm loss": {"epochs": 15, "loss": "svm"},
    # once flagged overfitting at 10 % and a too-high rate at 25 %, both gone by the end
    "spiral, adam": {
        "epochs": 100,
        "optimizer": {"name": "adam", "lr": 0.01},
        "model": {"hidden": [100]},
        "data": {"name": "spiral"},
    },
}

# name -> (config, the rule that must name it)
PATHOLOGIES: dict[str, tuple[dict[str, Any], str]] = {
    "too high a learning rate": ({"epochs": 15, "optimizer": {"name": "adam", "lr": 0.3}}, "lr_too_high"),
    "too low a learning rate": ({"epochs": 15, "optimizer": {"name": "sgd", "lr": 1e-4}}, "lr_too_low"),
    "zero initialisation with tanh": ({"epochs": 15, "model": {"activation": "tanh", "init": "zeros"}}, "symmetry"),
    "tiny initialisation, deep tanh": (
        {
            "epochs": 15,
            "model": {"activation": "tanh", "init": "normal", "init_std": 0.01, "hidden": [64, 64, 64, 64, 64]},
        },
        "vanishing_gradients",
    ),
    "tiny initialisation, collapsed activations": (
        {
            "epochs": 15,
            "model": {"activation": "tanh", "init": "normal", "init_std": 0.01, "hidden": [64, 64, 64, 64, 64]},
        },
        "collapsed_activations",
    ),
    "huge initialisation with tanh": (
        {"epochs": 15, "model": {"activation": "tanh", "init": "normal", "init_std": 3.0}},
        "saturated_units",
    ),
    "huge initialisation, initial loss": (
        {"epochs": 15, "model": {"activation": "tanh", "init": "normal", "init_std": 3.0}},
        "initial_loss",
    ),
    "relu with a huge learning rate": (
        # 0.05 kills 40 % of a layer with some seeds only (bench/diagnosis.py); 0.1 kills 70 % with each
        {"epochs": 15, "optimizer": {"name": "adam", "lr": 0.1}, "model": {"hidden": [32, 32, 32]}},
        "dead_relus",
    ),
    "big model on a tiny training set": (
        {
            "epochs": 100,
            "model": {"hidden": [512, 512]},
            "batch_size": 8,
            "data": {"name": "digits", "train_limit": 40},
        },
        "overfitting",
    ),
    "tiny model": ({"epochs": 15, "model": {"hidden": [2]}}, "underfitting"),
    "adagrad with a small base rate": ({"epochs": 15, "optimizer": {"name": "adagrad", "lr": 1e-3}}, "adagrad_decayed"),
    "far too high a learning rate": (
        {"epochs": 5, "optimizer": {"name": "sgd", "lr": 10.0}, "model": {"hidden": [256, 256]}},
        "divergence",
    ),
    # the loss curve, as the notes read it
    "too low a learning rate: a straight decline": (
        {"epochs": 15, "optimizer": {"name": "sgd", "lr": 0.005}},
        "loss_linear",
    ),
    "too high a learning rate: a fast drop, then a plateau": (
        {"epochs": 15, "optimizer": {"name": "momentum", "lr": 0.3}},
        "loss_plateau",
    ),
    "tiny initialisation: a plateau at ln(C)": (
        {
            "epochs": 15,
            "model": {"activation": "tanh", "init": "normal", "init_std": 0.01, "hidden": [64, 64, 64, 64, 64]},
        },
        "initial_plateau",
    ),
    "too small a batch: a noisy loss": ({"epochs": 3, "batch_size": 4}, "noisy_loss"),
    "shuffled labels: the validation loss stuck": (
        {"epochs": 15, "model": {"hidden": [256]}, "data": {"name": "digits", "shuffle_labels": True}},
        "val_loss_stuck",
    ),
}


def with_instrumentation(config: dict[str, Any]) -> dict[str, Any]:
    return {**config, "instrument": {**INSTRUMENT, **config.get("instrument", {})}}
