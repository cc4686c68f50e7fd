"""Creating, cancelling and retrying runs: the one path every entry point uses
(JSON API, CLI, admin, demo), so validation and dispatch happen in one place."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from tracker.access import may_use_project
from tracker.models import PRIORITY_MAX, PRIORITY_MIN, Project, Run, RunCheckpoint
from trainer.config import ConfigError, RunConfig

MAX_NAME_LENGTH = 200
MAX_TAGS = 10
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
# PostgreSQL text cannot hold NUL, and the other control characters have no place in a name
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def queue_for(config: RunConfig) -> str:
    """`cuda` runs wait for a GPU worker; `auto` and `cpu` runs go to the cpu queue,
    which GPU workers also consume (an `auto` run then trains on their GPU)."""
    return "gpu" if config.device == "cuda" else "cpu"


def _dispatch(run: Run) -> None:
    """One token to the run's queue (see tracker.runner.claim_next), sent only once the Run
    row is committed, so the worker always finds it."""
    from tracker.tasks import train_next

    transaction.on_commit(lambda: train_next.apply_async(args=[run.queue], queue=run.queue,
                                                         task_id=run.celery_task_id))


def _check_tags(tags: Any, errors: dict[str, str]) -> list[str]:
    if tags is None:
        return []
    if (not isinstance(tags, list) or len(tags) > MAX_TAGS
            or any(not isinstance(tag, str) or not TAG_PATTERN.match(tag) for tag in tags)):
        errors["tags"] = (f"must be a list of at most {MAX_TAGS} tags of 1 to 40 letters, digits, _ . or -; "
                          f"got {tags!r}")
        return []
    return list(dict.fromkeys(tags))


def _check_priority(priority: Any, errors: dict[str, str]) -> int:
    if priority is None:
        return 0
    if isinstance(priority, bool) or not isinstance(priority, int) or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        errors["priority"] = f"must be a whole number from {PRIORITY_MIN} to {PRIORITY_MAX} (higher runs first); got {priority!r}"
        return 0
    return priority


def validate_project(project_name: Any, user: AbstractBaseUser | None, errors: dict[str, str]) -> None:
    """A printable name; an existing project only for its members (or staff)."""
    if (not isinstance(project_name, str) or not project_name.strip() or len(project_name) > 100
            or CONTROL_CHARACTERS.search(project_name)):
        errors["project"] = f"must be a project name of 1 to 100 printable characters, got {project_name!r}"
        return
    if user is not None and user.is_authenticated:
        existing = Project.objects.filter(name=project_name.strip()).first()
        if existing is not None and not may_use_project(user, existing):
            errors["project"] = (f"you are not a member of project {existing.name!r}; "
                                 "a staff user adds members in the admin")


def project_for(project_name: str, user: AbstractBaseUser | None) -> Project:
    """The project of that name (validate_project first); a new one belongs to whoever created it."""
    project, created = Project.objects.get_or_create(name=project_name.strip())
    if created and user is not None and user.is_authenticated:
        project.members.add(user)
    return project


def create_run(project_name: Any, config: Any, name: Any = "", user: AbstractBaseUser | None = None,
               tags: Any = None, priority: Any = None, study=None, stage: int = 0,
               study_values: dict | None = None) -> Run:
    """Validate everything, then create and queue the run; raises ConfigError naming each bad field."""
    errors: dict[str, str] = {}
    validate_project(project_name, user, errors)
    if name is None:
        name = ""
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or CONTROL_CHARACTERS.search(name):
        errors["name"] = f"must be text of at most {MAX_NAME_LENGTH} printable characters"
    clean_tags = _check_tags(tags, errors)
    clean_priority = _check_priority(priority, errors)
    acting = user if user is not None and user.is_authenticated else None
    try:
        resolved = RunConfig.from_dict(config)
    except ConfigError as error:
        errors.update({f"config.{field}" if field != "config" else field: message
                       for field, message in error.errors.items()})
    if errors:
        raise ConfigError(errors)
    with transaction.atomic():
        project = project_for(project_name, acting)
        run = Run.objects.create(
            project=project,
            name=name.strip() or resolved.summary(),
            tags=clean_tags,
            priority=clean_priority,
            study=study,
            stage=stage,
            study_values=study_values or {},
            config=resolved.to_dict(),
            queue=queue_for(resolved),
            created_by=acting,
            celery_task_id=str(uuid.uuid4()),
        )
        _dispatch(run)
    return run


def set_priority(run: Run, priority: Any) -> bool:
    """Change a queued run's priority (raises ConfigError for a bad value); False once the run
    has left the queue. Takes effect at once: workers pick the order when they claim a run."""
    errors: dict[str, str] = {}
    clean = _check_priority(priority, errors)
    if errors:
        raise ConfigError(errors)
    return bool(Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(priority=clean))


def queue_positions(queue: str | None = None) -> dict[int, int]:
    """run id -> 1-based position in its queue's order (highest priority, then oldest), for
    every queued run (of one queue, if given): the order tracker.runner.claim_next takes them in."""
    from django.db.models import F, Window
    from django.db.models.functions import RowNumber

    queued = Run.objects.filter(status=Run.Status.QUEUED)
    if queue is not None:
        queued = queued.filter(queue=queue)
    ranked = queued.annotate(position=Window(RowNumber(), partition_by=[F("queue")],
                                             order_by=[F("priority").desc(), F("created_at").asc(), F("pk").asc()]))
    return dict(ranked.values_list("pk", "position"))


def request_cancel(run: Run) -> bool:
    """A queued run never starts; a running one stops at its next flush (about 1 s)."""
    from tracker.studies import on_run_finished

    now = timezone.now()
    if Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(
        status=Run.Status.CANCELLED, cancel_requested=True, finished_at=now, message="cancelled before it started"
    ):
        on_run_finished(run.pk)  # it may have been the last of its study's stage
        return True
    return bool(Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(cancel_requested=True))


RESET_FIELDS = {
    "status": Run.Status.QUEUED, "cancel_requested": False, "started_at": None, "finished_at": None,
    "heartbeat_at": None, "worker": "", "device": "", "epoch": 0, "steps_done": 0,
    "best_val_accuracy": None, "final_loss": None, "error": "", "checks": None, "findings": [], "health": "",
}


def _restart(locked: Run, message: str, resume: bool) -> None:
    """Queue a run again. To resume, its checkpoint and measurements stay (the worker drops
    those after the checkpoint's step); from scratch, they are cleared, so that two attempts
    never mix."""
    if not resume:
        RunCheckpoint.objects.filter(run=locked).delete()
        locked.chunks.all().delete()
        locked.series.all().delete()
        locked.histograms.all().delete()
        locked.images.all().delete()
    fields = {**RESET_FIELDS, "message": message, "celery_task_id": str(uuid.uuid4())}
    if resume:
        del fields["checks"]  # the preflight checks are not run again on a resume
    for field, value in fields.items():
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
        _restart(locked, "", resume=False)
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
                saved = RunCheckpoint.objects.filter(run=locked).values_list("step", flat=True).first()
                how = f"resumes from the checkpoint at step {saved}" if saved is not None else "restarts from scratch"
                _restart(locked, f"lost: {what}; requeued, {how} (attempt {locked.attempts + 1} of {max_attempts})",
                         resume=saved is not None)
                done.append((run_id, "requeued"))
            else:
                locked.status = Run.Status.LOST
                locked.finished_at = timezone.now()
                locked.message = f"lost: {what}; no attempts left ({locked.attempts} of {max_attempts})"
                locked.save(update_fields=["status", "finished_at", "message"])
                done.append((run_id, "lost"))
    from tracker.studies import on_run_finished

    for run_id, what in done:
        if what == "lost":
            on_run_finished(run_id)
    return done
