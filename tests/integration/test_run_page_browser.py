"""The run page in headless Chromium: charts drawn from stored series, and live
updates while a real worker trains."""

import numpy as np
import pytest

from tests.conftest import ARTIFACTS, member_of, wait_until
from tracker.core.findings import diagnose_run
from tracker.core.lifecycle import request_cancel
from tracker.core.runs import create_run
from tracker.core.storage import ChunkWriter
from tracker.models import Run

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

DATASET_LENGTHS = """() => Object.fromEntries(Object.entries(window.trainwatchCharts).map(
    ([name, chart]) => [name, chart.data.datasets.map((d) => d.data.length)]))"""


def test_the_page_of_a_finished_run_draws_every_chart(celery_worker_process, live_server, page_as_user, user):
    run = create_run(
        "browser", {"epochs": 2, "batch_size": 32, "instrument": {"histogram_every": 10}}, "finished run", user
    )
    wait_until(lambda: Run.objects.get(pk=run.pk).is_finished, 90, "the run to finish")
    # digits' 8 x 8 tiles are too small for a roughness: as a 28 x 28 first layer would have it
    ChunkWriter(run.pk).write({"first_layer_roughness": (np.array([89]), np.array([0.62]))})
    page = page_as_user
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    page.wait_for_function("document.body.dataset.pollingStopped === '1'", timeout=15_000)

    lengths = page.evaluate(DATASET_LENGTHS)
    assert lengths["loss"][:2] == [90, 90]  # raw and EMA, 45 steps x 2 epochs
    assert lengths["loss"][2] == 2  # validation loss per epoch
    assert lengths["accuracy"] == [2, 2]
    assert lengths["lr"] == [90]
    assert len(lengths["ratio"]) == 4 and all(n > 0 for n in lengths["ratio"])  # one line per tensor
    assert len(lengths["grad"]) == 4 and all(n > 0 for n in lengths["grad"])
    annotations = page.evaluate("Object.keys(window.trainwatchCharts.ratio.options.plugins.annotation.annotations)")
    assert annotations == ["healthy", "target"]  # the 1e-4..1e-2 region and the 1e-3 target
    assert lengths["units"] == [11]  # dead fraction of act1 every 10 steps, and at 25 and 75 (the dense start)
    page.wait_for_function("document.getElementById('first-layer').width > 0", timeout=5_000)
    assert page.is_visible("#first-layer-panel")
    assert page.evaluate("document.getElementById('first-layer').width") == 8 * 9 + 1  # 64 units of 8 x 8
    assert page.text_content("#first-layer-roughness") == "roughness 0.620 (learnt, not smooth; white noise 1)"
    assert page.text_content("#run-status") == "succeeded"
    assert "epoch 2 / 2" in page.text_content("#run-progress")
    # a layer's distributions over time, and at a chosen step
    page.wait_for_function("window.trainwatchHeatmap && window.trainwatchHeatmap.data.datasets[0].data.length > 0")
    page.evaluate("window.TrainwatchLayers.open('fc1.weight')")
    page.wait_for_function("window.trainwatchDistributions && Object.keys(window.trainwatchDistributions).length === 3")
    assert (
        page.evaluate("window.trainwatchDistributions.weight.data.datasets[0].data.length") == 9 * 40
    )  # 9 steps (every 10; the dense start adds activations only) x 40 rows
    assert page.evaluate("window.trainwatchDistributionAtStep.data.datasets[0].data.length") == 30  # bins
    assert "step 80" in page.text_content("#dist-step-label")  # the latest by default
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "run-page-finished.png"), full_page=True)
    assert page.console_errors == []

    page.goto(f"{live_server.url}/runs/")
    assert page.locator(f'tr[data-run-id="{run.pk}"] [data-field=status]').text_content() == "succeeded"
    page.screenshot(path=str(ARTIFACTS / "runs-list.png"), full_page=True)


