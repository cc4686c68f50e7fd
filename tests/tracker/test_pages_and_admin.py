import json
import re

import numpy as np
import pytest
from django.conf import settings

from tests.conftest import member_of
from tracker.core.storage import ChunkWriter, read_series
from tracker.models import Run
from trainer.diagnosis.thresholds import FILTERS_NOISE, FILTERS_SMOOTH, RATIO_HIGH, RATIO_LOW, RATIO_TARGET

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(user):
    return member_of(user, "demo")


def make_run(project, status, **fields):
    return Run.objects.create(
        project=project,
        name=f"{status} run",
        status=status,
        config={"optimizer": {"name": "adam", "lr": 0.001}, "epochs": 3},
        **fields,
    )


def test_pages_need_a_login(client, project):
    run = make_run(project, "queued")
    for url in ("/", "/runs/", f"/runs/{run.pk}/", "/compare/?runs=1"):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def rows(response) -> list[dict[str, str]]:
    """The runs table's rows as {column: text}, from the rendered rows (not the filter menus)."""
    html = response.content.decode()
    body = html[html.index("<tbody>") : html.index("</tbody>")]
    return [dict(re.findall(r'data-field="(\w+)"[^>]*>([^<]*)<', row)) for row in body.split("<tr ")[1:]]


def test_the_runs_list_shows_status_optimizer_lr_and_best_accuracy(logged_in, project):
    make_run(project, "succeeded", best_val_accuracy=0.9731)
    make_run(project, "queued")
    response = logged_in.get("/runs/")
    assert [run.name for run in response.context["rows"]] == ["queued run", "succeeded run"]
    queued, succeeded = rows(response)
    assert (succeeded["name"], succeeded["status"], succeeded["optimizer"], succeeded["lr"]) == (
        "succeeded run",
        "succeeded",
        "adam",
        "0.001",
    )
    assert succeeded["best_val_accuracy"] == "0.9731" and succeeded["schedule"] == "fixed"
    assert (queued["name"], queued["status"], queued["best_val_accuracy"]) == ("queued run", "queued", "–")


def test_the_runs_list_filters_by_status(logged_in, project):
    make_run(project, "succeeded")
    make_run(project, "failed")
    response = logged_in.get("/runs/?status=failed")
    assert [run.name for run in response.context["rows"]] == ["failed run"]
    assert [row["name"] for row in rows(response)] == ["failed run"]


def test_the_run_page_carries_its_data_and_the_diagnosis_thresholds(logged_in, project):
    run = make_run(project, "running", steps_per_epoch=23)
    ChunkWriter(run.pk).write({"loss": (np.arange(5), np.ones(5))})
    response = logged_in.get(f"/runs/{run.pk}/")
    html = response.content.decode()
    data = json.loads(re.search(r'<script id="run-data" type="application/json">(.*?)</script>', html, re.S)[1])
    assert data["run"]["id"] == run.pk and data["keys"] == ["loss"] and data["steps_per_epoch"] == 23
    # the charts draw the diagnosis's own thresholds, not a copy in the script
    assert data["thresholds"] == {
        "ratio_low": RATIO_LOW,
        "ratio_target": RATIO_TARGET,
        "ratio_high": RATIO_HIGH,
        "filters_noise": FILTERS_NOISE,
        "filters_smooth": FILTERS_SMOOTH,
    }
    assert data["diagnose_seconds"] == settings.TRAINWATCH_DIAGNOSE_SECONDS
    script = re.search(r'src="(/static/vendor/chart.js/chart.umd.min.js)"', html)[1]
    assert logged_in.get(script).status_code == 200


def test_the_admin_cancels_a_queued_run_so_that_it_never_starts(client, staff, project):
    client.force_login(staff)
    run = make_run(project, "queued")
    client.post("/admin/tracker/run/", {"action": "cancel", "_selected_action": [run.pk]})
    run.refresh_from_db()
    assert run.status == "cancelled" and run.cancel_requested


def test_the_admin_asks_a_running_run_to_stop(client, staff, project):
    client.force_login(staff)
    run = make_run(project, "running")
    client.post("/admin/tracker/run/", {"action": "cancel", "_selected_action": [run.pk]})
    run.refresh_from_db()
    assert run.status == "running" and run.cancel_requested


