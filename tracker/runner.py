"""What a worker does with one run, as a plain function (the Celery task is a
thin wrapper around it, so this is testable without a broker)."""

from __future__ import annotations

import logging
import traceback

from django.db.models import F
from django.utils import timezone

from tracker.diagnose import diagnose_run
from tracker.ingest import compact_series
from tracker.models import Run
from tracker.sink import DatabaseSink
from trainer.checks import run_checks
from trainer.config import RunConfig
from trainer.loop import train

log = logging.getLogger(__name__)


def execute_run(run_id: int, worker: str) -> str:
    """Train a queued run to its end; returns the final status, or 'skipped'."""
    now = timezone.now()
    # Claim atomically: a redelivered or duplicated task finds the run no longer
    # queued and does nothing, so a run is never executed twice.
    claimed = Run.objects.filter(pk=run_id, status=Run.Status.QUEUED).update(
        status=Run.Status.RUNNING, started_at=now, heartbeat_at=now, worker=worker, attempts=F("attempts") + 1
    )
    if not claimed:
        log.info("run %s is not queued (missing, cancelled or already taken); skipping", run_id)
        return "skipped"
    run = Run.objects.get(pk=run_id)
    sink = DatabaseSink(run)
    final: dict = {}
    try:
        config = RunConfig.from_dict(run.config)
        if config.job == "check" or config.preflight:
            checks = run_checks(config)
            Run.objects.filter(pk=run_id).update(checks=checks, heartbeat_at=timezone.now())
            if config.job == "check":
                final.update(status=Run.Status.SUCCEEDED, message=_checks_summary(checks))
        if config.job == "train":
            result = train(config, sink)
            sink.flush()
            final.update(status=result.status, message=result.message, device=result.device,
                         steps_done=result.steps, epoch=result.epochs)
            if result.final_loss is not None:
                final["final_loss"] = result.final_loss
    except Exception as error:  # the run records any failure; the worker itself carries on
        log.exception("run %s failed", run_id)
        try:
            sink.flush()  # keep what was measured up to the failure
        except Exception:
            log.exception("run %s: could not flush the last points", run_id)
        final.update(status=Run.Status.FAILED, message=f"{type(error).__name__}: {error}",
                     error=traceback.format_exc())
    # compact and diagnose before the final status is written, so that an ended run is
    # always a diagnosed one
    try:
        compact_series(run_id)  # an ended run's series no longer grow: fewer, larger chunks read faster
        final["findings"], final["health"] = diagnose_run(run_id, final["status"], final["message"], save=False)
    except Exception:
        log.exception("run %s: compacting or the final diagnosis failed", run_id)
    Run.objects.filter(pk=run_id).update(finished_at=timezone.now(), heartbeat_at=timezone.now(), **final)
    return final["status"]


def _checks_summary(checks: dict) -> str:
    failed = [c["name"] for c in checks["sanity"] if not c["passed"]]
    failed += [f"gradient check of the {g['part']} ({g['verdict']})" for g in checks["gradient"]
               if g["verdict"] not in ("good", "ok")]
    return "checks passed" if not failed else "checks failed: " + "; ".join(failed)
