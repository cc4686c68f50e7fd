"""Creating and requeueing runs: the one path every entry point uses (JSON API, CLI, admin,
studies, demo), so validation and dispatch happen in one place. How a run ends is
tracker.core.lifecycle's."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.db.models import F, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from tracker.core.access import may_use_project
from tracker.core.dispatch import send_train_token
from tracker.models import PRIORITY_MAX, PRIORITY_MIN, Checkpoint, Project, Run, Worker
from trainer.config import ConfigError, RunConfig
from trainer.entry import (
    BUILTIN,
    EntryError,
    EntryInfo,
    EntryJob,
    check_in_child,
    find,
    is_entry_job,
    read_entry_job,
    registered,
)
from trainer.files import outside, outside_message, real_roots

if TYPE_CHECKING:
    from tracker.models import Study

# whoever asks: a logged-in user, the anonymous one, or None for the CLI (an operator on the server)
AnyUser = User | AnonymousUser

MAX_NAME_LENGTH = 200
MAX_PROJECT_NAME_LENGTH = 100
MAX_TAGS = 10
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
# PostgreSQL text cannot hold NUL, and the other control characters have no place in a name:
# a newline (or a line or paragraph separator) in one breaks the header of an alert e-mail
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def queue_for(config: RunConfig | EntryJob) -> str:
    """`cuda` runs wait for a GPU worker; `auto` and `cpu` runs go to the cpu queue,
    which GPU workers also consume (an `auto` run then trains on their GPU)."""
    return queue_of_device(config.device)


def queue_of_device(device: Any) -> str:
    return "gpu" if device == "cuda" else "cpu"


def entry_catalog(queue: str) -> dict[str, EntryInfo]:
    """The training functions the workers of a queue reported when they started; one that a
    worker could not import is listed with its error unless another worker has it."""
    catalog: dict[str, EntryInfo] = {}
    for reported in (
        Worker.objects.filter(queues__contains=[queue]).order_by("-started_at").values_list("entry_points", flat=True)
    ):
        for info in reported or []:
            if info.get("name") and (info["name"] not in catalog or catalog[info["name"]].get("error")):
                catalog[info["name"]] = info
    return catalog


IMPORT_FAILED = "could not be imported on the workers; staff see why in the admin's job queue"


def registered_jobs(with_errors: bool = False) -> list[dict[str, Any]]:
    """Every training function the workers can run (Trainwatch's own trainer aside), with the
    queues whose workers have it: what the API and the admin offer. Why a function could not be
    imported (a traceback from a worker's host) is for staff only (with_errors)."""
    offered: dict[str, dict[str, Any]] = {}
    for queue in ("cpu", "gpu"):
        for name, info in entry_catalog(queue).items():
            if name == BUILTIN:
                continue
            entry = offered.setdefault(name, {**info, "queues": []})
            if not info.get("error"):
                entry["queues"].append(queue)
                entry.pop("error", None)
                entry.update({key: value for key, value in info.items() if key != "error"})
    if not with_errors:
        for entry in offered.values():
            if "error" in entry:
                entry["error"] = IMPORT_FAILED
    return sorted(offered.values(), key=lambda entry: entry["name"])


def resolve_entry_job(config: Any, user: AnyUser | None, errors: dict[str, str]) -> EntryJob | None:
    """An entry-point job's config, checked against what the workers of its queue have, with the
    entry point's own declaration; errors under config.<field>."""
    device = config.get("device", "auto") if isinstance(config, dict) else "auto"
    queue = queue_of_device(device)
    catalog = entry_catalog(queue)
    check = None
    info = find(catalog, str(config.get("entry", ""))) if isinstance(config, dict) else None
    if info is not None and info.get("check") and not info.get("error") and info["name"] in registered():
        # validated by code: only ever a function registered under trainwatch.jobs, loaded by
        # name, in a process of its own (the package imports torch; this one never does)
        check = check_in_child(info["name"])
    try:
        job = read_entry_job(config, catalog, f"the workers of the {queue} queue", check)
    except EntryError as error:
        errors["config.entry"] = f"{info and info['name']!r} cannot validate its params here: {error}"
        return None
    except ConfigError as error:
        errors.update({f"config.{field}": message for field, message in error.errors.items()})
        return None
    schema = (info or {}).get("params") or {}
    for name, spec in schema.items():
        if spec.get("type") == "path" and job.params.get(name):
            check_path(job.params[name], f"config.params.{name}", user, errors)
    return job


def resolve_config(config: Any, user: AnyUser | None, errors: dict[str, str]) -> tuple[dict[str, Any], str, str]:
    """Any job's config, validated: (the resolved config to store, its queue, a default name)."""
    if is_entry_job(config):
        job = resolve_entry_job(config, user, errors)
        if job is None:
            return {}, "", ""
        return job.to_dict(), queue_for(job), job.summary(config.get("params"))
    try:
        resolved = RunConfig.from_dict(config)
    except ConfigError as error:
        errors.update(
            {f"config.{field}" if field != "config" else field: message for field, message in error.errors.items()}
        )
        return {}, "", ""
    check_data_path(resolved, user, errors)
    return resolved.to_dict(), queue_for(resolved), resolved.summary()


def acting_user(user: AnyUser | None) -> User | None:
    """The user to record as creator: None for the CLI (an operator on the server) and anonymous."""
    return user if isinstance(user, User) and user.is_authenticated else None


def check_name(
    value: Any, field: str, errors: dict[str, str], required: bool = False, max_length: int = MAX_NAME_LENGTH
) -> str:
    """Printable text of at most max_length characters (and not blank when required)."""
    if value is None and not required:
        return ""
    if (
        not isinstance(value, str)
        or len(value) > max_length
        or CONTROL_CHARACTERS.search(value)
        or (required and not value.strip())
    ):
        errors[field] = (
            f"must be text of {'1' if required else '0'} to {max_length} printable characters, got {value!r}"
        )
        return ""
    return value.strip()


def check_tags(tags: Any, errors: dict[str, str]) -> list[str]:
    if tags is None:
        return []
    if (
        not isinstance(tags, list)
        or len(tags) > MAX_TAGS
        or any(not isinstance(tag, str) or not TAG_PATTERN.match(tag) for tag in tags)
    ):
        errors["tags"] = f"must be a list of at most {MAX_TAGS} tags of 1 to 40 letters, digits, _ . or -; got {tags!r}"
        return []
    return list(dict.fromkeys(tags))


def check_priority(priority: Any, errors: dict[str, str]) -> int:
    if priority is None:
        return 0
    if isinstance(priority, bool) or not isinstance(priority, int) or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        errors["priority"] = (
            f"must be a whole number from {PRIORITY_MIN} to {PRIORITY_MAX} (higher runs first); got {priority!r}"
        )
        return 0
    return priority


def check_project(project_name: Any, user: AnyUser | None, errors: dict[str, str]) -> str:
    """A printable name; an existing project only for its members (or staff). Returns it stripped."""
    name = check_name(project_name, "project", errors, required=True, max_length=MAX_PROJECT_NAME_LENGTH)
    if "project" in errors:
        return ""
    acting = acting_user(user)
    if acting is not None:
        existing = Project.objects.filter(name=name).first()
        if existing is not None and not may_use_project(acting, existing):
            errors["project"] = (
                f"you are not a member of project {existing.name!r}; a staff user adds members in the admin"
            )
    return name


def project_for(project_name: str, user: AnyUser | None) -> Project:
    """The project of that name (check_project first); a new one belongs to whoever created it."""
    project, created = Project.objects.get_or_create(name=project_name)
    acting = acting_user(user)
    if created and acting is not None:
        project.members.add(acting)
    return project


def check_data_path(config: RunConfig, user: AnyUser | None, errors: dict[str, str]) -> None:
    if config.data.path:
        check_path(config.data.path, "config.data.path", user, errors)


def reads_any_path(user: AnyUser | None) -> bool:
    """Staff, who run the workers, and the CLI, run by an operator on the server, may name any
    path; a member's job reads only inside TRAINWATCH_DATA_DIRS."""
    acting = acting_user(user)
    return acting is None or acting.is_staff


def data_roots() -> tuple[str, ...]:
    return real_roots(settings.TRAINWATCH_DATA_DIRS)


def check_path(given: str, field: str, user: AnyUser | None, errors: dict[str, str]) -> None:
    """A path a member's job reads must lie inside one of TRAINWATCH_DATA_DIRS: a worker must not
    read (or even say whether there is) any file of its host that a member names. Checked here
    so that the form says so at once, and again on the worker right before each file is read."""
    if not reads_any_path(user) and outside(given, data_roots()):
        errors[field] = outside_message(given, data_roots())


def create_run(
    project_name: Any,
    config: Any,
    name: Any = "",
    user: AnyUser | None = None,
    tags: Any = None,
    priority: Any = None,
    study: Study | None = None,
    stage: int = 0,
    study_values: dict[str, Any] | None = None,
) -> Run:
    """Validate everything, then create and queue the run; raises ConfigError naming each bad field."""
    errors: dict[str, str] = {}
    project = check_project(project_name, user, errors)
    clean_name = check_name(name, "name", errors)
    clean_tags = check_tags(tags, errors)
    clean_priority = check_priority(priority, errors)
    resolved, queue, summary = resolve_config(config, user, errors)
    if errors:
        raise ConfigError(errors)
    with transaction.atomic():
        run = Run.objects.create(
            project=project_for(project, user),
            name=clean_name or summary,
            tags=clean_tags,
            priority=clean_priority,
            study=study,
            stage=stage,
            study_values=study_values or {},
            config=resolved,
            queue=queue,
            created_by=acting_user(user),
            reads_any_path=reads_any_path(user),
            celery_task_id=str(uuid.uuid4()),
        )
        send_train_token(run.queue, run.celery_task_id)
    return run


def set_priority(run: Run, priority: Any) -> bool:
    """Change a queued run's priority (raises ConfigError for a bad value); False once the run
    has left the queue. Takes effect at once: workers pick the order when they claim a run."""
    errors: dict[str, str] = {}
    clean = check_priority(priority, errors)
    if errors:
        raise ConfigError(errors)
    return bool(Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(priority=clean))


def queue_positions(queue: str | None = None) -> dict[int, int]:
    """run id -> 1-based position in its queue's order (highest priority, then oldest), for
    every queued run (of one queue, if given): the order tracker.worker.execute.claim_next takes them in."""
    queued = Run.objects.filter(status=Run.Status.QUEUED)
    if queue is not None:
        queued = queued.filter(queue=queue)
    ranked = queued.annotate(
        position=Window(
            RowNumber(),
            partition_by=[F("queue")],
            order_by=[F("priority").desc(), F("created_at").asc(), F("pk").asc()],
        )
    )
    return dict(ranked.values_list("pk", "position"))


RESET_FIELDS = {
    "status": Run.Status.QUEUED,
    "cancel_requested": False,
    "started_at": None,
    "finished_at": None,
    "heartbeat_at": None,
    "worker": "",
    "device": "",
    "epoch": 0,
    "steps_done": 0,
    "best_val_accuracy": None,
    "final_loss": None,
    "error": "",
    "checks": None,
    "findings": [],
    "health": "",
}


def requeue(locked: Run, message: str, resume: bool) -> None:
    """Queue a run again (the caller holds its row lock). To resume, its checkpoint and
    measurements stay (the worker drops those after the checkpoint's step); from scratch,
    they are cleared, so that two attempts never mix."""
    if not resume:
        Checkpoint.objects.filter(run=locked).delete()  # their files go with the periodic sweep
        locked.chunks.all().delete()
        locked.series.all().delete()
        locked.histograms.all().delete()
        locked.images.all().delete()
    fields: dict[str, Any] = {**RESET_FIELDS, "message": message, "celery_task_id": str(uuid.uuid4())}
    if resume:
        del fields["checks"]  # the preflight checks are not run again on a resume
    for field, value in fields.items():
        setattr(locked, field, value)
    locked.save()
    send_train_token(locked.queue, locked.celery_task_id)


def retry(run: Run) -> bool:
    """Start an ended run again from scratch. An external run is not a job: only its script can
    train it again."""
    if run.status not in Run.FINISHED or run.is_external:
        return False
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if locked.status not in Run.FINISHED:
            return False
        locked.attempts = 0
        locked.created_at = timezone.now()
        requeue(locked, "", resume=False)
    return True


# the runs table's filters (the runs page's URL, a report block's `filter`)
RUN_FILTERS = ("status", "project", "study", "optimizer", "schedule", "tag", "q")


def filter_runs(queryset: QuerySet[Run], filters: dict[str, str]) -> QuerySet[Run]:
    """The runs of the queryset that pass the runs table's filters (RUN_FILTERS; empty ones and
    values that cannot match, such as an unknown status, do not filter)."""
    if filters.get("status") in Run.Status.values:
        queryset = queryset.filter(status=filters["status"])
    if filters.get("project"):
        queryset = queryset.filter(project__name=filters["project"])
    if filters.get("study", "").isdigit():
        queryset = queryset.filter(study_id=int(filters["study"]))
    if filters.get("optimizer"):
        queryset = queryset.filter(config__optimizer__name=filters["optimizer"])
    if filters.get("schedule"):
        queryset = queryset.filter(config__schedule__name=filters["schedule"])
    if filters.get("tag"):
        queryset = queryset.filter(tags__contains=[filters["tag"]])
    if filters.get("q"):
        # the matching projects first (a handful), so that the run side is one indexable condition
        # (a trigram index on the name where the server has pg_trgm), not an OR across a join
        projects = list(Project.objects.filter(name__icontains=filters["q"]).values_list("pk", flat=True))
        queryset = queryset.filter(Q(name__icontains=filters["q"]) | Q(project_id__in=projects))
    return queryset
