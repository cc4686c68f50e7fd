"""Reports in headless Chromium: made from the compare page of a 21-run optimizer study, edited,
frozen and restored; read through a share link without a login; exported to one HTML file that
draws its charts from disk with the network off; hostile text that never runs anywhere."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from markdown_it import MarkdownIt

from tests.conftest import ARTIFACTS, lr_finding, member_of
from tracker.core import reports
from tracker.core.storage import ChunkWriter
from tracker.models import Report, Run, RunImage, Study
from trainer.presets import PRESETS
from trainer.search import parse_spec

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

OPTIMIZERS = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adadelta"]
XSS = '<img src=x onerror="window.__xss=1">'
XSS_TEXT = (
    "# Hostile\n\n<script>window.__xss=1</script>\n\n[click](javascript:window.__xss=1)\n\n"
    f'{XSS}\n\n<iframe src="javascript:window.__xss=1"></iframe>\n\n<svg onload="window.__xss=1"></svg>'
)


def trained(project, study, optimizer: str, seed: int, steps: int = 60, status: str = "succeeded") -> Run:
    run = Run.objects.create(
        project=project,
        study=study,
        name=f"{optimizer}-s{seed}",
        config={"optimizer": {"name": optimizer, "lr": 0.01}, "seed": seed, "epochs": 3},
        study_values={"optimizer": {"name": optimizer}, "seed": seed},
        status=status,
        steps_per_epoch=20,
        steps_done=steps,
        best_val_accuracy=0.5 + 0.05 * OPTIMIZERS.index(optimizer) + 0.001 * seed if optimizer in OPTIMIZERS else 0.4,
        final_loss=0.3,
    )
    rate = 0.02 + 0.01 * (OPTIMIZERS.index(optimizer) if optimizer in OPTIMIZERS else 3)
    losses = 2.3 * np.exp(-rate * np.arange(steps)) + 0.01 * seed
    epochs = np.array([19, 39, 59])
    ChunkWriter(run.pk).write(
        {
            "loss": (np.arange(steps), losses),
            "val_loss": (epochs, 1.1 * losses[np.minimum(epochs, steps - 1)]),
            "wall_time": (epochs, np.array([1.0, 2.0, 3.0])),
        }
    )
    return run


@pytest.fixture
def optimizer_study(user):
    project = member_of(user, "optimizers")
    spec = parse_spec(PRESETS["compare-optimizers"]["spec"]).to_dict()
    study = Study.objects.create(
        project=project, name="optimizers", kind="comparison", spec=spec, preset="compare-optimizers"
    )
    runs = [trained(project, study, optimizer, seed) for optimizer in OPTIMIZERS for seed in range(3)]
    return project, study, runs


def chart_points(page, block_id: str) -> int:
    return page.evaluate(
        f"window.trainwatchReport.charts['{block_id}'].data.datasets.reduce((n, d) => n + d.data.length, 0)"
    )


def test_a_report_made_from_the_compare_page_of_a_21_run_study_freezes_goes_live_and_restores(
    live_server, page_as_user, optimizer_study
):
    project, study, runs = optimizer_study
    page = page_as_user
    ids = ",".join(str(run.pk) for run in runs)
    page.goto(f"{live_server.url}/compare/?runs={ids}&metric=loss&group=optimizer.name&x=step")
    page.wait_for_function("document.body.dataset.loaded && window.trainwatchCompare")
    assert page.evaluate("window.trainwatchCompare.data.datasets.length") == 21  # 7 groups: band edges and mean
    page.click("#add-to-report-button")
    page.fill("#add-to-report input[name=title]", "Which optimizer?")
    page.select_option("#add-to-report select[name=project]", "optimizers")
    page.click("#add-to-report button[value=add]")
    page.click("#added-report-link")
    page.wait_for_function("document.body.dataset.loaded && window.trainwatchReport")
    report = Report.objects.get(title="Which optimizer?")
    (chart,) = report.blocks
    assert chart["type"] == "chart" and chart["group"] == ["optimizer.name"] and chart["x"] == "step"
    page.wait_for_function(f"window.trainwatchReport.charts['{chart['id']}']")
    assert page.evaluate(f"window.trainwatchReport.charts['{chart['id']}'].data.datasets.length") == 21
    drawn = chart_points(page, chart["id"])

    # Markdown, previewed as typed and saved by itself
    page.click("#add-text")
    page.wait_for_selector(".markdown-editor textarea")
    page.fill(".markdown-editor textarea", "# What we found\n\n**Adam** wins; see the leaderboard.")
    page.wait_for_selector(".markdown-preview h1:has-text('What we found')")
    page.wait_for_function("document.getElementById('report-status').textContent.startsWith('Saved')")
    page.wait_for_function("Number(document.body.dataset.version) >= 3")
    # the study's leaderboard, from the study page
    page.goto(f"{live_server.url}/studies/{study.pk}/")
    page.click("button[data-add-to-report]")
    page.select_option("#add-to-report select[name=report]", str(report.pk))
    page.click("#add-to-report button[value=add]")
    page.click("#added-report-link")
    page.wait_for_function("document.body.dataset.loaded")
    report.refresh_from_db()
    assert [block["type"] for block in report.blocks] == ["chart", "markdown", "leaderboard", "chart"]
    assert report.blocks[1]["text"].startswith("# What we found")
    leaderboard = report.blocks[2]["id"]
    rows = f".report-block[data-block-id='{leaderboard}'] tbody tr"
    page.wait_for_function(f'document.querySelectorAll("{rows}").length === 21')
    assert page.text_content(f"{rows}:first-child").startswith("1#") and "adadelta-s2" in page.text_content(rows)

    # freeze the compare chart; a new run joins the study and an old one trains on
    page.click(f".report-block[data-block-id='{chart['id']}'] button[data-action=freeze]")
    page.wait_for_selector(f".report-block[data-block-id='{chart['id']}'][data-frozen='1']")
    page.wait_for_function(f"window.trainwatchReport.charts['{chart['id']}']")
    assert chart_points(page, chart["id"]) == drawn
    trained(project, study, "lion", 0, steps=30, status="running")
    ChunkWriter(runs[0].pk).write({"loss": (np.arange(60, 90), np.full(30, 0.05))})
    Run.objects.filter(pk=runs[0].pk).update(steps_done=90)
    page.reload()
    page.wait_for_function("document.body.dataset.loaded && window.trainwatchReport")
    page.wait_for_function(f"window.trainwatchReport.charts['{chart['id']}']")
    assert chart_points(page, chart["id"]) == drawn  # the frozen block says the same thing
    page.wait_for_function(f'document.querySelectorAll("{rows}").length === 22')  # the live one does not
    study_chart = report.blocks[3]["id"]
    labels = page.evaluate(f"window.trainwatchReport.charts['{study_chart}'].data.datasets.map((d) => d.label)")
    assert "loss: name=lion (mean of 1)" in labels and "val_loss: name=adam (mean of 3)" in labels
    assert len(labels) == 2 * 8 * 3  # two metrics, eight groups, each a mean between two band edges
    dashes = page.evaluate(
        f"window.trainwatchReport.charts['{study_chart}'].data.datasets.filter((d) => !d.label.startsWith('_'))"
        ".map((d) => [d.label.split(':')[0], d.borderDash || null])"
    )
    assert {tuple(dash) if dash else None for metric, dash in dashes if metric == "val_loss"} == {(6, 3)}
    assert page.text_content(f".report-block[data-block-id='{chart['id']}'] .tag.frozen").endswith(
        "21 runs, to step 59"
    )
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)

    # restore the version that had the chart alone
    page.goto(f"{live_server.url}/reports/{report.pk}/history/")
    assert page.locator("#report-versions tbody tr").count() >= 5
    page.click("#report-versions tr[data-version='1'] button")
    page.wait_for_function("document.body.dataset.loaded && window.trainwatchReport")
    report.refresh_from_db()
    assert [block["type"] for block in report.blocks] == ["chart"] and report.blocks[0]["frozen"] is None
    assert report.versions.first().what == "restored version 1"
    assert page.failed_responses == []


def test_a_share_link_opened_without_a_login_draws_its_charts_and_a_revoked_one_is_gone(
    browser, live_server, page_as_user, user, optimizer_study
):
    project, study, runs = optimizer_study
    report = reports.create_report(
        project,
        "Shared",
        [
            {"type": "markdown", "text": "Read me"},
            {
                "type": "chart",
                "id": "loss",
                "select": {"study": study.pk},
                "metric": "loss",
                "group": ["optimizer.name"],
            },
            {"type": "leaderboard", "id": "board", "study": study.pk},
        ],
        user,
    )
    page_as_user.goto(f"{live_server.url}/reports/{report.pk}/")
    page_as_user.click("#report-settings summary")
    page_as_user.click("#share-create")
    link = page_as_user.input_value("#share-url")
    stranger = browser.new_context(bypass_csp=True)
    try:
        view = stranger.new_page()
        errors: list[str] = []
        view.on("pageerror", lambda error: errors.append(str(error)))
        view.goto(link)
        view.wait_for_function("document.body.dataset.loaded && window.trainwatchReport.charts.loss")
        assert view.evaluate("window.trainwatchReport.charts.loss.data.datasets.length") == 21
        assert view.locator(".report-block[data-block-id='board'] tbody tr").count() == 21
        assert view.locator("#add-text").count() == 0 and view.locator(".block-tools").count() == 0
        assert errors == []
        view.goto(f"{live_server.url}/runs/{runs[0].pk}/")
        assert "/accounts/login/" in view.url
        page_as_user.goto(f"{live_server.url}/reports/{report.pk}/")
        page_as_user.click("#report-settings summary")
        page_as_user.click("#share-revoke")
        assert view.goto(link).status == 404
    finally:
        stranger.close()


def test_the_exported_html_draws_every_chart_from_disk_with_the_network_off(
    browser, live_server, page_as_user, user, optimizer_study, tmp_path
):
    project, study, runs = optimizer_study
    report = reports.create_report(
        project,
        "Offline",
        [
            {
                "type": "chart",
                "id": "grouped",
                "select": {"study": study.pk},
                "metric": "loss",
                "group": ["optimizer.name"],
            },
            {"type": "chart", "id": "two", "select": {"runs": [runs[0].pk, runs[20].pk]}, "metric": "loss", "y": "log"},
            {"type": "runs", "id": "table", "select": {"study": study.pk}},
        ],
        user,
    )
    with page_as_user.expect_download() as download:
        page_as_user.goto(f"{live_server.url}/reports/{report.pk}/")
        page_as_user.click("#export-html")
    exported = tmp_path / "report.html"
    download.value.save_as(exported)
    offline = browser.new_context()
    try:
        offline.set_offline(True)
        view = offline.new_page()
        errors: list[str] = []
        view.on("pageerror", lambda error: errors.append(str(error)))
        view.on("console", lambda message: message.type == "error" and errors.append(message.text))
        view.goto(exported.as_uri())
        view.wait_for_function("document.body.dataset.loaded && window.trainwatchReport.charts.two")
        assert view.evaluate("window.trainwatchReport.charts.grouped.data.datasets.length") == 21
        assert view.evaluate("window.trainwatchReport.charts.two.options.scales.y.type") == "logarithmic"
        assert view.locator(".report-block[data-block-id='table'] tbody tr").count() == 21
        view.screenshot(path=str(ARTIFACTS / "report-export.png"), full_page=True)
        assert errors == []
    finally:
        offline.close()


def test_hostile_text_in_every_field_never_runs_on_the_page_the_share_view_or_the_export(
    browser, live_server, page_as_user, user, optimizer_study, tmp_path
):
    project, study, runs = optimizer_study
    Run.objects.filter(pk=runs[0].pk).update(name=XSS)
    report = reports.create_report(
        project,
        f"{XSS}<script>window.__xss=1</script>",
        [
            {"type": "markdown", "text": XSS_TEXT},
            {"type": "chart", "id": "c", "title": XSS, "select": {"runs": [runs[0].pk]}, "metric": "loss"},
            {"type": "runs", "id": "t", "title": XSS, "select": {"runs": [runs[0].pk]}},
            {"type": "findings", "id": "f", "title": XSS, "select": {"runs": [runs[0].pk]}},
            {"type": "config_diff", "id": "d", "title": XSS, "select": {"runs": [runs[0].pk, runs[1].pk]}},
            {"type": "leaderboard", "id": "l", "title": XSS, "study": study.pk},
        ],
        user,
    )
    token = reports.new_share_token(report)
    page = page_as_user
    page.goto(f"{live_server.url}/reports/{report.pk}/")
    page.wait_for_function("document.body.dataset.loaded")
    page.click(".report-block[data-type=markdown] button[data-action=edit]")  # the editor's preview too
    page.wait_for_selector(".markdown-preview h1")
    assert page.evaluate("window.__xss") is None
    assert page.locator("#report-blocks script, #report-blocks iframe, #report-blocks svg, [onerror]").count() == 0
    with page.expect_download() as download:
        page.click("#export-html")
    exported = tmp_path / "report.html"
    download.value.save_as(exported)
    stranger = browser.new_context(bypass_csp=True)  # without the policy: the page's own escaping is what holds
    try:
        for url in (
            f"{live_server.url}/shared/{token}/",
            exported.as_uri(),
            f"{live_server.url}/shared/{token}/blocks/c/",
        ):
            view = stranger.new_page()
            view.goto(url)
            view.wait_for_function("document.body.dataset.loaded")
            view.wait_for_timeout(300)
            assert view.evaluate("window.__xss") is None, url
            assert view.locator("#report-blocks iframe, #report-blocks svg, [onerror]").count() == 0, url
            view.close()
    finally:
        stranger.close()


def coloured_pixels(png: Path) -> int:
    """Pixels of a chart's palette (not grey, not white): lines and bands drawn."""
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    return int(np.sum(pixels.max(axis=2) - pixels.min(axis=2) > 60))


