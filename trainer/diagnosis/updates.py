"""Rules on the update-to-weight ratios: a learning rate too high or too low, Adagrad's
decayed rate, and a layer in the middle of the model that does not learn.
"""

from __future__ import annotations

import numpy as np

from trainer.diagnosis.base import Context, Finding, Series, _loss_progress, _matrices, _recent, _since
from trainer.diagnosis.loss import _loss_rose, _loss_spike
from trainer.diagnosis.thresholds import (
    ADAGRAD_DECAY,
    CONVERGED_LOSS_FRACTION,
    RATIO_HIGH,
    RATIO_HIGH_YOUNG,
    RATIO_LOW,
    RATIO_TARGET,
    SUSTAINED,
    TRANSIENT_STEPS,
    YOUNG_STEPS,
)
from trainer.tensor_names import MATRIX_KINDS


def learning_rate_too_high(series: Series, ctx: Context) -> Finding | None:
    """Update ratios above 1e-2 sustained on a weight matrix; while the run is young (past its
    very first steps), above 3e-2 on every weight matrix; a loss that went back up well above
    the level it had reached; or a loss that jumped to 4x its first value."""
    weights = {
        tensor: (steps[steps >= TRANSIENT_STEPS], ratios[steps >= TRANSIENT_STEPS])
        for tensor, (steps, ratios) in _matrices(series, "update_ratio/", ctx).items()
    }
    weights = {tensor: value for tensor, value in weights.items() if len(value[0]) >= 5}
    young = any(len(steps) and steps[-1] < YOUNG_STEPS for steps, _ in weights.values())
    worst = None
    if young and weights:
        medians = {tensor: float(np.median(_recent(ratios))) for tensor, (_, ratios) in weights.items()}
        if all(median > RATIO_HIGH_YOUNG for median in medians.values()):
            tensor = min(medians, key=lambda name: medians[name])  # even the calmest layer
            steps, ratios = weights[tensor]
            worst = (tensor, medians[tensor], _since(steps, ratios > RATIO_HIGH_YOUNG), RATIO_HIGH_YOUNG)
    elif weights:
        for tensor, (steps, ratios) in weights.items():
            recent_steps, recent = _recent(steps), _recent(ratios)
            if np.mean(recent > RATIO_HIGH) >= SUSTAINED:
                median = float(np.median(recent))
                if worst is None or median > worst[1]:
                    worst = (tensor, median, _since(recent_steps, recent > RATIO_HIGH), RATIO_HIGH)
    rose = _loss_rose(series)
    spike = _loss_spike(series)
    if worst is None and rose is None and spike is None:
        return None
    evidence, names, numbers, since = [], ["loss"], {}, None
    if spike is not None:
        first, peak, spike_step = spike
        evidence.append(f"the loss jumped from {first:.3g} to {peak:.3g} at step {spike_step}")
        numbers["loss_spike"] = peak / first
        since = spike_step
    if worst is not None:
        tensor, median, since, threshold = worst
        evidence.append(
            f"update ratio {median:.1e} on {ctx.named(tensor)} since step {since} (target about {RATIO_TARGET:g}, "
            f"too high above {threshold:g})"
        )
        names.insert(0, f"update_ratio/{tensor}")
        numbers["update_ratio"] = median
    if rose is not None:
        lowest, latest, lowest_step = rose
        evidence.append(f"the loss went back up from {lowest:.3g} (step {lowest_step}) to {latest:.3g}")
        numbers["loss_rise"] = latest / max(lowest, 1e-12)
        since = lowest_step if since is None else since
    else:
        progress = _loss_progress(series)
        if progress:
            evidence.append(f"the loss is {progress[1]:.3g} (from {progress[0]:.3g})")
    factor = max(1.0, numbers.get("update_ratio", 0.0) / RATIO_TARGET, 3.0 if rose else 1.0, 10.0 if spike else 1.0)
    return Finding(
        "lr_too_high",
        "warning",
        "learning rate too high",
        "; ".join(evidence),
        f"lower optimizer.lr (now {ctx.lr:g}) by about {factor:.0f}x, or anneal it (a step or plateau schedule)",
        names,
        since,
        numbers,
    )


