"""What a run needs while it trains, whatever trains it: a worker's run (its own trainer or a
job's function, through tracker.worker.sink) and a client's run over HTTP (through
tracker.core.external) call these, so that each rule lives here once: the live upkeep and
its cadence, the study's early stopping, the worker's heartbeat (what a hand-off stores is
tracker.core.ingest's, a checkpoint's home tracker.core.checkpoints)."""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Iterable

from django.conf import settings
from django.db import connection
from django.utils import timezone

from tracker.core.findings import diagnose_run
from tracker.core.storage import roll_up_series
from tracker.core.studies import early_stop_reason, early_stopping_of
from tracker.models import Run, Worker

log = logging.getLogger(__name__)


def upkeep_due(run_id: int) -> bool:
    """Claims the run's next upkeep (its small chunks rolled up, then its diagnosis) when it is
    due, about every TRAINWATCH_DIAGNOSE_SECONDS: one conditional update, so that of the
    processes that write a run's points (a worker, any web process) exactly one takes it."""
    now = timezone.now()
    due = now - dt.timedelta(seconds=settings.TRAINWATCH_DIAGNOSE_SECONDS)
    return bool(
        Run.objects.filter(pk=run_id, diagnosed_at__isnull=True).update(diagnosed_at=now)
        or Run.objects.filter(pk=run_id, diagnosed_at__lt=due).update(diagnosed_at=now)
    )


def upkeep(run_id: int) -> None:
    """A running run's upkeep: its small chunks rolled up into summarised ones, then its
    diagnosis (which reads those summaries), so that a problem shows before the run ends."""
    roll_up_series(run_id)
    diagnose_run(run_id)


class LiveUpkeep:
    """The upkeep of a run a worker trains, in a thread of its own, so that training never
    waits for it. A flush only asks for it; it runs when `upkeep_due`."""

    def __init__(self, run_id: int):
        self.run_id = run_id
        self._due = threading.Event()
        self._stopping = False
        self._last_request = -math.inf
        self._thread = threading.Thread(target=self._loop, name=f"upkeep of run {run_id}", daemon=True)
        self._thread.start()

    def request_when_due(self) -> None:
        """While the run runs, so that a problem shows before the run ends (a second of the
        process's own clock between claims, so that most flushes ask the database nothing)."""
        now = time.monotonic()
        if now - self._last_request >= 1.0:
            self._last_request = now
            if upkeep_due(self.run_id):
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
                    upkeep(self.run_id)
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
