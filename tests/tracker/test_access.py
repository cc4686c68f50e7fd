"""Access: login for everything, per-project membership (another project's run is a 404),
staff-only job queue, CSRF on forms.
(The settings a production start requires: tests/tracker/test_cli_and_settings.py.)"""

import json

import pytest
from django.test import Client

from tracker.core.runs import create_run
from tracker.core.storage import ChunkWriter
from tracker.models import Project, Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_teams(django_user_model):
    alice = django_user_model.objects.create_user("alice", password="pw-alice-123")
    bob = django_user_model.objects.create_user("bob", password="pw-bob-12345")
    vision, speech = Project.objects.create(name="vision"), Project.objects.create(name="speech")
    vision.members.add(alice)
    speech.members.add(bob)
    runs = {}
    for project, name in ((vision, "alice-run"), (speech, "bob-run")):
        run = Run.objects.create(
            project=project,
            name=name,
            status="succeeded",
            best_val_accuracy=0.9,
            config={"optimizer": {"name": "adam", "lr": 0.001}, "epochs": 1},
        )
        ChunkWriter(run.pk).write({"loss": ([0, 1], [2.3, 2.0])})
        runs[name] = run
    return alice, bob, runs


def test_another_projects_run_is_not_found_on_any_page_or_api(client, two_teams):
    alice, _, runs = two_teams
    client.force_login(alice)
    mine, theirs = runs["alice-run"], runs["bob-run"]
    for url in (
        "/runs/{}/",
        "/api/runs/{}/",
        "/api/runs/{}/series/?keys=loss",
        "/api/runs/{}/histograms/?key=x",
        "/api/runs/{}/images/?key=first_layer",
        "/api/runs/{}/layers/",
    ):
        assert client.get(url.format(theirs.pk)).status_code == 404, url
        assert client.get(url.format(mine.pk)).status_code in (200, 400), url  # 400: no such key, but found
    assert client.post(f"/runs/{theirs.pk}/check/").status_code == 404
    assert client.get(f"/api/compare/?runs={mine.pk},{theirs.pk}").status_code == 400  # "no run with id"
    listed = [run["name"] for run in client.get("/api/runs/").json()["runs"]]
    assert listed == ["alice-run"]
    html = client.get("/runs/").content.decode()
    assert "alice-run" in html and "bob-run" not in html and "speech" not in html
    home = client.get("/").content.decode()
    assert "alice-run" in home and "bob-run" not in home  # best result per project


def test_staff_see_every_project(client, staff, two_teams):
    client.force_login(staff)
    _, _, runs = two_teams
    assert all(client.get(f"/runs/{run.pk}/").status_code == 200 for run in runs.values())


def test_a_new_project_belongs_to_its_creator_and_others_cannot_queue_into_it(two_teams):
    alice, bob, _ = two_teams
    run = create_run("alice-new", {"epochs": 1}, user=alice)
    assert list(run.project.members.all()) == [alice]
    with pytest.raises(Exception) as error:
        create_run("alice-new", {"epochs": 1}, user=bob)
    assert "not a member of project 'alice-new'" in error.value.errors["project"]
    assert Run.objects.filter(project__name="alice-new").count() == 1


def test_the_api_refuses_to_queue_into_another_teams_project(client, two_teams):
    _, bob, _ = two_teams
    client.force_login(bob)
    response = client.post(
        "/api/runs/", json.dumps({"project": "vision", "config": {"epochs": 1}}), content_type="application/json"
    )
    assert response.status_code == 400 and "not a member" in response.json()["errors"]["project"]


def test_the_job_queue_and_workers_view_are_staff_only(client, two_teams):
    alice, _, _ = two_teams
    client.force_login(alice)
    for url in ("/admin/tracker/run/", "/admin/tracker/worker/", "/admin/"):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url


def test_every_api_call_needs_a_login(client, two_teams):
    run = two_teams[2]["alice-run"]
    for url in (
        "/api/runs/",
        f"/api/runs/{run.pk}/",
        f"/api/runs/{run.pk}/series/?keys=loss",
        "/api/dashboard/",
        f"/api/compare/?runs={run.pk}",
    ):
        assert client.get(url).status_code == 401, url


def test_forms_and_session_writes_need_the_csrf_token(two_teams):
    alice, _, runs = two_teams
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(f"/runs/{runs['alice-run'].pk}/check/").status_code == 403
    response = client.post(
        "/api/runs/", json.dumps({"project": "vision", "config": {}}), content_type="application/json"
    )
    assert response.status_code == 403
    page = client.get("/accounts/login/").content.decode()
    assert "csrfmiddlewaretoken" in page
