import numpy as np
import pytest

from tracker.core.findings import diagnose_run
from tracker.core.storage import ChunkWriter, write_histograms
from tracker.models import Project, Run
from trainer.sink import HistogramRecord

pytestmark = pytest.mark.django_db


@pytest.fixture
def run():
    config = {"optimizer": {"name": "adam", "lr": 0.3}, "model": {"activation": "relu"}, "data": {"name": "digits"}}
    return Run.objects.create(
        project=Project.objects.create(name="d"), config=config, status="running", steps_per_epoch=10
    )


def test_the_findings_and_the_health_are_stored_on_the_run(run):
    steps = np.arange(0, 400, 10)
    ChunkWriter(run.pk).write(
        {
            "loss": (np.arange(400), np.linspace(2.3, 5.0, 400)),
            "update_ratio/fc1.weight": (steps, np.full(len(steps), 3e-2)),
        }
    )
    first = diagnose_run(run.pk)
    run.refresh_from_db()
    # a running run shows a warning once a second diagnosis confirms it
    assert first.findings == run.findings == [] and run.health == "ok"
    assert "lr_too_high|learning rate too high" in run.finding_state["pending"]
    second = diagnose_run(run.pk)
    run.refresh_from_db()
    assert run.health == second.health == "warning"
    assert [f["rule"] for f in run.findings] == [f["rule"] for f in second.findings]
    [shown] = [f for f in run.findings if f["title"] == "learning rate too high"]
    assert shown["raised_step"] == 399 and shown["first_seen_step"] == 399
    assert [(e["event"], e["rule"]) for e in run.finding_history if e["rule"] == "lr_too_high"] == [
        ("raised", "lr_too_high")
    ]


def test_histogram_summaries_feed_the_rules(run):
    ChunkWriter(run.pk).write({"loss": (np.arange(20), np.linspace(2.3, 2.2, 20))})
    write_histograms(
        run.pk,
        [
            HistogramRecord("weight/fc1.weight", 0, 0.0, 0.0, np.array([64]), 0.0, 0.0),
            HistogramRecord("weight/out.weight", 0, -0.1, 0.1, np.array([32, 32]), 0.0, 0.05),
        ],
    )
    rules = [f["rule"] for f in diagnose_run(run.pk).findings]
    assert "symmetry" in rules  # an error: shown at once


def test_failed_checks_become_findings(run):
    run.checks = {
        "sanity": [{"name": "overfit a tiny subset", "passed": False, "message": "did not reach 0.05", "numbers": {}}],
        "gradient": [
            {
                "part": "data loss",
                "verdict": "wrong",
                "tensors": [
                    {"tensor": "fc1.weight", "max_relative_error": 0.5, "dims_checked": 10, "kink_crossings": 0}
                ],
            }
        ],
    }
    run.save()
    run.status = "succeeded"  # ended: shown as found
    run.save()
    findings = diagnose_run(run.pk).findings
    assert {f["rule"] for f in findings} == {"check", "gradient_check"}
    run.refresh_from_db()
    assert run.health == "error"


def test_a_run_without_series_has_no_health_yet(run):
    diagnosis = diagnose_run(run.pk)
    assert diagnosis.findings == [] and diagnosis.health == ""
    run.refresh_from_db()
    assert run.health == ""


def test_the_initial_loss_is_judged_against_the_classes_the_trainer_found(run):
    """An .npz file's classes are known only once it is loaded: the worker stores them
    (RunInfo.classes), and the initial-loss rule reads them rather than guessing from the config."""
    Run.objects.filter(pk=run.pk).update(config={"data": {"name": "npz", "path": "/data/x.npz"}}, classes=4)
    ChunkWriter(run.pk).write({"loss": (np.arange(20), np.linspace(9.0, 8.0, 20))})
    [finding] = [f for f in diagnose_run(run.pk, status="succeeded").findings if f["rule"] == "initial_loss"]
    assert "ln(4)" in finding["evidence"]
