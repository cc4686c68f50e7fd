import datetime as dt

import numpy as np
import pytest
from django.utils import timezone

from tracker.ingest import ChunkWriter
from tracker.models import DashboardVisit, Project, Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def project():
    return Project.objects.create(name="vision")


def run(project, status, name, **fields):
    return Run.objects.create(project=project, name=name, status=status, config={"epochs": 10}, **fields)


def test_the_dashboard_is_the_home_page_and_needs_a_login(logged_in):
    from django.test import Client

    assert Client().get("/").status_code == 302
    assert logged_in.get("/").status_code == 200


def test_it_shows_running_queued_and_best_per_project(logged_in, project):
    other = Project.objects.create(name="text")
    live = run(project, "running", "live one", started_at=timezone.now(), steps_done=50, total_steps=100, epoch=5)
    ChunkWriter(live.pk).write({"loss": (np.arange(50), np.linspace(2.3, 1.0, 50))})
    run(project, "queued", "waiting one")
    run(project, "succeeded", "good", best_val_accuracy=0.91)
    run(project, "succeeded", "better", best_val_accuracy=0.97)
    run(other, "succeeded", "text best", best_val_accuracy=0.80)
    response = logged_in.get("/")
    html = response.content.decode()
    assert "live one" in html and "waiting one" in html
    best = {r.project.name: r.name for r in response.context["best"]}
    assert best == {"vision": "better", "text": "text best"}
    card = response.context["running"][0]
    assert card["loss"]["steps"][-1] == 49 and card["eta_seconds"] is not None


def test_runs_that_ended_badly_since_the_last_visit(logged_in, user, project):
    logged_in.get("/")  # a first visit
    seen = DashboardVisit.objects.get(user=user).seen_at
    now = timezone.now()
    run(project, "failed", "broke before", finished_at=seen - dt.timedelta(minutes=5))
    run(project, "diverged", "blew up", finished_at=now)
    run(project, "succeeded", "warned", finished_at=now, health="warning",
        findings=[{"title": "learning rate too high", "severity": "warning"}])
    run(project, "succeeded", "fine", finished_at=now, health="ok")
    response = logged_in.get("/")
    names = [r.name for r in response.context["ended_badly"]]
    assert set(names) == {"blew up", "warned"}
    assert "learning rate too high" in response.content.decode()
    assert logged_in.get("/").context["ended_badly"] == []  # seen now


def test_the_dashboard_api_gives_the_running_runs_with_their_sparklines(logged_in, project):
    live = run(project, "running", "live", started_at=timezone.now(), steps_done=10, total_steps=100)
    ChunkWriter(live.pk).write({"loss": (np.arange(1000), np.linspace(2.3, 1.0, 1000))})
    body = logged_in.get("/api/dashboard/").json()
    assert body["queued"] == 0 and len(body["running"][0]["loss"]["steps"]) <= 120
