import math

import pytest

from trainer.config import MAX_WIDTH, ConfigError, RunConfig


def errors_of(raw) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_dict(raw)
    return caught.value.errors


def test_an_empty_config_takes_the_defaults():
    config = RunConfig.from_dict({})
    assert config.optimizer.name == "sgd"
    assert config.batch_size == 64
    assert config.model.hidden == (64,)


@pytest.mark.parametrize(
    "optimizer",
    [
        {"name": "sgd", "lr": 0.05},
        {"name": "nesterov", "lr": 0.01, "momentum": 0.95, "weight_decay": 5e-4},
        {"name": "adam", "lr": 1e-3, "betas": [0.9, 0.99], "eps": 1e-7, "amsgrad": True},
        {"name": "rmsprop", "decay": 0.9, "momentum": 0.5, "centered": True},
        {"name": "adadelta", "rho": 0.95},
    ],
)
def test_the_resolved_config_round_trips(optimizer):
    config = RunConfig.from_dict({"optimizer": optimizer, "model": {"hidden": [32, 16]}})
    assert RunConfig.from_dict(config.to_dict()) == config


def test_adam_takes_its_own_default_learning_rate():
    assert RunConfig.from_dict({"optimizer": {"name": "adam"}}).optimizer.lr == 1e-3


def test_it_names_the_field_of_an_unknown_optimizer():
    errors = errors_of({"optimizer": {"name": "lion"}})
    assert "optimizer.name" in errors
    assert "sgd" in errors["optimizer.name"] and "'lion'" in errors["optimizer.name"]


def test_it_rejects_a_negative_learning_rate():
    errors = errors_of({"optimizer": {"lr": -0.1}})
    assert errors == {"optimizer.lr": "must be > 0 and <= 10, got -0.1"}


def test_it_rejects_batch_size_zero():
    assert "batch_size" in errors_of({"batch_size": 0})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_it_rejects_non_finite_numbers(value):
    assert "finite" in errors_of({"optimizer": {"lr": value}})["optimizer.lr"]


def test_it_rejects_a_boolean_or_string_where_a_number_belongs():
    errors = errors_of({"optimizer": {"lr": True}, "epochs": "10"})
    assert set(errors) == {"optimizer.lr", "epochs"}


def test_it_bounds_the_model_size_rather_than_running_out_of_memory():
    errors = errors_of({"model": {"hidden": [10**9]}})
    assert str(MAX_WIDTH) in errors["model.hidden"]


def test_it_rejects_unknown_keys_at_every_level():
    errors = errors_of({"epoch": 3, "model": {"width": 10}})
    assert "unknown setting" in errors["epoch"]
    assert "model.width" in errors


def test_it_refuses_a_setting_that_the_chosen_optimizer_does_not_have():
    errors = errors_of({"optimizer": {"name": "adam", "momentum": 0.9}})
    assert "not a setting of adam" in errors["optimizer.momentum"]


def test_nesterov_needs_momentum():
    errors = errors_of({"optimizer": {"name": "nesterov", "momentum": 0}})
    assert "momentum > 0" in errors["optimizer.momentum"]


def test_plain_sgd_has_no_momentum_setting():
    assert "not a setting of sgd" in errors_of({"optimizer": {"name": "sgd", "momentum": 0.9}})["optimizer.momentum"]


def test_it_reports_every_bad_field_at_once():
    errors = errors_of({"optimizer": {"name": "sgd", "lr": -1}, "batch_size": 0, "device": "tpu"})
    assert set(errors) == {"optimizer.lr", "batch_size", "device"}


def test_a_section_of_the_wrong_type_is_named():
    assert errors_of({"model": [1, 2]}) == {"model": "must be an object, got a list"}
    assert errors_of([1]) == {"config": "must be an object, got a list"}


def test_the_summary_says_what_distinguishes_a_run():
    config = RunConfig.from_dict({"optimizer": {"name": "momentum", "lr": 0.01}, "schedule": {"name": "step"}})
    assert config.summary() == "momentum lr=0.01 step"


def test_every_setting_declares_its_rule_next_to_its_one_default():
    """No second copy of a default in a parser: each field of each section carries its rule."""
    import dataclasses

    from trainer import config as c
    from trainer.validation import RULE

    for section in (
        c.ModelConfig,
        c.DataConfig,
        c.OptimizerConfig,
        c.ScheduleConfig,
        c.InstrumentConfig,
        c.ChecksConfig,
        c.RetentionConfig,
        c.RunConfig,
    ):
        for spec in dataclasses.fields(section):
            assert (
                RULE in spec.metadata
                or dataclasses.is_dataclass(spec.type)
                or spec.name in ("model", "data", "optimizer", "schedule", "instrument", "checks", "checkpoints")
            ), f"{section.__name__}.{spec.name}"


def test_a_default_differs_between_choices_only_through_its_table():
    assert RunConfig.from_dict({}).model.hidden == (64,)
    assert RunConfig.from_dict({"model": {"kind": "cnn"}}).model.hidden == (128,)  # MODEL_DEFAULTS
    assert RunConfig.from_dict({"optimizer": {"name": "adam"}}).optimizer.lr == 0.001  # OPTIMIZER_DEFAULTS
    assert RunConfig.from_dict({}).optimizer.lr == 0.1


@pytest.mark.parametrize("precision", ["amp", "bf16", "fp16"])
def test_mixed_precision_is_for_cuda_and_says_so_on_a_cpu_run(precision):
    errors = errors_of({"device": "cpu", "precision": precision})
    assert errors == {"precision": f"{precision} (mixed precision) is for CUDA; use fp32 with device 'cpu'"}
    assert RunConfig.from_dict({"device": "auto", "precision": precision}).precision == precision


def test_an_unknown_precision_names_the_choices():
    assert "fp32" in errors_of({"precision": "fp8"})["precision"]
