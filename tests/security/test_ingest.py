"""What clients send cannot lose a run or break its pages: a payload refused for what it holds
takes its place and the rest of the run is stored; NaN, Infinity and NUL are refused with a 400
naming the field; nesting is bounded before parsing; a diverged run's pages and API answer
JSON that a browser parses."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import requests
import torch

from tests.conftest import ended, member_of
from tests.security.conftest import api, log_in, server_password
from tracker.core.storage import read_series
from tracker.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def strict(text: str):
    """JSON as a browser's JSON.parse reads it: no NaN, no Infinity."""

    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def client_on_site(site, member, tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINWATCH_URL", site.url)
    monkeypatch.setenv("TRAINWATCH_TOKEN", member["token"])
    monkeypatch.setenv("TRAINWATCH_DIR", str(tmp_path))
    monkeypatch.delenv("TRAINWATCH_MODE", raising=False)
    return tmp_path


def mlp_task(seed: int = 0):
    torch.manual_seed(seed)
    x = torch.randn(512, 20)
    y = (x[:, 0] > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    return x, y, model


def test_a_payload_with_nan_in_its_checks_is_refused_and_the_rest_of_the_run_is_stored(client_on_site):
    import trainwatch

    x, y, model = mlp_task()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with trainwatch.init(project="secure", name="poisoned checks", total_steps=60) as client_run:
        client_run.watch(model, optimizer)
        for step in range(60):
            loss = torch.nn.functional.cross_entropy(model(x[step % 8 * 64 :][:64]), y[step % 8 * 64 :][:64])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            client_run.log({"loss": loss.detach()}, step=step)
            if step == 29:
                assert client_run.flush(30)  # steps 0-29 delivered: the checks travel alone
                # a sanity check's numbers on data with one NaN in it
                client_run.attach_checks(
                    sanity=[{"name": "initial loss", "passed": False, "numbers": {"loss": math.nan}, "message": "nan"}]
                )
                client_run.flush(30)
    run = ended(client_run.id)
    assert run.status == "succeeded" and client_run.status == "succeeded", run.message
    steps, _ = read_series(run.pk, "loss")
    assert steps.tolist() == list(range(60))  # every step, before and after the refused payload
    [refused] = run.ingest_refused
    assert refused["error"] == (
        "checks.sanity[0].numbers.loss: nan is not allowed (JSON numbers must be finite; send null for a missing value)"
    )
    assert run.checks is None
    kept = list((client_on_site / "rejected").rglob("*.twb"))
    assert len(kept) == 1 and "checks.sanity[0].numbers.loss" in kept[0].with_suffix(".txt").read_text()


def test_a_diverged_runs_pages_and_api_answer_json_a_browser_parses(site, client_on_site, member):
    import trainwatch

    x, y, model = mlp_task()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e4, momentum=0.9)
    with trainwatch.init(project="secure", name="diverges", total_steps=60) as client_run:
        client_run.watch(model, optimizer, histogram_every=5)
        for step in range(60):
            loss = torch.nn.functional.cross_entropy(model(x[:64] * 1e3), y[:64])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            client_run.log({"loss": loss.detach()}, step=step)
    run = ended(client_run.id)
    steps, losses = read_series(run.pk, "loss")
    assert run.status == "diverged" and steps.tolist() == list(range(60)) and not np.isfinite(losses[-1])
    assert run.histograms.filter(key__startswith="weight/", nonfinite=0).exists()
    # the histograms of the tensors that turned NaN are kept, with how many values did
    assert run.histograms.filter(nonfinite__gt=0).exists()
    [divergence] = [finding for finding in run.findings if finding["rule"] == "divergence"]
    assert "NaN or infinite values at step" in divergence["evidence"]
    token = member["token"]
    for path in (
        "/api/runs/",
        f"/api/runs/{run.pk}/",
        f"/api/runs/{run.pk}/series/?series=loss",
        f"/api/runs/{run.pk}/layers/",
        "/api/dashboard/",
    ):
        answer = api(site, token, "GET", path)
        assert answer.status_code == 200, (path, answer.text[:300])
        strict(answer.text)
    series = strict(api(site, token, "GET", f"/api/runs/{run.pk}/series/?series=loss").text)
    assert series["series"]["loss"]["values"][-1] is None  # NaN travels as null: a gap on the chart
    server_password(member["user"])
    session = log_in(site, "alice")
    for path in (f"/runs/{run.pk}/", "/runs/", "/"):
        page = session.get(f"{site.url}{path}", timeout=30)
        assert page.status_code == 200, path
        for embedded in page.text.split('type="application/json">')[1:]:
            strict(embedded.split("</script>")[0])


NESTED = "[" * 100_000 + "]" * 100_000


def test_deeply_nested_json_is_a_400_on_every_json_endpoint_and_the_study_form(site, member):
    member_of(member["user"], "secure")
    token = member["token"]
    for path in ("/api/runs/", "/api/runs/start/", "/api/studies/"):
        answer = requests.post(
            f"{site.url}{path}",
            data=NESTED,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=30,
        )
        assert answer.status_code == 400, (path, answer.status_code)
        assert "nested deeper than 64 levels" in answer.text
    server_password(member["user"])
    session = log_in(site, "alice")
    form = session.get(f"{site.url}/studies/", timeout=10).text
    csrf = form.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
    answer = session.post(
        f"{site.url}/studies/",
        data={"project": "secure", "name": "deep", "spec": NESTED, "csrfmiddlewaretoken": csrf},
        timeout=30,
    )
    assert answer.status_code == 400 and "nested deeper than 64 levels" in answer.text


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("config", '{"lr": NaN}', "config.lr: nan is not allowed"),
        ("config", '{"lr": Infinity}', "config.lr: inf is not allowed"),
        ("config", '{"note": "a\\u0000b"}', "config.note: text must not contain NUL"),
        ("source", '{"host": "box\\u0000"}', "source.host: text must not contain NUL"),
        ("name", '"run\\u0000"', "text must not contain NUL"),
    ],
)
def test_nan_infinity_and_nul_in_a_client_start_are_a_400_naming_the_field(site, member, field, value, named):
    body = f'{{"project": "secure", "client_id": "abcdefgh12", "{field}": {value}}}'
    answer = requests.post(
        f"{site.url}/api/runs/start/",
        data=body,
        headers={"Authorization": f"Bearer {member['token']}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 400, answer.text
    assert named in json.dumps(answer.json()["errors"]), answer.text
    assert Run.objects.count() == 0
