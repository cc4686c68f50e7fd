"""How the trainer names layers and parameter tensors (fc1, act1, ..., out; conv1, ...), and
their order in the model. Free of torch, so that the web pages can sort by it."""

from __future__ import annotations

# the series of the first layer's filter roughness (trainer.instrument.filter_roughness)
ROUGHNESS_KEY = "first_layer_roughness"
# of one small weight matrix, at the measured steps of a watched model: how much of its gradient
# at optimizer.step() is not the sum of the gradients its backward passes since the last step
# brought (0: zeroed in between; near 1: carried over, optimizer.zero_grad() forgotten)
CARRIED_GRADIENT_KEY = "carried_gradient"
# forward passes without gradients (an evaluation) of a watched model left in training mode
# while it has dropout or batch norm, counted since the last optimizer step
EVAL_IN_TRAIN_MODE_KEY = "eval_in_train_mode"


def layer_order(tensor: str) -> tuple[int, int, int, str]:
    """Sort key that puts tensor names in the model's order, input first:
    conv1..convN, then fc1..fcN, then out; weights before biases."""
    head, _, rest = tensor.partition(".")
    digits = "".join(ch for ch in head if ch.isdigit())
    rank = 0 if head.startswith(("conv", "act_conv", "bn_conv")) else 2 if head == "out" else 1
    return rank, int(digits or 0), 0 if rest.startswith("weight") else 1, tensor


# What a parameter tensor is, from the module that holds it (trainer.instrument.parameter_kinds).
# The diagnosis judges each kind by what is normal for it: a norm layer's scale starts at ones
# and biases at zeros by design, an embedding's rows move only for the tokens of a batch, and the
# update-to-weight ratio band of docs/training-dynamics.md (about 1e-3) is a weight matrix's.
WEIGHT = "weight"  # a linear or conv layer's weights (attention projections too)
BIAS = "bias"
NORM_SCALE = "norm_scale"  # BatchNorm, LayerNorm, GroupNorm, RMSNorm gain
NORM_SHIFT = "norm_shift"
EMBEDDING = "embedding"
POSITIONAL = "positional"  # learnt position embeddings
RECURRENT = "recurrent"  # an RNN, LSTM or GRU's input-to-hidden and hidden-to-hidden weights
OTHER = "other"  # anything else a module keeps (a class token, a PReLU slope)
PARAMETER_KINDS = (WEIGHT, BIAS, NORM_SCALE, NORM_SHIFT, EMBEDDING, POSITIONAL, RECURRENT, OTHER)
# the kinds whose update ratios, gradient norms and spread the layer-by-layer rules compare
MATRIX_KINDS = (WEIGHT, RECURRENT)
KIND_WORDS = {
    WEIGHT: "weights",
    BIAS: "bias",
    NORM_SCALE: "norm scale",
    NORM_SHIFT: "norm shift",
    EMBEDDING: "embedding",
    POSITIONAL: "positional embedding",
    RECURRENT: "recurrent weights",
    OTHER: "parameter",
}


def kind_from_name(tensor: str) -> str:
    """The kind of a tensor of the catalogue's models, whose names say it (bn1.weight is a norm
    scale): for runs that did not record their kinds."""
    head, _, rest = tensor.rpartition(".")
    if head.split(".")[-1].startswith("bn"):
        return NORM_SCALE if rest == "weight" else NORM_SHIFT
    return BIAS if rest == "bias" else WEIGHT
