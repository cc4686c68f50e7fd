"""What a run needs while it trains, whatever trains it: the worker's own trainer (through
tracker.worker.sink) and a job's function (through tracker.worker.jobs) both call these, so that
each rule lives here once. A client's run over HTTP is answered by tracker.core.external, whose
requests claim the diagnosis in the database instead (any web process may take the next one)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterable

from django.conf import settings
from django.db import connection

from tracker.core.findings import diagnose_run
from tracker.core.storage import roll_up_series
from tracker.core.studies import early_stop_reason, early_stopping_of
from tracker.models import Run, RunCheckpoint, Worker

log = logging.getLogger(__name__)


class LiveUpkeep:
    """What a running run needs besides its points, in a thread of its own, so that training
    never waits for it: its small chunks rolled up into summarised ones, then its diagnosis
    (which reads those summaries). A flush only asks for it, when `due`: about every
    TRAINWATCH_DIAGNOSE_SECONDS."""

    def __init__(self, run_id: int):
        self.run_id = run_id
        self._due = threading.Event()
        self._stopping = False
        self._last_request = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name=f"upkeep of run {run_id}", daemon=True)
        self._thread.start()

    def request_when_due(self) -> None:
        """While the run runs, so that a problem shows before the run ends."""
        now = time.monotonic()
        if now - self._last_request >= settings.TRAINWATCH_DIAGNOSE_SECONDS:
            self._last_request = now
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


class EarlyStopping:
    """A study's early stopping of one of its runs: judged at epoch ends (a hand-off that holds
    val_acc), against the study's other runs of the same stage. `reason` says why, once stopped."""

    def __init__(self, run: Run):
        self.run = run
        self.rule = early_stopping_of(run)
        self.reason: str | None = None

    def judge(self, keys: Iterable[str], stopping: bool) -> str | None:
        if self.rule is not None and not stopping and self.reason is None and "val_acc" in keys:
            self.reason = early_stop_reason(self.run, self.rule)
        return self.reason


def worker_seen(run: Run, now: dt.datetime) -> None:
    """The worker that trains the run was alive at `now`: the workers page and the reaper read it."""
    Worker.objects.filter(name=run.worker).update(seen_at=now)


def store_checkpoint(run_id: int, step: int, epoch: int, blob: bytes, now: dt.datetime) -> None:
    """The run's one latest checkpoint; a requeued run resumes from it."""
    RunCheckpoint.objects.update_or_create(
        run_id=run_id, defaults={"step": step, "epoch": epoch, "data": blob, "size": len(blob), "created_at": now}
    )
