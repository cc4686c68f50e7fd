"""How every run a worker trains reaches PostgreSQL: Trainwatch's own trainer hands this sink
its batches (trainer.sink.Sink), a job's function its client's hand-offs (`handoff`, the
payloads a script would send, never encoded nor written to a file). Either way it gathers
them in one tracker.core.ingest.Handoff, writes it with ingest.write_handoff about once a
second (TRAINWATCH_FLUSH_SECONDS), samples the process's system metrics, and keeps the
points through a database outage."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from tracker.core.ingest import Handoff, write_handoff
from tracker.core.live import EarlyStopping, LiveUpkeep
from tracker.core.storage import ChunkWriter
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
        # everything gathered since the last flush: the trainer's batches or the client's hand-offs
        self._pending = Handoff()
        # the job's console output (tracker.worker.console), pulled at each flush
        self.console_source: Callable[[], list[Line]] | None = None
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
        self._pending.add_scalars(batch)
        self._maybe_flush()

    def histograms(self, records: list[HistogramRecord]) -> None:
        self._pending.histograms.extend(records)
        self._maybe_flush()

    def images(self, records: list[ImageRecord]) -> None:
        self._pending.images.extend(records)
        self._maybe_flush()

    def progress(self, progress: Progress) -> None:
        self._pending.progress = {"epoch": progress.epoch, "steps_done": progress.step}
        self._sample_system()
        self._maybe_flush()

    # --- a client's hand-offs (a job's function on a worker) -------------------

    def handoff(self, payload: Payload) -> None:
        """One hand-off of the job's client, as it would have sent it to the server; written with
        the next flush."""
        self._begin()
        self._pending.add(payload)
        if payload.progress:
            self._sample_system()

    @property
    def pending(self) -> bool:
        return self._pending.has_data

    def _begin(self) -> None:
        if self._system is None:
            self._system = SystemSampler(self.device)
            self._diagnosis = LiveUpkeep(self.run.pk)

    def checkpoint(self, step: int, epoch: int, blob: bytes) -> None:
        """Written in the same transaction as every point before it: a checkpoint in the
        database always has its measurements there too. During an outage only the newest
        pending one is kept."""
        self._pending.checkpoint = (step, epoch, blob)
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
                self._write_pending()
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
        # the progress stays: the next flush writes it again with the next heartbeat
        self._pending = Handoff(progress=self._pending.progress)
        self._last_flush = time.monotonic()
        if self._diagnosis is not None:
            self._diagnosis.request_when_due()

    def drain(self, retry_seconds: float = 1.0) -> None:
        """The last flush of a run: retried while the database is unreachable, so that a run
        that ends during a restart still stores every point and then its end. Raises once the
        outage outlasts TRAINWATCH_DB_OUTAGE_SECONDS, as a flush does."""
        self.flush()
        while self._outage_since is not None:
            time.sleep(retry_seconds)
            self.flush()

    def _write_pending(self) -> None:
        if self.console_source is not None:
            self._pending.console.extend(self.console_source())  # kept here until a flush stores them
        stop = write_handoff(self.run, self._pending, self.writer, timezone.now())
        self._stop = self._early_stopping.judge(self._pending.scalars, stop) is not None or stop

    def _sample_system(self) -> None:
        """CPU, memory (and GPU) of the training process every SYSTEM_SECONDS, as series at
        the current step."""
        now = time.monotonic()
        steps_done = self._pending.progress.get("steps_done")
        if self._system is None or steps_done is None or now - self._last_system < SYSTEM_SECONDS:
            return
        self._last_system = now
        step = np.array([steps_done], dtype=np.int64)
        self._pending.add_scalars({key: (step, np.array([value])) for key, value in self._system.sample().items()})

    def close(self) -> None:
        """The run's training is over: the live diagnosis stops (the final one is the caller's)."""
        if self._diagnosis is not None:
            self._diagnosis.stop()
            self._diagnosis = None
