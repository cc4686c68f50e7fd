"""The trainer's only door to the outside world.

The trainer hands a sink batches of already-measured numbers (NumPy arrays,
copied off the device once per hand-off) and asks it whether to stop. The
tracker implements this with a database writer; `MemorySink` keeps everything
in memory for tests, benchmarks and scripts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class RunInfo:
    """What the sink learns before the first step."""

    device: str
    total_steps: int
    steps_per_epoch: int
    epochs: int
    parameter_names: tuple[str, ...]
    start_step: int = 0
    classes: int | None = None  # of the data, as loaded; the diagnosis checks the initial loss against it
    # each parameter's kind (trainer.tensor_names), by name: what the diagnosis judges it by
    parameter_kinds: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Progress:
    epoch: int  # epochs completed
    step: int  # steps completed
    total_steps: int


@dataclass(frozen=True)
class HistogramRecord:
    """Counts over `bins` equal bins spanning [low, high], with summary statistics."""

    key: str
    step: int
    low: float
    high: float
    counts: np.ndarray  # int64
    mean: float
    std: float
    zero_fraction: float = 0.0
    saturated_fraction: float = 0.0
    # values that are NaN or infinite (a run diverging); when there are any, the tensor has no
    # range: low, high, mean and std are NaN and the counts zero
    nonfinite: int = 0


@dataclass(frozen=True)
class ImageRecord:
    """An image at a step, e.g. the first layer's weights as a grid: uint8 (H, W) or (H, W, 3)."""

    key: str
    step: int
    pixels: np.ndarray


# key -> (steps int64, values float64), both 1-D and of equal length, steps increasing
ScalarBatch = dict[str, tuple[np.ndarray, np.ndarray]]


class Sink(Protocol):
    def start(self, info: RunInfo) -> None: ...

    def scalars(self, batch: ScalarBatch) -> None: ...

    def histograms(self, records: list[HistogramRecord]) -> None: ...

    def images(self, records: list[ImageRecord]) -> None: ...

    def progress(self, progress: Progress) -> None: ...

    def should_stop(self) -> bool:
        """Called at every hand-off (about twice a second) and epoch end; must be cheap."""
        ...

    def stop_reason(self) -> str | None:
        """Why should_stop() said yes: None for a cancel request, else a sentence (the run
        then ends `stopped`, e.g. by a study's early stopping)."""
        ...

    def checkpoint(self, step: int, epoch: int, blob: bytes) -> None:
        """The state after `step` steps (trainer.checkpoint), handed over right after the
        hand-off that delivered every measurement before it."""
        ...


@dataclass
class MemorySink:
    """Collects everything in memory; `stop_after_handoffs` simulates a cancel request."""

    stop_after_handoffs: int | None = None
    info: RunInfo | None = None
    series: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = field(default_factory=dict)
    histogram_records: list[HistogramRecord] = field(default_factory=list)
    image_records: list[ImageRecord] = field(default_factory=list)
    last_progress: Progress | None = None
    handoffs: int = 0
    checkpoints: list[tuple[int, int, bytes]] = field(default_factory=list)  # (step, epoch, blob)

    def start(self, info: RunInfo) -> None:
        self.info = info

    def scalars(self, batch: ScalarBatch) -> None:
        self.handoffs += 1
        for key, (steps, values) in batch.items():
            chunks = self.series.setdefault(key, ([], []))
            chunks[0].append(steps)
            chunks[1].append(values)

    def histograms(self, records: list[HistogramRecord]) -> None:
        self.histogram_records.extend(records)

    def images(self, records: list[ImageRecord]) -> None:
        self.image_records.extend(records)

    def progress(self, progress: Progress) -> None:
        self.last_progress = progress

    def checkpoint(self, step: int, epoch: int, blob: bytes) -> None:
        self.checkpoints.append((step, epoch, blob))

    def stop_reason(self) -> str | None:
        return None

    def should_stop(self) -> bool:
        return self.stop_after_handoffs is not None and self.handoffs >= self.stop_after_handoffs

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        steps, values = self.series.get(key, ([], []))
        if not steps:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        return np.concatenate(steps), np.concatenate(values)
