"""The demo study: one MLP on the digits data, trained with different optimizers."""

from __future__ import annotations

from typing import Any

DEMO_PROJECT = "demo"

# Sized so that a run lasts about 40-55 s on one core (72,000 steps at ~0.6 ms):
# long enough to watch its charts fill in, short enough to finish the study.
_BASE: dict[str, Any] = {
    "model": {"kind": "mlp", "hidden": [256, 128], "activation": "relu"},
    "data": {"name": "digits"},
    "batch_size": 8,
    "epochs": 400,
    "seed": 0,
}

DEMO_OPTIMIZERS: list[tuple[str, dict[str, Any]]] = [
    ("digits-mlp sgd", {"name": "sgd", "lr": 0.01}),
    ("digits-mlp adam", {"name": "adam", "lr": 0.0003}),
    ("digits-mlp momentum", {"name": "momentum", "lr": 0.01, "momentum": 0.9}),
]


def demo_configs() -> list[tuple[str, dict[str, Any]]]:
    return [(name, {**_BASE, "optimizer": optimizer}) for name, optimizer in DEMO_OPTIMIZERS]
