"""A run's data.path lies inside TRAINWATCH_DATA_DIRS, unless staff queued it: a member cannot
make a worker read, or say whether there is, any other file of its host."""

import json
import os

import pytest

from tracker.core.runs import create_run
from tracker.models import Run, Study
from trainer.config import ConfigError

pytestmark = pytest.mark.django_db


@pytest.fixture
def data_dirs(settings, tmp_path):
    allowed = tmp_path / "datasets"
    (allowed / "mnist").mkdir(parents=True)
    settings.TRAINWATCH_DATA_DIRS = [str(allowed)]
    return allowed


def post(client, config):
    return client.post("/api/runs/", json.dumps({"project": "p", "config": config}), content_type="application/json")


def test_a_member_may_read_inside_the_data_directories(logged_in, data_dirs):
    response = post(logged_in, {"data": {"name": "mnist", "path": str(data_dirs / "mnist")}})
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("path", ["/etc", "{root}/../secrets", "{root}/link-out/passwd"])
def test_a_member_is_refused_any_other_path_with_the_allowed_roots_named(logged_in, data_dirs, tmp_path, path):
    os.symlink("/etc", data_dirs / "link-out")  # a link inside that leads out
    response = post(logged_in, {"data": {"name": "mnist", "path": path.format(root=data_dirs)}})
    assert response.status_code == 400
    message = response.json()["errors"]["config.data.path"]
    assert "TRAINWATCH_DATA_DIRS" in message and str(data_dirs) in message
    assert Run.objects.count() == 0


def test_staff_and_the_command_line_may_read_any_path(client, staff, data_dirs):
    client.force_login(staff)
    assert post(client, {"data": {"name": "mnist", "path": "/srv/other"}}).status_code == 201
    assert create_run("p", {"data": {"name": "mnist", "path": "/srv/other"}}).pk  # the CLI passes no user


def test_a_study_whose_runs_read_outside_creates_nothing(user, data_dirs):
    spec = {
        "kind": "grid",
        "base": {"epochs": 1, "data": {"name": "npz", "path": "/etc/x.npz"}},
        "choices": {"optimizer.lr": [0.1, 0.01]},
    }
    from tracker.core.studies import create_study

    with pytest.raises(ConfigError) as error:
        create_study("p", "outside", spec, user)
    # refused while the study's runs are planned, naming the generated run
    assert "TRAINWATCH_DATA_DIRS" in error.value.errors["spec.run 1 (lr=0.1): data.path"]
    assert Study.objects.count() == 0 and Run.objects.count() == 0


def test_without_any_data_directory_a_member_is_told_so(logged_in, settings):
    settings.TRAINWATCH_DATA_DIRS = []
    response = post(logged_in, {"data": {"name": "mnist", "path": "/srv/mnist"}})
    assert "none is configured" in response.json()["errors"]["config.data.path"]
