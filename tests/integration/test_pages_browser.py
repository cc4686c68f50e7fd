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


# sampled by a worker through NVML on an NVIDIA H100 80GB HBM3 (a digits CNN in bfloat16,
# 22,500 steps in 63 s; docs/benchmarks.md, "On a GPU"): step, CPU %, process MB, GPU %, GPU MB
H100_SYSTEM = (
    (1, 96.5, 1584.2, 2.0, 1316.8),
    (1875, 96.9, 1615.7, 11.0, 1336.8),
    (3813, 97.3, 1615.9, 7.0, 1336.8),
    (5748, 97.4, 1622.7, 11.0, 1336.8),
    (7802, 98.0, 1622.7, 11.0, 1336.8),
    (9681, 97.7, 1622.8, 9.0, 1336.8),
    (11876, 98.3, 1623.4, 11.0, 1336.8),
    (14331, 97.9, 1624.8, 14.0, 1336.8),
    (16536, 98.0, 1624.8, 13.0, 1336.8),
    (19102, 97.9, 1625.5, 5.0, 1336.8),
    (21595, 98.0, 1625.5, 14.0, 1336.8),
)


def test_the_system_panel_of_a_gpu_run_draws_gpu_utilisation_and_memory_and_the_workers_page_the_gpu(
    live_server, page_as_staff, staff
):
    import numpy as np

    from tracker.core.storage import ChunkWriter
    from tracker.models import Worker

    project = member_of(staff, "gpu")
    now = timezone.now()
    Worker.objects.create(
        name="gpu@h100",
        hostname="h100",
        queues=["cpu", "gpu"],
        device="NVIDIA H100 80GB HBM3 (79 GiB)",
        torch_version="2.11.0+cu130",
        started_at=now,
        seen_at=now,
    )
    run = Run.objects.create(
        project=project,
        name="digits CNN on the H100 (amp)",
        status="succeeded",
        device="cuda",
        worker="gpu@h100",
        config={"epochs": 250, "device": "cuda", "precision": "amp"},
        total_steps=22_500,
        steps_done=22_500,
        started_at=now,
        finished_at=now,
    )
    columns = np.array(H100_SYSTEM).T
    steps = columns[0].astype(np.int64)
    keys = ("system/cpu_percent", "system/memory_mb", "system/gpu_percent", "system/gpu_memory_mb")
    ChunkWriter(run.pk).write({key: (steps, columns[i + 1]) for i, key in enumerate(keys)})

    page = page_as_staff
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    # the page fills its charts as its requests answer: wait for every sample of the four
    page.wait_for_function(
        "window.trainwatchCharts && window.trainwatchCharts.system.data.datasets.length === 4"
        f" && window.trainwatchCharts.system.data.datasets.every((d) => d.data.length === {len(H100_SYSTEM)})",
        timeout=15_000,
    )
    datasets = page.evaluate(
        "window.trainwatchCharts.system.data.datasets.map((d) => [d.label, d.data.length, d.yAxisID])"
    )
    assert [label for label, _, _ in datasets] == ["CPU %", "memory (MB)", "GPU %", "GPU memory (MB)"]
    assert all(length == len(H100_SYSTEM) for _, length, _ in datasets), (datasets, len(H100_SYSTEM))
    # percentages on one axis, megabytes on the other
    assert datasets[0][2] == datasets[2][2] != datasets[1][2] == datasets[3][2]
    figure = page.locator("#chart-system").locator("xpath=ancestor::figure")
    figure.scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    figure.screenshot(path=str(ARTIFACTS / "system-panel-gpu.png"))

    page.goto(f"{live_server.url}/admin/tracker/worker/")
    assert "NVIDIA H100 80GB HBM3 (79 GiB)" in page.locator("#result_list").inner_text()
    assert page.console_errors == []
