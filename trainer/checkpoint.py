"""Checkpoints: everything a run needs to go on from a step boundary as if it had
never stopped — model, optimizer and schedule state, every random number generator,
where in which epoch's shuffled order it was, and the loop's running numbers.

The epoch's order is not stored: the data generator's state at the epoch's start is,
and the resumed run draws the same permutation again from it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import torch

FORMAT = 1


@dataclass
class LoopState:
    """The loop's own numbers at the checkpoint."""

    step: int
    epoch: int  # the epoch in progress (== epochs done when batch == 0)
    batch: int  # batches of that epoch already trained
    elapsed: float  # seconds of training before the checkpoint, so wall_time goes on
    first_loss: float | None
    last_loss: float | None
    best_val: float | None
    train_acc: float | None
    val_acc: float | None
    last_image_step: int | None


def save(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule_state: dict[str, Any],
    epoch_generator_state: torch.Tensor,
    loop: LoopState,
    scaler_state: dict[str, Any] | None = None,
) -> bytes:
    state = {
        "format": FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule_state,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "epoch_generator": epoch_generator_state.clone(),
        "loop": vars(loop).copy(),
        "scaler": scaler_state or {},  # float16's loss scale, so that a resumed run does not search it again
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def load(blob: bytes) -> dict[str, Any]:
    """The saved state, tensors on the CPU (load_state_dict moves them). weights_only: a
    checkpoint is data, never code, even if someone swaps the bytes in the database."""
    state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    if state.get("format") != FORMAT:
        raise ValueError(f"checkpoint format {state.get('format')!r} is not {FORMAT}; it cannot be resumed")
    state["loop"] = LoopState(**state["loop"])
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["rng_cpu"])
    if state["rng_cuda"] and torch.cuda.is_available() and len(state["rng_cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
