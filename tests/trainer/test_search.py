"""Study specs: validation, expansion, coarse-to-fine narrowing, the edge warning and the
median stopping rule. Pure logic."""

import math

import pytest

from trainer.config import ConfigError
from trainer.search import EarlyStopping, Param, Result, edge_warnings, median_stopping, narrow, parse_spec, plan_stage

BASE = {"epochs": 2, "data": {"name": "digits"}}


def test_a_comparison_is_the_product_of_its_choices_times_the_seeds():
    spec = parse_spec(
        {
            "kind": "comparison",
            "base": BASE,
            "seeds": 3,
            "choices": {
                "optimizer": [{"name": "sgd"}, {"name": "adam"}],
                "schedule.name": ["step", "exp", "inv", "plateau"],
            },
        }
    )
    runs = plan_stage(spec, 0)
    assert len(runs) == 2 * 4 * 3
    assert runs[0].name == "sgd name=step seed=0" and runs[0].values["seed"] == 0
    assert {run.config["optimizer"]["name"] for run in runs} == {"sgd", "adam"}
    assert runs[5].config["schedule"]["name"] == "exp" and runs[5].config["seed"] == 2
    assert {run.config["data"]["seed"] for run in runs} == {0}  # one split for every seed
    # resolved configs: each optimizer with its own default learning rate
    assert {run.config["optimizer"]["lr"] for run in runs if run.config["optimizer"]["name"] == "adam"} == {0.001}


def test_a_random_search_samples_log_uniform_learning_rates_reproducibly():
    raw = {
        "kind": "random",
        "base": BASE,
        "runs": 200,
        "sample_seed": 7,
        "params": {
            "optimizer.lr": {"distribution": "log_uniform", "low": 1e-6, "high": 10},
            "model.dropout": {"distribution": "uniform", "low": 0, "high": 0.5},
            "model.hidden": {"distribution": "choice", "values": [[32], [64, 64]]},
            "batch_size": {"distribution": "log_int", "low": 16, "high": 256},
        },
    }
    runs = plan_stage(parse_spec(raw), 0)
    lrs = [run.config["optimizer"]["lr"] for run in runs]
    assert len(runs) == 200 and all(1e-6 <= lr <= 10 for lr in lrs)
    decades = [math.floor(math.log10(lr)) for lr in lrs]
    assert all(decades.count(d) >= 10 for d in range(-6, 1))  # every decade about equally often
    assert {tuple(run.config["model"]["hidden"]) for run in runs} == {(32,), (64, 64)}
    assert all(16 <= run.config["batch_size"] <= 256 for run in runs)
    assert [run.config for run in plan_stage(parse_spec(raw), 0)] == [run.config for run in runs]  # same sample


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"kind": "lottery"}, "kind"),
        (
            {"kind": "random", "params": {"optimizer.lr": {"distribution": "log_uniform", "low": 0, "high": 1}}},
            "params.optimizer.lr.low",
        ),
        (
            {"kind": "random", "params": {"optimizer.lr": {"distribution": "uniform", "low": 1, "high": 0.5}}},
            "params.optimizer.lr",
        ),
        (
            {"kind": "random", "params": {"optimizer.lr": {"distribution": "normal", "low": 0, "high": 1}}},
            "params.optimizer.lr.distribution",
        ),
        (
            {
                "kind": "random",
                "params": {"optimizer.lr": {"distribution": "uniform", "low": 0.1, "high": float("nan")}},
            },
            "params.optimizer.lr.high",
        ),
        (
            {
                "kind": "random",
                "runs": 0,
                "params": {"optimizer.lr": {"distribution": "uniform", "low": 0.1, "high": 1}},
            },
            "runs",
        ),
        ({"kind": "grid", "choices": {"optimizer.lr": []}}, "choices.optimizer.lr"),
        ({"kind": "grid", "choices": {"optimizer.lr": [0.1]}, "colour": "red"}, "colour"),
        (
            {
                "kind": "coarse_to_fine",
                "params": {"optimizer.lr": {"distribution": "uniform", "low": 0.1, "high": 1}},
                "stages": [{"runs": 5}],
            },
            "stages",
        ),
        (
            {"kind": "comparison", "choices": {"optimizer.lr": [0.1]}, "early_stopping": {"rule": "hunch"}},
            "early_stopping.rule",
        ),
    ],
)
def test_a_bad_spec_is_refused_naming_the_field(raw, field):
    with pytest.raises(ConfigError) as error:
        parse_spec({"base": BASE, **raw})
    assert field in error.value.errors, error.value.errors


