"""A member's job reads only inside the data folders (TRAINWATCH_DATA_DIRS), whatever names the
trainer and whenever a link is made: checked when the run is queued and again on the worker,
right before each file is opened, with a message that says nothing of what lies outside."""

import os
import uuid

import pytest

from tests.conftest import TEST_DATA_DIR, wait_until
from tests.security.conftest import api
from tracker.core.runs import create_run
from tracker.models import Run

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
OUTSIDE = "/etc/passwd"
RULE = "must be inside one of the data directories (TRAINWATCH_DATA_DIRS: "


@pytest.fixture
def folder():
    path = TEST_DATA_DIR / uuid.uuid4().hex
    path.mkdir(parents=True)
    return path


def queue(site, member, config):
    return api(site, member["token"], "POST", "/api/runs/", json={"project": "p", "config": config})


@pytest.fixture
def busy_worker(reported_worker):
    """The worker busy for about two seconds with another run, so that a run queued now waits
    while the test makes its link."""
    blocker = create_run(
        "blocker",
        {"job": "entry", "entry": "testjobs-mlp", "params": {"batches": 20, "step_seconds": 0.1}, "epochs": 1},
    )
    wait_until(lambda: Run.objects.filter(pk=blocker.pk).exclude(status="queued").exists(), 60, "the blocker to start")
    return reported_worker


def ended(run_id: int) -> Run:
    return wait_until(lambda: Run.objects.filter(pk=run_id, status__in=Run.FINISHED).first(), 90, "the run to end")


def says_nothing_of_the_file(message: str) -> None:
    assert "root:" not in message and "does not exist" not in message and "not a readable" not in message


def test_the_built_in_trainer_named_by_its_module_path_is_refused(site, member, reported_worker):
    answer = queue(
        site,
        member,
        {"job": "entry", "entry": "tracker.worker.builtin:train", "params": {"data": {"name": "npz", "path": OUTSIDE}}},
    )
    assert answer.status_code == 400, answer.text
    assert "takes a run config" in answer.json()["errors"]["config.entry"]
    assert Run.objects.count() == 0


def test_a_link_made_after_queueing_is_refused_on_the_worker(site, member, busy_worker, folder):
    answer = queue(site, member, {"epochs": 1, "data": {"name": "npz", "path": str(folder / "late.npz")}})
    assert answer.status_code == 201, answer.text  # inside the folder when it was queued
    os.symlink(OUTSIDE, folder / "late.npz")
    run = ended(answer.json()["run"]["id"])
    assert run.status == "failed"
    assert f"data.path: {RULE}" in run.message, run.message
    says_nothing_of_the_file(run.message + run.error)


def resnet18_on(path) -> dict:
    return {
        "job": "entry",
        "entry": "resnet18",
        "device": "cpu",
        "epochs": 1,
        "params": {"data": "cifar10", "path": str(path)},
    }


def test_an_entry_jobs_path_param_that_turns_into_a_link_is_refused_on_the_worker(site, member, busy_worker, folder):
    answer = queue(site, member, resnet18_on(folder / "cifar"))
    assert answer.status_code == 201, answer.text
    os.symlink("/etc", folder / "cifar")
    run = ended(answer.json()["run"]["id"])
    assert run.status == "failed" and f"params.path: {RULE}" in run.message, run.message
    says_nothing_of_the_file(run.message + run.error)


def test_a_file_inside_an_allowed_folder_that_links_out_is_refused_as_it_is_opened(
    site, member, reported_worker, folder
):
    (folder / "cifar").mkdir()
    os.symlink(OUTSIDE, folder / "cifar" / "data_batch_1")
    answer = queue(site, member, resnet18_on(folder / "cifar"))
    assert answer.status_code == 201, answer.text
    run = ended(answer.json()["run"]["id"])
    assert run.status == "failed" and RULE in run.message, run.message
    says_nothing_of_the_file(run.message + run.error)
