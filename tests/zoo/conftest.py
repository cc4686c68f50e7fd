"""What every zoo test shares: the server's diagnosis read at the cuts, and the table of every
zoo run printed at the end of the test run (the client's server: tests/conftest.py's client_env)."""

from __future__ import annotations

import pytest

from tracker.core.findings import stored_findings
from tracker.models import Run

CUTS = (0.10, 0.25, 0.50, 1.0)
# (run, cut) -> the warnings and errors found there
TABLE: dict[tuple[str, float], list[str]] = {}


def findings_at_cuts(name: str, run: Run) -> dict[float, list[tuple[str, str, str]]]:
    """(rule, severity, evidence) of the server's diagnosis of the stored points at each cut."""
    found = {}
    for cut in CUTS:
        ended = cut == 1.0
        until = None if ended else int(run.total_steps * cut) - 1
        status = run.status if ended else "running"
        findings, _, _ = stored_findings(run, status, run.message if ended else "", until)
        found[cut] = [(f.rule, f.severity, f.evidence) for f in findings]
        TABLE[(name, cut)] = [f.rule for f in findings if f.severity != "info"]
    return found


def loud(findings: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    return [finding for finding in findings if finding[1] in ("warning", "error")]


@pytest.fixture(scope="session", autouse=True)
def zoo_table(request):
    """The table of this test run's zoo runs, run x cut, written at its end."""
    yield
    names = sorted({name for name, _ in TABLE})
    if not names:
        return
    lines = ["| run | " + " | ".join(f"{cut:.0%}" for cut in CUTS) + " |", "|---" * (len(CUTS) + 1) + "|"]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(", ".join(TABLE.get((name, cut), [])) or "-" for cut in CUTS) + " |")
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        print("\n" + "\n".join(lines))
