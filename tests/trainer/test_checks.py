import math

import pytest
import torch
from torch import nn

from trainer.checks import WRONG, gradient_check, relative_error, verdict
from trainer.config import RunConfig
from trainer.data import load_dataset
from trainer.models import build_loss
from trainer.preflight import run_checks, sanity_checks


def test_relative_error_handles_both_zero():
    assert relative_error(0.0, 0.0) == 0.0
    assert relative_error(1.0, -1.0) == 2.0
    assert relative_error(1e-8, 1.01e-8) == pytest.approx(0.0099, rel=1e-3)


@pytest.mark.parametrize(
    "error, kinked, expected",
    [
        (2e-2, False, "wrong"),
        (1e-3, False, "suspicious"),
        (1e-5, True, "ok"),
        (1e-5, False, "suspicious (too high for a smooth objective)"),
        (1e-9, False, "good"),
    ],
)
def test_the_verdict_follows_the_notes_thresholds(error, kinked, expected):
    assert verdict(error, kinked, deep=False) == expected


def mlp(activation: nn.Module, *middle: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), activation, *middle, nn.Linear(8, 3))


def data(n: int = 4):
    torch.manual_seed(1)
    return torch.randn(n, 6), torch.randint(0, 3, (n,))


def test_a_correct_tanh_softmax_mlp_passes_below_1e_7_in_double_precision():
    x, y = data()
    [result] = gradient_check(mlp(nn.Tanh()), nn.CrossEntropyLoss(), x, y, dims_per_tensor=20)
    assert result.verdict == "good" and not result.kinked_objective
    assert result.max_relative_error < 1e-7
    assert [t.tensor for t in result.tensors] == ["0.weight", "0.bias", "2.weight", "2.bias"]  # every tensor


class ScaledTanh(torch.autograd.Function):
    """tanh whose backward is wrong by a factor (or a sign)."""

    factor = 2.0

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (1 - y * y) * ScaledTanh.factor


class BuggyTanh(nn.Module):
    def forward(self, x):
        return ScaledTanh.apply(x)


@pytest.mark.parametrize("factor", [2.0, -1.0])
def test_a_planted_backward_bug_is_flagged_above_1e_2(factor):
    ScaledTanh.factor = factor
    x, y = data()
    [result] = gradient_check(mlp(BuggyTanh()), nn.CrossEntropyLoss(), x, y)
    first_layer = {t.tensor: t for t in result.tensors}["0.weight"]
    assert first_layer.max_relative_error > WRONG and first_layer.verdict == "wrong"
    assert {t.tensor: t for t in result.tensors}["2.weight"].verdict == "good"  # after the bug: unaffected
    assert result.verdict == "wrong"


def test_kink_crossings_are_counted_not_failed():
    x, y = data(8)
    model = mlp(nn.ReLU())
    with torch.no_grad():
        model[0].bias.fill_(0.0)
        model[0].weight.mul_(1e-3)  # pre-activations near 0: a large h crosses the kink
    [result] = gradient_check(model, nn.CrossEntropyLoss(), x, y, h=1e-2, dims_per_tensor=30)
    crossings = sum(t.kink_crossings for t in result.tensors)
    assert result.kinked_objective and crossings > 0
    assert result.verdict in ("good", "ok")


def test_dropout_is_made_deterministic_by_reseeding():
    x, y = data()
    [result] = gradient_check(mlp(nn.Tanh(), nn.Dropout(0.5)), nn.CrossEntropyLoss(), x, y)
    assert result.max_relative_error < 1e-7


def test_the_regularisation_term_is_checked_on_its_own():
    x, y = data()
    parts = gradient_check(mlp(nn.Tanh()), nn.CrossEntropyLoss(), x, y, l2=0.01)
    assert [p.part for p in parts] == ["data loss", "regularisation"]
    assert parts[1].verdict == "good"


def test_the_svm_hinge_is_a_kinked_objective():
    x, y = data()
    [result] = gradient_check(mlp(nn.Tanh()), build_loss("svm"), x, y)
    assert result.kinked_objective and result.verdict in ("good", "ok")


def test_sanity_checks_pass_for_a_sound_config_with_their_numbers():
    config = RunConfig.from_dict({"model": {"hidden": [32]}})
    checks = sanity_checks(config, load_dataset(config.data, 0))
    assert [c.name for c in checks] == ["initial loss", "regularisation raises the loss", "overfit a tiny subset"]
    assert all(c.passed for c in checks), [c.message for c in checks]
    assert checks[0].numbers["expected"] == pytest.approx(math.log(10))
    assert checks[2].numbers["final_loss"] < 0.05


def test_the_initial_loss_check_catches_huge_initial_weights():
    config = RunConfig.from_dict({"model": {"hidden": [32], "init": "normal", "init_std": 10.0}})
    initial = sanity_checks(config, load_dataset(config.data, 0))[0]
    assert not initial.passed and "initialisation" in initial.message


def test_overfitting_fails_with_a_far_too_low_learning_rate():
    config = RunConfig.from_dict({"optimizer": {"name": "sgd", "lr": 1e-6}})
    overfit = sanity_checks(config, load_dataset(config.data, 0))[2]
    assert not overfit.passed and "learning rate" in overfit.message


def test_run_checks_gives_json_ready_results_for_a_config():
    import json

    result = run_checks(RunConfig.from_dict({"model": {"activation": "tanh"}, "checks": {"warmup_steps": 10}}))
    assert result["passed"] is True
    json.dumps(result)  # stored as JSON on the run
    assert result["gradient"][0]["tensors"][0]["dims_checked"] == 10
