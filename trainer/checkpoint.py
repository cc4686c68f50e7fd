"""Checkpoints: everything a run needs to go on from a step boundary as if it had
never stopped — model, optimizer and schedule state, every random number generator,
where in which epoch's shuffled order it was, and the loop's running numbers.

The epoch's order is not stored: the data generator's state at the epoch's start is,
and the resumed run draws the same permutation again from it.
"""

from __future__ import annotations

import collections
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


# what torch.load(weights_only=True) rebuilds: a job's checkpoint is read back as data, never code
_PLAIN = (str, bytes, int, float, bool, type(None), torch.Tensor, torch.Size, torch.dtype, torch.device)


def not_plain(state: Any, path: str = "state") -> str | None:
    """Where a job's checkpoint state holds something other than tensors, numbers, text and
    dicts, lists and tuples of them (an object of the job's own class, a NumPy array), which a
    resume would refuse to load; None when all of it loads. Walked without recursion."""
    stack: list[tuple[Any, str]] = [(state, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            if type(item) not in (dict, collections.OrderedDict):
                return f"{where} is a {type(item).__name__}, not a dict"
            for key, child in item.items():
                if not isinstance(key, (str, int)):
                    return f"{where} has a key of type {type(key).__name__}"
                stack.append((child, f"{where}[{key!r}]"))
        elif isinstance(item, (list, tuple)):
            if type(item) not in (list, tuple):
                return f"{where} is a {type(item).__name__}, not a list or tuple"
            stack.extend((child, f"{where}[{index}]") for index, child in enumerate(item))
        elif not isinstance(item, _PLAIN):
            return f"{where} is a {type(item).__module__}.{type(item).__qualname__}"
    return None


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