def test_the_charts_of_a_running_run_grow_without_a_reload(celery_worker_process, live_server, page_as_user, user):
    # far longer than the test, which cancels it at its end: 500 epochs (45,000 steps) once ended
    # before the cancel on a machine whose digits-MLP step takes 0.15 ms
    run = create_run("browser", {"epochs": 5000, "batch_size": 16}, "live run", user)
    wait_until(
        lambda: Run.objects.filter(pk=run.pk, status="running", steps_done__gt=0).exists(), 60, "the run to start"
    )
    page = page_as_user
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    page.wait_for_function(
        "window.trainwatchCharts && window.trainwatchCharts.loss.data.datasets[0].data.length > 0", timeout=10_000
    )
    # the chart grows poll after poll without a reload (how soon a point shows: bench/latency.py)
    first = page.evaluate("window.trainwatchCharts.loss.data.datasets[0].data.length")
    for _ in range(3):
        count = page.evaluate("window.trainwatchCharts.loss.data.datasets[0].data.length")
        page.wait_for_function(f"window.trainwatchCharts.loss.data.datasets[0].data.length > {count}", timeout=30_000)
    xs = page.evaluate("window.trainwatchCharts.loss.data.datasets[0].data.map((p) => p.x)")
    assert len(xs) > first
    assert all(b > a for a, b in zip(xs, xs[1:])), "points arrive once each, in order"
    # on a wall-time axis the steps after the last epoch end go on at that epoch's pace,
    # rather than piling up at one x until the next epoch ends
    wait_until(lambda: Run.objects.get(pk=run.pk).epoch >= 2, 60, "two epochs")
    page.select_option("#x-axis", "time")
    times = page.evaluate("window.trainwatchCharts.loss.data.datasets[0].data.map((p) => p.x)")
    assert times[0] > 0 and all(b > a for a, b in zip(times, times[1:]))
    assert page.evaluate("Trainwatch.interp([0, 10], [0, 100], 15, true)") == 150  # extrapolated
    assert page.evaluate("Trainwatch.interp([0, 10], [0, 100], 15, false)") == 100  # clamped
    page.select_option("#x-axis", "epoch")
    assert page.text_content("#run-status") == "running"
    page.screenshot(path=str(ARTIFACTS / "run-page-live.png"), full_page=True)

    # the dashboard shows it with a live mini loss chart
    page.goto(f"{live_server.url}/")
    page.wait_for_function(f"window.trainwatchSparks && window.trainwatchSparks[{run.pk}]")
    first_refresh = page.evaluate("document.body.dataset.lastRefresh")
    page.wait_for_function(f"document.body.dataset.lastRefresh !== '{first_refresh}'", timeout=8_000)
    assert page.evaluate(f"window.trainwatchSparks[{run.pk}].data.datasets[0].data.length") > 0
    assert "step" in page.text_content(f'.card[data-run-id="{run.pk}"]')
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # the runs list refreshes its live cells (and leaves its text cells as they are)
    page.goto(f"{live_server.url}/runs/")
    row = f'tr[data-run-id="{run.pk}"]'
    name = page.text_content(f"{row} [data-field=name]")
    page.wait_for_function("document.body.dataset.lastPoll", timeout=8_000)
    first_poll = page.evaluate("document.body.dataset.lastPoll")
    page.wait_for_function(f"document.body.dataset.lastPoll !== '{first_poll}'", timeout=8_000)
    assert page.text_content(f"{row} [data-field=status]") == "running"
    assert page.text_content(f"{row} [data-field=name]") == name and "epochs" in page.text_content(
        f"{row} [data-field=progress]"
    )

    page.goto(f"{live_server.url}/runs/{run.pk}/")
    page.wait_for_function("document.body.dataset.lastPoll")
    request_cancel(run)
    page.wait_for_function("document.body.dataset.pollingStopped === '1'", timeout=10_000)
    assert page.text_content("#run-status") == "cancelled"
    assert page.console_errors == []


