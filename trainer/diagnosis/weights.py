"""Rules on the weights themselves: a symmetric start, first-layer filters still noise."""

from __future__ import annotations

import numpy as np

from trainer.diagnosis.base import Context, Finding, Series, _finite, _in_model_order, _per_tensor
from trainer.diagnosis.thresholds import FILTERS_FROM_EPOCH, FILTERS_NOISE, FILTERS_SMOOTH
from trainer.tensor_names import EMBEDDING, MATRIX_KINDS, ROUGHNESS_KEY


def symmetric_weights(series: Series, ctx: Context) -> Finding | None:
    """A hidden layer's weights all equal at step 0. Norm scales start at ones and biases at
    zeros by design, and so can the output layer (zero-initialised heads are a recipe: the
    targets tell its units apart), so only the weight matrices and embeddings before it count."""
    stds = {
        tensor: value
        for tensor, value in _per_tensor(series, "weight_std/").items()
        if ctx.kind_of(tensor) in (*MATRIX_KINDS, EMBEDDING)
    }
    ordered = _in_model_order(list(stds), ctx)
    for tensor in ordered[:-1]:
        steps, values = stds[tensor]
        if len(values) and steps[0] == 0 and values[0] == 0:
            return Finding(
                "symmetry",
                "error",
                "weights start all equal",
                f"every weight of {ctx.named(tensor)} has the same value at step 0 (standard deviation 0): "
                "all its units compute the same thing and get the same update, so they stay identical",
                "initialise with random weights (model.init xavier_uniform or kaiming_normal)",
                [f"weight_std/{tensor}"],
                0,
                {"weight_std": 0.0},
            )
    return None


def first_layer_noise(series: Series, ctx: Context) -> Finding | None:
    """The first layer's filters still white noise from the third epoch on (two measurements at
    least; three when the epochs are not known): the layer has not learnt from the input at all."""
    steps, roughness = _finite(*series.get(ROUGHNESS_KEY, (np.empty(0), np.empty(0))))
    needed = 2
    if ctx.steps_per_epoch:
        late = steps >= FILTERS_FROM_EPOCH * ctx.steps_per_epoch
        steps, roughness = steps[late], roughness[late]
    else:
        needed = 3
    if len(roughness) < needed or float(np.min(roughness)) < FILTERS_NOISE:
        return None
    return Finding(
        "first_layer_noise",
        "warning",
        "the first layer's filters are still noise",
        f"the first layer's filters have a roughness of {float(roughness[-1]):.3f} at step {int(steps[-1])} "
        f"(white noise 1.0, noise above {FILTERS_NOISE:g}; smooth filters below {FILTERS_SMOOTH:g}): the layer has "
        "not moved from its random start",
        "if the loss falls, the gradient does not reach the first layer (see the gradient norms per "
        f"layer); if it does not, raise optimizer.lr (now {ctx.lr:g}) or train longer",
        [ROUGHNESS_KEY, "loss"],
        int(steps[0]),
        {"roughness": float(roughness[-1])},
    )
