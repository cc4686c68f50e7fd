"""Alerts: an error finding, a divergence, a lost or a failed run is announced once to the
run's project: one e-mail to its addresses (Django's mail backend, configured by the
environment) and one JSON POST to each of its webhooks. Once: an Alert row per (run, what),
unique in the database, is created before anything is sent.

Sending happens beside the work that raised the alert (a thread started when the transaction
commits): a webhook that hangs must not hold up a training run's flush or a client's upload,
and an alert must not wait in the job queue behind training runs. A target that fails is
tried again by Celery beat (tracker.deliver_alerts) with a growing delay, RETRY_DELAYS."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from tracker.lib.outbound import post_json
from tracker.models import Alert, Project, Run

log = logging.getLogger(__name__)

# the run endings that are announced, and under which key (a divergence is also a finding)
ENDINGS = {Run.Status.DIVERGED: "divergence", Run.Status.FAILED: "failed", Run.Status.LOST: "lost"}
RETRY_DELAYS = (60, 300, 1800, 7200)  # seconds before the 2nd, 3rd, ... attempt; then it gives up
CLAIM_SECONDS = 120  # one sender at a time per alert: the thread, or beat's sweep
MAX_ALERT_TARGETS = 20  # addresses, and webhooks, per project
MAIL = "mail"  # the deliveries' key of the e-mail (one message to all the addresses)


def run_url(run: Run) -> str:
    return settings.TRAINWATCH_PUBLIC_URL.rstrip("/") + run.get_absolute_url()


def alert_on_findings(run_id: int, events: list[dict[str, Any]]) -> None:
    """Announce each finding that became an error (raised as one, or grown into one)."""
    for event in events:
        if event["event"] in ("raised", "changed") and event["severity"] == "error":
            key = "divergence" if event["rule"] == "divergence" else f"finding:{event['rule']}"
            raise_alert(run_id, key, event["title"], event.get("evidence", ""), finding=event)


def alert_on_end(run_id: int, status: str, message: str) -> None:
    """Announce a run that diverged, failed or was lost (nothing when it was announced already)."""
    key = ENDINGS.get(Run.Status(status)) if status in Run.Status.values else None
    if key is None:
        return
    headline = {"divergence": "training diverged", "failed": "the run failed", "lost": "the run was lost"}[key]
    raise_alert(run_id, key, headline, message)


def raise_alert(
    run_id: int, key: str, headline: str, evidence: str, finding: dict[str, Any] | None = None
) -> Alert | None:
    """Record the alert (once per run and key) and send it once the caller's transaction has
    committed. None when it was raised before, or the project has nowhere to send it."""
    run = Run.objects.select_related("project").get(pk=run_id)
    project = run.project
    if not project.alert_emails and not project.alert_webhooks:
        return None
    url = run_url(run)
    title = f"run #{run.pk}{f' {run.name}' if run.name else ''} ({project.name}): {headline}"
    step = f"step {run.steps_done}" + (f" of {run.total_steps}" if run.total_steps else "")
    lines = [title, "", evidence] if evidence else [title]
    if finding and finding.get("advice"):
        lines.append(f"Advice: {finding['advice']}")
    lines += ["", f"Status: {run.status}, {step}", f"Run: {url}"]
    if key == "failed" and run.error:
        lines += ["", "The end of its traceback:", *run.error.strip().splitlines()[-8:]]
    payload = {
        "text": f"Trainwatch: {title}. {evidence} {url}".replace("  ", " ").strip(),
        "alert": key,
        "run": {
            "id": run.pk,
            "name": run.name,
            "project": project.name,
            "status": run.status,
            "step": run.steps_done,
            "total_steps": run.total_steps,
            "url": url,
        },
        "headline": headline,
        "evidence": evidence,
        "finding": (
            {name: finding.get(name) for name in ("rule", "title", "severity", "evidence", "step", "fraction")}
            if finding
            else None
        ),
    }
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                run=run,
                key=key[:120],
                subject=f"[Trainwatch] {title}"[:300],
                body="\n".join(lines),
                payload=payload,
                emails=list(project.alert_emails),
                webhooks=list(project.alert_webhooks),
                next_attempt_at=timezone.now(),
            )
    except IntegrityError:
        return None  # announced before
    transaction.on_commit(lambda: send_in_background(alert.pk))
    return alert


def send_in_background(alert_id: int) -> None:
    def send() -> None:
        try:
            deliver(alert_id)
        except Exception:
            log.exception("alert %s: sending failed; beat's sweep tries again", alert_id)
        finally:
            connection.close()  # this thread's own connection

    threading.Thread(target=send, name=f"alert-{alert_id}", daemon=True).start()


def deliver(alert_id: int) -> Alert | None:
    """Send what has not been sent of a due alert, and record each target's outcome. None when
    it is not due, or another sender holds it."""
    now = timezone.now()
    claimed = (
        Alert.objects.filter(pk=alert_id, next_attempt_at__lte=now)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=now + dt.timedelta(seconds=CLAIM_SECONDS))
    )
    if not claimed:
        return None
    alert = Alert.objects.get(pk=alert_id)
    deliveries: dict[str, dict[str, Any]] = dict(alert.deliveries)
    targets = ([MAIL] if alert.emails else []) + list(alert.webhooks)
    for target in targets:
        done = deliveries.get(target, {})
        if done.get("sent"):
            continue
        tries = int(done.get("attempts", 0)) + 1
        error = send_to(target, alert.subject, alert.body, alert.emails, alert.payload)
        if error:
            deliveries[target] = {"error": error, "attempts": tries}
            log.warning("alert %s to %s failed: %s", alert_id, target, error)
        else:
            deliveries[target] = {"sent": timezone.now().isoformat(), "attempts": tries}
    attempts = alert.attempts + 1
    unsent = any(not outcome.get("sent") for outcome in deliveries.values())
    retry = unsent and attempts <= len(RETRY_DELAYS)
    Alert.objects.filter(pk=alert_id).update(
        deliveries=deliveries,
        attempts=attempts,
        next_attempt_at=timezone.now() + dt.timedelta(seconds=RETRY_DELAYS[attempts - 1]) if retry else None,
        claimed_until=None,
    )
    alert.refresh_from_db()
    return alert


def send_to(target: str, subject: str, body: str, emails: list[str], payload: dict[str, Any]) -> str:
    """Send to one target (MAIL: the e-mail to all the addresses; else a webhook URL): '' when
    sent, else what went wrong, in words."""
    try:
        if target == MAIL:
            send_mail(subject, body, None, emails)
        else:
            return post_json(target, payload)
    except Exception as error:  # any failure of a target is reported, never raised
        return f"{type(error).__name__}: {error}"[:500]
    return ""


def start_test(project: Project, url: str, user: Any) -> int:
    """Send a test message to each of the project's targets, in the background (a slow target
    must not hold a web worker); the outcomes land in project.alert_test as they come. Returns
    how many targets there are (0: nothing to send to)."""
    targets = ([MAIL] if project.alert_emails else []) + list(project.alert_webhooks)
    if not targets:
        return 0
    started: dict[str, Any] = {
        "started": timezone.now().isoformat(),
        "by": getattr(user, "username", ""),
        "targets": targets,
        "outcomes": {},
        "done": False,
    }
    Project.objects.filter(pk=project.pk).update(alert_test=started)

    def send() -> None:
        try:
            send_test(project.pk, url)
        except Exception:
            log.exception("project %s: the test alert failed", project.pk)
        finally:
            connection.close()  # this thread's own connection

    transaction.on_commit(lambda: threading.Thread(target=send, name=f"alert-test-{project.pk}", daemon=True).start())
    return len(targets)


def send_test(project_id: int, url: str) -> dict[str, str]:
    """The test message to each target of the project's latest test, one after the other, each
    outcome stored as it comes: target -> '' or the error."""
    project = Project.objects.get(pk=project_id)
    test = dict(project.alert_test)
    text = f"Trainwatch: a test alert of project {project.name}. Alerts of its runs come here. {url}"
    payload = {"text": text, "alert": "test", "run": None, "headline": "test alert", "evidence": "", "finding": None}
    subject = f"[Trainwatch] test alert of project {project.name}"
    outcomes: dict[str, str] = {}
    for target in test.get("targets", []):
        outcomes[target] = send_to(target, subject, text, list(project.alert_emails), payload)
        Project.objects.filter(pk=project_id).update(alert_test={**test, "outcomes": outcomes})
    Project.objects.filter(pk=project_id).update(alert_test={**test, "outcomes": outcomes, "done": True})
    return outcomes


def deliver_due() -> int:
    """Beat's sweep: send every alert that is due (a retry, or one whose thread died). Returns
    how many were tried."""
    due = Alert.objects.filter(next_attempt_at__lte=timezone.now()).values_list("pk", flat=True)
    return sum(deliver(alert_id) is not None for alert_id in list(due[:100]))
