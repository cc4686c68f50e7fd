"""Alerts sent by the real processes: a Celery worker whose run diverges, and the web server
whose client run's ReLUs all die. E-mail through Django's file backend in those processes,
webhooks to a real local HTTP server."""

from __future__ import annotations

import uuid
from email import message_from_string

import pytest
from django.db import transaction

from tests.conftest import ROOT, WebServer, start_worker, stop_worker, wait_until
from tests.integration.test_client_live import script
from tracker.core.dispatch import send_train_token
from tracker.core.runs import create_run
from tracker.dev.launcher import upkeep_worker_command
from tracker.models import Alert, Project, Run
from trainer.pathologies import PATHOLOGIES

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def mail_settings(folder) -> dict[str, str]:
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(folder),
        "TRAINWATCH_PUBLIC_URL": "https://tw.example.com",
        "TRAINWATCH_WEBHOOK_ALLOW": "127.0.0.1",  # the test's receiver
    }


def mails(folder) -> list:
    return [message_from_string(path.read_text()) for path in sorted(folder.glob("*.log"))] if folder.exists() else []


def test_a_worker_announces_a_diverged_run_once_by_mail_and_webhook(django_db_setup, webhook_receiver, tmp_path):
    queue = f"alerts-{uuid.uuid4().hex[:6]}"  # only this test's worker listens here
    worker = start_worker(
        f"alerts-{queue}@localhost", queue, ROOT / ".trainwatch" / "test-worker-alerts.log", **mail_settings(tmp_path)
    )
    try:
        Project.objects.create(name="alerted", alert_emails=["team@example.com"], alert_webhooks=[webhook_receiver.url])
        config, _ = PATHOLOGIES["far too high a learning rate"]
        with transaction.atomic():
            run = create_run("alerted", config, "lr 10")
            Run.objects.filter(pk=run.pk).update(queue=queue)
            send_train_token(queue, str(uuid.uuid4()))
        done = wait_until(lambda: Run.objects.filter(pk=run.pk, status__in=Run.FINISHED).first(), 120, "the run to end")
        assert done.status == "diverged"
        wait_until(lambda: webhook_receiver.posts and mails(tmp_path), 30, "the webhook and the e-mail")
    finally:
        stop_worker(worker)
    [post] = webhook_receiver.posts
    assert (
        post["json"]["alert"] == "divergence" and post["json"]["run"]["url"] == f"https://tw.example.com/runs/{run.pk}/"
    )
    [mail] = mails(tmp_path)
    assert mail["To"] == "team@example.com" and "training diverged" in mail["Subject"]
    assert f"https://tw.example.com/runs/{run.pk}/" in mail.get_payload()
    alert = Alert.objects.get(run=run)
    assert set(alert.deliveries) == {"mail", webhook_receiver.url} and alert.next_attempt_at is None


def test_the_upkeep_worker_announces_an_error_finding_of_a_client_run_while_it_runs(
    django_db_setup, webhook_receiver, token, user, tmp_path
):
    project = Project.objects.create(name="scripts", alert_webhooks=[webhook_receiver.url])
    project.members.add(user)
    # the client's run is diagnosed on an upkeep queue of this test's, whose worker may reach the receiver
    queue = f"upkeep-{uuid.uuid4().hex[:6]}"
    name = f"{queue}@localhost"
    upkeep = start_worker(
        name,
        queue,
        ROOT / ".trainwatch" / "test-upkeep-alerts.log",
        command=upkeep_worker_command(name, queue),
        **mail_settings(tmp_path / "mail"),
    )
    web = WebServer()
    web.environment.update(mail_settings(tmp_path / "mail"), TRAINWATCH_UPKEEP_QUEUE=queue)
    web.start()
    try:
        # SGD with momentum at lr 50 on the digits MLP, about 4 s
        process = script(web, token, tmp_path, "--epochs", "4", "--lr", "50", "--sleep", "0.02")
        wait_until(lambda: webhook_receiver.posts, 90, "the webhook, while the script runs")
        run = Run.objects.get(kind="external")
        posted = webhook_receiver.posts[0]["json"]
        # every ReLU of the hidden layer dies in the first steps: an error, announced at once
        assert posted["alert"] == "finding:dead_relus" and posted["run"]["id"] == run.pk
        assert posted["finding"]["severity"] == "error" and "100% of the units of 1" in posted["evidence"]
        assert posted["run"]["status"] == "running"  # announced while it trains, not at its end
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output
        run = wait_until(lambda: Run.objects.filter(kind="external", status__in=Run.FINISHED).first(), 30, "the end")
    finally:
        web.stop()
        stop_worker(upkeep)
    assert len(webhook_receiver.posts) == 1 and Alert.objects.filter(run=run).count() == 1
    assert "dead_relus" in [f["rule"] for f in run.findings]
