import numpy as np
import pytest

from tracker.diagnose import diagnose_run
from tracker.ingest import ChunkWriter, write_histograms
from tracker.models import Project, Run
from trainer.sink import HistogramRecord

pytestmark = pytest.mark.django_db


@pytest.fixture
def run():
    config = {"optimizer": {"name": "adam", "lr": 0.3}, "model": {"activation": "relu"}, "data": {"name": "digits"}}
    return Run.objects.create(project=Project.objects.create(name="d"), config=config, status="running",
                              steps_per_epoch=10)


def test_the_findings_and_the_health_are_stored_on_the_run(run):
    steps = np.arange(0, 400, 10)
    ChunkWriter(run.pk).write({
        "loss": (np.arange(400), np.linspace(2.3, 5.0, 400)),
        "update_ratio/fc1.weight": (steps, np.full(len(steps), 3e-2)),
    })
    findings, run_health = diagnose_run(run.pk)
    run.refresh_from_db()
    assert run.health == run_health == "warning"
    assert [f["rule"] for f in run.findings] == [f["rule"] for f in findings]
    assert any(f["title"] == "learning rate too high" for f in run.findings)


def test_histogram_summaries_feed_the_rules(run):
    ChunkWriter(run.pk).write({"loss": (np.arange(20), np.linspace(2.3, 2.2, 20))})
    write_histograms(run.pk, [HistogramRecord("weight/fc1.weight", 0, 0.0, 0.0, np.array([64]), 0.0, 0.0)])
    rules = [f["rule"] for f in diagnose_run(run.pk)[0]]
    assert "symmetry" in rules


def test_failed_checks_become_findings(run):
    run.checks = {"sanity": [{"name": "overfit a tiny subset", "passed": False, "message": "did not reach 0.05",
                              "numbers": {}}],
                  "gradient": [{"part": "data loss", "verdict": "wrong", "tensors": [
                      {"tensor": "fc1.weight", "max_relative_error": 0.5, "dims_checked": 10, "kink_crossings": 0}]}]}
    run.save()
    findings, _ = diagnose_run(run.pk)
    assert {f["rule"] for f in findings} == {"check", "gradient_check"}
    run.refresh_from_db()
    assert run.health == "error"


def test_a_run_without_series_has_no_health_yet(run):
    assert diagnose_run(run.pk) == ([], "")
    run.refresh_from_db()
    assert run.health == ""