def test_the_admin_retries_an_ended_run_from_scratch(client, staff, project):
    client.force_login(staff)
    run = make_run(project, "failed", error="Traceback ...", best_val_accuracy=0.5)
    ChunkWriter(run.pk).write({"loss": (np.arange(5), np.ones(5))})
    client.post("/admin/tracker/run/", {"action": "retry", "_selected_action": [run.pk]})
    run.refresh_from_db()
    assert run.status == "queued" and run.error == "" and run.best_val_accuracy is None
    assert len(read_series(run.pk, "loss")[0]) == 0


def test_the_job_queue_is_for_staff_only(logged_in):
    response = logged_in.get("/admin/tracker/run/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_runs_list_filters_by_optimizer_schedule_project_and_text(logged_in, project):
    other = member_of(project.members.get(), "other")
    Run.objects.create(
        project=project,
        name="adam run",
        status="succeeded",
        config={"optimizer": {"name": "adam", "lr": 0.001}, "schedule": {"name": "step"}},
    )
    Run.objects.create(
        project=other,
        name="sgd run",
        status="succeeded",
        config={"optimizer": {"name": "sgd", "lr": 0.1}, "schedule": {"name": "fixed"}},
    )
    for query, shown in (
        ("optimizer=adam", "adam run"),
        ("schedule=fixed", "sgd run"),
        ("project=other", "sgd run"),
        ("q=ADAM", "adam run"),
        ("q=OTHER", "sgd run"),  # the project's name
    ):
        assert [row["name"] for row in rows(logged_in.get(f"/runs/?{query}"))] == [shown], query


def test_the_runs_list_sorts_by_a_column_with_empty_values_last(logged_in, project):
    for name, best in (("low", 0.5), ("none", None), ("high", 0.9)):
        make_run(project, "succeeded", best_val_accuracy=best).__class__.objects.filter(name="succeeded run").update(
            name=name
        )
    assert [row["name"] for row in rows(logged_in.get("/runs/?sort=-best_val_accuracy"))] == ["high", "low", "none"]
    assert [row["name"] for row in rows(logged_in.get("/runs/?sort=best_val_accuracy"))] == ["low", "high", "none"]


def test_paging_keeps_the_filters_and_the_sort(logged_in, project):
    made = [make_run(project, "failed").pk for _ in range(55)]
    html = logged_in.get("/runs/?status=failed&sort=-created").content.decode()
    assert "?status=failed&amp;sort=-created&page=2" in html
    # the second page: the five oldest, newest first, whole rows
    second = logged_in.get("/runs/?status=failed&sort=-created&page=2")
    assert [run.pk for run in second.context["rows"]] == made[:5][::-1]
    assert [row["status"] for row in rows(second)] == ["failed"] * 5


@pytest.mark.parametrize("login", ["/accounts/login/", "/admin/login/"])
def test_wrong_passwords_lock_a_user_name_out_of_both_logins_for_a_while(client, django_user_model, login):
    from axes.models import AccessAttempt

    django_user_model.objects.create_user("mallory", password="right horse battery", is_staff=True)
    allowed = settings.AXES_FAILURE_LIMIT - 1  # TRAINWATCH_LOGIN_FAILURES, 10
    assert allowed == 10
    for _ in range(allowed):
        wrong = client.post(login, {"username": "mallory", "password": "wrong"})
        assert wrong.status_code == 200 and not wrong.wsgi_request.user.is_authenticated  # the form again
    assert client.post(login, {"username": "mallory", "password": "wrong"}).status_code == 429  # the 11th
    locked = client.post(login, {"username": "mallory", "password": "right horse battery"})
    assert locked.status_code == 429 and not locked.wsgi_request.user.is_authenticated
    other = "/admin/login/" if login == "/accounts/login/" else "/accounts/login/"
    assert client.post(other, {"username": "mallory", "password": "right horse battery"}).status_code == 429
    AccessAttempt.objects.all().delete()  # the cool-off over (or `manage.py axes_reset`)
    assert client.post(login, {"username": "mallory", "password": "right horse battery"}).status_code == 302
