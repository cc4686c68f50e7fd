"""What each rule reads, and how a script gives it: the run page lists the rules that
cannot read a run (yet), grouped by what they miss, with what to log for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.diagnosis.base import Context
from trainer.payloads import WaitingRules
from trainer.tensor_names import CARRIED_GRADIENT_KEY


@dataclass(frozen=True)
class Requirement:
    """Something a rule reads: in words, whether a run offers it (its series keys, a prefix
    ending in '/' standing for every tensor's, and its context), and how a script gives it."""

    needs: str
    how: str
    offered: Any  # (keys: set of series keys and prefixes, ctx) -> bool


def _has(*keys: str) -> Any:
    return lambda offered, ctx: all(key in offered for key in keys)


# the activation rules read dead or saturated fractions, or the spread of activations: which
# of them a model has depends on its activations (a GELU model has no dead ReLUs to count), so
# they wait only on a run that measured no activation at all
_ACTIVATIONS = ("dead_fraction/", "saturated_fraction/", "activation_std/")
WATCH = "run.watch(model, optimizer)"
REQUIREMENTS = {
    "loss": Requirement("the training loss", "log it every step: run.log({'loss': loss})", _has("loss")),
    "accuracies": Requirement(
        "train_acc and val_acc",
        "log both at each validation: run.log({'train_acc': ..., 'val_acc': ...})",
        _has("train_acc", "val_acc"),
    ),
    "val_acc": Requirement("val_acc", "log it at each validation: run.log({'val_acc': ...})", _has("val_acc")),
    "val_loss": Requirement("val_loss", "log it at each validation: run.log({'val_loss': ...})", _has("val_loss")),
    "ratios": Requirement("update-to-weight ratios", f"watch the model: {WATCH}", _has("update_ratio/")),
    "gradients": Requirement("gradient norms per layer", f"watch the model: {WATCH}", _has("grad_norm/")),
    "weights": Requirement(
        "weight histograms", f"{WATCH} with histogram_every above 0 (the default: 250)", _has("weight_std/")
    ),
    "activations": Requirement(
        "activation histograms",
        f"{WATCH} with histogram_every above 0, the activations being modules (nn.ReLU, nn.Tanh; "
        "F.relu inside a forward has no module to measure)",
        lambda offered, ctx: any(prefix in offered for prefix in _ACTIVATIONS),
    ),
    "carried": Requirement(
        "the gradient carried over between steps", f"watch the model: {WATCH}", _has(CARRIED_GRADIENT_KEY)
    ),
    "classes": Requirement(
        "the loss function and the number of classes",
        "run.watch(model, optimizer, loss='cross_entropy', classes=10)",
        lambda offered, ctx: ctx.classes is not None,
    ),
}
# rule -> what it reads (adagrad_decayed only on Adagrad, gradients_accumulate and
# eval_in_train_mode, measured by run.watch, only in a script's own loop; first_layer_noise only where the
# first layer's filters are large enough to judge, which is no promise a script can keep)
RULE_NEEDS: dict[str, tuple[str, ...]] = {
    "divergence": ("loss",),
    "lr_too_high": ("loss", "ratios"),
    "lr_too_low": ("ratios",),
    "adagrad_decayed": ("ratios", "accuracies"),
    "overfitting": ("accuracies",),
    "underfitting": ("accuracies",),
    "dead_relus": ("activations",),
    "saturated_units": ("activations",),
    "collapsed_activations": ("activations",),
    "symmetry": ("weights",),
    "frozen_layer": ("ratios",),
    "vanishing_gradients": ("gradients",),
    "exploding_gradients": ("gradients",),
    "gradients_accumulate": ("carried",),
    "eval_in_train_mode": ("ratios",),
    "initial_loss": ("loss", "classes"),
    "validation_stalled": ("val_acc",),
    "initial_plateau": ("loss",),
    "loss_plateau": ("loss",),
    "loss_linear": ("loss",),
    "noisy_loss": ("loss",),
    "val_loss_stuck": ("val_loss", "loss"),
}


def waiting_rules(keys: Any, ctx: Context) -> list[WaitingRules]:
    """The rules that cannot read this run (yet), grouped by what they miss: from the series
    keys it has (a per-tensor key counts for its prefix) and its context."""
    offered = set(keys) | {key.split("/", 1)[0] + "/" for key in keys if "/" in key}
    waiting: dict[str, list[str]] = {}
    for rule, needs in RULE_NEEDS.items():
        if (rule == "adagrad_decayed" and ctx.optimizer != "adagrad") or (
            rule in ("gradients_accumulate", "eval_in_train_mode") and not ctx.own_loop  # the trainer does it right
        ):
            continue
        for need in needs:
            if not REQUIREMENTS[need].offered(offered, ctx):
                waiting.setdefault(need, []).append(rule)
    return [
        WaitingRules(needs=REQUIREMENTS[need].needs, how=REQUIREMENTS[need].how, rules=rules)
        for need, rules in waiting.items()
    ]
