"""Studies trained by a real worker: a random search of 20 runs and its page in headless
Chromium, early stopping of a hopeless run, and the ensemble of the best runs."""

import pytest

from tests.conftest import ARTIFACTS, wait_until
from tracker.core.studies import create_study
from tracker.models import Run, Study

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Planted: SGD's best learning rates on this problem lie above 1e-3, so the best of this
# search sits at the high edge of [1e-6, 1e-3] (sample_seed 4 draws 9.0e-4 and 8.5e-4).
RANDOM = {
    "kind": "random",
    "base": {"epochs": 2, "batch_size": 64, "optimizer": {"name": "sgd"}, "model": {"hidden": [64]}},
    "runs": 20,
    "sample_seed": 4,
    "params": {
        "optimizer.lr": {"distribution": "log_uniform", "low": 1e-6, "high": 1e-3},
        "model.dropout": {"distribution": "uniform", "low": 0.0, "high": 0.3},
    },
}


@pytest.mark.browser
def test_a_random_search_of_20_runs_completes_and_its_page_shows_log_scatter_pcp_and_edge_warning(
    celery_worker_process, live_server, page_as_user, user
):
    study = create_study("studies", "random lr", RANDOM, user)
    wait_until(lambda: Study.objects.get(pk=study.pk).status == "finished", 300, "the 20 runs of the study to end")
    assert study.runs.filter(status="succeeded").count() == 20
    page = page_as_user
    page.goto(f"{live_server.url}/studies/{study.pk}/")
    page.wait_for_function("document.body.dataset.loaded")
    assert page.evaluate("window.trainwatchStudy.charts['optimizer.lr'].scales.x.type") == "logarithmic"
    assert page.evaluate("window.trainwatchStudy.charts['model.dropout'].scales.x.type") == "linear"
    assert page.evaluate("window.trainwatchStudy.charts['optimizer.lr'].data.datasets[0].data.length") == 20
    assert page.evaluate("window.trainwatchPCP.data.labels.length") == 20
    assert page.evaluate("window.trainwatchPCP.data.datasets.map((d) => [d.label, d.type])") == [
        ["optimizer.lr", "logarithmicPcp"],
        ["model.dropout", "pcp"],
        ["best val. acc.", "pcp"],
    ]
    warning = page.text_content("#edge-warnings")
    assert (
        "optimizer.lr: the best run's value" in warning
        and "high edge" in warning
        and "widen the range upwards" in warning
    )
    assert page.locator("#leaderboard tbody tr").count() == 20
    page.screenshot(path=str(ARTIFACTS / "study-page.png"), full_page=True)

    page.select_option("#top-percent", "25")  # the top 5 runs, everywhere
    page.wait_for_function("window.trainwatchPCP.data.labels.length === 5")
    assert page.locator("#leaderboard tbody tr:not(.top-k-hidden)").count() == 5
    page.click("#compare-top")
    page.wait_for_function("document.body.dataset.loaded && window.trainwatchCompare")
    assert page.evaluate("window.trainwatchCompare.data.datasets.length") == 5
    page.goto(f"{live_server.url}/studies/{study.pk}/report/")
    page.wait_for_function("document.body.dataset.loaded")
    assert page.locator("#report-leaderboard tbody tr").count() == 20
    page.emulate_media(media="print")
    page.screenshot(path=str(ARTIFACTS / "study-report-print.png"), full_page=True)
    assert page.console_errors == []


def test_a_hopeless_run_is_stopped_early_and_the_best_runs_are_evaluated_as_an_ensemble(celery_worker_process):
    spec = {
        "kind": "comparison",
        # long enough (about 3 s a run) that the hopeless run's flushes, one a second, judge it
        # mid-run on any machine: a run shorter than two flushes is never stopped early
        "base": {"epochs": 100, "batch_size": 8, "model": {"hidden": [32]}},
        "choices": {
            "optimizer": [
                {"name": "adam", "lr": 0.001},
                {"name": "adam", "lr": 0.002},
                {"name": "adam", "lr": 0.0015},
                {"name": "sgd", "lr": 1e-7},
            ]
        },
        "early_stopping": {"rule": "median", "min_epochs": 2, "min_runs": 3},
        "ensemble_k": 3,
    }
    study = create_study("studies", "early stop", spec)
    hopeless = study.runs.get(config__optimizer__name="sgd")
    wait_until(lambda: Study.objects.get(pk=study.pk).status == "finished", 240, "the study to end")
    hopeless.refresh_from_db()
    assert hopeless.status == "stopped", hopeless.message
    assert hopeless.message.startswith("stopped early after epoch") and hopeless.epoch < 100
    assert study.runs.filter(status="succeeded").count() == 3
    done = wait_until(lambda: Study.objects.get(pk=study.pk).ensemble, 90, "the ensemble to be evaluated")
    assert done["k"] == 3 and hopeless.pk not in done["runs"]
    assert 0.9 < done["accuracy"] <= 1.0 and done["best_single"] == max(done["members"])
    assert sorted(done["runs"]) == sorted(
        Run.objects.filter(study=study, status="succeeded").values_list("pk", flat=True)
    )
