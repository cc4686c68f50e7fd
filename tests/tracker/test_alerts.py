"""Alerts (tracker.core.alerts): what is announced, to whom, once; with Django's test mail outbox
and a real local HTTP server as the webhook."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.utils import timezone

from tracker.core.alerts import RETRY_DELAYS, deliver, deliver_due
from tracker.core.findings import diagnose_run
from tracker.core.lifecycle import finish_run, reap_lost_runs
from tracker.core.storage import ChunkWriter, write_histograms
from tracker.models import Alert, Project, Run
from trainer.sink import HistogramRecord

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def public_url(settings):
    settings.TRAINWATCH_PUBLIC_URL = "https://tw.example.com"


@pytest.fixture
def project(webhook_receiver):
    return Project.objects.create(
        name="vision", alert_emails=["team@example.com", "lead@example.com"], alert_webhooks=[webhook_receiver.url]
    )


def running(project, **fields) -> Run:
    defaults = {
        "name": "resnet lr 0.5",
        "config": {"optimizer": {"name": "sgd", "lr": 0.5}},
        "status": "running",
        "steps_per_epoch": 100,
        "total_steps": 2000,
        "steps_done": 400,
        "started_at": timezone.now(),
        "heartbeat_at": timezone.now(),
    }
    return Run.objects.create(project=project, **{**defaults, **fields})


def sent(run: Run, key: str, callbacks) -> Alert:
    """The run's alert, delivered as its thread would once the transaction commits."""
    alert = Alert.objects.get(run=run, key=key)
    assert len(callbacks) >= 1  # sending waits for the commit
    deliver(alert.pk)
    alert.refresh_from_db()
    return alert


def test_a_diverged_run_sends_one_email_and_one_webhook_with_its_link_and_evidence(
    project, webhook_receiver, mailoutbox, django_capture_on_commit_callbacks
):
    run = running(project)
    losses = np.r_[np.linspace(2.3, 1.5, 350), [np.nan] * 5]
    ChunkWriter(run.pk).write({"loss": (np.arange(len(losses)), losses)})
    with django_capture_on_commit_callbacks() as callbacks:
        finish_run(run.pk, "diverged", "loss became nan at step 350: lower the learning rate (optimizer.lr=0.5)")
    alert = sent(run, "divergence", callbacks)
    assert Alert.objects.filter(run=run).count() == 1  # the divergence finding and the status: one message
    assert alert.deliveries["mail"]["sent"] and alert.deliveries[webhook_receiver.url]["sent"]
    assert alert.next_attempt_at is None

    [mail] = mailoutbox
    assert mail.to == ["team@example.com", "lead@example.com"]
    assert mail.subject == f"[Trainwatch] run #{run.pk} resnet lr 0.5 (vision): training diverged"
    assert f"https://tw.example.com/runs/{run.pk}/" in mail.body and "nan" in mail.body.lower()
    assert "Advice: lower the base learning rate (optimizer.lr=0.5, e.g. to 0.05)" in mail.body

    [post] = webhook_receiver.posts
    body = post["json"]
    assert post["content_type"] == "application/json" and body["alert"] == "divergence"
    assert body["run"] == {
        "id": run.pk,
        "name": "resnet lr 0.5",
        "project": "vision",
        "status": "diverged",
        "step": 400,
        "total_steps": 2000,
        "url": f"https://tw.example.com/runs/{run.pk}/",
    }
    assert body["finding"]["rule"] == "divergence" and body["text"].startswith(f"Trainwatch: run #{run.pk}")

    # once: a second ending (e.g. a retried finish) or diagnosis announces nothing more
    with django_capture_on_commit_callbacks() as more:
        finish_run(run.pk, "diverged", "again")
        diagnose_run(run.pk)
    assert Alert.objects.filter(run=run).count() == 1 and not more
    assert deliver(alert.pk) is None and len(mailoutbox) == 1 and len(webhook_receiver.posts) == 1


def test_an_error_finding_on_a_running_run_is_announced_at_once_and_once(
    project, webhook_receiver, mailoutbox, django_capture_on_commit_callbacks
):
    run = running(project)
    ChunkWriter(run.pk).write({"loss": (np.arange(50), np.linspace(2.3, 2.2, 50))})
    equal = HistogramRecord("weight/fc1.weight", 0, 0.0, 0.0, np.array([64]), 0.0, 0.0)  # a hidden layer
    write_histograms(run.pk, [equal, HistogramRecord("weight/out.weight", 0, -0.1, 0.1, np.array([32, 32]), 0.0, 0.05)])
    with django_capture_on_commit_callbacks() as callbacks:
        diagnose_run(run.pk)
    alert = sent(run, "finding:symmetry", callbacks)
    assert "weights start all equal" in alert.subject and alert.payload["finding"]["severity"] == "error"
    assert alert.payload["run"]["status"] == "running"
    diagnose_run(run.pk)
    assert Alert.objects.filter(run=run).count() == 1 and len(mailoutbox) == 1


def test_a_warning_is_shown_but_not_announced(project, django_capture_on_commit_callbacks):
    run = running(project)
    steps = np.arange(0, 400, 10)
    ChunkWriter(run.pk).write(
        {"loss": (np.arange(400), np.linspace(2.3, 5.0, 400)), "update_ratio/fc1.weight": (steps, np.full(40, 3e-2))}
    )
    with django_capture_on_commit_callbacks() as callbacks:
        diagnose_run(run.pk)
        diagnose_run(run.pk)
    assert Run.objects.get(pk=run.pk).health == "warning" and not Alert.objects.exists() and not callbacks


