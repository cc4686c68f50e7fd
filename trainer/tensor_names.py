"""How the trainer names layers and parameter tensors (fc1, act1, ..., out; conv1, ...), and
their order in the model. Free of torch, so that the web pages can sort by it."""

from __future__ import annotations

# the series of the first layer's filter roughness (trainer.instrument.filter_roughness)
ROUGHNESS_KEY = "first_layer_roughness"


def layer_order(tensor: str) -> tuple[int, int, int, str]:
    """Sort key that puts tensor names in the model's order, input first:
    conv1..convN, then fc1..fcN, then out; weights before biases."""
    head, _, rest = tensor.partition(".")
    digits = "".join(ch for ch in head if ch.isdigit())
    rank = 0 if head.startswith(("conv", "act_conv", "bn_conv")) else 2 if head == "out" else 1
    return rank, int(digits or 0), 0 if rest.startswith("weight") else 1, tensor
