"""What a run needs while it trains, whatever trains it: a worker's run (its own trainer or a
job's function, through tracker.worker.sink) and a client's run over HTTP (through
tracker.core.external) call these, so that each rule lives here once: what a hand-off sets
on the run, the live upkeep and its cadence, the study's early stopping, the worker's
heartbeat (a checkpoint's home is tracker.core.checkpoints)."""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone
from pydantic import TypeAdapter, ValidationError

from tracker.core.findings import diagnose_run
from tracker.core.storage import roll_up_series
from tracker.core.studies import early_stop_reason, early_stopping_of
from tracker.models import Run, Worker
from trainer.payloads import CheckResults
from trainer.wire import WireError

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