def test_the_run_page_shows_the_diagnosis_and_the_checks(celery_worker_process, live_server, page_as_user, user):
    config = {"epochs": 15, "preflight": True, "optimizer": {"name": "adam", "lr": 0.3}}
    run = create_run("browser", config, "too high a learning rate", user)
    wait_until(lambda: Run.objects.get(pk=run.pk).is_finished, 120, "the run to finish")
    page = page_as_user
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    page.wait_for_selector('#findings li[data-rule="lr_too_high"]')
    finding = page.text_content('#findings li[data-rule="lr_too_high"]')
    assert "learning rate too high" in finding and "update ratio" in finding and "Advice: lower optimizer.lr" in finding
    raised = Run.objects.get(pk=run.pk).findings
    [shown] = [f for f in raised if f["rule"] == "lr_too_high"]
    percent = round(shown["raised_fraction"] * 100)
    assert f"raised at step {shown['raised_step']} ({percent} % of the run)" in finding
    if shown["step"] != shown["raised_step"]:  # where its evidence starts, said apart from when it was raised
        assert f"since step {shown['step']}, raised at" in finding
    # the history of the findings: the raise, with its step
    page.click("#finding-history-panel summary")
    entry = page.text_content('#finding-history li[data-event="raised"][data-rule="lr_too_high"]')
    assert f"learning rate too high: raised at step {shown['raised_step']} ({percent} % of the run)" in entry
    assert page.text_content("#run-health") == "warning"
    assert page.locator("#checks-panel table.checks").count() == 2  # sanity checks, gradient check of the data loss
    assert page.locator("#checks-panel table.checks").first.locator("tbody tr").count() == 3
    assert "Gradient check of the data loss" in page.text_content("#checks-panel")
    page.screenshot(path=str(ARTIFACTS / "run-page-diagnosis.png"), full_page=True)

    page.goto(f"{live_server.url}/runs/")
    health = page.locator(f'tr[data-run-id="{run.pk}"] [data-field=health]')
    assert health.text_content() == "warning"
    assert "learning rate too high" in page.locator(f'tr[data-run-id="{run.pk}"]').text_content()
    page.screenshot(path=str(ARTIFACTS / "runs-list.png"), full_page=True)
    assert page.console_errors == []


def test_the_comparison_page_overlays_runs_chosen_in_the_runs_list(
    celery_worker_process, live_server, page_as_user, user
):
    adam = create_run("browser", {"epochs": 2, "optimizer": {"name": "adam"}}, "adam", user)
    sgd = create_run("browser", {"epochs": 2, "optimizer": {"name": "sgd", "lr": 0.1}}, "sgd", user)
    for run in (adam, sgd):
        wait_until(lambda run=run: Run.objects.get(pk=run.pk).is_finished, 90, "the runs to finish")
    page = page_as_user
    page.goto(f"{live_server.url}/runs/")
    page.check(f'.run-select[value="{adam.pk}"]')
    page.check(f'.run-select[value="{sgd.pk}"]')
    page.click("#compare-selected")
    page.wait_for_function("document.body.dataset.loaded")
    from urllib.parse import parse_qs, urlsplit

    chosen = parse_qs(urlsplit(page.url).query)["runs"][0].split(",")
    assert sorted(chosen) == sorted([str(adam.pk), str(sgd.pk)])  # in the runs list's order, newest first
    lengths = page.evaluate("window.trainwatchCompare.data.datasets.map((d) => [d.label, d.data.length])")
    assert sorted(label for label, _ in lengths) == sorted([f"#{adam.pk} adam lr=0.001", f"#{sgd.pk} sgd lr=0.1"])
    assert all(n == 46 for _, n in lengths)  # every step of both runs
    assert "optimizer.name" in page.text_content("#diff-table") and "optimizer.lr" in page.text_content("#diff-table")
    page.screenshot(path=str(ARTIFACTS / "compare-page.png"), full_page=True)

    # grouping by a config key draws each group's mean with its band; the state is in the URL
    page.check('#group-by input[value="optimizer.name"]')
    page.wait_for_function("window.trainwatchCompare.data.datasets.some((d) => d.label.includes('mean of'))")
    assert "group=optimizer.name" in page.url
    band = "window.trainwatchCompare.data.datasets.find((d) => d.label.startsWith('_high')).data[5].y"
    widest = page.evaluate(band)
    page.select_option("#band", "std")
    page.wait_for_function("location.search.includes('band=std')")
    page.wait_for_function("document.getElementById('compare-caption').textContent.includes('mean ± std')")
    assert page.evaluate(band) is not None and widest is not None  # a group of one run: mean + 0 std
    # the x axis in wall-clock seconds of training (wall_time, interpolated between epoch ends)
    page.select_option("#x-axis", "wall")
    page.wait_for_function("location.search.includes('x=wall')")
    assert page.evaluate("window.trainwatchCompare.options.scales.x.title.text") == "wall time (s)"
    xs = page.evaluate(
        "window.trainwatchCompare.data.datasets.find((d) => d.label.includes('mean of')).data.map((p) => p.x)"
    )
    assert xs[0] >= 0 and xs[-1] > 0 and all(b >= a for a, b in zip(xs, xs[1:]))
    page.select_option("#x-axis", "epoch")
    page.check("#lr-overlay")
    page.wait_for_function("window.trainwatchCompare.data.datasets.some((d) => d.yAxisID === 'lr')")
    page.reload()
    page.wait_for_function("document.body.dataset.loaded")
    assert page.is_checked("#lr-overlay") and page.is_checked('#group-by input[value="optimizer.name"]')
    page.screenshot(path=str(ARTIFACTS / "compare-page-grouped.png"), full_page=True)
    assert page.console_errors == []


