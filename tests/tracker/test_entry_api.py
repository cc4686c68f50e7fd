"""Queueing a team's training function: only what the workers reported, params validated by its
declaration before anything is queued (the workers themselves: tests/integration/test_entry_jobs.py)."""

import json

import pytest
from django.utils import timezone

from tracker.core.studies import create_study
from tracker.models import Run, Study, Worker
from trainer.entry import describe_registered

pytestmark = pytest.mark.django_db


@pytest.fixture
def workers():
    """A cpu worker with the suite's installed entry points, as it reports them at start."""
    now = timezone.now()
    return Worker.objects.create(
        name="cpu0@test",
        hostname="test",
        queues=["cpu"],
        device="CPU (2 cores)",
        entry_points=describe_registered(),
        started_at=now,
        seen_at=now,
    )


def post(client, config):
    return client.post(
        "/api/runs/", data=json.dumps({"project": "jobs", "config": config}), content_type="application/json"
    )


def entry(name="testjobs-mlp", **extra):
    return {"job": "entry", "entry": name, **extra}


def test_a_registered_entry_point_is_queued_with_its_params_resolved(logged_in, workers):
    response = post(logged_in, entry(params={"lr": 0.2, "optimizer": "adam"}, epochs=5))
    assert response.status_code == 201, response.json()
    run = Run.objects.get()
    assert run.queue == "cpu" and run.status == "queued" and run.is_entry_job and run.measured_by_client
    assert run.config == {
        "job": "entry",
        "entry": "testjobs-mlp",
        "params": {
            "lr": 0.2,
            "hidden": 32,
            "optimizer": "adam",
            "batches": 20,
            "step_seconds": 0.0,
            "fail_at_step": -1,
            "checkpoint_every": 0,
            "keep_model": "no",
        },
        "device": "auto",
        "epochs": 5,
        "seed": 0,
        # the retention of its checkpoints, the default one
        "checkpoints": {"keep_latest": 2, "best_metric": "val_acc", "best_mode": "max", "keep_every": 0},
    }
    assert run.name == "testjobs-mlp lr=0.2 optimizer=adam"  # what was given, not the defaults
    assert run.epochs == 5


@pytest.mark.parametrize(
    "config, field, words",
    [
        (
            entry("vision_jobs.resnet:train"),
            "config.entry",
            "'vision_jobs.resnet:train' is not a registered entry point",
        ),
        (entry("os:system"), "config.entry", "the workers of the cpu queue have"),
        (entry("testjobs-broken"), "config.entry", "could not be imported on the workers; staff see why"),
        (entry(params={"lr": 50}), "config.params.lr", "<= 10"),
        (entry(params={"optimizer": "lbfgs"}), "config.params.optimizer", "one of sgd, adam"),
        (entry(params={"colour": "red"}), "config.params.colour", "unknown"),
        (entry(params={"hidden": "wide"}), "config.params.hidden", "whole number"),
        (entry(params=[1, 2]), "config.params", "must be an object"),
        (entry(epochs=0), "config.epochs", "whole number from 1"),
        (entry(device="tpu"), "config.device", "auto, cpu, cuda"),
        (entry("testjobs-checked", params={"width": 3}), "config.params.width", "even"),
        (entry(device="cuda"), "config.entry", "the workers of the gpu queue have none"),
    ],
)
def test_a_bad_entry_job_is_a_400_naming_the_field_and_nothing_is_queued(logged_in, workers, config, field, words):
    response = post(logged_in, config)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert words in errors[field], errors
    assert not Run.objects.exists()


def test_the_api_lists_what_the_workers_can_run(logged_in, workers):
    body = logged_in.get("/api/jobs/").json()
    by_name = {entry["name"]: entry for entry in body["entry_points"]}
    assert "builtin" not in by_name
    assert by_name["testjobs-mlp"]["queues"] == ["cpu"] and by_name["testjobs-mlp"]["params"]["lr"]["default"] == 0.05
    # why it failed, a traceback of a worker's host, is for staff
    assert by_name["testjobs-broken"]["queues"] == [] and by_name["testjobs-broken"]["error"] == (
        "could not be imported on the workers; staff see why in the admin's job queue"
    )
    assert by_name["resnet18"]["epochs"] == 30


