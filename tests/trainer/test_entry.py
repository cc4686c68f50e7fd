"""Entry points: declaring, validating and loading them (pure: no database, no worker)."""

import os
import sys
import tempfile
from pathlib import Path

import pytest

from trainer.config import ConfigError
from trainer.entry import (
    EntryError,
    describe_registered,
    find,
    job,
    load,
    parse_schema,
    read_entry_job,
    read_params,
    spec_of,
)

SENTINEL = Path(
    os.environ.get("TRAINWATCH_TEST_SENTINEL", Path(tempfile.gettempdir()) / "trainwatch-sentinel-imported")
)


@pytest.fixture(scope="module")
def catalog():
    return {info["name"]: info for info in describe_registered()}


def test_the_test_package_and_the_built_in_jobs_are_registered_with_their_declarations(catalog):
    mlp = catalog["testjobs-mlp"]
    assert mlp["value"] == "trainwatch_testjobs.mlp:train" and mlp["epochs"] == 3 and not mlp["check"]
    assert mlp["params"]["lr"] == {"type": "float", "help": "learning rate", "min": 1e-6, "max": 10.0, "default": 0.05}
    assert catalog["testjobs-checked"]["params"] is None and catalog["testjobs-checked"]["check"] is True
    assert "trainwatch_testjobs_missing_dependency" in catalog["testjobs-broken"]["error"]
    for name in ("resnet18", "resnet50", "mobilenet_v3_small"):
        assert catalog[name]["params"]["optimizer"]["choices"][0] == "sgd", name


def test_params_get_defaults_and_each_bad_one_is_named(catalog):
    schema = catalog["testjobs-mlp"]["params"]
    errors: dict[str, str] = {}
    assert read_params(schema, {"lr": 0.5}, errors, "params")["hidden"] == 32 and not errors
    read_params(
        schema, {"lr": 0, "hidden": 2.5, "optimizer": "lbfgs", "colour": "red", "step_seconds": "1"}, errors, "params"
    )
    assert set(errors) == {"params.lr", "params.hidden", "params.optimizer", "params.colour", "params.step_seconds"}
    assert "from 1e-06 to 10" in errors["params.lr"] or ">= 1e-06" in errors["params.lr"]
    assert "sgd, adam" in errors["params.optimizer"] and "unknown" in errors["params.colour"]


def test_a_required_param_and_a_broken_declaration():
    errors: dict[str, str] = {}
    read_params(parse_schema({"width": {"type": "int", "min": 1}}), {}, errors)
    assert errors == {"width": "is required: a whole number >= 1"}
    with pytest.raises(TypeError, match="'epochs'"):
        parse_schema({"epochs": {"type": "int"}})  # the run's own
    with pytest.raises(TypeError, match="breaks its own rule"):
        parse_schema({"lr": {"type": "float", "min": 0, "max": 1, "default": 5}})
    with pytest.raises(TypeError, match="needs a type"):
        parse_schema({"lr": {"type": "complex"}})


def test_an_entry_job_is_read_against_the_catalog(catalog):
    entry = read_entry_job(
        {"job": "entry", "entry": "trainwatch_testjobs.mlp:train", "params": {"lr": 0.1}, "device": "cpu"},
        catalog,
        "the workers of the cpu queue",
    )
    assert entry.entry == "testjobs-mlp" and entry.epochs == 3 and entry.params["lr"] == 0.1
    assert entry.run_config["epochs"] == 3 and entry.run_config["device"] == "cpu"
    with pytest.raises(ConfigError) as refused:
        read_entry_job({"job": "entry", "entry": "os:system", "epochs": 0, "shell": 1}, catalog, "the workers")
    assert set(refused.value.errors) == {"entry", "epochs", "shell"}
    assert "'os:system' is not a registered entry point" in refused.value.errors["entry"]
    assert "testjobs-mlp" in refused.value.errors["entry"]
    with pytest.raises(ConfigError) as broken:
        read_entry_job({"job": "entry", "entry": "testjobs-broken"}, catalog, "the workers")
    assert "could not be imported on the workers; staff see why" in broken.value.errors["entry"]
    assert "ModuleNotFoundError" not in broken.value.errors["entry"]  # a traceback of the worker's host
    with pytest.raises(ConfigError) as builtin:
        read_entry_job({"job": "entry", "entry": "builtin"}, catalog, "the workers")
    assert "run config" in builtin.value.errors["entry"]


def test_params_checked_by_a_function_are_named_under_params(catalog):
    check = spec_of(load("testjobs-checked")).check
    with pytest.raises(ConfigError) as refused:
        read_entry_job(
            {"job": "entry", "entry": "testjobs-checked", "params": {"width": 3, "x": 1}}, catalog, "w", check
        )
    assert refused.value.errors == {
        "params.width": "must be an even whole number > 0, got 3",
        "params.x": "unknown; allowed: width",
    }
    ok = read_entry_job({"job": "entry", "entry": "testjobs-checked", "params": {"width": 4}}, catalog, "w", check)
    assert ok.params == {"width": 4}
    with pytest.raises(ConfigError, match="must be installed where the web server runs"):
        read_entry_job({"job": "entry", "entry": "testjobs-checked"}, catalog, "w", None)


def test_only_registered_entry_points_are_ever_imported():
    SENTINEL.unlink(missing_ok=True)
    sys.modules.pop("trainwatch_testjobs.sentinel", None)
    for name in ("trainwatch_testjobs.sentinel:train", "trainwatch_testjobs.sentinel", "os:system", "../x"):
        with pytest.raises(EntryError, match="is not registered on this worker"):
            load(name)
    assert not SENTINEL.exists() and "trainwatch_testjobs.sentinel" not in sys.modules
    with pytest.raises(
        EntryError, match=r"'testjobs-broken' \(trainwatch_testjobs.broken:train\) could not be imported"
    ):
        load("testjobs-broken")
    assert callable(load("testjobs-mlp"))


def test_a_declared_function_keeps_its_spec_and_find_takes_name_or_value(catalog):
    @job(params={"k": {"type": "choice", "choices": ["a", "b"], "default": "a"}}, epochs=7)
    def train(run):
        """Trains."""

    assert spec_of(train).epochs == 7 and spec_of(train).doc == "Trains."
    assert find(catalog, "testjobs-mlp") is find(catalog, "trainwatch_testjobs.mlp:train")
    with pytest.raises(TypeError, match="epochs"):
        job(epochs=0)
