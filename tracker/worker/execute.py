"""What a worker does with one run, as plain functions (the Celery task in
tracker.worker.tasks is a thin wrapper around them, so they are testable without a broker)."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from tracker.core.lifecycle import finish_run
from tracker.core.storage import truncate_run
from tracker.models import Run, RunCheckpoint
from tracker.worker.sink import DatabaseSink
from trainer import checkpoint
from trainer.config import RunConfig
from trainer.loop import train
from trainer.payloads import CheckResults
from trainer.preflight import run_checks

log = logging.getLogger(__name__)


def claim_next(queue: str, worker: str) -> int | None:
    """Take the queue's next run (highest priority, then oldest) for this worker.

    The broker's messages are tokens, one per queued run, that say "train the next run of
    this queue", not which one: the order is decided here, at claim time, so a priority
    edited while a run waits takes effect. The claim is one locked update, so a token
    delivered twice (a redelivery after the visibility timeout, a duplicate) never starts a
    run twice: the second finds nothing queued, or the next run, which had a token too."""
    with transaction.atomic():
        run = (
            Run.objects.select_for_update(skip_locked=True)
            .filter(status=Run.Status.QUEUED, queue=queue)
            .order_by("-priority", "created_at", "pk")
            .first()
        )
        if run is None:
            return None
        now = timezone.now()
        Run.objects.filter(pk=run.pk).update(
            status=Run.Status.RUNNING, started_at=now, heartbeat_at=now, worker=worker, attempts=F("attempts") + 1
        )
    return run.pk


def execute_next(queue: str, worker: str) -> str:
    """Claim and train the queue's next run; returns its final status, or 'skipped'."""
    run_id = claim_next(queue, worker)
    if run_id is None:
        log.info("no queued run in %r (cancelled, or taken with another token); skipping", queue)
        return "skipped"
    return execute_run(run_id)


def execute_run(run_id: int) -> str:
    """Train a claimed (running) run to its end; returns the final status."""
    resume = _prepare_resume(run_id)
    run = Run.objects.get(pk=run_id)
    sink = DatabaseSink(run)  # after the truncation: its writer starts from what is left
    final: dict[str, Any] = {}
    try:
        config = RunConfig.from_dict(run.config)
        if config.job == "check" or (config.preflight and resume is None):
            checks = run_checks(config)
            Run.objects.filter(pk=run_id).update(checks=checks, heartbeat_at=timezone.now())
            if config.job == "check":
                final.update(status=Run.Status.SUCCEEDED, message=_checks_summary(checks))
        if config.job == "train":
            result = train(config, sink, resume=resume, checkpoint_seconds=settings.TRAINWATCH_CHECKPOINT_SECONDS)
            sink.drain()
            final.update(
                status=result.status,
                message=result.message,
                device=result.device,
                steps_done=result.steps,
                epoch=result.epochs,
            )
            if result.final_loss is not None:
                final["final_loss"] = result.final_loss
    except Exception as error:  # the run records any failure; the worker itself carries on
        log.exception("run %s failed", run_id)
        try:
            sink.drain()  # keep what was measured up to the failure
        except Exception:
            log.exception("run %s: could not flush the last points", run_id)
        final.update(status=Run.Status.FAILED, message=f"{type(error).__name__}: {error}", error=traceback.format_exc())
    finally:
        sink.close()
    finish_run(run_id, **final)
    return str(final["status"])


def _prepare_resume(run_id: int) -> bytes | None:
    """The checkpoint to go on from, if the run has one; the measurements of a lost attempt
    after it (or all of them, without one) are removed first, so that no step is stored twice."""
    saved = RunCheckpoint.objects.filter(run_id=run_id).first()
    if saved is None:
        truncate_run(run_id, 0)
        Run.objects.filter(pk=run_id).update(resumed_from_step=None)
        return None
    blob = bytes(saved.data)
    try:
        loop = checkpoint.load(blob)["loop"]
    except Exception:
        log.exception("run %s: its checkpoint at step %s cannot be read; starting from scratch", run_id, saved.step)
        saved.delete()
        truncate_run(run_id, 0)
        return None
    truncate_run(run_id, saved.step)
    Run.objects.filter(pk=run_id).update(
        resumed_from_step=saved.step,
        steps_done=saved.step,
        epoch=loop.epoch,
        best_val_accuracy=loop.best_val,
        final_loss=loop.last_loss,
    )
    log.info("run %s resumes from its checkpoint at step %s (epoch %s)", run_id, saved.step, loop.epoch)
    return blob


def _checks_summary(checks: CheckResults) -> str:
    failed = [c["name"] for c in checks["sanity"] if not c["passed"]]
    failed += [
        f"gradient check of the {g['part']} ({g['verdict']})"
        for g in checks["gradient"]
        if g["verdict"] not in ("good", "ok")
    ]
    return "checks passed" if not failed else "checks failed: " + "; ".join(failed)