def test_the_markdown_export_holds_each_chart_as_the_page_drew_it_and_the_pdf_shows_them(
    live_server, page_as_user, user, optimizer_study, tmp_path
):
    project, study, runs = optimizer_study
    report = reports.create_report(
        project,
        "On paper",
        [
            {"type": "markdown", "text": f"# Findings\n\nAdam wins. {XSS} [x](javascript:alert(1))"},
            {
                "type": "chart",
                "id": "grouped",
                "title": "Loss by optimizer",
                "select": {"study": study.pk},
                "metric": "loss",
                "group": ["optimizer.name"],
            },
            {"type": "leaderboard", "id": "board", "study": study.pk},
        ],
        user,
    )
    page = page_as_user
    page.goto(f"{live_server.url}/reports/{report.pk}/")
    page.wait_for_function("document.body.dataset.loaded && window.trainwatchReport.charts.grouped")
    with page.expect_download() as download:
        page.click("#export-markdown")
    bundle = tmp_path / "report.zip"
    download.value.save_as(bundle)
    with zipfile.ZipFile(bundle) as opened:
        opened.extractall(tmp_path / "md")
    text = (tmp_path / "md" / "report.md").read_text()
    assert text.startswith("# On paper") and "![Loss by optimizer](images/grouped.png)" in text
    assert f"| 1 | #{runs[-1].pk} adadelta-s2 | adadelta | 2 |" in text
    # the text as written, disarmed for whatever renders it next, even a renderer that passes HTML
    rendered = MarkdownIt("commonmark", {"html": True}).render(text)
    assert "<img src=x" not in rendered and "javascript:" not in rendered and "&lt;img" in rendered
    assert coloured_pixels(tmp_path / "md" / "images" / "grouped.png") > 2000

    page.emulate_media(media="print")
    pdf = tmp_path / "report.pdf"
    page.pdf(path=str(pdf), format="A4", print_background=True)
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert pages and coloured_pixels(pages[0]) > 2000  # the chart, drawn on the first page
    (ARTIFACTS / "report-pdf-page-1.png").write_bytes(pages[0].read_bytes())