def test_a_generated_config_that_is_invalid_refuses_the_whole_spec():
    with pytest.raises(ConfigError) as error:
        parse_spec({"kind": "grid", "base": BASE, "choices": {"optimizer.lr": [0.1, -1.0]}})
    [(field, message)] = error.value.errors.items()
    assert field == "run 2 (lr=-1): optimizer.lr" and "-1" in message


def test_coarse_to_fine_narrows_each_range_around_the_best_of_the_stage():
    spec = parse_spec(
        {
            "kind": "coarse_to_fine",
            "base": BASE,
            "top_k": 3,
            "params": {
                "optimizer.lr": {"distribution": "log_uniform", "low": 1e-6, "high": 10},
                "model.dropout": {"distribution": "uniform", "low": 0.0, "high": 0.8},
                "model.activation": {"distribution": "choice", "values": ["relu", "tanh", "elu"]},
            },
            "stages": [{"runs": 20, "epochs": 1}, {"runs": 8, "epochs": 10}],
        }
    )
    stage1 = plan_stage(spec, 0)
    assert len(stage1) == 20 and all(run.config["epochs"] == 1 for run in stage1)
    # planted: the best runs have lr near 1e-2, dropout near 0.2 and relu or tanh
    results = [
        Result({"optimizer.lr": 1e-2 * f, "model.dropout": d, "model.activation": a}, acc)
        for f, d, a, acc in [
            (1, 0.2, "relu", 0.97),
            (2, 0.25, "tanh", 0.96),
            (0.5, 0.15, "relu", 0.95),
            (1e-3, 0.7, "elu", 0.30),
            (1e3, 0.1, "elu", None),
        ]
    ]
    lr, dropout, activation = narrow(spec.params, results, spec.top_k)
    assert 1e-3 < lr.low < 5e-3 and 2e-2 < lr.high < 1e-1 and lr.distribution == "log_uniform"
    assert 0.1 <= dropout.low < 0.15 and 0.25 < dropout.high <= 0.35
    assert activation.values == ("relu", "tanh")
    stage2 = plan_stage(spec, 1, (lr, dropout, activation))
    assert len(stage2) == 8 and all(run.config["epochs"] == 10 for run in stage2)
    assert all(lr.low <= run.config["optimizer"]["lr"] <= lr.high for run in stage2)


def test_the_edge_warning_fires_when_the_best_value_sits_at_an_end_of_its_range():
    lr = Param("optimizer.lr", "log_uniform", 1e-6, 1e-2)
    dropout = Param("model.dropout", "uniform", 0.0, 0.5)
    at_edge = [Result({"optimizer.lr": 8e-3, "model.dropout": 0.25}, 0.97), Result({"optimizer.lr": 1e-5}, 0.5)]
    [warning] = edge_warnings((lr, dropout), at_edge)
    assert warning.startswith("optimizer.lr: the best run's value 0.008 sits at the high edge") and "upwards" in warning
    inside = [Result({"optimizer.lr": 1e-4, "model.dropout": 0.25}, 0.97)]
    assert edge_warnings((lr, dropout), inside) == []


def test_the_median_stopping_rule_stops_a_run_below_the_median_of_its_peers():
    rule = EarlyStopping(min_epochs=2, min_runs=3)
    peers = [[0.5, 0.8, 0.9], [0.6, 0.85, 0.9], [0.4, 0.7, 0.8]]
    assert median_stopping([0.2], peers, rule) is None  # too early to judge
    reason = median_stopping([0.2, 0.3], peers, rule)
    assert reason.startswith("stopped early after epoch 2") and "0.8000 of 3 other runs" in reason
    assert median_stopping([0.5, 0.81], peers, rule) is None  # at or above the median
    assert median_stopping([0.2, 0.3], peers[:2], rule) is None  # too few peers
