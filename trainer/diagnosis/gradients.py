"""Rules on the gradients: vanishing, exploding, carried over between steps (zero_grad
forgotten), and an evaluation in training mode.
"""

from __future__ import annotations

import math

import numpy as np

from trainer.diagnosis.base import (
    Context,
    Finding,
    Series,
    _finite,
    _matrices,
    _per_tensor,
    _since,
    _weight_layers_in_order,
)
from trainer.diagnosis.thresholds import (
    CARRIED_GRADIENT,
    EXPLODING_FACTOR,
    SUSTAINED,
    VANISHING_MEDIAN_SLACK,
    VANISHING_RATIO,
)
from trainer.tensor_names import CARRIED_GRADIENT_KEY, EVAL_IN_TRAIN_MODE_KEY, NORM_SCALE, NORM_SHIFT


def vanishing_gradients(series: Series, ctx: Context) -> Finding | None:
    """The weight matrices' gradient norms, input to output, as one plain stack's layers. A model
    with norm layers re-scales its gradients at every one of them (the notes' cure for vanishing
    gradients), so its per-tensor norms say nothing of this and the rule stays quiet."""
    if any(ctx.kind_of(tensor) in (NORM_SCALE, NORM_SHIFT) for tensor in _per_tensor(series, "grad_norm/")):
        return None
    layers = _weight_layers_in_order(series, "grad_norm/", ctx)
    if len(layers) < 3:
        return None
    norms = [norm for _, norm in layers]
    first, last = norms[0], norms[-1]
    # far smaller at the input than at the output, and not well above the layers in between
    if last <= 0 or first / last >= VANISHING_RATIO or first > VANISHING_MEDIAN_SLACK * float(np.median(norms)):
        return None
    return Finding(
        "vanishing_gradients",
        "warning",
        "vanishing gradients",
        f"gradient norms shrink layer by layer towards the input: {ctx.named(layers[-1][0])} {last:.1e} -> "
        f"{ctx.named(layers[0][0])} {first:.1e} ({first / last:.1e} of the last layer's)",
        "use relu (or leaky_relu) with kaiming initialisation, batch_norm, or fewer layers",
        [f"grad_norm/{name}" for name, _ in layers],
        None,
        {"first_over_last": first / last},
    )


def exploding_gradients(series: Series, ctx: Context) -> Finding | None:
    """Gradient norms that grew EXPLODING_FACTOR x and became as large as the weights themselves
    (growth alone is normal when training starts from tiny weights)."""
    worst = None
    weight_norms = _per_tensor(series, "weight_norm/")
    for tensor, (steps, norms) in _matrices(series, "grad_norm/", ctx).items():
        weights = dict(zip(*weight_norms.get(tensor, (np.empty(0), np.empty(0)))))
        if len(norms) < 3 or norms[0] <= 0:
            continue
        peak_index = int(np.argmax(norms))
        growth = float(norms[peak_index]) / float(norms[0])
        weight = weights.get(steps[peak_index], math.inf)
        if growth >= EXPLODING_FACTOR and norms[peak_index] >= weight and (worst is None or growth > worst[1]):
            worst = (tensor, growth, int(steps[peak_index]), float(norms[0]), float(norms[peak_index]))
    if worst is None:
        return None
    tensor, growth, step, start, peak = worst
    return Finding(
        "exploding_gradients",
        "warning",
        "exploding gradients",
        f"the gradient norm of {ctx.named(tensor)} reached {peak:.2e} at step {step}, {growth:.0f}x its first value "
        f"{start:.2e} and as large as the weights",
        f"lower the learning rate (optimizer.lr={ctx.lr:g}), clip gradients, or normalise (batch_norm)",
        [f"grad_norm/{tensor}", f"weight_norm/{tensor}"],
        step,
        {"growth": growth},
    )


def gradients_accumulate(series: Series, ctx: Context) -> Finding | None:
    """optimizer.zero_grad() forgotten: at most measured steps, the gradient the optimizer steps
    with holds more than what the backward passes since the last step brought."""
    steps, carried = _finite(*series.get(CARRIED_GRADIENT_KEY, (np.empty(0), np.empty(0))))
    # two measurements suffice: a zeroed gradient leaves 1e-6 at most, a carried one a share of 0.3 and more
    if len(carried) < 2 or np.mean(carried > CARRIED_GRADIENT) < SUSTAINED:
        return None
    since = _since(steps, carried > CARRIED_GRADIENT)
    share = float(np.median(carried))
    return Finding(
        "gradients_accumulate",
        "error",
        "gradients accumulate across steps",
        f"at {int(np.sum(carried > CARRIED_GRADIENT))} of {len(carried)} measured steps since step {since}, "
        f"{share:.0%} of the gradient the optimizer stepped with was left from earlier steps "
        "(the backward passes since the last step brought the rest)",
        "call optimizer.zero_grad() before each backward() (or after each step): each gradient is "
        "summed onto all those before it; for gradient accumulation on purpose, zero them every N steps",
        [CARRIED_GRADIENT_KEY, "loss"],
        since,
        {"carried": share},
    )


def evaluated_in_train_mode(series: Series, ctx: Context) -> Finding | None:
    """model.eval() forgotten: forward passes without gradients (an evaluation) through a model in
    training mode that has dropout or batch norm (trainwatch.watch counts them)."""
    steps, passes = _finite(*series.get(EVAL_IN_TRAIN_MODE_KEY, (np.empty(0), np.empty(0))))
    if not len(passes) or passes.sum() <= 0:
        return None
    first = int(steps[np.argmax(passes > 0)])
    return Finding(
        "eval_in_train_mode",
        "warning",
        "evaluated in training mode",
        f"{int(passes.sum())} forward passes without gradients (an evaluation) ran with the model in training "
        f"mode, its dropout dropping units and its batch norm updating its statistics, first at step {first}",
        "call model.eval() before evaluating and model.train() after: the validation figures are of a "
        "model that drops units at random (and batch norm learns the validation data's statistics)",
        [EVAL_IN_TRAIN_MODE_KEY, "val_acc"],
        first,
        {"passes": float(passes.sum())},
    )
