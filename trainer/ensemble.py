"""Ensembles: average the predicted probabilities of several trained models."""

from __future__ import annotations

import torch

from trainer import checkpoint
from trainer.config import RunConfig
from trainer.data import load_dataset
from trainer.loop import predict
from trainer.models import build_model


def ensemble_accuracy(members: list[tuple[RunConfig, bytes]]) -> dict:
    """Validation accuracy of the members' averaged softmax probabilities, and of each member
    alone. Members must share the data set and its split (data.seed), or the validation
    examples of one would be training examples of another."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    first = members[0][0]
    for config, _ in members[1:]:
        if config.data != first.data or config.data_seed != first.data_seed:
            raise ValueError(
                "the members were trained on different data or splits (data, data.seed); "
                "their ensemble cannot be evaluated fairly"
            )
    data = load_dataset(first.data, first.data_seed)
    probabilities, singles = [], []
    for config, blob in members:
        model = build_model(config.model, data.num_features, data.num_classes, data.image_shape)
        model.load_state_dict(checkpoint.load(blob)["model"])
        scores = predict(model, data.x_val)
        probability = torch.softmax(scores.float(), dim=1)
        singles.append(float((probability.argmax(dim=1) == data.y_val).float().mean()))
        probabilities.append(probability)
    averaged = torch.stack(probabilities).mean(dim=0)
    return {
        "accuracy": float((averaged.argmax(dim=1) == data.y_val).float().mean()),
        "members": singles,
        "examples": len(data.y_val),
    }