def test_a_run_page_adds_its_loss_findings_heatmap_and_first_layer_to_a_report(
    live_server, page_as_user, optimizer_study
):
    _, _, runs = optimizer_study
    run = runs[0]
    finding = lr_finding("error")
    Run.objects.filter(pk=run.pk).update(
        tensors=["fc1.weight", "fc1.bias", "fc2.weight"], findings=[finding], health="error"
    )
    ChunkWriter(run.pk).write(
        {
            f"update_ratio/{name}": (np.arange(0, 60, 4), np.geomspace(1e-2, 1e-4, 15))
            for name in ("fc1.weight", "fc1.bias", "fc2.weight")
        }
    )
    rng = np.random.default_rng(0)
    for step in (0, 59):
        RunImage.objects.create(
            run=run,
            key="first_layer",
            step=step,
            height=8,
            width=8,
            channels=3,
            pixels=rng.integers(0, 255, 192, dtype=np.uint8).tobytes(),
        )
    page = page_as_user
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    page.click("button[data-add-to-report]")
    page.fill("#add-to-report input[name=title]", "One run")
    page.click("#add-to-report button[value=add]")
    page.click("#added-report-link")
    page.wait_for_function("document.body.dataset.loaded && window.trainwatchReport")
    report = Report.objects.get(title="One run")
    assert [block["type"] for block in report.blocks] == ["chart", "findings", "layers", "first_layer"]
    heatmap = report.blocks[2]["id"]
    page.wait_for_function(f"window.trainwatchReport.charts['{heatmap}']")
    assert page.evaluate(f"window.trainwatchReport.charts['{heatmap}'].config.type") == "matrix"
    assert page.evaluate(f"window.trainwatchReport.charts['{heatmap}'].options.scales.y.labels") == [
        "fc1.weight",
        "fc1.bias",
        "fc2.weight",
    ]
    assert page.locator(".report-block[data-type=first_layer] canvas").count() == 1
    assert page.text_content(".report-block[data-type=first_layer] figcaption").startswith("step 59")
    findings = page.text_content(".report-block[data-type=findings]")
    assert "error: learning rate too high" in findings and "update ratio 3e-2 on fc1 since step 4" in findings

    # every kind of block's settings are edited in place; a refused value names its field
    page.click(f".report-block[data-block-id='{heatmap}'] button[data-action=edit]")
    page.select_option(f".report-block[data-block-id='{heatmap}'] select[name=quantity]", "grad_norm")
    page.click(f".report-block[data-block-id='{heatmap}'] form.block-settings button[type=submit]")
    page.wait_for_function(
        f"window.trainwatchReport.blocks().find((b) => b.id === '{heatmap}').quantity === 'grad_norm'"
    )
    images = report.blocks[3]["id"]
    page.click(f".report-block[data-block-id='{images}'] button[data-action=edit]")
    page.fill(f".report-block[data-block-id='{images}'] input[name=steps]", "0, soon")
    page.click(f".report-block[data-block-id='{images}'] form.block-settings button[type=submit]")
    page.wait_for_function("document.getElementById('report-status').classList.contains('error')")
    assert "blocks[3].steps[1]" in page.text_content("#report-status")
    # the refused save is the one failed request (Chromium logs it as a console error)
    refused = [error for error in page.console_errors if "400 (Bad Request)" in error]
    assert len(refused) == 1
    page.console_errors.remove(refused[0])
    page.fill(f".report-block[data-block-id='{images}'] input[name=steps]", "0, 59")
    page.click(f".report-block[data-block-id='{images}'] form.block-settings button[type=submit]")
    page.wait_for_function(
        f"document.querySelectorAll(\".report-block[data-block-id='{images}'] canvas\").length === 2"
    )
    report.refresh_from_db()
    assert report.blocks[2]["quantity"] == "grad_norm" and report.blocks[3]["steps"] == [0, 59]
    assert report.versions.first().what == "edited a first layer block"


