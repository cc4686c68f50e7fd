"""The configs of trainer.pathologies, trained for real, diagnosed as a live run shows them:
their series cut at 10 %, 25 % and 50 % of the steps, and whole at the end. Every pathology
must be named by the end, 90 % of them by 25 %, and no healthy run may get a warning or an
error at any cut. The table is printed (and copied into docs/diagnosis.md)."""

from __future__ import annotations

import pytest

from trainer.cuts import CUTS, CutTable, TrainedRun, cut_table, train_all
from trainer.diagnosis import health
from trainer.pathologies import HEALTHY, PATHOLOGIES


@pytest.fixture(scope="module")
def runs() -> dict[str, TrainedRun]:
    return train_all()


@pytest.fixture(scope="module")
def table(runs, request) -> CutTable:
    table = cut_table(runs)
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        print("\n" + table.markdown())
    return table


def test_pathologies_are_named_early_and_healthy_runs_never_warned(table):
    assert len(table.named[0.25]) >= 0.9 * len(PATHOLOGIES)
    assert len(table.named[1.0]) == len(PATHOLOGIES)
    assert all(len(quiet) == len(HEALTHY) for quiet in table.quiet.values())


@pytest.mark.parametrize("fraction", CUTS)
@pytest.mark.parametrize("name", HEALTHY)
def test_a_healthy_run_gets_no_warning_at_any_cut(runs, name, fraction):
    findings = runs[name].diagnosed(fraction)
    assert health(findings) in ("ok", "info"), [(f.title, f.evidence) for f in findings]


def test_a_learning_rate_off_by_100x_is_named_within_the_first_tenth(runs):
    for name, rule in (("too high a learning rate", "lr_too_high"), ("too low a learning rate", "lr_too_low")):
        assert rule in [f.rule for f in runs[name].diagnosed(0.10)], name


@pytest.mark.parametrize("name", PATHOLOGIES)
def test_each_pathology_is_named_with_its_evidence(runs, name):
    _, rule = PATHOLOGIES[name]
    findings = {f.rule: f for f in runs[name].diagnosed()}
    assert rule in findings, f"{name}: got {[(f.rule, f.evidence) for f in findings.values()]}"
    finding = findings[rule]
    assert finding.evidence and finding.advice and finding.series
    assert finding.severity in ("warning", "error") or rule == "noisy_loss"  # a small batch is a reading, not a fault


def test_a_high_update_ratio_is_reported_in_plain_words_with_the_tensor_and_the_step(runs):
    finding = {f.rule: f for f in runs["too high a learning rate"].diagnosed()}["lr_too_high"]
    assert finding.title == "learning rate too high"
    assert "update ratio" in finding.evidence and ".weight (weights) since step" in finding.evidence
    assert finding.numbers["update_ratio"] > 1e-2


def test_after_a_divergence_the_nan_values_do_not_become_other_findings(runs):
    findings = runs["far too high a learning rate"].diagnosed()
    assert [f.rule for f in findings] == ["divergence"]
    assert "nan" in findings[0].evidence.lower() or "median" in findings[0].evidence
