"""How a run's findings settle (tracker.core.findings.settle): pure logic, no database."""

from __future__ import annotations

from tracker.core.findings import CONFIRMATIONS, RETRACTIONS, Moment, settle


def finding(rule: str, severity: str = "warning", evidence: str = "because") -> dict:
    return {
        "rule": rule,
        "severity": severity,
        "title": rule.replace("_", " "),
        "evidence": evidence,
        "advice": "do something",
        "series": ["loss"],
        "step": 0,
        "numbers": {},
    }


def at(step: int, total: int = 1000, final: bool = False) -> Moment:
    return Moment(step, total, f"2026-11-24T10:{step // 100:02d}:00+00:00", final)


class Run:
    """A run's stored findings through a sequence of diagnoses."""

    def __init__(self) -> None:
        self.shown: list[dict] = []
        self.state: dict = {}
        self.history: list[dict] = []

    def diagnose(self, fresh: list[dict], moment: Moment) -> list[str]:
        settled = settle(self.shown, self.state, fresh, moment)
        self.shown, self.state = settled.shown, settled.state
        self.history += settled.events
        return [f["rule"] for f in self.shown]


def test_a_warning_shows_once_found_by_consecutive_diagnoses_and_records_where():
    run = Run()
    assert CONFIRMATIONS == 2
    assert run.diagnose([finding("lr_too_high")], at(100)) == []
    assert run.diagnose([finding("lr_too_high")], at(200)) == ["lr_too_high"]
    [shown] = run.shown
    assert shown["raised_step"] == 200 and shown["raised_fraction"] == 0.2 and shown["first_seen_step"] == 100
    assert [(e["event"], e["step"], e["fraction"]) for e in run.history] == [("raised", 200, 0.2)]


def test_a_warning_seen_once_between_two_quiet_diagnoses_never_shows():
    run = Run()
    run.diagnose([finding("overfitting")], at(100))
    run.diagnose([], at(200))
    assert run.diagnose([finding("overfitting")], at(300)) == [] and run.history == []


def test_an_error_shows_at_once():
    run = Run()
    assert run.diagnose([finding("divergence", "error")], at(40)) == ["divergence"]
    assert run.shown[0]["raised_step"] == 40


def test_a_shown_finding_is_retracted_only_after_several_quiet_diagnoses_with_the_reason():
    run = Run()
    run.diagnose([finding("lr_too_high")], at(100))
    run.diagnose([finding("lr_too_high")], at(200))
    for step in range(300, 300 + 100 * (RETRACTIONS - 1), 100):
        assert run.diagnose([], at(step)) == ["lr_too_high"]
        assert run.shown[0]["missed"] == (step - 200) // 100
    last = 200 + 100 * RETRACTIONS
    assert run.diagnose([], at(last)) == []
    retracted = run.history[-1]
    assert retracted["event"] == "retracted" and retracted["step"] == last
    assert retracted["reason"] == f"not found by the last {RETRACTIONS} diagnoses (steps 300 to {last})"


def test_a_finding_found_again_keeps_where_it_was_raised():
    run = Run()
    run.diagnose([finding("lr_too_high")], at(100))
    run.diagnose([finding("lr_too_high")], at(200))
    run.diagnose([], at(300))
    run.diagnose([finding("lr_too_high", evidence="newer")], at(400))
    [shown] = run.shown
    assert shown["raised_step"] == 200 and shown["missed"] == 0 and shown["evidence"] == "newer"
    assert [e["event"] for e in run.history] == ["raised"]


def test_a_severity_change_is_shown_at_once_and_recorded():
    run = Run()
    run.diagnose([finding("dead_relus")], at(100))
    run.diagnose([finding("dead_relus")], at(200))
    run.diagnose([finding("dead_relus", "error")], at(300))
    assert run.shown[0]["severity"] == "error" and run.shown[0]["raised_step"] == 200
    assert run.history[-1]["event"] == "changed" and run.history[-1]["previous"] == "warning"


def test_the_final_diagnosis_is_shown_as_it_is():
    run = Run()
    run.diagnose([finding("lr_too_high")], at(100))
    run.diagnose([finding("lr_too_high")], at(200))
    assert run.diagnose([finding("overfitting")], at(1000, final=True)) == ["overfitting"]
    assert run.shown[0]["raised_step"] == 1000
    retracted = [e for e in run.history if e["event"] == "retracted"]
    assert retracted[0]["rule"] == "lr_too_high" and "final diagnosis, at step 1000" in retracted[0]["reason"]


def test_errors_come_first_then_the_earliest_raised():
    run = Run()
    run.diagnose([finding("overfitting"), finding("lr_too_high")], at(100))
    run.diagnose([finding("overfitting"), finding("lr_too_high"), finding("dead_relus", "error")], at(200))
    assert [f["rule"] for f in run.shown] == ["dead_relus", "overfitting", "lr_too_high"]


def test_several_failed_checks_are_separate_findings():
    run = Run()
    checks = [
        dict(finding("check"), title="sanity check failed: a"),
        dict(finding("check"), title="sanity check failed: b"),
    ]
    run.diagnose(checks, at(0, final=True))
    assert len(run.shown) == 2


def test_a_run_of_unknown_length_has_no_fraction():
    run = Run()
    run.diagnose([finding("divergence", "error")], at(50, total=0))
    assert run.shown[0]["raised_fraction"] is None
