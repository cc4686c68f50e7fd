"""Runs trained by a team's own scripts, sent by the trainwatch client: created on the first
call, then fed with payloads (trainer.wire) in order, each stored by tracker.core.ingest as a
worker's hand-offs are, under the same rules (tracker.core.live), and ended by their last
payload (written by a task on the upkeep queue), by the reaper when they fall silent, or by a
cancel that the client sees in the answer to its next payload."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from typing import TYPE_CHECKING, Any, TypedDict

from django.db import DataError, IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from tracker.core.access import visible_runs
from tracker.core.dispatch import END_RUN, REFRESH_RUN, send_upkeep
from tracker.core.environment import check_environment
from tracker.core.ingest import Handoff, write_handoff
from tracker.core.lifecycle import reported_ending
from tracker.core.live import upkeep_due
from tracker.core.runs import acting_user, check_name, check_project, check_tags, project_for
from tracker.core.storage import ChunkWriter
from tracker.models import Run, RunEnvironment
from trainer import safe_json
from trainer.config import ConfigError
from trainer.wire import Payload, WireError, announced_seq, decode

if TYPE_CHECKING:
    from tracker.core.runs import AnyUser

MAX_CONFIG_BYTES = 256 * 1024
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
# what a client may say about where it runs, each at most this long
SOURCE_FIELDS = {
    "host": str,
    "python": str,
    "torch": str,
    "git_commit": str,
    "git_branch": str,
    "git_dirty": bool,
    "script": str,
    "pid": int,
    "cuda": str,
}
MAX_SOURCE_TEXT = 500
MAX_REFUSED_PAYLOADS = 20
log = logging.getLogger(__name__)
# a client's clock may run this much ahead of the server's
CLOCK_SKEW = dt.timedelta(minutes=5)


class SeqError(Exception):
    """A payload out of order: the client sends again from `expected`."""

    def __init__(self, expected: int):
        super().__init__(f"payload {expected} is expected next")
        self.expected = expected


class RunEnded(Exception):
    """The run has ended (or its client has reported its end): no payload is taken any more."""

    def __init__(self, status: str):
        super().__init__(f"the run has ended ({status}); no more payloads are taken")
        self.status = status


class IngestAnswer(TypedDict):
    seq: int  # the last payload stored
    stop: bool  # a cancel was asked for: the script's run.should_stop becomes true
    status: str


def _check_source(source: Any, errors: dict[str, str]) -> dict[str, Any]:
    if source is None:
        return {}
    if not isinstance(source, dict):
        errors["source"] = "must be an object: host, python, torch, git_commit, ..."
        return {}
    clean = {}
    for name, value in source.items():
        kind = SOURCE_FIELDS.get(name)
        if kind is None:
            errors[f"source.{name}"] = f"unknown; allowed: {', '.join(SOURCE_FIELDS)}"
        elif value is not None and (
            not isinstance(value, kind)
            or (isinstance(value, str) and (len(value) > MAX_SOURCE_TEXT or "\x00" in value))
        ):
            errors[f"source.{name}"] = f"must be {kind.__name__}" + (
                f" of at most {MAX_SOURCE_TEXT} characters, without NUL" if kind is str else ""
            )
        else:
            clean[name] = value
    return clean


def _check_config(config: Any, errors: dict[str, str]) -> dict[str, Any]:
    """Whatever the script logs as its config, as long as it is a JSON object of modest size."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        errors["config"] = "must be a JSON object (the script's hyperparameters)"
        return {}
    problem = safe_json.unclean(config, "config")
    if problem:
        errors["config"] = problem.removeprefix("config: ")
        return {}
    if len(json.dumps(config)) > MAX_CONFIG_BYTES:
        errors["config"] = f"must be at most {MAX_CONFIG_BYTES} bytes as JSON"
        return {}
    return config


def _check_started_at(value: Any, errors: dict[str, str]) -> dt.datetime:
    """When the script started, by its clock (an offline run is uploaded later); now when not given."""
    now = timezone.now()
    if value is None:
        return now
    started = parse_datetime(value) if isinstance(value, str) else None
    if started is None or started.tzinfo is None or started > now + CLOCK_SKEW:
        errors["started_at"] = f"must be an ISO 8601 time with its time zone, not in the future; got {value!r}"
        return now
    return started


def start_external_run(
    project_name: Any,
    name: Any,
    config: Any,
    tags: Any,
    source: Any,
    client_id: Any,
    user: AnyUser | None,
    started_at: Any = None,
    environment: Any = None,
) -> tuple[Run, bool]:
    """The run a client asked for: (run, created). A creation retried with the same client_id
    (its answer lost on the way) finds the run it made; raises ConfigError naming each bad field."""
    errors: dict[str, str] = {}
    if not isinstance(client_id, str) or not CLIENT_ID.match(client_id):
        errors["client_id"] = "must be 8 to 64 letters, digits, _ or - (the client makes one per run)"
    project = check_project(project_name, user, errors)
    clean_name = check_name(name, "name", errors)
    clean_tags = check_tags(tags, errors)
    clean_config = _check_config(config, errors)
    clean_source = _check_source(source, errors)
    clean_environment = check_environment(environment, errors)
    started = _check_started_at(started_at, errors)
    if errors:
        raise ConfigError(errors)
    existing = Run.objects.filter(client_id=client_id).first()
    if existing is not None:
        if user is None or not visible_runs(user).filter(pk=existing.pk).exists():
            raise ConfigError({"client_id": "is taken by another run"})
        return existing, False
    now = timezone.now()
    default_name = f"{clean_source.get('script') or 'script'} on {clean_source.get('host') or 'a client'}"
    try:
        with transaction.atomic():
            run = Run.objects.create(
                project=project_for(project, user),
                name=clean_name or default_name[:200],
                tags=clean_tags,
                config=clean_config,
                kind=Run.Kind.EXTERNAL,
                status=Run.Status.RUNNING,
                queue="",
                source=clean_source,
                client_id=client_id,
                created_by=acting_user(user),
                started_at=started,
                heartbeat_at=now,
                attempts=1,
            )
            RunEnvironment.objects.create(run=run, data=clean_environment)
    except IntegrityError:  # the same creation, arriving twice at once
        return Run.objects.get(client_id=client_id), False
    return run, True


class PayloadRefused(Exception):
    """A payload refused for what it holds (sending it again will not change that); it took its
    place in the run's order when it was the next one, so its client goes on with the rest."""


UNSTORABLE = "the database refused a value it holds (a number out of range, text it cannot keep)"


def receive(run: Run, data: bytes) -> tuple[Payload, IngestAnswer]:
    """Decode and store one payload as it came from a client; raises PayloadRefused, SeqError
    or RunEnded."""
    try:
        payload = decode(data)
        return payload, ingest(run, payload)
    except (WireError, DataError) as error:
        message = str(error) if isinstance(error, WireError) else UNSTORABLE
        refuse_payload(run, announced_seq(data), message)
        raise PayloadRefused(message) from None


def refuse_payload(run: Run, seq: int | None, error: str) -> bool:
    """A payload refused for what it holds takes its place in the run's order (when it is the
    next one), so that its client goes on with the rest of the run; the run keeps what was
    refused and why. True when it took its place."""
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if seq is None or locked.is_finished or seq != locked.ingest_seq + 1:
            return False
        refused = [*locked.ingest_refused, {"seq": seq, "error": error[:500], "at": timezone.now().isoformat()}]
        Run.objects.filter(pk=run.pk).update(ingest_seq=seq, ingest_refused=refused[-MAX_REFUSED_PAYLOADS:])
    log.warning("run %s: payload %s refused: %s", run.pk, seq, error)
    return True


def ingest(run: Run, payload: Payload) -> IngestAnswer:
    """Store one payload of the run's client: in order (payload n after n - 1; one already
    stored is answered again, never stored twice), in one transaction, as any hand-off is
    (tracker.core.ingest), and answer. What takes longer leaves the request for the upkeep
    queue: the run's roll-up and live diagnosis when due, and the end its last payload reports."""
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if locked.is_finished or locked.ending is not None:
            raise RunEnded(locked.ending["status"] if locked.ending is not None else locked.status)
        if payload.seq <= locked.ingest_seq:
            return IngestAnswer(seq=locked.ingest_seq, stop=locked.cancel_requested, status=locked.status)
        if payload.seq != locked.ingest_seq + 1:
            raise SeqError(locked.ingest_seq + 1)
        stop = write_handoff(run, Handoff.of(payload), ChunkWriter(run.pk), timezone.now(), context=locked.context)
        updates: dict[str, Any] = {"ingest_seq": payload.seq}
        status = Run.Status.RUNNING
        if payload.finish is not None:
            updates["ending"] = reported_ending(locked, payload.finish, stop)
            status = updates["ending"]["status"]
            send_upkeep(END_RUN, run.pk)
        elif upkeep_due(run.pk):
            send_upkeep(REFRESH_RUN, run.pk)
        Run.objects.filter(pk=run.pk).update(**updates)
    return IngestAnswer(seq=payload.seq, stop=stop, status=status)