def test_a_failed_run_sends_the_end_of_its_traceback(project, mailoutbox, django_capture_on_commit_callbacks):
    run = running(project)
    error = "Traceback (most recent call last):\n  File 'train.py', line 3\nRuntimeError: CUDA out of memory"
    with django_capture_on_commit_callbacks() as callbacks:
        finish_run(run.pk, "failed", "RuntimeError: CUDA out of memory", error=error)
    alert = sent(run, "failed", callbacks)
    assert alert.payload["headline"] == "the run failed" and alert.payload["evidence"].startswith("RuntimeError")
    assert "RuntimeError: CUDA out of memory" in mailoutbox[0].body.split("traceback:")[1]


def test_a_lost_run_is_announced_by_the_reaper(project, webhook_receiver, django_capture_on_commit_callbacks):
    run = running(project, attempts=3, heartbeat_at=timezone.now() - dt.timedelta(minutes=5), worker="gpu0@box")
    with django_capture_on_commit_callbacks() as callbacks:
        assert reap_lost_runs(60, 3) == [(run.pk, "lost")]
    alert = sent(run, "lost", callbacks)
    assert "worker gpu0@box went silent" in webhook_receiver.posts[0]["json"]["evidence"]
    assert alert.payload["run"]["status"] == "lost"


def test_a_requeued_run_is_not_announced(project, django_capture_on_commit_callbacks):
    run = running(project, attempts=1, heartbeat_at=timezone.now() - dt.timedelta(minutes=5))
    with django_capture_on_commit_callbacks():
        assert reap_lost_runs(60, 3) == [(run.pk, "requeued")]
    assert not Alert.objects.exists()


@pytest.mark.parametrize("status", ["succeeded", "cancelled", "stopped"])
def test_a_run_that_ended_well_or_on_purpose_sends_nothing(project, status):
    run = running(project)
    ChunkWriter(run.pk).write({"loss": (np.arange(50), np.linspace(2.3, 0.2, 50))})
    finish_run(run.pk, status, "done")
    assert not Alert.objects.exists()


def test_a_project_with_nowhere_to_send_records_nothing(mailoutbox):
    run = running(Project.objects.create(name="quiet"))
    finish_run(run.pk, "failed", "ValueError: bad", error="ValueError: bad")
    assert not Alert.objects.exists() and not mailoutbox


def test_a_failing_webhook_is_tried_again_later_and_the_mail_is_not_sent_twice(
    project, webhook_receiver, mailoutbox, django_capture_on_commit_callbacks
):
    webhook_receiver.status = 500
    run = running(project)
    with django_capture_on_commit_callbacks() as callbacks:
        finish_run(run.pk, "failed", "ValueError: bad", error="ValueError: bad")
    alert = sent(run, "failed", callbacks)
    hook = alert.deliveries[webhook_receiver.url]
    assert "500" in hook["error"] and hook["attempts"] == 1 and alert.deliveries["mail"]["sent"]
    assert alert.next_attempt_at > timezone.now() + dt.timedelta(seconds=RETRY_DELAYS[0] - 5)
    assert deliver_due() == 0  # not due yet

    Alert.objects.filter(pk=alert.pk).update(next_attempt_at=timezone.now())
    webhook_receiver.status = 200
    assert deliver_due() == 1
    alert.refresh_from_db()
    assert alert.deliveries[webhook_receiver.url]["sent"] and alert.deliveries[webhook_receiver.url]["attempts"] == 2
    assert alert.next_attempt_at is None and len(mailoutbox) == 1 and len(webhook_receiver.posts) == 2


def test_a_webhook_that_keeps_failing_is_given_up_after_the_last_delay(project, webhook_receiver):
    webhook_receiver.status = 503
    run = running(project)
    finish_run(run.pk, "failed", "ValueError: bad", error="ValueError: bad")
    alert = Alert.objects.get(run=run)
    for _ in range(len(RETRY_DELAYS) + 1):
        Alert.objects.filter(pk=alert.pk).update(next_attempt_at=timezone.now())
        deliver(alert.pk)
    alert.refresh_from_db()
    assert alert.attempts == len(RETRY_DELAYS) + 1 and alert.next_attempt_at is None
    assert len(webhook_receiver.posts) == len(RETRY_DELAYS) + 1


def test_an_unreachable_webhook_is_an_error_not_a_crash(project, mailoutbox, django_capture_on_commit_callbacks):
    Project.objects.filter(pk=project.pk).update(alert_webhooks=["http://127.0.0.1:9/nothing-listens"])
    run = running(project)
    with django_capture_on_commit_callbacks() as callbacks:
        finish_run(run.pk, "failed", "ValueError: bad", error="ValueError: bad")
    alert = sent(run, "failed", callbacks)
    assert alert.deliveries["http://127.0.0.1:9/nothing-listens"]["error"] == (
        "could not connect (refused, unreachable or no answer)"
    )
    assert len(mailoutbox) == 1


def test_a_webhook_to_an_internal_address_is_refused_at_delivery(
    project, mailoutbox, settings, django_capture_on_commit_callbacks
):
    """Saved before the operator took the address off the allow-list (or written to the
    database by hand): each delivery checks again."""
    settings.TRAINWATCH_WEBHOOK_ALLOW = []
    Project.objects.filter(pk=project.pk).update(alert_webhooks=["http://169.254.169.254/latest/meta-data/"])
    run = running(project)
    with django_capture_on_commit_callbacks() as callbacks:
        finish_run(run.pk, "failed", "ValueError: bad", error="ValueError: bad")
    alert = sent(run, "failed", callbacks)
    assert alert.deliveries["http://169.254.169.254/latest/meta-data/"]["error"].startswith(
        "refused: its host '169.254.169.254' is not a public address"
    )
