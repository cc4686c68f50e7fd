"""The Models page and an artifact's page in headless Chromium: a person sets and moves an
alias, its history says who and when, and the lineage shows both ways (the run that logged a
version, the runs that used it, and each run's Artifacts panel)."""

import hashlib

import pytest

from tests.conftest import ARTIFACTS, member_of
from tracker.core import artifacts, blobs
from tracker.models import Artifact, Blob, Run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def stored(data: bytes, sender) -> str:
    digest = hashlib.sha256(data).hexdigest()
    store = blobs.store()
    if not store.has(digest):
        import io

        store.write(digest, len(data), 0, io.BytesIO(data), len(data))
        store.complete(digest, len(data))
    Blob.objects.get_or_create(digest=digest, defaults={"size": len(data)})[0].senders.add(sender)
    return digest


def test_aliases_are_set_and_moved_and_the_lineage_shows_both_ways(live_server, page_as_user, user):
    project = member_of(user, "vision")
    trainer = Run.objects.create(
        project=project,
        name="trains resnet",
        config={"optimizer": {"name": "sgd", "lr": 0.1}, "epochs": 30},
        status="succeeded",
        best_val_accuracy=0.91,
        health="warning",
        findings=[{"rule": "lr_too_high", "severity": "warning", "title": "learning rate too high"}],
    )
    retrainer = Run.objects.create(
        project=project,
        name="trains it again",
        config={"optimizer": {"name": "sgd", "lr": 0.01}, "epochs": 30},
        status="succeeded",
    )
    evaluator = Run.objects.create(project=project, name="evaluates", config={}, status="succeeded")
    for run, content in ((trainer, b"weights one"), (retrainer, b"weights two")):
        artifacts.log_version(
            run,
            "resnet18",
            "model",
            [{"path": "model.pt", "digest": stored(content, user), "size": len(content)}],
            user=user,
        )
    artifacts.record_use(evaluator, artifacts.resolve(project, "resnet18:v1"))
    page = page_as_user
    page.goto(f"{live_server.url}/models/")
    model = page.locator("section.model[data-model=resnet18]")
    assert model.locator("tr[data-version='2']").inner_text().count("latest") == 1
    assert "trains resnet" in model.locator("tr[data-version='1']").inner_text()
    # what sets the versions apart, and the producing run's diagnosis
    assert model.locator("tr[data-version='1'] td.config span").all_inner_texts() == ["optimizer.lr=0.1"]
    assert model.locator("tr[data-version='2'] td.config span").all_inner_texts() == ["optimizer.lr=0.01"]
    assert "learning rate too high" in model.locator("tr[data-version='1']").inner_text()
    assert 'run.use_artifact("resnet18:v1")' in model.inner_text()
    page.click("section.model[data-model=resnet18] h2 a")
    # a person names v1 production, then moves it to v2
    for version in ("1", "2"):
        page.fill("#alias-form input[name=alias]", "production")
        page.select_option("#alias-form select[name=version]", version)
        page.click("#alias-form button[type=submit]:not([name])")
        page.wait_for_load_state("networkidle")
    assert "production" in page.locator("tr[data-version='2'] td.aliases").inner_text()
    assert "production" not in page.locator("tr[data-version='1'] td.aliases").inner_text()
    history = page.locator("#alias-history tbody tr").all_inner_texts()
    assert [row.split("\t")[1:4] for row in history[:2]] == [
        ["production", "v2", "alice"],
        ["production", "v1", "alice"],
    ]
    # lineage: v1 was logged by the trainer and used by the evaluator, both ways
    first = page.locator("tr[data-version='1']")
    assert "trains resnet" in first.locator("td.producer").inner_text()
    assert "evaluates" in first.locator("td.users").inner_text()
    page.screenshot(path=str(ARTIFACTS / "artifact.png"), full_page=True)
    first.locator("td.users a").click()
    page.wait_for_load_state("networkidle")
    panel = page.locator("#artifacts-panel")
    assert "used" in panel.locator("tr.artifact-used").inner_text() and "v1" in panel.inner_text()
    page.goto(f"{live_server.url}/runs/{trainer.pk}/")
    assert "resnet18" in page.locator("#artifacts-panel tr.artifact-produced").inner_text()
    assert page.console_errors == [] and page.failed_responses == []
    assert Artifact.objects.get().aliases.get(name="production").version.version == 2
