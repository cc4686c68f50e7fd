"""The one way a run's measurements are stored, whatever trains it. A `Handoff` is what one
write holds: a client's payload over HTTP (tracker.core.external), or all that a worker's sink
gathered since its last flush from Trainwatch's own trainer or from a job's client
(tracker.worker.sink). `write_handoff` stores it in the caller's transaction: points, histograms,
images, console lines, the run's summary row (progress, heartbeat, what the client described,
its learning rates and check results), a checkpoint, the worker's heartbeat."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from tracker.core import checkpoints, console
from tracker.core.live import worker_seen
from tracker.core.storage import ChunkWriter, store_handoff
from tracker.models import Run
from trainer.console import Line
from trainer.payloads import CheckResults
from trainer.sink import HistogramRecord, ImageRecord, ScalarBatch
from trainer.wire import Payload, WireError


@dataclass
class Handoff:
    """Measurements on their way to the database: one payload, or several gathered (`add`)."""

    scalars: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = field(default_factory=dict)
    histograms: list[HistogramRecord] = field(default_factory=list)
    images: list[ImageRecord] = field(default_factory=list)
    # Run fields: steps_done, epoch, total_steps, steps_per_epoch (None: not said)
    progress: dict[str, int | None] = field(default_factory=dict)
    describe: dict[str, Any] | None = None
    checks: dict[str, Any] | None = None
    rates: list[np.ndarray] = field(default_factory=list)
    console: list[Line] = field(default_factory=list)
    checkpoint: tuple[int, int, bytes] | None = None  # step, epoch, the saved state

    @classmethod
    def of(cls, payload: Payload) -> Handoff:
        handoff = cls()
        handoff.add(payload)
        return handoff

    def add(self, payload: Payload) -> None:
        """One more payload of the run's client: the newest description, checks and progress win."""
        self.add_scalars(payload.scalars)
        if "lr" in payload.scalars:
            self.rates.append(payload.scalars["lr"][1])
        self.histograms.extend(payload.histograms)
        self.images.extend(payload.images)
        if payload.describe is not None:
            self.describe = payload.describe
        if payload.checks is not None:
            self.checks = payload.checks
        self.console.extend(payload.console)
        if payload.progress:
            said = payload.progress
            self.progress = {
                "steps_done": said.get("step"),
                "epoch": said.get("epoch"),
                "total_steps": said.get("total_steps"),
                "steps_per_epoch": said.get("steps_per_epoch"),
            }

    def add_scalars(self, batch: ScalarBatch) -> None:
        for key, (steps, values) in batch.items():
            pending = self.scalars.setdefault(key, ([], []))
            pending[0].append(steps)
            pending[1].append(values)

    def batch(self) -> ScalarBatch:
        return {
            key: (steps[0], values[0]) if len(steps) == 1 else (np.concatenate(steps), np.concatenate(values))
            for key, (steps, values) in self.scalars.items()
            if steps
        }

    @property
    def has_data(self) -> bool:
        """Whether a write would store anything beyond the heartbeat."""
        return bool(self.scalars or self.histograms or self.images or self.console or self.checkpoint is not None)


def write_handoff(
    run: Run, handoff: Handoff, writer: ChunkWriter, now: dt.datetime, context: dict[str, Any] | None = None
) -> bool:
    """Store a hand-off in the caller's transaction; returns whether a cancel has been asked for.
    `context`: the run's context as read under its row lock, when the caller holds it (else it is
    locked and read here, should the hand-off change it). Raises WireError for malformed checks,
    before anything is written."""
    fields: dict[str, Any] = {}
    if handoff.describe is not None or handoff.checks is not None or handoff.rates:
        if context is None:
            context = Run.objects.select_for_update().values_list("context", flat=True).get(pk=run.pk)
        fields = handoff_fields(context, handoff.describe, handoff.checks, handoff.rates)
    console.append(run.pk, handoff.console)
    stop = store_handoff(
        run.pk, writer, handoff.batch(), handoff.histograms, handoff.images, handoff.progress, now, fields
    )
    if handoff.checkpoint is not None:
        checkpoints.save(run.pk, *handoff.checkpoint, now)
    if run.worker:
        worker_seen(run, now)
    return stop


_CHECKS = TypeAdapter(CheckResults)


def checked_checks(checks: dict[str, Any]) -> CheckResults:
    """Check results in the shape the diagnosis and the run page read (raises WireError naming
    the first wrong field): a malformed entry must not break either."""
    try:
        return _CHECKS.validate_python(checks, strict=True)
    except ValidationError as error:
        first = error.errors()[0]
        where = "checks" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"])
        raise WireError(f"{where}: {first['msg']}") from None


def handoff_fields(
    context: dict[str, Any],
    describe: dict[str, Any] | None,
    checks: dict[str, Any] | None,
    rates: Iterable[Iterable[float]] = (),
) -> dict[str, Any]:
    """The run's fields that a client's hand-offs (trainer.wire.Payload) set besides points and
    progress: the watched model's tensors and what the client saw of its training (`describe`),
    the learning rates it logged (context `lr` their peak, what a schedule with warmup was
    given; `lr_last` the latest), its check results. Raises WireError for malformed checks."""
    updates: dict[str, Any] = {}
    if describe is not None:
        context = {**context, **describe["context"], "frozen": describe["frozen"]}
        updates.update(
            tensors=describe["tensors"], tensor_kinds=dict(zip(describe["tensors"], describe["kinds"])), context=context
        )
        if describe["device"]:
            updates["device"] = describe["device"]
    finite = [float(value) for values in rates for value in values if math.isfinite(value)]
    if finite:
        updates["context"] = {**context, "lr": max([*finite, float(context.get("lr") or 0.0)]), "lr_last": finite[-1]}
    if checks is not None:
        updates["checks"] = checked_checks(checks)
    return updates
