"""The zoo's runs: each model with the usual recipes (healthy), and the mistakes that really
happen on such models, each with the rule that must name it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from tests.zoo import models
from tests.zoo.training import Recipe


@dataclass(frozen=True)
class Case:
    model: Callable[[], nn.Module]
    task: Callable[[], models.Task]
    recipe: Recipe
    epochs: int
    rule: str | None = None  # the rule that must name a planted mistake
    plant: Callable[[nn.Module], None] | None = None


# On these 512 noisy images in steps of 32, SGD at 0.05 overshoots now and then: the loss
# climbs back to 3x its low on one float path in eight (seeds 0-3, one or two threads), and
# lr_too_high rightly says so. At 0.02 none of them does; the healthy case must be healthy on
# any machine.
SGD_COSINE = Recipe("sgd", 0.02, "cosine", weight_decay=5e-4)
ADAMW_WARMUP = Recipe("adamw", 2e-3, "warmup_cosine", weight_decay=0.01)

HEALTHY = {
    "resnet18 sgd+cosine": Case(models.resnet18, models.images, SGD_COSINE, 3),
    "resnet18 adamw+warmup, label smoothing": Case(
        models.resnet18, models.images, Recipe("adamw", 1e-3, "warmup_cosine", 0.05, label_smoothing=0.1), 3
    ),
    "mobilenet_v3_small sgd+onecycle": Case(models.mobilenet, models.images, Recipe("sgd", 0.1, "onecycle"), 4),
    "mobilenet_v3_small adamw+warmup": Case(models.mobilenet, models.images, ADAMW_WARMUP, 4),
    "transformer adamw+warmup": Case(models.EncoderClassifier, models.sequences, ADAMW_WARMUP, 6),
    "transformer adamw+onecycle": Case(
        models.EncoderClassifier, models.sequences, Recipe("adamw", 3e-3, "onecycle"), 6
    ),
    "gpt adamw+warmup": Case(models.Decoder, models.language, Recipe("adamw", 3e-3, "warmup_cosine", 0.1), 8),
    "gpt adamw+onecycle": Case(models.Decoder, models.language, Recipe("adamw", 3e-3, "onecycle"), 8),
    "gru sgd+cosine, clipped": Case(models.GRUClassifier, models.signals, Recipe("sgd", 0.1, "cosine", clip=1.0), 8),
    "gru adamw+warmup": Case(models.GRUClassifier, models.signals, ADAMW_WARMUP, 8),
    "vit adamw+warmup": Case(models.PatchClassifier, models.images, ADAMW_WARMUP, 5),
    "vit adamw+onecycle, label smoothing": Case(
        models.PatchClassifier, models.images, Recipe("adamw", 2e-3, "onecycle", label_smoothing=0.1), 5
    ),
}


def zero_conv_and_linear_weights(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.zeros_(module.weight)


def freeze_first_encoder_layer(model: nn.Module) -> None:
    """requires_grad off on a middle layer (meant for the patch embedding, say)."""
    for parameter in model.encoder.layers[0].parameters():
        parameter.requires_grad_(False)


def tiny_noisy_images() -> models.Task:
    """48 training images of a hard version of the task, against the usual validation set."""
    task = models.images(noise=4.0)
    return models.Task(task.x_train[:48], task.y_train[:48], task.x_val, task.y_val, task.classes, task.image_shape)


PLANTED = {
    "resnet18 zero-initialised weights": Case(
        models.resnet18, models.images, SGD_COSINE, 2, "symmetry", zero_conv_and_linear_weights
    ),
    "resnet18 learning rate 100x too high": Case(
        models.resnet18, models.images, Recipe("sgd", 5.0, "constant"), 2, "lr_too_high"
    ),
    "gru learning rate 1000x too high, no clipping": Case(
        models.GRUClassifier, models.signals, Recipe("sgd", 100.0, "constant"), 4, "lr_too_high"
    ),
    "resnet18 learning rate far too low": Case(
        models.resnet18, models.images, Recipe("sgd", 1e-5, "constant"), 3, "lr_too_low"
    ),
    "transformer learning rate 100x too high": Case(
        models.EncoderClassifier, models.sequences, Recipe("adamw", 0.3, "constant"), 12, "lr_too_high"
    ),
    "gpt learning rate far too low": Case(
        models.Decoder, models.language, Recipe("adamw", 1e-6, "constant"), 12, "lr_too_low"
    ),
    "vit a frozen layer in the middle": Case(
        models.PatchClassifier, models.images, ADAMW_WARMUP, 5, "frozen_layer", freeze_first_encoder_layer
    ),
    "vit shuffled labels": Case(
        models.PatchClassifier, functools.partial(models.images, shuffled=True), ADAMW_WARMUP, 12, "val_loss_stuck"
    ),
    "vit overfitting a tiny training split": Case(
        models.PatchClassifier, tiny_noisy_images, Recipe("adamw", 2e-3, "constant"), 40, "overfitting"
    ),
    "transformer forgotten optimizer.zero_grad()": Case(
        models.EncoderClassifier,
        models.sequences,
        Recipe("adamw", 2e-3, "warmup_cosine", zero_grad=False),
        6,
        "gradients_accumulate",
    ),
    "resnet18 forgotten optimizer.zero_grad()": Case(
        models.resnet18, models.images, Recipe("sgd", 0.05, "cosine", zero_grad=False), 3, "gradients_accumulate"
    ),
    "rnn exploding gradients, no clipping": Case(
        models.RNNClassifier, models.signals, Recipe("sgd", 0.5, "constant"), 8, "exploding_gradients"
    ),
    "transformer dropout 0.5, validated without model.eval()": Case(
        functools.partial(models.EncoderClassifier, dropout=0.5),
        models.sequences,
        Recipe("adamw", 2e-3, "warmup_cosine", eval_mode=False),
        6,
        "eval_in_train_mode",
    ),
}