def learning_rate_too_low(series: Series, ctx: Context) -> Finding | None:
    """The weight matrices' update ratios below 1e-4 (the median matrix; none up to 1e-3) while
    the loss has made no real progress."""
    if ctx.optimizer == "adagrad":
        return None  # adagrad_decayed says it more precisely
    progress = _loss_progress(series)
    if progress is None or progress[1] < CONVERGED_LOSS_FRACTION * progress[0]:
        return None  # tiny updates after real progress mean convergence, not a low rate
    medians = {
        tensor: float(np.median(_recent(ratios)))
        for tensor, (steps, ratios) in _matrices(series, "update_ratio/", ctx).items()
        if len(ratios) >= 5
    }
    # most weight matrices below 1e-4 and none up to the target: in a deep network with norm
    # layers the first and last layers' ratios sit a few times above the rest (a rate 5000x too
    # low on resnet18: conv1 3e-4 and fc 1.3e-4, the 18 other convolutions 4e-6 to 2e-5)
    if not medians or float(np.median(list(medians.values()))) >= RATIO_LOW or max(medians.values()) >= RATIO_TARGET:
        return None
    median = float(np.median(list(medians.values())))
    tensor, highest = max(medians.items(), key=lambda item: item[1])
    return Finding(
        "lr_too_low",
        "warning",
        "learning rate too low",
        f"update ratios of about {median:.1e} (the median of {len(medians)} weight tensors, at most {highest:.1e} "
        f"on {ctx.named(tensor)}; target about {RATIO_TARGET:g}, too low below {RATIO_LOW:g}) while the loss "
        f"only went from {progress[0]:.3g} to {progress[1]:.3g}",
        f"raise optimizer.lr (now {ctx.lr:g}) by about {RATIO_TARGET / max(median, 1e-12):.0f}x",
        [f"update_ratio/{tensor}", "loss"],
        None,
        {"update_ratio": median},
    )


def adagrad_decayed(series: Series, ctx: Context) -> Finding | None:
    if ctx.optimizer != "adagrad":
        return None
    progress = _loss_progress(series)
    if progress is None or progress[1] < CONVERGED_LOSS_FRACTION * progress[0]:
        return None
    pairs = []
    for tensor, (_, ratios) in _matrices(series, "update_ratio/", ctx).items():
        if len(ratios) >= 10:
            pairs.append(
                (tensor, float(np.median(ratios[: max(3, len(ratios) // 10)])), float(np.median(_recent(ratios))))
            )
    # already decayed well below its start and down to about the target, with the loss far from converged
    if not pairs or not all(late < 2 * RATIO_TARGET and late * ADAGRAD_DECAY < early for _, early, late in pairs):
        return None
    tensor, early, late = pairs[0]
    return Finding(
        "adagrad_decayed",
        "warning",
        "Adagrad's learning rate has decayed to nothing",
        f"update ratio on {ctx.named(tensor)} fell from {early:.1e} to {late:.1e} while the loss is still "
        f"{progress[1]:.3g} (from {progress[0]:.3g}): Adagrad's step shrinks as squared gradients add up",
        "raise the base rate (optimizer.lr), or use rmsprop / adam, whose averages forget old gradients",
        [f"update_ratio/{tensor}", "loss"],
        None,
        {"early_ratio": early, "late_ratio": late},
    )


def frozen_layer(series: Series, ctx: Context) -> Finding | None:
    """Weight matrices that do not learn (requires_grad off, or left out of the optimizer) with
    learning ones before and after them in the model: a hole in the middle is a mistake, where
    a frozen backbone under a trained head (fine-tuning) is a frozen prefix and is not named."""
    order = [tensor for tensor in ctx.tensors if ctx.kind_of(tensor) in MATRIX_KINDS]
    frozen = set(ctx.frozen)
    learning = [index for index, tensor in enumerate(order) if tensor not in frozen]
    if not learning:
        return None
    hole = [tensor for tensor in order[learning[0] : learning[-1]] if tensor in frozen]
    if not hole:
        return None
    more = f" and {len(hole) - 1} more weight tensors" if len(hole) > 1 else ""
    return Finding(
        "frozen_layer",
        "warning",
        "a layer in the middle of the model does not learn",
        f"{ctx.named(hole[0])}{more} between {order[learning[0]]} and {order[learning[-1]]} get no update: "
        "requires_grad is off, or the optimizer does not step them",
        "set requires_grad=True on them, and build the optimizer over model.parameters() after changing the "
        "model (a frozen backbone under a trained head is not named)",
        [],
        0,
        {"frozen_tensors": float(len(hole))},
    )