def test_a_leaderboard_block_of_a_search_draws_its_parallel_coordinates(live_server, page_as_user, user):
    project = member_of(user, "search")
    spec = {
        "kind": "random",
        "base": {"epochs": 2, "optimizer": {"name": "sgd"}},
        "runs": 5,
        "params": {
            "optimizer.lr": {"distribution": "log_uniform", "low": 1e-5, "high": 1e-1},
            "model.dropout": {"distribution": "uniform", "low": 0.0, "high": 0.5},
        },
    }
    parsed = parse_spec(spec)
    searched = [{"key": param.key, **param.to_dict()} for param in parsed.params]  # as create_study keeps them
    study = Study.objects.create(
        project=project, name="lr search", kind="random", spec=parsed.to_dict(), stage_params=[searched]
    )
    for index, lr in enumerate((1e-5, 1e-4, 1e-3, 1e-2, 1e-1)):
        Run.objects.create(
            project=project,
            study=study,
            name=f"r{index}",
            config={"optimizer": {"name": "sgd", "lr": lr}},
            study_values={"optimizer.lr": lr, "model.dropout": 0.1 * index},
            status="succeeded",
            best_val_accuracy=0.5 + 0.08 * index,
        )
    report = reports.create_report(project, "Search", [{"type": "leaderboard", "id": "board", "study": study.pk}], user)
    page_as_user.goto(f"{live_server.url}/reports/{report.pk}/")
    page_as_user.wait_for_function("document.body.dataset.loaded && window.trainwatchReport.charts.board")
    axes = page_as_user.evaluate("window.trainwatchReport.charts.board.data.datasets.map((d) => [d.label, d.type])")
    assert axes == [["optimizer.lr", "logarithmicPcp"], ["model.dropout", "pcp"], ["best val. acc.", "pcp"]]
    assert page_as_user.evaluate("window.trainwatchReport.charts.board.data.labels.length") == 5
