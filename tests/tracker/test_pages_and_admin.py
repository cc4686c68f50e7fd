import numpy as np
import pytest

from tracker.ingest import ChunkWriter, read_series
from tracker.models import Project, Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def project():
    return Project.objects.create(name="demo")


def make_run(project, status, **fields):
    return Run.objects.create(project=project, name=f"{status} run", status=status,
                              config={"optimizer": {"name": "adam", "lr": 0.001}, "epochs": 3}, **fields)


def test_pages_need_a_login(client, project):
    run = make_run(project, "queued")
    for url in ("/", "/runs/", f"/runs/{run.pk}/", "/compare/?runs=1"):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_runs_list_shows_status_optimizer_lr_and_best_accuracy(logged_in, project):
    make_run(project, "succeeded", best_val_accuracy=0.9731)
    make_run(project, "queued")
    html = logged_in.get("/runs/").content.decode()
    assert "succeeded" in html and "queued" in html and "adam" in html
    assert "0.001" in html and "0.9731" in html


def test_the_runs_list_filters_by_status(logged_in, project):
    make_run(project, "succeeded")
    make_run(project, "failed")
    html = logged_in.get("/runs/?status=failed").content.decode()
    assert "failed run" in html and "succeeded run" not in html


def test_the_run_page_carries_its_data_and_the_vendored_chart_library(logged_in, project):
    run = make_run(project, "running")
    html = logged_in.get(f"/runs/{run.pk}/").content.decode()
    assert 'id="run-data"' in html and 'id="chart-loss"' in html
    assert "vendor/chart.js/chart.umd.min.js" in html


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
    other = Project.objects.create(name="other")
    Run.objects.create(project=project, name="adam run", status="succeeded",
                       config={"optimizer": {"name": "adam", "lr": 0.001}, "schedule": {"name": "step"}})
    Run.objects.create(project=other, name="sgd run", status="succeeded",
                       config={"optimizer": {"name": "sgd", "lr": 0.1}, "schedule": {"name": "fixed"}})
    for query, shown, hidden in (("optimizer=adam", "adam run", "sgd run"), ("schedule=fixed", "sgd run", "adam run"),
                                 ("project=other", "sgd run", "adam run"), ("q=ADAM", "adam run", "sgd run")):
        html = logged_in.get(f"/runs/?{query}").content.decode()
        assert shown in html and hidden not in html, query


def test_the_runs_list_sorts_by_a_column_with_empty_values_last(logged_in, project):
    for name, best in (("low", 0.5), ("none", None), ("high", 0.9)):
        make_run(project, "succeeded", best_val_accuracy=best).__class__.objects.filter(name="succeeded run").update(name=name)
    html = logged_in.get("/runs/?sort=-best_val_accuracy").content.decode()
    assert html.index(">high<") < html.index(">low<") < html.index(">none<")
    html = logged_in.get("/runs/?sort=best_val_accuracy").content.decode()
    assert html.index(">low<") < html.index(">high<") < html.index(">none<")


def test_paging_keeps_the_filters_and_the_sort(logged_in, project):
    for _ in range(55):
        make_run(project, "failed")
    html = logged_in.get("/runs/?status=failed&sort=-created").content.decode()
    assert "?status=failed&amp;sort=-created&page=2" in html
