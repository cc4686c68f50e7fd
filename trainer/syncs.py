"""Where a CUDA training run makes the host wait for the GPU.

The loop keeps its measurements on the device and copies them to the host at hand-offs (one
synchronisation per hand-off) and at epoch ends (the accuracies, the first layer's image).
A synchronisation anywhere else costs it on every step. PyTorch's sync debug mode warns at
each synchronising call; this module counts those warnings by where they came from, so that
the benchmark can print them and a CUDA test can assert that a step has none.
"""

from __future__ import annotations

import collections
import inspect
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from trainer import loop

T = TypeVar("T")

HANDOFF_FUNCTIONS = ("handoff", "save_checkpoint", "finish")


@dataclass
class SyncCount:
    """Synchronisations by phase ('step', 'hand-off', 'epoch end', 'set-up') and by source line."""

    phases: collections.Counter[str] = field(default_factory=collections.Counter)
    lines: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def total(self) -> int:
        return sum(self.phases.values())


def _loop_lines() -> tuple[int, range]:
    """In trainer.loop.train: the first line of the epoch loop, and the lines that run on every
    step (the body of the batch loop)."""
    lines, first = inspect.getsourcelines(loop.train)
    epochs = next(i for i, text in enumerate(lines) if "for epoch in range(" in text)
    start = next(i for i, text in enumerate(lines) if "for batch_start in range(" in text)
    end = next(i for i, text in enumerate(lines) if "# end of epoch" in text)
    return first + epochs, range(first + start, first + end)


def count_host_syncs(fn: Callable[[], T]) -> tuple[T, SyncCount]:
    """Calls fn with CUDA's sync debug mode on; returns its result and the synchronisations."""
    epoch_loop, step_lines = _loop_lines()
    train_file = Path(loop.__file__).resolve()
    count = SyncCount()

    def record(message: Any, category: type[Warning], filename: str, lineno: int, *_: Any, **__: Any) -> None:
        if "synchroniz" not in str(message):
            return
        stack = traceback.extract_stack()[:-1]
        ours = [frame for frame in stack if "/trainer/" in frame.filename or "/trainwatch/" in frame.filename]
        names = {frame.name for frame in ours}
        train_frames = [
            frame for frame in ours if Path(frame.filename).resolve() == train_file and frame.name == "train"
        ]
        line = (train_frames[-1].lineno or 0) if train_frames else 0
        if names & set(HANDOFF_FUNCTIONS):
            phase = "hand-off"
        elif line < epoch_loop:
            phase = "set-up"
        elif line in step_lines:
            phase = "step"
        else:
            phase = "epoch end"
        source = ours[-1] if ours else stack[-1]
        count.phases[phase] += 1
        count.lines[f"{phase}: {Path(source.filename).name}:{source.lineno} {(source.line or '').strip()[:70]}"] += 1

    previous_mode = torch.cuda.get_sync_debug_mode()
    previous_show = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = fn()
        finally:
            torch.cuda.set_sync_debug_mode(previous_mode)
            warnings.showwarning = previous_show
    return result, count
