"""The diagnosis on the models teams train: torchvision, transformers, a GPT-style decoder, an RNN
and a patch model, each trained through the client (a script's own loop, `run.watch` with its
defaults) against a real server (gunicorn + PostgreSQL). The server's diagnosis is read as the
run stood at 10 %, 25 % and 50 % of its steps and at its end: healthy runs get no warning or
error at any cut, planted mistakes are named by their rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import ended
from tests.zoo import models
from tests.zoo.cases import HEALTHY, PLANTED, Case
from tests.zoo.conftest import findings_at_cuts, loud
from tests.zoo.training import fit
from tracker.core.storage import read_series
from tracker.models import Run
from trainer.tensor_names import PARAMETER_KINDS

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def train(name: str, case: Case, seed: int = 0) -> Run:
    torch.manual_seed(seed)  # the model's initialisation too
    client_run = fit(name, case.model(), case.task(), case.recipe, epochs=case.epochs, plant=case.plant, seed=seed)
    # delivered, the client's spool folder is gone: what it knows of the run stays readable
    assert not client_run.spool.folder.exists() and client_run.url.endswith(f"/runs/{client_run.id}/")
    run = ended(client_run.id)
    assert client_run.status == run.status
    return run


@pytest.mark.parametrize("name", HEALTHY)
def test_a_healthy_real_model_gets_no_warning_at_any_cut(client_env, name):
    run = train(name, HEALTHY[name])
    assert run.status == "succeeded", run.message
    kinds = set(run.tensor_kinds.values())
    assert "weight" in kinds and kinds <= set(PARAMETER_KINDS)
    for cut, findings in findings_at_cuts(name, run).items():
        assert not loud(findings), f"{name} at {cut:.0%}: {loud(findings)}"
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


def test_a_run_whose_activations_turn_nan_keeps_every_step_to_its_divergence(client_env):
    # histograms every 5 steps: the passes after the blow-up measure tensors of NaN and inf,
    # which have no range; the run must still deliver everything and end diverged
    import trainwatch

    torch.manual_seed(0)
    task = models.images(count=256)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=50.0, momentum=0.9)
    with trainwatch.init(project="zoo", name="an MLP at lr 50, histograms every 5 steps", total_steps=80) as client_run:
        client_run.watch(model, optimizer, histogram_every=5, image_shape=(3, 32, 32))
        for step in range(80):
            index = torch.arange(step * 32, step * 32 + 32) % len(task.y_train)
            loss = torch.nn.functional.cross_entropy(model(task.x_train[index]), task.y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            client_run.log({"loss": loss.detach()}, step=step)
    run = ended(client_run.id)
    steps, losses = read_series(run.pk, "loss")
    assert run.status == "diverged" and client_run.status == "diverged", run.message
    assert steps.tolist() == list(range(80)) and not np.isfinite(losses[-1])
    assert run.histograms.filter(key__startswith="weight/").exists()
    assert "divergence" in [finding["rule"] for finding in run.findings]
