import datetime as dt

import numpy as np
import pytest
from django.core.cache import cache
from django.utils import timezone

from tests.conftest import member_of
from tracker.core.dashboard import VISIT_GAP
from tracker.core.storage import ChunkWriter
from tracker.models import DashboardVisit, Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(user):
    return member_of(user, "vision")


def run(project, status, name, **fields):
    return Run.objects.create(project=project, name=name, status=status, config={"epochs": 10}, **fields)


def test_the_dashboard_is_the_home_page_and_needs_a_login(logged_in):
    from django.test import Client

    assert Client().get("/").status_code == 302
    assert logged_in.get("/").status_code == 200


def test_it_shows_running_queued_and_best_per_project(logged_in, user, project):
    other = member_of(user, "text")
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


def attention(response) -> set[str]:
    return {r.name for r in response.context["attention"]}


def test_runs_that_ended_badly_since_the_last_visit_are_listed(logged_in, user, project):
    logged_in.get("/")  # a first visit
    seen = DashboardVisit.objects.get(user=user).seen_at
    now = timezone.now()
    run(project, "failed", "broke before", finished_at=seen - dt.timedelta(days=2))
    run(project, "diverged", "blew up", finished_at=now)
    run(
        project,
        "succeeded",
        "warned",
        finished_at=now,
        health="warning",
        findings=[{"title": "learning rate too high", "severity": "warning"}],
    )
    run(project, "succeeded", "fine", finished_at=now, health="ok")
    response = logged_in.get("/")
    assert attention(response) == {"blew up", "warned"}
    assert "learning rate too high" in response.content.decode()


def test_a_reload_during_the_same_visit_still_lists_what_ended_during_it(logged_in, user, project):
    """On the first visit the runs are still training; they end; the user reloads, goes to a run
    page and back: the failures stay listed (they used to vanish at the second load)."""
    assert attention(logged_in.get("/")) == set()
    run(project, "diverged", "blew up", finished_at=timezone.now())
    assert attention(logged_in.get("/")) == {"blew up"}
    assert attention(logged_in.get("/")) == {"blew up"}


def test_a_new_visit_after_a_gap_starts_at_the_last_look_of_the_one_before(logged_in, user, project):
    logged_in.get("/")
    last_look = timezone.now() - VISIT_GAP - dt.timedelta(minutes=1)
    DashboardVisit.objects.filter(user=user).update(seen_at=last_look)  # then the user left for a while
    run(project, "diverged", "seen before leaving", finished_at=last_look - dt.timedelta(minutes=5))
    run(project, "failed", "broke while away", finished_at=timezone.now())
    assert attention(logged_in.get("/")) == {"broke while away"}


def test_a_running_run_with_a_warning_needs_attention(logged_in, project):
    run(
        project,
        "running",
        "warned now",
        started_at=timezone.now(),
        health="warning",
        findings=[{"title": "dead ReLU units", "severity": "warning"}],
    )
    run(project, "running", "healthy now", started_at=timezone.now(), health="ok")
    assert attention(logged_in.get("/")) == {"warned now"}


def test_the_dashboard_api_refreshes_every_panel(logged_in, project):
    """The page's live refresh brings what ended after it was loaded (the first visit's page
    used to say "Nothing went wrong" until a reload)."""
    page = logged_in.get("/")
    assert attention(page) == set()
    run(project, "diverged", "blew up", finished_at=timezone.now())
    run(project, "queued", "waiting")
    body = logged_in.get("/api/dashboard/").json()
    assert set(body["panels"]) == {"running", "queue", "attention", "best", "reports", "workers"}
    assert "blew up" in body["panels"]["attention"] and "waiting" in body["panels"]["queue"]
    assert body["queued"] == 1


def test_a_worker_training_two_runs_lists_both(logged_in, project):
    cache.set("dashboard-workers", ["pair@host"], 60)  # what the broadcast ping found (see live_worker_names)
    for name in ("first", "second"):
        run(project, "running", name, worker="pair@host", started_at=timezone.now(), steps_done=1, total_steps=10)
    response = logged_in.get("/")
    [worker] = response.context["workers"]
    assert worker["busy"] == 2 and [r["name"] for r in worker["runs"]] == ["first", "second"]
    assert "training 2 runs" in response.content.decode()


def test_the_dashboard_api_gives_the_running_runs_with_their_sparklines(logged_in, project):
    live = run(project, "running", "live", started_at=timezone.now(), steps_done=10, total_steps=100)
    ChunkWriter(live.pk).write({"loss": (np.arange(1000), np.linspace(2.3, 1.0, 1000))})
    body = logged_in.get("/api/dashboard/").json()
    assert body["queued"] == 0 and len(body["running"][0]["loss"]["steps"]) <= 120
