"""Trainwatch's own trainer as an entry point (registered as `builtin` in the group
trainwatch.jobs), so that a run config and a team's function take one path through the worker.
It writes through the worker's sink rather than the client's channel: its instrumentation is
trainer.instrument's, measured on the device and handed off in batches."""

from __future__ import annotations

import logging

from django.conf import settings
from django.utils import timezone

from tracker.models import Run
from tracker.worker.jobs import JobRun
from trainer.config import RunConfig
from trainer.entry import job
from trainer.loop import train as train_loop
from trainer.payloads import CheckResults
from trainer.preflight import run_checks

log = logging.getLogger(__name__)


@job(params=RunConfig.from_dict)
def train(run: JobRun) -> None:
    """Train (or check) one of Trainwatch's own models from a run config."""
    config = RunConfig.from_dict(run.config)
    sink = run.sink
    try:
        if config.job == "check" or (config.preflight and run.resume_blob is None):
            checks = run_checks(config)
            Run.objects.filter(pk=run.row.pk).update(checks=checks, heartbeat_at=timezone.now())
            if config.job == "check":
                run.finish(Run.Status.SUCCEEDED, _checks_summary(checks))
                return
        result = train_loop(
            config, sink, resume=run.resume_blob, checkpoint_seconds=settings.TRAINWATCH_CHECKPOINT_SECONDS
        )
        sink.drain()
    except BaseException:
        try:
            sink.drain()  # keep what was measured up to the failure
        except Exception:
            log.exception("run %s: could not flush the last points", run.row.pk)
        raise
    finally:
        run.close_sink()
    run.final.update(device=result.device, steps_done=result.steps, epoch=result.epochs)
    run.finish(result.status, result.message)


def _checks_summary(checks: CheckResults) -> str:
    failed = [c["name"] for c in checks["sanity"] if not c["passed"]]
    failed += [
        f"gradient check of the {g['part']} ({g['verdict']})"
        for g in checks["gradient"]
        if g["verdict"] not in ("good", "ok")
    ]
    return "checks passed" if not failed else "checks failed: " + "; ".join(failed)
