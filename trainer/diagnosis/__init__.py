"""Automatic diagnosis: what is wrong with a run, with the evidence, in plain words.

One small rule per finding (docs/training-dynamics.md, sections 1 and 2), in modules by what
they read: `loss`, `updates` (the update-to-weight ratios), `generalisation` (accuracies and
validation), `activations`, `weights`, `gradients`. A rule reads the run's series (key ->
(steps, values)) and its context and returns a Finding or None; `diagnose` runs every rule,
and healthy runs get no warnings. Every threshold lives in `thresholds`, and the docs' rule
table is generated from them (`table`).

Series the rules read: loss, train_acc, val_acc, val_loss, update_ratio/<tensor>,
grad_norm/<tensor>, dead_fraction/<layer>, saturated_fraction/<layer>, and, derived from the
stored histograms by the caller (`histogram_series`), activation_std/<layer>,
weight_std/<tensor> and nonfinite/<histogram>.
"""

from trainer.diagnosis.activations import collapsed_activations, dead_relus, saturated_units
from trainer.diagnosis.base import NONFINITE, SEVERITY_ORDER, Context, Finding, Series, histogram_series
from trainer.diagnosis.checks import check_findings
from trainer.diagnosis.generalisation import overfitting, underfitting, validation_loss_stuck, validation_stalled
from trainer.diagnosis.gradients import (
    evaluated_in_train_mode,
    exploding_gradients,
    gradients_accumulate,
    vanishing_gradients,
)
from trainer.diagnosis.loss import (
    divergence,
    expected_initial_loss,
    initial_loss_off,
    initial_plateau,
    loss_linear,
    loss_plateau,
    noisy_loss,
)
from trainer.diagnosis.requirements import REQUIREMENTS, RULE_NEEDS, waiting_rules
from trainer.diagnosis.rules import RULES, diagnose, health
from trainer.diagnosis.updates import adagrad_decayed, frozen_layer, learning_rate_too_high, learning_rate_too_low
from trainer.diagnosis.weights import first_layer_noise, symmetric_weights

__all__ = [
    "NONFINITE",
    "REQUIREMENTS",
    "RULES",
    "RULE_NEEDS",
    "SEVERITY_ORDER",
    "Context",
    "Finding",
    "Series",
    "adagrad_decayed",
    "check_findings",
    "collapsed_activations",
    "dead_relus",
    "diagnose",
    "divergence",
    "evaluated_in_train_mode",
    "expected_initial_loss",
    "exploding_gradients",
    "first_layer_noise",
    "frozen_layer",
    "gradients_accumulate",
    "health",
    "histogram_series",
    "initial_loss_off",
    "initial_plateau",
    "learning_rate_too_high",
    "learning_rate_too_low",
    "loss_linear",
    "loss_plateau",
    "noisy_loss",
    "overfitting",
    "saturated_units",
    "symmetric_weights",
    "underfitting",
    "validation_loss_stuck",
    "validation_stalled",
    "vanishing_gradients",
    "waiting_rules",
]
