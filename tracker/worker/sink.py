"""The tracker's implementation of trainer.sink.Sink: buffer, then write to
PostgreSQL in bulk about once a second (TRAINWATCH_FLUSH_SECONDS)."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from tracker.core.findings import diagnose_run
from tracker.core.storage import ChunkWriter, roll_up_series, store_handoff
from tracker.core.studies import early_stop_reason, early_stopping_of
from tracker.models import Run, RunCheckpoint, Worker
from trainer.sink import HistogramRecord, ImageRecord, Progress, RunInfo, ScalarBatch
from trainer.system import SYSTEM_SECONDS, SystemSampler

log = logging.getLogger(__name__)


class LiveUpkeep:
    """What a running run needs besides its points, in a thread of its own, so that training
    never waits for it: its small chunks rolled up into summarised ones, then its diagnosis
    (which reads those summaries). A flush only asks for it."""

    def __init__(self, run_id: int):
        self.run_id = run_id
        self._due = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=f"upkeep of run {run_id}", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._due.set()

    def stop(self, timeout: float = 60.0) -> None:
        """Waits for an upkeep under way, so that the run's final diagnosis and compaction never race it."""
        self._stopping = True
        self._due.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        try:
            while True:
                self._due.wait()
                if self._stopping:
                    return
                self._due.clear()
                try:
                    roll_up_series(self.run_id)
                    diagnose_run(self.run_id)
                except Exception:
                    log.exception("run %s: the live diagnosis failed; training goes on", self.run_id)
                    connection.close()  # after a database restart: a new connection next time
        finally:
            connection.close()  # this thread's own connection


class DatabaseSink:
    def __init__(self, run: Run, flush_seconds: float | None = None):
        self.run = run
        self.flush_seconds = settings.TRAINWATCH_FLUSH_SECONDS if flush_seconds is None else flush_seconds
        self.writer = ChunkWriter(run.pk)
        self._pending: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        self._pending_histograms: list[HistogramRecord] = []
        self._pending_images: list[ImageRecord] = []
        self._pending_checkpoint: tuple[int, int, bytes] | None = None
        self._progress: Progress | None = None
        self._last_flush = time.monotonic()
        self._last_diagnosis = time.monotonic()
        self._outage_since: float | None = None
        self._system: SystemSampler | None = None
        self._last_system = 0.0
        self._stop = False
        self._stop_reason: str | None = None
        self._early_stopping = early_stopping_of(run)
        self._diagnosis: LiveUpkeep | None = None

    # --- trainer.sink.Sink --------------------------------------------------

    def start(self, info: RunInfo) -> None:
        self._system = SystemSampler(info.device)
        self._diagnosis = LiveUpkeep(self.run.pk)
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
        self._progress = progress
        self._sample_system()
        self._maybe_flush()

    def checkpoint(self, step: int, epoch: int, blob: bytes) -> None:
        """Written in the same transaction as every point before it: a checkpoint in the
        database always has its measurements there too. During an outage only the newest
        pending one is kept."""
        self._pending_checkpoint = (step, epoch, blob)
        self.flush()

    def stop_reason(self) -> str | None:
        return self._stop_reason

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
        progress = {} if self._progress is None else {"epoch": self._progress.epoch, "steps_done": self._progress.step}
        now = timezone.now()
        self._stop = store_handoff(
            self.run.pk, self.writer, batch, self._pending_histograms, self._pending_images, progress, now
        )
        if self._pending_checkpoint is not None:
            step, epoch, blob = self._pending_checkpoint
            RunCheckpoint.objects.update_or_create(
                run_id=self.run.pk,
                defaults={"step": step, "epoch": epoch, "data": blob, "size": len(blob), "created_at": now},
            )
        Worker.objects.filter(name=self.run.worker).update(seen_at=now)
        if self._early_stopping is not None and "val_acc" in batch and not self._stop:
            # judged at epoch ends, against the study's other runs of the same stage
            self._stop_reason = early_stop_reason(self.run, self._early_stopping)
            self._stop = self._stop_reason is not None
        return batch

    def _sample_system(self) -> None:
        """CPU, memory (and GPU) of the training process every SYSTEM_SECONDS, as series at
        the current step."""
        now = time.monotonic()
        if self._system is None or self._progress is None or now - self._last_system < SYSTEM_SECONDS:
            return
        self._last_system = now
        step = np.array([self._progress.step], dtype=np.int64)
        for key, value in self._system.sample().items():
            pending = self._pending.setdefault(key, ([], []))
            pending[0].append(step)
            pending[1].append(np.array([value]))

    def _after_flush(self, batch: ScalarBatch) -> None:
        if (
            self._diagnosis is not None
            and self._last_flush - self._last_diagnosis >= settings.TRAINWATCH_DIAGNOSE_SECONDS
        ):
            # while the run runs, so that a problem shows before the run ends
            self._diagnosis.request()
            self._last_diagnosis = time.monotonic()

    def close(self) -> None:
        """The run's training is over: the live diagnosis stops (the final one is the caller's)."""
        if self._diagnosis is not None:
            self._diagnosis.stop()
            self._diagnosis = None
