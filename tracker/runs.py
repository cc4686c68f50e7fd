"""Creating, cancelling and retrying runs: the one path every entry point uses
(JSON API, CLI, admin, demo), so validation and dispatch happen in one place."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from tracker.models import Project, Run
from trainer.config import ConfigError, RunConfig

MAX_NAME_LENGTH = 200
MAX_TAGS = 10
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


def queue_for(config: RunConfig) -> str:
    """`cuda` runs wait for a GPU worker; `auto` and `cpu` runs go to the cpu queue,
    which GPU workers also consume (an `auto` run then trains on their GPU)."""
    return "gpu" if config.device == "cuda" else "cpu"


def _dispatch(run: Run) -> None:
    from tracker.tasks import train_run

    # sent only once the Run row is committed, so the worker always finds it
    transaction.on_commit(lambda: train_run.apply_async(args=[run.pk], queue=run.queue, task_id=run.celery_task_id))


def _check_tags(tags: Any, errors: dict[str, str]) -> list[str]:
    if tags is None:
        return []
    if (not isinstance(tags, list) or len(tags) > MAX_TAGS
            or any(not isinstance(tag, str) or not TAG_PATTERN.match(tag) for tag in tags)):
        errors["tags"] = (f"must be a list of at most {MAX_TAGS} tags of 1 to 40 letters, digits, _ . or -; "
                          f"got {tags!r}")
        return []
    return list(dict.fromkeys(tags))


def create_run(project_name: Any, config: Any, name: Any = "", user: AbstractBaseUser | None = None,
               tags: Any = None) -> Run:
    """Validate everything, then create and queue the run; raises ConfigError naming each bad field."""
    errors: dict[str, str] = {}
    if not isinstance(project_name, str) or not project_name.strip() or len(project_name) > 100:
        errors["project"] = f"must be a project name of 1 to 100 characters, got {project_name!r}"
    if name is None:
        name = ""
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH:
        errors["name"] = f"must be text of at most {MAX_NAME_LENGTH} characters"
    clean_tags = _check_tags(tags, errors)
    try:
        resolved = RunConfig.from_dict(config)
    except ConfigError as error:
        errors.update({f"config.{field}" if field != "config" else field: message
                       for field, message in error.errors.items()})
    if errors:
        raise ConfigError(errors)
    with transaction.atomic():
        project, _ = Project.objects.get_or_create(name=project_name.strip())
        run = Run.objects.create(
            project=project,
            name=name.strip() or resolved.summary(),
            tags=clean_tags,
            config=resolved.to_dict(),
            queue=queue_for(resolved),
            created_by=user if user is not None and user.is_authenticated else None,
            celery_task_id=str(uuid.uuid4()),
        )
        _dispatch(run)
    return run


def request_cancel(run: Run) -> bool:
    """A queued run never starts; a running one stops at its next flush (about 1 s)."""
    now = timezone.now()
    if Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(
        status=Run.Status.CANCELLED, cancel_requested=True, finished_at=now, message="cancelled before it started"
    ):
        return True
    return bool(Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(cancel_requested=True))


RESET_FIELDS = {
    "status": Run.Status.QUEUED, "cancel_requested": False, "started_at": None, "finished_at": None,
    "heartbeat_at": None, "worker": "", "device": "", "epoch": 0, "steps_done": 0,
    "best_val_accuracy": None, "final_loss": None, "error": "", "checks": None, "findings": [], "health": "",
}


def _restart(locked: Run, message: str) -> None:
    """Queue a run again from scratch: without a checkpoint its stored measurements would
    mix two attempts, so they are cleared first."""
    locked.chunks.all().delete()
    locked.series.all().delete()
    locked.histograms.all().delete()
    locked.images.all().delete()
    for field, value in {**RESET_FIELDS, "message": message, "celery_task_id": str(uuid.uuid4())}.items():
        setattr(locked, field, value)
    locked.save()
    _dispatch(locked)


def retry(run: Run) -> bool:
    """Start an ended run again from scratch."""
    if run.status not in Run.FINISHED:
        return False
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if locked.status not in Run.FINISHED:
            return False
        locked.attempts = 0
        locked.created_at = timezone.now()
        _restart(locked, "")
    return True


def reap_lost_runs(max_silence: float, max_attempts: int) -> list[tuple[int, str]]:
    """Running runs whose worker has been silent for max_silence seconds: requeued while
    they have attempts left, `lost` after that. Returns (run id, what was done)."""
    cutoff = timezone.now() - timezone.timedelta(seconds=max_silence)
    done = []
    for run_id in Run.objects.filter(status=Run.Status.RUNNING, heartbeat_at__lt=cutoff).values_list("pk", flat=True):
        with transaction.atomic():
            # skip_locked: another reaper (or the run's own worker) holds it
            locked = Run.objects.select_for_update(skip_locked=True).filter(
                pk=run_id, status=Run.Status.RUNNING, heartbeat_at__lt=cutoff).first()
            if locked is None:
                continue
            silent = (timezone.now() - locked.heartbeat_at).total_seconds()
            what = (f"worker {locked.worker or '?'} went silent {silent:.0f} s ago at step {locked.steps_done}")
            if locked.attempts < max_attempts:
                _restart(locked, f"lost: {what}; requeued from scratch (attempt {locked.attempts + 1} of {max_attempts})")
                done.append((run_id, "requeued"))
            else:
                locked.status = Run.Status.LOST
                locked.finished_at = timezone.now()
                locked.message = f"lost: {what}; no attempts left ({locked.attempts} of {max_attempts})"
                locked.save(update_fields=["status", "finished_at", "message"])
                done.append((run_id, "lost"))
    return done
