"""All the rules, in the order they run, and `diagnose`, which runs them."""

from __future__ import annotations

from typing import Any

from trainer.diagnosis.activations import collapsed_activations, dead_relus, saturated_units
from trainer.diagnosis.base import SEVERITY_ORDER, Context, Finding, Series
from trainer.diagnosis.generalisation import overfitting, underfitting, validation_loss_stuck, validation_stalled
from trainer.diagnosis.gradients import (
    evaluated_in_train_mode,
    exploding_gradients,
    gradients_accumulate,
    vanishing_gradients,
)
from trainer.diagnosis.loss import divergence, initial_loss_off, initial_plateau, loss_linear, loss_plateau, noisy_loss
from trainer.diagnosis.updates import adagrad_decayed, frozen_layer, learning_rate_too_high, learning_rate_too_low
from trainer.diagnosis.weights import first_layer_noise, symmetric_weights

RULES = (
    divergence,
    learning_rate_too_high,
    learning_rate_too_low,
    adagrad_decayed,
    overfitting,
    underfitting,
    dead_relus,
    saturated_units,
    collapsed_activations,
    symmetric_weights,
    frozen_layer,
    vanishing_gradients,
    exploding_gradients,
    gradients_accumulate,
    evaluated_in_train_mode,
    initial_loss_off,
    validation_stalled,
    initial_plateau,
    loss_plateau,
    loss_linear,
    noisy_loss,
    validation_loss_stuck,
    first_layer_noise,
)


def diagnose(series: Series, ctx: Context) -> list[Finding]:
    """Every rule's finding, the most severe first. After a divergence the other rules
    read only what came before it (NaN weights would look like dead units)."""
    diverged = divergence(series, ctx)
    if diverged is not None and diverged.step is not None:
        series = {
            key: (steps[steps < diverged.step], values[steps < diverged.step])
            for key, (steps, values) in series.items()
        }
    findings = [diverged] if diverged else []
    # a finding names the cause, not a bystander: a divergence names the rate already (the
    # loss's climb to inf is not a second finding), and gradients summed over every step make
    # the updates and gradients huge whatever the rate
    bystanders: set[Any] = {learning_rate_too_high} if diverged else set()
    if gradients_accumulate(series, ctx) is not None:
        bystanders |= {learning_rate_too_high, exploding_gradients}
    rules = [rule for rule in RULES[1:] if rule not in bystanders]
    findings += [finding for rule in rules if (finding := rule(series, ctx)) is not None]
    return sorted(findings, key=lambda f: -SEVERITY_ORDER[f.severity])


def health(findings: list[Finding]) -> str:
    """ok, or the worst finding's severity."""
    return max((f.severity for f in findings), key=lambda severity: SEVERITY_ORDER[severity], default="ok")
