"""What a worker does with one run, as plain functions (the Celery task in
tracker.worker.tasks is a thin wrapper around them, so they are testable without a broker)."""

from __future__ import annotations

import functools
import logging
import traceback
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from tracker.core import checkpoints
from tracker.core.lifecycle import finish_run
from tracker.core.runs import data_roots
from tracker.core.storage import truncate_run
from tracker.models import Run, RunEnvironment
from tracker.worker.console import ConsoleCapture
from tracker.worker.jobs import JobRun, pick_device
from trainer import checkpoint
from trainer.config import ConfigError
from trainer.entry import BUILTIN, RESERVED, EntryError, EntryJob, is_entry_job, load, read_params, run_check, spec_of
from trainer.environment import describe_environment
from trainer.files import DataError, allowed, read_roots

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
    """Run a claimed (running) run's job to its end; returns the final status. Every job takes
    this path: its entry point (Trainwatch's own trainer for a run config) is looked up among
    the registered ones, called with a JobRun, and the run ends from what it did."""
    resume = _prepare_resume(run_id)
    run = Run.objects.get(pk=run_id)
    name, config = job_of(run.config)
    RunEnvironment.objects.update_or_create(run=run, defaults={"data": worker_environment(name, run.worker)})
    job_run: JobRun | None = None
    final: dict[str, Any] = {}
    capture = ConsoleCapture()
    try:
        # a member's job reads only inside the data folders, checked as each file is opened;
        # what it prints, at any level, goes to the run's console
        with read_roots(None if run.reads_any_path else data_roots()), capture:
            function = load(name)
            if is_entry_job(run.config):
                config = _checked_again(function, config)
            device = pick_device(str(config.get("device", "auto")))
            job_run = JobRun(run, config, device, resume, direct=name == BUILTIN)
            job_run.database_sink.console_source = capture.drain
            function(job_run)
        job_run.finish()
        final = job_run.end()
    except Exception as error:  # the run records any failure; the worker itself carries on
        log.exception("run %s failed", run_id)
        if job_run is not None:
            try:
                job_run.finish()  # keep what was measured up to the failure
            except Exception:
                log.exception("run %s: could not store the last measurements", run_id)
        message = f"{type(error).__name__}: {error}" if not isinstance(error, EntryError) else str(error)
        final = {"status": Run.Status.FAILED, "message": message[:2000], "error": traceback.format_exc()}
    finish_run(run_id, **final)
    return str(final["status"])


def worker_environment(entry: str, worker: str) -> dict[str, Any]:
    return {**_worker_environment(), "command": f"entry point {entry} on worker {worker}"}


@functools.cache
def _worker_environment() -> dict[str, Any]:
    """This worker process's environment: the same for each of its jobs."""
    import torch  # noqa: PLC0415 - the worker has imported it already

    return describe_environment(torch, git=False)


def job_of(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The entry point a stored config names, and what its function reads as run.config."""
    if is_entry_job(config):
        return str(config["entry"]), EntryJob(
            config["entry"], config.get("params", {}), config["device"], config["epochs"], config.get("seed", 0)
        ).run_config
    return BUILTIN, config


def _checked_again(function: Any, config: dict[str, Any]) -> dict[str, Any]:
    """The params once more, by the declaration of the code installed on this worker (it may
    differ from what the server checked against)."""
    spec = spec_of(function)
    errors: dict[str, str] = {}
    params = {key: value for key, value in config.items() if key not in RESERVED}
    if spec.params is not None:
        params = read_params(spec.params, params, errors, "params")
        for key, declared in spec.params.items():
            if declared.get("type") == "path" and params.get(key) and not errors:
                try:
                    params[key] = str(allowed(params[key], f"params.{key}"))
                except DataError as error:
                    errors[f"params.{key}"] = str(error).removeprefix(f"params.{key}: ")
    elif spec.check is not None:
        params = run_check(spec.check, params, errors)
    if errors:
        raise ConfigError(errors)
    return {**params, **{key: config[key] for key in RESERVED if key in config}}


def _prepare_resume(run_id: int) -> bytes | None:
    """The checkpoint to go on from, if the run has one; the measurements of a lost attempt
    after it (or all of them, without one) are removed first, so that no step is stored twice."""
    saved = checkpoints.latest(run_id)
    if saved is None:
        truncate_run(run_id, 0)
        Run.objects.filter(pk=run_id).update(resumed_from_step=None)
        return None
    blob = checkpoints.read(saved)
    if is_entry_job(Run.objects.values_list("config", flat=True).get(pk=run_id)):
        # the function's own state, read by run.restore(); its step and epoch are the checkpoint's
        truncate_run(run_id, saved.step)
        Run.objects.filter(pk=run_id).update(resumed_from_step=saved.step, steps_done=saved.step, epoch=saved.epoch)
        log.info("run %s resumes from its checkpoint at step %s (epoch %s)", run_id, saved.step, saved.epoch)
        return blob
    try:
        loop = checkpoint.load(blob)["loop"]
    except Exception:
        log.exception("run %s: its checkpoint at step %s cannot be read; starting from scratch", run_id, saved.step)
        checkpoints.delete_all(run_id)
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