def test_zoom_axis_smoothing_log_and_csv_on_the_run_page(celery_worker_process, live_server, page_as_user, user):
    run = create_run("browser", {"epochs": 40, "batch_size": 8}, "long enough to downsample", user)  # 7,200 steps
    wait_until(lambda: Run.objects.get(pk=run.pk).is_finished, 120, "the run to finish")
    page = page_as_user
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    page.wait_for_function("document.body.dataset.pollingStopped === '1'")
    raw = "window.trainwatchCharts.loss.data.datasets[0].data"
    assert page.evaluate(f"{raw}.length") <= 1000  # downsampled by the server

    # drag across a tenth of the loss chart: it re-reads that range at full resolution
    page.locator("#chart-loss").scroll_into_view_if_needed()
    box = page.locator("#chart-loss").bounding_box()
    chart_area = page.evaluate(
        "(({left, right, top, bottom}) => ({left, right, top, bottom}))(window.trainwatchCharts.loss.chartArea)"
    )
    y = box["y"] + (chart_area["top"] + chart_area["bottom"]) / 2
    x0 = box["x"] + chart_area["left"] + 0.40 * (chart_area["right"] - chart_area["left"])
    x1 = box["x"] + chart_area["left"] + 0.50 * (chart_area["right"] - chart_area["left"])
    page.mouse.move(x0, y)
    page.mouse.down()
    page.mouse.move(x1, y, steps=5)
    page.mouse.up()
    page.wait_for_function("document.body.dataset.lastZoom && document.body.dataset.lastZoom.startsWith('loss:')")
    steps = page.evaluate(f"{raw}.map((p) => p.step)")
    first, last = steps[0], steps[-1]
    assert 200 < len(steps) <= 1000 and steps == list(range(first, last + 1))  # every step of the range

    page.click("#chart-loss ~ * .reset-zoom, figure:has(#chart-loss) .reset-zoom")
    page.wait_for_function(f"{raw}.length <= 1000 && {raw}[0].step === 0")

    page.select_option("#x-axis", "lr")  # loss read against the learning rate
    assert page.evaluate(f"{raw}.every((p) => p.x === 0.1)")  # sgd at a fixed 0.1
    assert page.evaluate("window.trainwatchCharts.loss.options.scales.x.type") == "logarithmic"
    page.select_option("#x-axis", "step")
    assert page.evaluate(f"{raw}.every((p) => p.x === p.step)")
    page.fill("#smoothing", "0")
    page.dispatch_event("#smoothing", "input")
    assert page.evaluate(f"window.trainwatchCharts.loss.data.datasets[1].data.every((p, i) => p.y === {raw}[i].raw)")
    page.click("figure:has(#chart-loss) .chart-tools button >> nth=0")
    assert page.evaluate("window.trainwatchCharts.loss.options.scales.y.type") == "logarithmic"
    with page.expect_download() as download:
        page.click("figure:has(#chart-loss) .csv")
    text = download.value.path().read_text()
    assert text.startswith("series,step,step,value\n") and '"loss (raw)",0,0,' in text
    assert page.console_errors == []


