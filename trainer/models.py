"""Models and losses. Layers are named (fc1, act1, ..., out; conv1, ...) so that
per-tensor series read as `update_ratio/fc1.weight`, the words a diagnosis uses."""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

import torch
from torch import nn

from trainer.config import ModelConfig

# Activations whose units can die (never positive over a batch) or saturate.
RELU_FAMILY = ("relu", "leaky_relu", "prelu", "rrelu", "elu", "maxout")
SATURATING = ("tanh", "sigmoid")


class Maxout(nn.Module):
    """max over k linear pieces: the layer before it produces k x the units (or channels)."""

    def __init__(self, pieces: int):
        super().__init__()
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, k*U) -> (B, U, k) -> max; for images (B, k*C, H, W) -> (B, C, k, H, W) -> max
        shape = x.shape
        return x.view(shape[0], shape[1] // self.pieces, self.pieces, *shape[2:]).amax(dim=2)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


def activation_layer(config: ModelConfig) -> nn.Module:
    name = config.activation
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(config.leaky_slope)
    if name == "prelu":
        return nn.PReLU()
    if name == "rrelu":
        return nn.RReLU()  # random slope in training, the mean slope in evaluation
    if name == "elu":
        return nn.ELU()
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "maxout":
        return Maxout(config.maxout_pieces)
    raise ValueError(f"model.activation: unknown activation {name!r}")


class ImageInput(nn.Module):
    """Flattened rows back to (B, C, H, W) for the convolutional layers."""

    def __init__(self, shape: tuple[int, int, int]):
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], *self.shape)


def build_model(
    config: ModelConfig, num_features: int, num_classes: int, image_shape: tuple[int, int, int] | None = None
) -> nn.Sequential:
    pieces = config.maxout_pieces if config.activation == "maxout" else 1
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    width = num_features
    if config.kind == "cnn":
        if image_shape is None:
            raise ValueError("model.kind: a cnn needs image data; this data set has no image shape")
        channels, height, width_px = image_shape
        layers["image"] = ImageInput(image_shape)
        for index, out_channels in enumerate(config.channels, start=1):
            layers[f"conv{index}"] = nn.Conv2d(
                channels, out_channels * pieces, config.kernel_size, padding=config.kernel_size // 2
            )
            if config.batch_norm:
                layers[f"bn_conv{index}"] = nn.BatchNorm2d(out_channels * pieces)
            layers[f"act_conv{index}"] = activation_layer(config)
            if min(height, width_px) >= 4:
                layers[f"pool{index}"] = nn.MaxPool2d(2)
                height, width_px = height // 2, width_px // 2
            channels = out_channels
        layers["flatten"] = nn.Flatten()
        width = channels * height * width_px
    for index, hidden in enumerate(config.hidden, start=1):
        layers[f"fc{index}"] = nn.Linear(width, hidden * pieces)
        if config.batch_norm:
            layers[f"bn{index}"] = nn.BatchNorm1d(hidden * pieces)
        layers[f"act{index}"] = activation_layer(config)
        if config.dropout:
            layers[f"drop{index}"] = nn.Dropout(config.dropout)  # inverted dropout: survivors scaled by 1/(1-p)
        width = hidden
    layers["out"] = nn.Linear(width, num_classes)
    model = nn.Sequential(layers)
    initialise(model, config)
    return model


def initialise(model: nn.Module, config: ModelConfig) -> None:
    """Weights of linear and convolutional layers as configured; their biases zero."""
    if config.init == "default":
        return  # torch's own (Kaiming-uniform with a = sqrt(5))
    kaiming_for: Literal["relu", "linear"] = "relu" if config.activation in RELU_FAMILY else "linear"
    for module in model.modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        weight = module.weight
        if config.init == "xavier_uniform":  # uniform in +-sqrt(6 / (fan_in + fan_out))
            nn.init.xavier_uniform_(weight)
        elif config.init == "xavier_normal":
            nn.init.xavier_normal_(weight)
        elif config.init == "kaiming_normal":  # MSRA: normal with variance 2 / fan_in for ReLU
            nn.init.kaiming_normal_(weight, nonlinearity=kaiming_for)
        elif config.init == "kaiming_uniform":
            nn.init.kaiming_uniform_(weight, nonlinearity=kaiming_for)
        elif config.init == "normal":
            nn.init.normal_(weight, std=config.init_std)
        elif config.init == "zeros":
            nn.init.zeros_(weight)  # every hidden unit identical: the symmetry problem
        elif config.init == "constant":
            nn.init.constant_(weight, config.init_value)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class MulticlassSVMLoss(nn.Module):
    """The notes' multiclass SVM (hinge) loss: sum over j != y of max(0, s_j - s_y + 1),
    averaged over the batch. torch's MultiMarginLoss divides that sum by the number of
    classes C, so it is multiplied back: small weights then give about C - 1."""

    def forward(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.multi_margin_loss(scores, target, margin=1.0) * scores.shape[1]


def build_loss(name: str) -> nn.Module:
    return MulticlassSVMLoss() if name == "svm" else nn.CrossEntropyLoss()
