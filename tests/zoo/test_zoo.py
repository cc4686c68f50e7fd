"""The diagnosis on the models teams train: torchvision, transformers, a GPT-style decoder, an RNN
and a patch model, each trained through the client (a script's own loop, `run.watch` with its
defaults) against a real server (gunicorn + PostgreSQL). The server's diagnosis is read as the
run stood at 10 %, 25 % and 50 % of its steps and at its end: healthy runs get no warning or
error at any cut, planted mistakes are named by their rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.zoo.cases import HEALTHY, PLANTED, Case
from tests.zoo.training import fit
from tracker.core.findings import stored_findings
from tracker.core.storage import read_series
from tracker.models import Run

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

CUTS = (0.10, 0.25, 0.50, 1.0)


# (case, cut) -> the rules found there, for the table at the end
TABLE: dict[tuple[str, float], list[str]] = {}


@pytest.fixture
def client_env(server, token, tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINWATCH_URL", server.url)
    monkeypatch.setenv("TRAINWATCH_TOKEN", token)
    monkeypatch.setenv("TRAINWATCH_DIR", str(tmp_path))
    monkeypatch.delenv("TRAINWATCH_MODE", raising=False)


def train(name: str, case: Case, seed: int = 0) -> Run:
    torch.manual_seed(seed)  # the model's initialisation too
    client_run = fit(name, case.model(), case.task(), case.recipe, epochs=case.epochs, plant=case.plant, seed=seed)
    # delivered, the client's spool folder is gone: what it knows of the run stays readable
    assert not client_run.spool.folder.exists() and client_run.url.endswith(f"/runs/{client_run.id}/")
    run = Run.objects.get(pk=client_run.id)
    assert client_run.status == run.status
    return run


def findings_at_cuts(name: str, run: Run) -> dict[float, list[tuple[str, str, str]]]:
    """(rule, severity, evidence) of the server's diagnosis of the stored points at each cut."""
    found = {}
    for cut in CUTS:
        ended = cut == 1.0
        until = None if ended else int(run.total_steps * cut) - 1
        status = run.status if ended else "running"
        findings, _ = stored_findings(run, status, run.message if ended else "", until)
        found[cut] = [(f.rule, f.severity, f.evidence) for f in findings]
        TABLE[(name, cut)] = [f.rule for f in findings if f.severity != "info"]
    return found


@pytest.mark.parametrize("name", HEALTHY)
def test_a_healthy_real_model_gets_no_warning_at_any_cut(client_env, name):
    run = train(name, HEALTHY[name])
    assert run.status == "succeeded", run.message
    kinds = set(run.tensor_kinds.values())
    assert "weight" in kinds and kinds <= {
        "weight",
        "bias",
        "norm_scale",
        "norm_shift",
        "embedding",
        "positional",
        "recurrent",
        "other",
    }
    for cut, findings in findings_at_cuts(name, run).items():
        loud = [f for f in findings if f[1] in ("warning", "error")]
        assert not loud, f"{name} at {cut:.0%}: {loud}"
    assert run.health in ("ok", "info"), run.findings
    # the lr the runs list shows is the schedule's peak, not its value at the first step
    _, rates = read_series(run.pk, "lr")
    assert run.context["lr"] == pytest.approx(float(np.max(rates))) and run.context["lr_last"] == rates[-1]


@pytest.mark.parametrize("name", PLANTED)
def test_a_planted_mistake_on_a_real_model_is_named_by_its_rule(client_env, name):
    case = PLANTED[name]
    run = train(name, case)
    found = findings_at_cuts(name, run)
    assert case.rule in [rule for rule, _, _ in found[1.0]], f"{name}: {found[1.0]}"
    if case.rule == "divergence":
        assert run.status == "diverged", (run.status, run.message)
        steps, _ = read_series(run.pk, "loss")
        assert steps.tolist() == list(range(run.total_steps)), "every step stored, the diverged ones too"


@pytest.fixture(scope="module", autouse=True)
def zoo_table(request):
    """The table of this module's runs, model x case x cut, written at its end."""
    yield
    names = sorted({name for name, _ in TABLE})
    if not names:
        return
    lines = ["| run | " + " | ".join(f"{cut:.0%}" for cut in CUTS) + " |", "|---" * (len(CUTS) + 1) + "|"]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(", ".join(TABLE.get((name, cut), [])) or "-" for cut in CUTS) + " |")
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        print("\n" + "\n".join(lines))