def test_a_run_with_200_tensors_is_shown_as_a_layer_heatmap(live_server, page_as_user, user):
    import numpy as np

    from tracker.core.storage import ChunkWriter

    run = Run.objects.create(
        project=member_of(user, "deep"),
        name="200 tensors",
        status="succeeded",
        config={"epochs": 10, "optimizer": {"name": "sgd", "lr": 0.1}},
        steps_per_epoch=1000,
        total_steps=10_000,
        steps_done=10_000,
        epoch=10,
    )
    steps = np.arange(0, 10_000, 20)
    batch = {"loss": (np.arange(10_000), np.linspace(2.3, 0.1, 10_000))}
    tensors = [f"fc{i}.{kind}" for i in range(1, 100) for kind in ("weight", "bias")] + ["out.weight", "out.bias"]
    for index, tensor in enumerate(tensors):
        batch[f"update_ratio/{tensor}"] = (steps, np.full(len(steps), 10.0 ** (-2 - 2 * index / len(tensors))))
        batch[f"grad_norm/{tensor}"] = (steps, np.full(len(steps), 0.1))
        batch[f"weight_norm/{tensor}"] = (steps, np.full(len(steps), 1.0))
    for layer in range(1, 21):  # 20 activation layers: few enough for lines of their own
        batch[f"dead_fraction/act{layer}"] = (steps[::10], np.full(len(steps[::10]), layer / 40))
    ChunkWriter(run.pk).write(batch)
    diagnose_run(run.pk)  # no accuracy was logged: two rules say what they need

    page = page_as_user
    series_requests = []
    page.on("request", lambda request: "/series/" in request.url and series_requests.append(request.url))
    started = page.evaluate("performance.now()")
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    page.wait_for_function(
        "window.trainwatchHeatmap && window.trainwatchHeatmap.data.datasets[0].data.length > 0"
        " && document.body.dataset.pollingStopped === '1'"
    )
    print(f"\n200-tensor run page drawn in {page.evaluate('performance.now()') - started:.0f} ms")
    assert len(page.evaluate("window.trainwatchHeatmap.options.scales.y.labels")) == 200
    assert page.evaluate("window.trainwatchHeatmap.options.scales.y.labels[0]") == "fc1.weight"
    assert page.is_hidden("figure[data-lines=parameters]")
    assert "200 parameter tensors" in page.text_content("#crowded-parameters")
    assert not any("update_ratio" in url for url in series_requests)  # per-tensor lines are not polled
    # the dead fractions of the activation layers are drawn, whatever the count of parameter tensors
    assert page.is_visible("figure[data-lines=units]") and page.is_hidden("#crowded-units")
    units = page.evaluate(
        "window.trainwatchCharts.units.data.datasets.map((d) => ({label: d.label, points: d.data.length}))"
    )
    assert len(units) == 20 and {u["points"] for u in units} == {50} and units[0]["label"] == "act1 dead"
    waiting = page.text_content("#rules-waiting-panel")
    assert "overfitting, underfitting need train_acc and val_acc: log both at each validation" in waiting

    page.evaluate("window.TrainwatchLayers.open('fc50.weight')")
    page.wait_for_function(
        "window.trainwatchLayerDetail && window.trainwatchLayerDetail.data.datasets[0].data.length > 0"
    )
    assert page.text_content("#layer-detail-name") == "fc50.weight"
    assert [
        d["label"] for d in page.evaluate("window.trainwatchLayerDetail.data.datasets.map((d) => ({label: d.label}))")
    ] == ["update_ratio", "grad_norm", "weight_norm"]
    page.locator("#layers-panel").screenshot(path=str(ARTIFACTS / "layer-heatmap.png"))
    assert page.console_errors == []
