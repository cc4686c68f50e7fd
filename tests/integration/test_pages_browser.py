"""Pages as a new user meets them, in headless Chromium: nothing wider than the window,
nothing that fails to load."""

import pytest
from django.utils import timezone

from tests.conftest import ARTIFACTS, member_of
from tracker.models import Run, Study

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_runs_list_scrolls_its_wide_table_inside_a_page_no_wider_than_the_window(live_server, page_as_user, user):
    project = member_of(user, "a project with a rather long name")
    for index in range(30):
        Run.objects.create(
            project=project,
            name=f"resnet50 lr={0.1 / (index + 1):.5f} wd=5e-4 cosine warm-up {index}",
            tags=["baseline", "imagenet-subset", f"sweep-{index}"],
            status="succeeded",
            config={"optimizer": {"name": "momentum", "lr": 0.1}, "schedule": {"name": "cosine"}},
            best_val_accuracy=0.5,
            final_loss=1.0,
            started_at=timezone.now(),
            finished_at=timezone.now(),
        )
    page = page_as_user
    page.set_viewport_size({"width": 1000, "height": 800})
    page.goto(f"{live_server.url}/runs/")
    widths = page.evaluate("""() => ({
        page: document.documentElement.scrollWidth, window: window.innerWidth,
        bar: document.querySelector('.topbar').getBoundingClientRect().width,
        table: document.querySelector('#runs-table').scrollWidth,
        box: document.querySelector('.table-scroll').clientWidth })""")
    assert widths["page"] <= widths["window"], widths  # the page itself does not scroll sideways
    assert widths["bar"] == widths["window"]  # the navigation bar spans it
    assert widths["table"] > widths["box"]  # the table is wider, and scrolls in its box
    page.screenshot(path=str(ARTIFACTS / "runs-list-narrow.png"), full_page=True)
    assert page.console_errors == [] and page.failed_responses == []


def test_the_admin_job_queue_loads_every_file_it_asks_for(live_server, page_as_staff, staff):
    """It asked for /favicon.ico, which answered 404 in the browser console."""
    project = member_of(staff, "queue")
    queued = Run.objects.create(project=project, name="waiting", status="queued", config={"epochs": 1})
    Run.objects.create(project=project, name="done", status="succeeded", config={"epochs": 1})
    Study.objects.create(project=project, name="s", kind="grid", spec={})
    page = page_as_staff
    for path in (
        "/admin/tracker/run/",
        f"/admin/tracker/run/{queued.pk}/change/",
        f"/admin/tracker/run/{queued.pk}/clone/",
        "/admin/tracker/worker/",
        "/admin/tracker/study/add/",
    ):
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
    assert page.failed_responses == []
    assert page.console_errors == []
