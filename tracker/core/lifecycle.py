"""Every way a run ends, in one place: its worker finishes it (succeeded, failed, diverged,
cancelled, stopped early), its client reports its end (written by a task on the upkeep queue),
a queued run is cancelled, or the reaper finds it lost. Each ends
the same way: series compacted, diagnosis final, status written, and the run's study moved on
(its stage may be done)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from tracker.core import studies
from tracker.core.alerts import alert_on_end, alert_on_findings
from tracker.core.findings import diagnose_run
from tracker.core.runs import requeue
from tracker.core.storage import compact_series
from tracker.models import Checkpoint, Run

log = logging.getLogger(__name__)


def finish_run(run_id: int, status: str, message: str, **fields: Any) -> None:
    """Write a run's end: compacted and diagnosed before the status is written, so that an
    ended run is always a diagnosed one; then its alerts go out and its study moves on."""
    final: dict[str, Any] = {"status": status, "message": message, **fields}
    events: list[dict[str, Any]] = []
    try:
        compact_series(run_id)  # an ended run's series no longer grow: fewer, larger chunks read faster
        diagnosis = diagnose_run(run_id, status, message, save=False)
        final.update(diagnosis.fields)
        events = diagnosis.events
        diverged = next((f for f in diagnosis.findings if f["rule"] == "divergence"), None)
        if status == Run.Status.SUCCEEDED and diverged is not None:
            # a script that went on to its end after its loss became inf or NaN did not succeed
            final.update(status=Run.Status.DIVERGED, message=diverged["evidence"])
    except Exception:
        log.exception("run %s: compacting or the final diagnosis failed", run_id)
    now = timezone.now()
    Run.objects.filter(pk=run_id).update(**{"finished_at": now, "heartbeat_at": now, **final})
    try:
        alert_on_findings(run_id, events)
        alert_on_end(run_id, final["status"], final["message"])
    except Exception:
        log.exception("run %s: raising its alerts failed", run_id)
    _advance_study(run_id)


def reported_ending(run: Run, finish: dict[str, Any], stop: bool) -> dict[str, Any]:
    """The end a client's last payload reports, as Run.ending: cancelled when a stop was asked
    for and the script ended of its own accord; its length by the script's own clock (an offline
    run uploaded days later still lasted what it lasted)."""
    status = Run.Status.CANCELLED if stop and finish["status"] == Run.Status.SUCCEEDED else finish["status"]
    ending: dict[str, Any] = {"status": status, "message": finish["message"], "error": finish["error"]}
    if finish["seconds"] is not None and run.started_at is not None:
        ending["finished_at"] = (run.started_at + dt.timedelta(seconds=finish["seconds"])).isoformat()
    return ending


def end_as_reported(run_id: int) -> str | None:
    """Write the end a client reported (compaction, final diagnosis, alerts, the study's next
    step: tracker.core.lifecycle.finish_run); the run's status, or None when another process
    has taken it or there is none to write. Claimed under the row's lock, so it is written once;
    the claim waits for the lock (a live diagnosis may hold it a moment) rather than skipping
    the run, since nothing but the reaper would come back for it."""
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id, status=Run.Status.RUNNING, ending__isnull=False).first()
        if run is None or run.ending is None:
            return None
        ending = dict(run.ending)
        Run.objects.filter(pk=run_id).update(ending=None)
    fields = {"error": ending.get("error", "")}
    if ending.get("finished_at"):
        fields["finished_at"] = dt.datetime.fromisoformat(ending["finished_at"])
    finish_run(run_id, ending["status"], ending["message"], **fields)
    return str(ending["status"])


def _advance_study(run_id: int) -> None:
    try:
        studies.advance(run_id)
    except Exception:
        log.exception("run %s: advancing its study failed", run_id)


def cancel_by_member(run: Run) -> str:
    """A person's cancel (the run page, the API): '' when asked for, else why not, in words."""
    if request_cancel(run):
        return ""
    status = Run.objects.values_list("status", flat=True).get(pk=run.pk)
    return f"the run has already ended ({status})"


def request_cancel(run: Run) -> bool:
    """A queued run never starts; a running one stops at its next flush (about 1 s) and its
    worker finishes it `cancelled`."""
    if Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(
        status=Run.Status.CANCELLED,
        cancel_requested=True,
        finished_at=timezone.now(),
        message="cancelled before it started",
    ):
        _advance_study(run.pk)  # it may have been the last of its study's stage
        return True
    return bool(Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(cancel_requested=True))


def reap_lost_runs(max_silence: float, max_attempts: int) -> list[tuple[int, str]]:
    """Running runs whose worker has been silent for max_silence seconds: requeued while
    they have attempts left, `lost` after that; a client's run whose reported end no task has
    written (tracker.core.dispatch.send_upkeep) is ended as reported. Returns (run id, what
    was done)."""
    cutoff = timezone.now() - dt.timedelta(seconds=max_silence)
    done = []
    # the task that was to write a reported end was lost (an upkeep worker that died, a broker restart)
    for run_id in Run.objects.filter(
        status=Run.Status.RUNNING, ending__isnull=False, heartbeat_at__lt=cutoff
    ).values_list("pk", flat=True):
        status = end_as_reported(run_id)
        if status is not None:
            done.append((run_id, status))
    quiet = Run.objects.filter(status=Run.Status.RUNNING, ending__isnull=True, heartbeat_at__lt=cutoff)
    for run_id in quiet.values_list("pk", flat=True):
        with transaction.atomic():
            # skip_locked: another reaper (or the run's own worker) holds it
            locked = (
                Run.objects.select_for_update(skip_locked=True)
                .filter(pk=run_id, status=Run.Status.RUNNING, ending__isnull=True, heartbeat_at__lt=cutoff)
                .first()
            )
            if locked is None or locked.heartbeat_at is None:
                continue
            silent = (timezone.now() - locked.heartbeat_at).total_seconds()
            who = (
                f"the client on {locked.source.get('host') or '?'}"
                if locked.is_external
                else f"worker {locked.worker or '?'}"
            )
            what = f"{who} went silent {silent:.0f} s ago at step {locked.steps_done}"
            # an external run has no job to queue again: its script was killed, or lost its network for good
            if not locked.is_external and locked.attempts < max_attempts:
                saved = Checkpoint.objects.filter(run=locked).order_by("-step").values_list("step", flat=True).first()
                how = f"resumes from the checkpoint at step {saved}" if saved is not None else "restarts from scratch"
                requeue(
                    locked,
                    f"lost: {what}; requeued, {how} (attempt {locked.attempts + 1} of {max_attempts})",
                    resume=saved is not None,
                )
                done.append((run_id, "requeued"))
                continue
            # claimed as lost here, under the lock, so that no second reaper finishes it too
            locked.status = Run.Status.LOST
            locked.save(update_fields=["status"])
        ending = (
            "its script must be started again"
            if locked.is_external
            else f"no attempts left ({locked.attempts} of {max_attempts})"
        )
        finish_run(run_id, Run.Status.LOST, f"lost: {what}; {ending}")
        done.append((run_id, "lost"))
    return done
