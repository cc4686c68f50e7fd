"""Every page works under its Content-Security-Policy: Chromium, with the policy enforced,
reports no violation (they are console errors) and no failed request on any page, charts and
the study report's Print button included."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import logged_in_page, member_of
from tests.security.conftest import server_password
from tracker.core import reports
from tracker.core.runs import create_run
from tracker.core.storage import ChunkWriter, write_histograms, write_images
from tracker.core.studies import create_study
from tracker.models import Run
from trainer.sink import HistogramRecord, ImageRecord

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_no_page_breaks_its_content_security_policy(browser, site, user):
    member_of(user, "csp")
    server_password(user)
    run = create_run("csp", {"epochs": 1}, "measured", user)
    Run.objects.filter(pk=run.pk).update(status="succeeded", steps_per_epoch=10, steps_done=10)
    ChunkWriter(run.pk).write(
        {"loss": (np.arange(10), np.linspace(2, 1, 10)), "update_ratio/fc1.weight": (np.arange(10), np.full(10, 1e-3))}
    )
    write_histograms(run.pk, [HistogramRecord("weight/fc1.weight", 0, -1.0, 1.0, np.ones(30, np.int64), 0.0, 0.5)])
    write_images(run.pk, [ImageRecord("first_layer", 0, np.zeros((8, 8), np.uint8))])
    study = create_study("csp", "lr", user=user, preset="random-lr")
    other = study.runs.first()
    report = reports.create_report(
        run.project,
        "csp",
        [
            {"type": "markdown", "text": "# Text"},
            {"type": "chart", "id": "c", "select": {"runs": [run.pk]}, "metrics": ["loss"]},
            {"type": "layers", "id": "h", "run": run.pk},
            {"type": "first_layer", "id": "i", "run": run.pk},
            {"type": "leaderboard", "id": "l", "study": study.pk},
        ],
        user,
    )
    token = reports.new_share_token(report)
    context, page = logged_in_page(browser, site, "alice", "/accounts/login/", "/", enforce_csp=True)
    try:
        for path in (
            "/",
            "/runs/",
            f"/runs/{run.pk}/",
            f"/compare/?runs={run.pk},{other.pk}",
            "/studies/",
            f"/studies/{study.pk}/",
            f"/studies/{study.pk}/report/",
            "/projects/",
            f"/projects/{run.project_id}/alerts/",
            "/tokens/",
            "/reports/",
            f"/reports/{report.pk}/",
            f"/reports/{report.pk}/history/",
            f"/shared/{token}/",
            f"/shared/{token}/blocks/c/",
        ):
            page.goto(f"{site.url}{path}")
            page.wait_for_load_state("networkidle")
            assert page.console_errors == [], (path, page.console_errors)
        # the scripts ran: the run page drew its loss chart, and the studies form's button works
        page.goto(f"{site.url}/runs/{run.pk}/")
        page.wait_for_load_state("networkidle")
        assert page.evaluate("() => document.querySelectorAll('canvas').length") > 0
        page.goto(f"{site.url}/studies/")
        page.select_option("#id_preset", index=1)
        page.click("#preset-to-spec")
        assert page.input_value("#id_spec").startswith("{")
        # a report draws its blocks and its editor previews text under the policy
        page.goto(f"{site.url}/reports/{report.pk}/")
        page.wait_for_load_state("networkidle")
        assert page.evaluate("() => document.querySelectorAll('#report-blocks canvas').length") >= 3
        page.click(".report-block[data-type=markdown] button[data-action=edit]")
        page.fill(".markdown-editor textarea", "# Edited")
        page.wait_for_selector(".markdown-preview h1:has-text('Edited')")
        assert page.console_errors == [] and page.failed_responses == []
    finally:
        context.close()
