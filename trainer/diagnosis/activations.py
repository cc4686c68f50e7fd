"""Rules on the activations: dead ReLU units, saturated tanh / sigmoid units, activations
that collapsed towards zero.
"""

from __future__ import annotations

import numpy as np

from trainer.diagnosis.base import Context, Finding, Series, _per_tensor, _recent, _since
from trainer.diagnosis.thresholds import (
    COLLAPSED_ACTIVATION_STD,
    DEAD_ERROR,
    DEAD_RISE,
    DEAD_RISING,
    DEAD_WARNING,
    SATURATED_WARNING,
    YOUNG_STEPS,
)


def dead_relus(series: Series, ctx: Context) -> Finding | None:
    """Many units that never fire: 40 % of a layer; while the run is young, already 30 % and
    rising, since a unit that dies from a large update stays dead."""
    worst = None
    for layer, (steps, dead) in _per_tensor(series, "dead_fraction/").items():
        recent = float(np.median(_recent(dead)))
        young = len(steps) and steps[-1] < YOUNG_STEPS
        dying = young and recent >= DEAD_RISING and recent - float(dead[0]) >= DEAD_RISE
        if (recent >= DEAD_WARNING or dying) and (worst is None or recent > worst[1]):
            worst = (layer, recent, _since(steps, dead >= min(DEAD_WARNING, DEAD_RISING if dying else 1.0)))
    if worst is None:
        return None
    layer, fraction, since = worst
    return Finding(
        "dead_relus",
        "error" if fraction >= DEAD_ERROR else "warning",
        "dead ReLU units",
        f"{fraction:.0%} of the units of {layer} never fire over a batch, since step {since}",
        f"lower the learning rate (optimizer.lr={ctx.lr:g}; a large update can kill a unit for good), "
        "or use leaky_relu / elu, or kaiming initialisation",
        [f"dead_fraction/{layer}"],
        since,
        {"dead_fraction": fraction},
    )


def saturated_units(series: Series, ctx: Context) -> Finding | None:
    worst = None
    for layer, (steps, saturated) in _per_tensor(series, "saturated_fraction/").items():
        recent = float(np.median(_recent(saturated)))
        if recent >= SATURATED_WARNING and (worst is None or recent > worst[1]):
            worst = (layer, recent, _since(steps, saturated >= SATURATED_WARNING))
    if worst is None:
        return None
    layer, fraction, since = worst
    return Finding(
        "saturated_units",
        "warning",
        f"saturated {ctx.activation or 'tanh / sigmoid'} units",
        f"{fraction:.0%} of the outputs of {layer} are at the activation's bounds since step {since}: "
        "their gradient is about zero",
        "use a smaller initialisation (xavier_uniform for tanh), batch_norm, or relu",
        [f"saturated_fraction/{layer}"],
        since,
        {"saturated_fraction": fraction},
    )


def collapsed_activations(series: Series, ctx: Context) -> Finding | None:
    collapsed = {
        layer: float(np.median(_recent(stds)))
        for layer, (steps, stds) in _per_tensor(series, "activation_std/").items()
        if len(stds)
    }
    low = {layer: std for layer, std in collapsed.items() if std < COLLAPSED_ACTIVATION_STD}
    if not low:
        return None
    layer, std = min(low.items(), key=lambda item: item[1])
    return Finding(
        "collapsed_activations",
        "warning",
        "activations collapsed towards zero",
        f"the outputs of {layer} have a standard deviation of {std:.1e} (below {COLLAPSED_ACTIVATION_STD:g})",
        "the initialisation is too small: use xavier (tanh, sigmoid) or kaiming (relu)",
        [f"activation_std/{layer}"],
        None,
        {"activation_std": std},
    )
