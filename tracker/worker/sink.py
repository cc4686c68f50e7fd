"""How every run a worker trains reaches PostgreSQL: Trainwatch's own trainer hands this sink
its batches (trainer.sink.Sink), a job's function its client's hand-offs (`handoff`, the
payloads a script would send, never encoded nor written to a file). Either way it buffers,
writes in bulk about once a second (TRAINWATCH_FLUSH_SECONDS), samples the process's system
metrics, and keeps the points through a database outage."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from tracker.core import checkpoints, console
from tracker.core.live import EarlyStopping, LiveUpkeep, handoff_fields, worker_seen
from tracker.core.storage import ChunkWriter, store_handoff
from tracker.models import Run
from trainer.console import Line
from trainer.sink import HistogramRecord, ImageRecord, Progress, RunInfo, ScalarBatch
from trainer.system import SYSTEM_SECONDS, SystemSampler
from trainer.wire import Payload

log = logging.getLogger(__name__)


class DatabaseSink:
    def __init__(self, run: Run, flush_seconds: float | None = None, device: str = "cpu"):
        self.run = run
        self.device = device
        self.flush_seconds = settings.TRAINWATCH_FLUSH_SECONDS if flush_seconds is None else flush_seconds
        self.writer = ChunkWriter(run.pk)
        self._pending: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        self._pending_histograms: list[HistogramRecord] = []
        self._pending_images: list[ImageRecord] = []
        self._pending_checkpoint: tuple[int, int, bytes] | None = None
        self._progress: dict[str, int | None] = {}
        # what a client's hand-offs set on the run besides points (trainer.wire.Payload)
        self._pending_describe: dict[str, Any] | None = None
        self._pending_checks: dict[str, Any] | None = None
        self._pending_rates: list[np.ndarray] = []
        # the job's console output (tracker.worker.console), pulled at each flush
        self.console_source: Callable[[], list[Line]] | None = None
        self._pending_console: list[Line] = []
        self._last_flush = time.monotonic()
        self._outage_since: float | None = None
        self._system: SystemSampler | None = None
        self._last_system = 0.0
        self._stop = False
        self._early_stopping = EarlyStopping(run)
        self._diagnosis: LiveUpkeep | None = None

    # --- trainer.sink.Sink --------------------------------------------------

    def start(self, info: RunInfo) -> None:
        self.device = info.device
        self._begin()
        Run.objects.filter(pk=self.run.pk).update(
            device=info.device,
            total_steps=info.total_steps,
            steps_per_epoch=info.steps_per_epoch,
            classes=info.classes,
            tensors=list(info.parameter_names),
            tensor_kinds=info.parameter_kinds,
            heartbeat_at=timezone.now(),
        )

    def scalars(self, batch: ScalarBatch) -> None:
        for key, (steps, values) in batch.items():
            pending = self._pending.setdefault(key, ([], []))
            pending[0].append(steps)
            pending[1].append(values)
        self._maybe_flush()

    def histograms(self, records: list[HistogramRecord]) -> None:
        self._pending_histograms.extend(records)
        self._maybe_flush()

    def images(self, records: list[ImageRecord]) -> None:
        self._pending_images.extend(records)
        self._maybe_flush()

    def progress(self, progress: Progress) -> None:
        self._progress = {"epoch": progress.epoch, "steps_done": progress.step}
        self._sample_system()
        self._maybe_flush()

    # --- a client's hand-offs (a job's function on a worker) -------------------

    def handoff(self, payload: Payload) -> None:
        """One hand-off of the job's client, as it would have sent it to the server; written with
        the next flush."""
        self._begin()
        for key, (steps, values) in payload.scalars.items():
            pending = self._pending.setdefault(key, ([], []))
            pending[0].append(steps)
            pending[1].append(values)
        if "lr" in payload.scalars:
            self._pending_rates.append(payload.scalars["lr"][1])
        self._pending_histograms.extend(payload.histograms)
        self._pending_images.extend(payload.images)
        if payload.describe is not None:
            self._pending_describe = payload.describe
        if payload.checks is not None:
            self._pending_checks = payload.checks
        self._pending_console.extend(payload.console)
        if payload.progress:
            progress = payload.progress
            self._progress = {
                "steps_done": progress.get("step"),
                "epoch": progress.get("epoch"),
                "total_steps": progress.get("total_steps"),
                "steps_per_epoch": progress.get("steps_per_epoch"),
            }
            self._sample_system()

    @property
    def pending(self) -> bool:
        return bool(
            self._pending
            or self._pending_histograms
            or self._pending_images
            or self._pending_console
            or self._pending_checkpoint is not None
        )

    def _begin(self) -> None:
        if self._system is None:
            self._system = SystemSampler(self.device)
            self._diagnosis = LiveUpkeep(self.run.pk)

    def checkpoint(self, step: int, epoch: int, blob: bytes) -> None:
        """Written in the same transaction as every point before it: a checkpoint in the
        database always has its measurements there too. During an outage only the newest
        pending one is kept."""
        self._pending_checkpoint = (step, epoch, blob)
        self.flush()

    def stop_reason(self) -> str | None:
        return self._early_stopping.reason

    def should_stop(self) -> bool:
        # refreshed at each flush, so this costs no query
        return self._stop

    # --- writing --------------------------------------------------------------

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write everything pending, update the run's progress and heartbeat, read its cancel flag.

        All in one transaction. If the database cannot be reached (a restart, the network), the
        points stay pending and the next flush tries again: writes are idempotent, so nothing is
        lost or doubled. A run fails only when the outage outlasts TRAINWATCH_DB_OUTAGE_SECONDS."""
        try:
            with transaction.atomic():
                batch = self._write_pending()
        except (OperationalError, InterfaceError) as error:
            self._last_flush = time.monotonic()
            if self._outage_since is None:
                self._outage_since = self._last_flush
                log.warning(
                    "run %s: the database is unreachable (%s); keeping the points and retrying",
                    self.run.pk,
                    str(error).strip().splitlines()[0] if str(error).strip() else error,
                )
            connection.close()  # Django opens a new connection at the next query
            if self._last_flush - self._outage_since > settings.TRAINWATCH_DB_OUTAGE_SECONDS:
                raise
            return
        if self._outage_since is not None:
            log.warning(
                "run %s: the database is back after %.0f s; the buffered points are written",
                self.run.pk,
                time.monotonic() - self._outage_since,
            )
            self._outage_since = None
        self._pending.clear()
        self._pending_histograms.clear()
        self._pending_images.clear()
        self._pending_checkpoint = None
        self._pending_describe = self._pending_checks = None
        self._pending_rates.clear()
        self._pending_console.clear()
        self._last_flush = time.monotonic()
        self._after_flush(batch)

    def drain(self, retry_seconds: float = 1.0) -> None:
        """The last flush of a run: retried while the database is unreachable, so that a run
        that ends during a restart still stores every point and then its end. Raises once the
        outage outlasts TRAINWATCH_DB_OUTAGE_SECONDS, as a flush does."""
        self.flush()
        while self._outage_since is not None:
            time.sleep(retry_seconds)
            self.flush()

    def _write_pending(self) -> ScalarBatch:
        batch = {
            key: (np.concatenate(steps), np.concatenate(values))
            for key, (steps, values) in self._pending.items()
            if steps
        }
        now = timezone.now()
        if self.console_source is not None:
            self._pending_console.extend(self.console_source())  # kept here until a flush stores them
        console.append(self.run.pk, self._pending_console)
        self._stop = store_handoff(
            self.run.pk, self.writer, batch, self._pending_histograms, self._pending_images, self._progress, now
        )
        if self._pending_describe is not None or self._pending_checks is not None or self._pending_rates:
            context = Run.objects.select_for_update().values_list("context", flat=True).get(pk=self.run.pk)
            fields = handoff_fields(context, self._pending_describe, self._pending_checks, self._pending_rates)
            Run.objects.filter(pk=self.run.pk).update(**fields)
        if self._pending_checkpoint is not None:
            checkpoints.save(self.run.pk, *self._pending_checkpoint, now)
        worker_seen(self.run, now)
        self._stop = self._early_stopping.judge(batch, self._stop) is not None or self._stop
        return batch

    def _sample_system(self) -> None:
        """CPU, memory (and GPU) of the training process every SYSTEM_SECONDS, as series at
        the current step."""
        now = time.monotonic()
        steps_done = self._progress.get("steps_done")
        if self._system is None or steps_done is None or now - self._last_system < SYSTEM_SECONDS:
            return
        self._last_system = now
        step = np.array([steps_done], dtype=np.int64)
        for key, value in self._system.sample().items():
            pending = self._pending.setdefault(key, ([], []))
            pending[0].append(step)
            pending[1].append(np.array([value]))

    def _after_flush(self, batch: ScalarBatch) -> None:
        if self._diagnosis is not None:
            self._diagnosis.request_when_due()

    def close(self) -> None:
        """The run's training is over: the live diagnosis stops (the final one is the caller's)."""
        if self._diagnosis is not None:
            self._diagnosis.stop()
            self._diagnosis = None