def test_a_members_data_path_param_stays_inside_the_data_directories(logged_in, workers, settings, tmp_path):
    settings.TRAINWATCH_DATA_DIRS = [str(tmp_path)]
    refused = post(logged_in, entry("resnet18", params={"path": "/etc"}))
    assert refused.status_code == 400 and "TRAINWATCH_DATA_DIRS" in refused.json()["errors"]["config.params.path"]
    assert post(logged_in, entry("resnet18", params={"path": str(tmp_path / "cifar")})).status_code == 201


def test_the_admin_shows_each_workers_entry_points_and_the_clone_form_offers_them(admin_client, workers):
    listing = admin_client.get("/admin/tracker/worker/").content.decode()
    assert "testjobs-mlp" in listing and "testjobs-broken (import failed)" in listing
    detail = admin_client.get(f"/admin/tracker/worker/{workers.pk}/change/").content.decode()
    assert "trainwatch_testjobs.mlp:train" in detail and "checked by a function" in detail
    source = Run.objects.create(project=_project(), name="x", config={"epochs": 1}, queue="cpu")
    clone = admin_client.get(f"/admin/tracker/run/{source.pk}/clone/").content.decode()
    assert 'id="entry-points"' in clone and "<code>testjobs-mlp</code>" in clone


def _project():
    from tracker.models import Project

    return Project.objects.get_or_create(name="jobs")[0]


def test_a_study_searches_an_entry_points_params_like_config_keys(user, workers):
    spec = {
        "kind": "coarse_to_fine",
        "base": entry(params={"batches": 5}, epochs=2),
        "params": {"params.lr": {"distribution": "log_uniform", "low": 1e-3, "high": 1}},
        "stages": [{"runs": 3, "epochs": 1}, {"runs": 2}],
    }
    study = create_study("jobs", "lr search", spec, user)
    runs = list(study.runs.order_by("pk"))
    assert len(runs) == 3 and all(run.is_entry_job and run.config["epochs"] == 1 for run in runs)
    assert len({run.config["params"]["lr"] for run in runs}) == 3
    assert all(1e-3 <= run.config["params"]["lr"] <= 1 and run.config["params"]["batches"] == 5 for run in runs)
    bad = {**spec, "params": {"params.lr": {"distribution": "uniform", "low": 20, "high": 30}}}
    from trainer.config import ConfigError

    with pytest.raises(ConfigError) as refused:
        create_study("jobs", "out of range", bad, user)
    assert any(key.endswith("params.lr") for key in refused.value.errors), refused.value.errors
    assert Study.objects.count() == 1


def test_staff_see_why_a_function_could_not_be_imported(client, staff, workers):
    client.force_login(staff)
    by_name = {entry["name"]: entry for entry in client.get("/api/jobs/").json()["entry_points"]}
    assert "ModuleNotFoundError" in by_name["testjobs-broken"]["error"]


def every_accepted_config():
    """Each registered entry point with a schema, with its defaults and with each value of each
    of its choice params (e.g. every `data` of the vision jobs)."""
    for info in describe_registered():
        if info.get("error") or info["name"] == "builtin" or not info.get("params"):
            continue
        yield info["name"], {}
        for param, spec in info["params"].items():
            if spec["type"] == "choice":
                for choice in spec["choices"]:
                    yield info["name"], {param: choice}


@pytest.mark.parametrize(("name", "params"), list(every_accepted_config()))
def test_what_the_api_accepts_the_worker_accepts(logged_in, workers, name, params):
    """The worker checks the stored params again, by the code it has, before it calls the
    function: a config the API queued must pass there too (the empty `path` of a synthetic
    vision job did not)."""
    from tracker.worker.execute import _checked_again, job_of
    from trainer.entry import load

    answer = post(logged_in, entry(name, params=params, device="cpu"))
    if answer.status_code == 400:  # refused at once, naming the field: nothing reaches a worker
        assert not Run.objects.exists()
        return
    assert answer.status_code == 201, answer.json()
    stored = Run.objects.get().config
    entry_name, config = job_of(stored)
    assert _checked_again(load(entry_name), config) == config


def test_a_path_required_by_another_params_value_is_asked_for_at_once(logged_in, workers):
    refused = post(logged_in, entry("resnet18", params={"data": "cifar10"}, device="cpu"))
    assert refused.status_code == 400
    assert refused.json()["errors"]["config.params.path"].startswith("is required when data is cifar10")
    assert post(logged_in, entry("resnet18", params={"data": "synthetic"}, device="cpu")).status_code == 201
