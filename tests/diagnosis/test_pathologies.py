"""The configs of trainer.pathologies, trained for real: the diagnosis must name each
pathology and stay quiet on the healthy runs."""

import numpy as np
import pytest

from trainer.config import RunConfig
from trainer.diagnosis import Context, diagnose, health, histogram_series
from trainer.loop import train
from trainer.pathologies import HEALTHY, PATHOLOGIES, with_instrumentation
from trainer.sink import MemorySink

def diagnosed(raw: dict):
    config = RunConfig.from_dict(with_instrumentation(raw))
    sink = MemorySink()
    result = train(config, sink)
    series = {key: sink.get(key) for key in sink.series}
    series.update(histogram_series([(h.key, h.step, h.std) for h in sink.histogram_records]))
    context = Context.from_config(config.to_dict(), sink.info.steps_per_epoch, result.status, result.message)
    return diagnose(series, context)


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_runs_raise_no_warning(name):
    findings = diagnosed(HEALTHY[name])
    assert health(findings) in ("ok", "info"), [(f.title, f.evidence) for f in findings]


@pytest.mark.parametrize("name", PATHOLOGIES)
def test_each_pathology_is_named_with_its_evidence(name):
    raw, rule = PATHOLOGIES[name]
    findings = {f.rule: f for f in diagnosed(raw)}
    assert rule in findings, f"{name}: got {[(f.rule, f.evidence) for f in findings.values()]}"
    finding = findings[rule]
    assert finding.severity in ("warning", "error") and finding.evidence and finding.advice and finding.series


def test_a_high_update_ratio_is_reported_in_plain_words_with_the_tensor_and_the_step():
    findings = {f.rule: f for f in diagnosed(PATHOLOGIES["too high a learning rate"][0])}
    finding = findings["lr_too_high"]
    assert finding.title == "learning rate too high"
    assert "update ratio" in finding.evidence and ".weight since step" in finding.evidence
    assert finding.numbers["update_ratio"] > 1e-2


def test_after_a_divergence_the_nan_values_do_not_become_other_findings():
    findings = diagnosed(PATHOLOGIES["far too high a learning rate"][0])
    assert [f.rule for f in findings] == ["divergence"]
    assert "nan" in findings[0].evidence.lower() or "median" in findings[0].evidence
