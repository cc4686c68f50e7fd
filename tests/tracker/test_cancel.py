"""Cancel where a person is: the run page's button and POST /api/runs/<id>/cancel/, for the
run's project members; a non-member gets 404, an ended run 409 (the real worker and the real
client that stop: tests/integration/test_entry_jobs.py, test_client_live.py)."""

import pytest

from tests.conftest import member_of
from tracker.models import ApiToken, Project, Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs(user):
    project = member_of(user, "vision")
    queued = Run.objects.create(project=project, name="waiting", config={"epochs": 10}, status="queued")
    running = Run.objects.create(project=project, name="training", config={"epochs": 10}, status="running")
    ended = Run.objects.create(project=project, name="done", config={"epochs": 10}, status="succeeded")
    return queued, running, ended


def test_a_member_cancels_through_the_api_with_a_token(client, user, runs):
    queued, running, ended = runs
    token = ApiToken.issue(user, "script")[1]
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    answer = client.post(f"/api/runs/{queued.pk}/cancel/", **headers)
    assert answer.status_code == 200 and answer.json()["run"]["status"] == "cancelled"
    answer = client.post(f"/api/runs/{running.pk}/cancel/", **headers)
    assert answer.status_code == 200 and answer.json()["run"]["status"] == "running"  # until its worker stops
    assert Run.objects.get(pk=running.pk).cancel_requested
    refused = client.post(f"/api/runs/{ended.pk}/cancel/", **headers)
    assert refused.status_code == 409 and refused.json()["errors"]["run"] == "the run has already ended (succeeded)"
    assert client.get(f"/api/runs/{queued.pk}/cancel/", **headers).status_code == 405


def test_the_run_page_has_a_cancel_button_while_the_run_is_live(logged_in, runs):
    _, running, ended = runs
    page = logged_in.get(f"/runs/{running.pk}/").content.decode()
    assert 'id="cancel-run"' in page and f'action="/runs/{running.pk}/cancel/"' in page
    assert 'id="cancel-run"' not in logged_in.get(f"/runs/{ended.pk}/").content.decode()
    answer = logged_in.post(f"/runs/{running.pk}/cancel/", follow=True)
    assert "Cancel requested" in answer.content.decode() and Run.objects.get(pk=running.pk).cancel_requested
    again = logged_in.post(f"/runs/{ended.pk}/cancel/", follow=True).content.decode()
    assert "Not cancelled: the run has already ended (succeeded)." in again


def test_someone_outside_the_project_gets_404(client, django_user_model, runs):
    queued, _, _ = runs
    mallory = django_user_model.objects.create_user("mallory", password="x" * 12)
    Project.objects.create(name="mallory's")
    token = ApiToken.issue(mallory, "script")[1]
    assert client.post(f"/api/runs/{queued.pk}/cancel/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 404
    client.force_login(mallory)
    assert client.post(f"/runs/{queued.pk}/cancel/").status_code == 404
    assert Run.objects.get(pk=queued.pk).status == "queued"


def test_a_session_cancel_through_the_api_needs_its_csrf_token(user, runs):
    from django.test import Client

    queued, _, _ = runs
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.post(f"/api/runs/{queued.pk}/cancel/").status_code == 403
    assert Run.objects.get(pk=queued.pk).status == "queued"


def test_a_cancelled_client_run_says_where_it_stopped(logged_in, user):
    project = member_of(user, "scripts")
    run = Run.objects.create(
        project=project,
        name="script",
        config={},
        kind="external",
        status="cancelled",
        epoch=2,
        steps_done=180,
        total_steps=1000,
        steps_per_epoch=100,
    )
    assert run.epochs == 10  # its plan, not the 2 epochs it reached
    succeeded = Run.objects.create(
        project=project, name="s", config={}, kind="external", status="succeeded", epoch=3, steps_done=300
    )
    assert succeeded.epochs == 3
