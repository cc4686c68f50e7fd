"""The first layer's filters, judged by their roughness (trainer.instrument.filter_roughness),
on MNIST- and CIFAR-10-format data sets the tests write (tests/trainer/image_sets.py): learnt
filters read clearly below white noise, weight decay makes them smooth, and only a first layer
that has not moved from its random start is named (first_layer_noise). The table is printed
(and copied into docs/diagnosis.md)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.trainer.image_sets import write_cifar10, write_mnist
from trainer.config import RunConfig
from trainer.diagnosis import Context, diagnose
from trainer.diagnosis.thresholds import FILTERS_NOISE, FILTERS_SMOOTH
from trainer.loop import train
from trainer.sink import MemorySink
from trainer.tensor_names import ROUGHNESS_KEY

MLP = {"model": {"hidden": [100]}, "batch_size": 64}
CASES = {
    # name: (config, what the first layer is)
    "Adam 1e-3, weight decay 1e-3, 15 epochs": (
        {**MLP, "epochs": 15, "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 1e-3}},
        "smooth",
    ),
    "momentum 0.05, weight decay 1e-2, 15 epochs": (
        {**MLP, "epochs": 15, "optimizer": {"name": "momentum", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-2}},
        "smooth",
    ),
    "momentum 0.05, no weight decay, 15 epochs": (
        {**MLP, "epochs": 15, "optimizer": {"name": "momentum", "lr": 0.05, "momentum": 0.9}},
        "learnt",
    ),
    "SGD 0.1, 3 epochs": ({**MLP, "epochs": 3, "optimizer": {"name": "sgd", "lr": 0.1}}, "learnt"),
    "SGD 1e-4, 8 epochs (learning rate far too low)": (
        {**MLP, "epochs": 8, "optimizer": {"name": "sgd", "lr": 1e-4}},
        "noise",
    ),
    "6 sigmoid layers, SGD 0.1, 8 epochs (vanishing gradients)": (
        {
            **MLP,
            "epochs": 8,
            "model": {"hidden": [100] * 6, "activation": "sigmoid"},
            "optimizer": {"name": "sgd", "lr": 0.1},
        },
        "noise",
    ),
}


@pytest.fixture(scope="module")
def data_sets(tmp_path_factory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("images")
    return {
        "MNIST format": {"name": "mnist", "path": str(write_mnist(folder / "mnist"))},
        "CIFAR-10 format": {"name": "cifar10", "path": str(write_cifar10(folder / "cifar"))},
    }


@pytest.fixture(scope="module")
def trained(data_sets, request) -> dict[tuple[str, str], tuple[float, list[str]]]:
    """(data set, case) -> (the last roughness, the rules the diagnosis names at the end)."""
    results = {}
    for data_name, data in data_sets.items():
        for case, (config, _) in CASES.items():
            run_config = RunConfig.from_dict({**config, "data": data})
            sink = MemorySink()
            result = train(run_config, sink)
            assert result.status == "succeeded", result.message
            assert sink.info is not None
            context = Context.from_config(run_config, sink.info.classes, sink.info.steps_per_epoch, "succeeded", "")
            findings = diagnose({key: sink.get(key) for key in sink.series}, context)
            results[data_name, case] = (float(sink.get(ROUGHNESS_KEY)[1][-1]), [f.rule for f in findings])
    lines = ["", "| first layer | " + " | ".join(data_sets) + " |", "| --- |" + " --- |" * len(data_sets)]
    for case in CASES:
        cells = []
        for data_name in data_sets:
            roughness, rules = results[data_name, case]
            cells.append(f"{roughness:.3f}" + (" named" if "first_layer_noise" in rules else ""))
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        print("\n".join(lines))
    return results


@pytest.mark.parametrize("data_name", ["MNIST format", "CIFAR-10 format"])
def test_roughness_orders_smooth_learnt_and_unlearnt_filters(trained, data_name):
    by_kind: dict[str, list[float]] = {"smooth": [], "learnt": [], "noise": []}
    for case, (_, kind) in CASES.items():
        by_kind[kind].append(trained[data_name, case][0])
    assert max(by_kind["smooth"]) < FILTERS_SMOOTH
    assert min(by_kind["learnt"]) > FILTERS_SMOOTH and max(by_kind["learnt"]) < FILTERS_NOISE
    assert min(by_kind["noise"]) >= FILTERS_NOISE


@pytest.mark.parametrize("data_name", ["MNIST format", "CIFAR-10 format"])
def test_only_a_first_layer_that_never_moved_is_named(trained, data_name):
    for case, (_, kind) in CASES.items():
        named = "first_layer_noise" in trained[data_name, case][1]
        assert named == (kind == "noise"), case


def test_the_rule_says_what_it_read_and_what_to_do():
    steps = np.array([45, 91, 137])
    series = {ROUGHNESS_KEY: (steps, np.array([0.999, 0.998, 0.999])), "loss": (np.arange(140), np.full(140, 2.3))}
    config = RunConfig.from_dict({"optimizer": {"name": "sgd", "lr": 1e-4}})
    [finding] = [
        f
        for f in diagnose(series, Context.from_config(config, 10, 23, "succeeded", ""))
        if f.rule == "first_layer_noise"
    ]
    assert "roughness of 0.999 at step 137" in finding.evidence and "raise optimizer.lr (now 0.0001)" in finding.advice
    # before the third epoch the first layer may still be close to its start: nothing said
    early = {ROUGHNESS_KEY: (steps[:2], np.array([0.999, 0.998]))}
    assert not [
        f for f in diagnose(early, Context.from_config(config, 10, 23, "running", "")) if f.rule == "first_layer_noise"
    ]
