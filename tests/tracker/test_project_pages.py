"""The projects page and a project's alerts page: where alerts go, a test alert, what was sent."""

from __future__ import annotations

import pytest

from tests.conftest import member_of, wait_until
from tracker.models import Alert, Project, Run

pytestmark = pytest.mark.django_db


def test_the_projects_page_lists_the_users_projects_with_their_runs_and_alert_targets(logged_in, user):
    vision = member_of(user, "vision")
    vision.alert_emails = ["team@example.com"]
    vision.save()
    Run.objects.create(project=vision, config={}, status="running")
    Run.objects.create(project=vision, config={}, status="succeeded")
    Project.objects.create(name="someone else's")
    page = logged_in.get("/projects/").content.decode()
    assert 'data-project="vision"' in page and "someone else" not in page
    assert "1 address, 0 webhooks" in page
    assert '<td class="num">2</td><td class="num">1</td>' in page


def test_alert_targets_are_saved_one_a_line(logged_in, user):
    project = member_of(user, "vision")
    response = logged_in.post(
        f"/projects/{project.pk}/alerts/",
        {
            "alert_emails": "team@example.com\n\n lead@example.com \nteam@example.com",
            "alert_webhooks": "https://chat.example.com/hooks/abc",
        },
    )
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.alert_emails == ["team@example.com", "lead@example.com"]
    assert project.alert_webhooks == ["https://chat.example.com/hooks/abc"]
    page = logged_in.get(f"/projects/{project.pk}/alerts/").content.decode()
    assert "team@example.com\nlead@example.com</textarea>" in page


def test_a_bad_target_is_named_by_its_line_and_nothing_is_saved(logged_in, user):
    project = member_of(user, "vision")
    response = logged_in.post(
        f"/projects/{project.pk}/alerts/",
        {"alert_emails": "team@example.com\nnot-an-address", "alert_webhooks": "ftp://files.example.com/x"},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "line 2: &#x27;not-an-address&#x27; is not an e-mail address" in page
    assert "line 1: &#x27;ftp://files.example.com/x&#x27; is not an http(s) URL" in page
    project.refresh_from_db()
    assert project.alert_emails == [] and project.alert_webhooks == []


def test_too_many_targets_say_the_limit(logged_in, user):
    project = member_of(user, "vision")
    emails = "\n".join(f"a{i}@example.com" for i in range(21))
    response = logged_in.post(f"/projects/{project.pk}/alerts/", {"alert_emails": emails, "alert_webhooks": ""})
    assert response.status_code == 400 and "at most 20 e-mail addresses" in response.content.decode().replace(
        "an e-mail address", "e-mail address"
    )


def latest_test(project) -> dict:
    return wait_until(
        lambda: (
            Project.objects.filter(pk=project.pk, alert_test__done=True).values_list("alert_test", flat=True).first()
        ),
        30,
        "the test alert's outcomes",
    )


@pytest.mark.django_db(transaction=True)
def test_a_test_alert_goes_to_every_target_in_the_background(logged_in, user, mailoutbox, webhook_receiver):
    project = member_of(user, "vision")
    Project.objects.filter(pk=project.pk).update(
        alert_emails=["team@example.com"], alert_webhooks=[webhook_receiver.url]
    )
    page = logged_in.post(f"/projects/{project.pk}/alerts/test/", follow=True).content.decode()
    assert "Sending a test alert to 2 targets: each outcome shows below." in page
    test = latest_test(project)
    assert test["outcomes"] == {"mail": "", webhook_receiver.url: ""} and test["by"] == "alice"
    assert mailoutbox[0].subject == "[Trainwatch] test alert of project vision"
    assert webhook_receiver.posts[0]["json"]["alert"] == "test"
    assert f"/projects/{project.pk}/alerts/" in webhook_receiver.posts[0]["json"]["text"]
    page = logged_in.get(f"/projects/{project.pk}/alerts/").content.decode()
    assert page.count('data-state="sent"') == 2 and 'http-equiv="refresh"' not in page


@pytest.mark.django_db(transaction=True)
def test_a_test_alert_that_fails_says_why_in_words(logged_in, user, settings):
    settings.TRAINWATCH_WEBHOOK_ALLOW = ["127.0.0.1"]
    project = member_of(user, "vision")
    Project.objects.filter(pk=project.pk).update(alert_webhooks=["http://127.0.0.1:9/nothing"])
    logged_in.post(f"/projects/{project.pk}/alerts/test/")
    latest_test(project)
    page = logged_in.get(f"/projects/{project.pk}/alerts/").content.decode()
    assert 'data-state="failed"' in page
    assert "failed: could not connect (refused, unreachable or no answer)" in page


def test_a_test_alert_with_no_target_says_to_add_one(logged_in, user):
    project = member_of(user, "vision")
    page = logged_in.post(f"/projects/{project.pk}/alerts/test/", follow=True).content.decode()
    assert "Nothing to send to: add an e-mail address or a webhook URL first." in page


def test_the_alerts_page_lists_what_was_sent_and_how(logged_in, user):
    project = member_of(user, "vision")
    run = Run.objects.create(project=project, name="r", config={}, status="failed")
    Alert.objects.create(
        run=run,
        key="failed",
        subject="s",
        body="b",
        payload={"headline": "the run failed", "evidence": "ValueError: bad"},
        deliveries={
            "mail": {"sent": "2026-11-24T10:00:00+00:00", "attempts": 1},
            "http://h/x": {"error": "HTTPError: 500", "attempts": 2},
        },
    )
    page = logged_in.get(f"/projects/{project.pk}/alerts/").content.decode()
    assert 'data-key="failed"' in page and "the run failed" in page and "ValueError: bad" in page
    assert "e-mail:\n          sent" in page and "HTTPError: 500" in page and "(2 attempts)" in page


def test_another_projects_alerts_are_not_found(logged_in):
    other = Project.objects.create(name="theirs")
    assert logged_in.get(f"/projects/{other.pk}/alerts/").status_code == 404
    assert logged_in.post(f"/projects/{other.pk}/alerts/test/").status_code == 404
