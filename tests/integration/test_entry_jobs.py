"""A team's training functions on real workers: the test package's entry points
(tests/jobpackage) and the built-in resnet18, queued through the same path as run configs."""

import io
import os
import signal
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from django.db import transaction

from tests.conftest import ROOT, start_worker, stop_worker, wait_until
from tests.trainer.image_sets import write_cifar10
from tracker.core import checkpoints
from tracker.core.dispatch import send_train_token
from tracker.core.lifecycle import reap_lost_runs
from tracker.core.runs import create_run
from tracker.core.storage import read_series
from tracker.models import ApiToken, ArtifactVersion, Checkpoint, Project, Run, RunEnvironment, Series, Worker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
SENTINEL = Path(
    os.environ.get("TRAINWATCH_TEST_SENTINEL", Path(tempfile.gettempdir()) / "trainwatch-sentinel-imported")
)


@pytest.fixture
def worker(reported_worker):
    return reported_worker


def mlp(epochs=3, **params):
    return {"job": "entry", "entry": "testjobs-mlp", "params": params, "epochs": epochs, "device": "cpu"}


def finished(run_id):
    return Run.objects.filter(pk=run_id, status__in=Run.FINISHED).first()


def test_an_entry_point_trains_on_a_worker_with_its_series_and_diagnosis(worker, logged_in, user, tmp_path):
    run = create_run("jobs", mlp(batches=20, keep_model="yes"), "", user)
    done = wait_until(lambda: finished(run.pk), 90, "the entry-point run to finish")

    assert done.status == "succeeded", done.error
    assert done.worker == worker and done.device == "cpu" and done.message == "succeeded after 60 steps"
    assert (done.total_steps, done.steps_per_epoch, done.steps_done, done.epoch) == (60, 20, 60, 3)
    steps, losses = read_series(run.pk, "loss")
    np.testing.assert_array_equal(steps, np.arange(60))
    assert losses[-1] < losses[0]
    val_steps, _ = read_series(run.pk, "val_acc")
    np.testing.assert_array_equal(val_steps, [19, 39, 59])
    assert done.best_val_accuracy is not None and done.best_val_accuracy > 0.4
    assert done.tensors == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert len(read_series(run.pk, "update_ratio/0.weight")[0]) > 5  # run.watch measured on the worker
    # the system panel: CPU and memory of the job's process, sampled by the worker's sink
    steps, memory = read_series(run.pk, "system/memory_mb")
    assert len(steps) >= 1 and memory[0] > 50 and len(read_series(run.pk, "system/cpu_percent")[0]) >= 1
    assert done.context["optimizer"] == "sgd" and done.context["classes"] == 3
    assert done.health in ("healthy", "warning", "error")  # the final diagnosis ran
    page = logged_in.get(f"/runs/{run.pk}/").content.decode()
    assert 'id="run-entry"' in page and "testjobs-mlp" in page
    environment = RunEnvironment.objects.get(run=run).data  # the worker's, for its job
    assert (
        environment["command"] == f"entry point testjobs-mlp on worker {worker}" and "torch" in environment["packages"]
    )
    # the model it kept: an artifact version of its project, logged by it, that loads back
    [version] = ArtifactVersion.objects.filter(run=done)
    assert (version.artifact.name, version.artifact.type, version.version) == ("spiral-mlp", "model", 1)
    assert sorted(version.aliases.values_list("name", flat=True)) == ["latest", "trained"]
    download = logged_in.get(f"/artifacts/files/{version.pk}/model.pt")
    (tmp_path / "model.pt").write_bytes(b"".join(download.streaming_content))
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert set(state) == {"0.weight", "0.bias", "2.weight", "2.bias"} and state["0.weight"].shape == (32, 2)


def test_a_cancelled_entry_point_stops_within_a_second(worker, user, client):
    run = create_run("jobs", mlp(epochs=100, batches=50, step_seconds=0.1), "", user)  # ~8 minutes if not stopped
    queued = create_run("jobs", mlp(epochs=1), "behind it", user)  # waits: the worker takes one run at a time
    wait_until(lambda: Run.objects.filter(pk=run.pk, steps_done__gt=10).exists(), 60, "the run to be under way")
    client.force_login(user)  # the queued one, from its run page
    assert client.post(f"/runs/{queued.pk}/cancel/").status_code == 302
    assert Run.objects.get(pk=queued.pk).status == "cancelled"
    steps_at_cancel = Run.objects.get(pk=run.pk).steps_done  # stored at most a flush (1 s) behind
    token = ApiToken.issue(user, "script")[1]  # the running one, through the API
    assert client.post(f"/api/runs/{run.pk}/cancel/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    done = wait_until(lambda: finished(run.pk), 30, "the run to stop")

    assert done.status == "cancelled" and done.message.startswith("cancel requested")
    steps, _ = read_series(run.pk, "loss")
    assert np.all(np.diff(steps) == 1) and steps[0] == 0
    # 0.1 s a step: the flush's lag (10 steps) and the 0.2 s cancel poll (2 steps) at most
    assert steps[-1] + 1 - steps_at_cancel <= 14, (steps_at_cancel, steps[-1])


def test_an_entry_point_that_raises_fails_with_its_traceback_and_keeps_what_it_measured(worker, logged_in, user):
    run = create_run("jobs", mlp(fail_at_step=7), "", user)
    done = wait_until(lambda: finished(run.pk), 60, "the run to fail")

    assert done.status == "failed" and done.message == "RuntimeError: planted failure at step 7"
    assert "Traceback" in done.error and "trainwatch_testjobs/mlp.py" in done.error
    np.testing.assert_array_equal(read_series(run.pk, "loss")[0], np.arange(7))
    page = logged_in.get(f"/runs/{run.pk}/").content.decode()
    assert "planted failure at step 7" in page and "trainwatch_testjobs/mlp.py" in page


def test_a_worker_never_imports_what_is_not_registered_and_survives_an_import_failure(worker):
    """Configs written straight into the database, past the queue's validation, as if the
    workers' install had changed since: the worker refuses or reports, and goes on."""
    SENTINEL.unlink(missing_ok=True)
    project = Project.objects.create(name="jobs")
    runs = {}
    for entry in ("trainwatch_testjobs.sentinel:train", "testjobs-broken"):
        with transaction.atomic():
            runs[entry] = Run.objects.create(
                project=project,
                name=entry,
                config={"job": "entry", "entry": entry, "params": {}, "device": "cpu", "epochs": 1, "seed": 0},
                queue="cpu",
                celery_task_id=str(uuid.uuid4()),
            )
            send_train_token("cpu", runs[entry].celery_task_id)
    refused = wait_until(lambda: finished(runs["trainwatch_testjobs.sentinel:train"].pk), 60, "the refusal")
    broken = wait_until(lambda: finished(runs["testjobs-broken"].pk), 60, "the import failure")

    assert refused.status == "failed"
    assert "'trainwatch_testjobs.sentinel:train' is not registered on this worker" in refused.message
    assert not SENTINEL.exists()  # never imported
    assert broken.status == "failed" and broken.message.startswith(
        "entry point 'testjobs-broken' (trainwatch_testjobs.broken:train) could not be imported: ModuleNotFoundError"
    )
    after = create_run("jobs", mlp(epochs=1, batches=5))
    assert wait_until(lambda: finished(after.pk), 60, "the next run").status == "succeeded"


def test_a_killed_workers_entry_point_resumes_from_run_restore_with_every_step_stored_once(django_db_setup, worker):
    queue = f"entry-{uuid.uuid4().hex[:6]}"
    first = start_worker(f"doomed-{queue}@localhost", queue, ROOT / ".trainwatch" / "test-worker-entry-doomed.log")
    try:
        reported = Worker.objects.get(name=f"doomed-{queue}@localhost").entry_points
        assert {"testjobs-mlp", "testjobs-checked", "resnet18", "builtin"} <= {info["name"] for info in reported}
        with transaction.atomic():
            run = create_run("jobs", mlp(epochs=10, batches=20, step_seconds=0.03, checkpoint_every=10))  # ~8 s
            Run.objects.filter(pk=run.pk).update(queue=queue)
            send_train_token(queue, str(uuid.uuid4()))
        wait_until(lambda: Checkpoint.objects.filter(run=run, step__gte=60).exists(), 60, "a checkpoint at 60+")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    finally:
        stop_worker(first)
    checkpoint_step = Checkpoint.objects.filter(run=run).latest("step").step
    assert Run.objects.get(pk=run.pk).steps_done >= checkpoint_step
    wait_until(lambda: reap_lost_runs(max_silence=2, max_attempts=3) == [(run.pk, "requeued")], 20, "the requeue")
    second = start_worker(f"rescuer-{queue}@localhost", queue, ROOT / ".trainwatch" / "test-worker-entry-rescuer.log")
    try:
        done = wait_until(lambda: finished(run.pk), 90, "the resumed run to finish")
    finally:
        stop_worker(second)
    assert done.status == "succeeded", done.error
    assert done.attempts == 2 and done.resumed_from_step == checkpoint_step > 0
    steps, _ = read_series(run.pk, "loss")
    np.testing.assert_array_equal(steps, np.arange(200))  # complete, no step twice
    assert Series.objects.get(run=run, key="loss").count == 200
    np.testing.assert_array_equal(read_series(run.pk, "val_acc")[0], np.arange(19, 200, 20))


def test_resnet18_trains_a_few_steps_on_a_tiny_cifar_file_set_on_the_cpu(worker, tmp_path):
    folder = write_cifar10(tmp_path / "cifar", n=96)
    config = {
        "job": "entry",
        "entry": "resnet18",
        "device": "cpu",
        "epochs": 2,
        "params": {"path": str(folder), "batch_size": 16, "steps_per_epoch": 2, "val_fraction": 0.2},
    }
    run = create_run("vision", config)  # the CLI's user: an operator, any path
    done = wait_until(lambda: finished(run.pk), 120, "resnet18 to finish")

    assert done.status == "succeeded", done.error
    np.testing.assert_array_equal(read_series(run.pk, "loss")[0], np.arange(4))
    np.testing.assert_array_equal(read_series(run.pk, "val_acc")[0], [1, 3])
    assert "conv1.weight" in done.tensors and len(done.tensors) == 62
    assert len(read_series(run.pk, "update_ratio/conv1.weight")[0]) >= 1
    assert Checkpoint.objects.filter(run=run).latest("step").step == 4


def test_a_resnet50_job_keeps_two_latest_and_its_best_checkpoint_out_of_postgresql_and_resumes_after_sigkill(
    django_db_setup, worker, tmp_path
):
    from django.db import connection

    from trainwatch.jobs.vision import _model

    def checkpoint_table_bytes():
        with connection.cursor() as cursor:
            cursor.execute("select pg_total_relation_size('tracker_checkpoint')")
            return cursor.fetchone()[0]

    before = checkpoint_table_bytes()
    folder = write_cifar10(tmp_path / "cifar", n=96)
    queue = f"entry-{uuid.uuid4().hex[:6]}"
    config = {
        "job": "entry",
        "entry": "resnet50",
        "device": "cpu",
        "epochs": 3,
        "params": {
            "path": str(folder),
            "batch_size": 8,
            "steps_per_epoch": 2,
            "val_fraction": 0.2,
            "checkpoint_every": 1,
            "instrument": False,
            "loader_workers": 0,
        },
        "checkpoints": {"keep_latest": 2, "best_metric": "val_acc"},
    }
    first = start_worker(f"doomed-{queue}@localhost", queue, ROOT / ".trainwatch" / "test-worker-resnet50.log")
    try:
        with transaction.atomic():
            run = create_run("vision", config)
            Run.objects.filter(pk=run.pk).update(queue=queue)
            send_train_token(queue, str(uuid.uuid4()))
        wait_until(lambda: Checkpoint.objects.filter(run=run, step__gte=3).exists(), 180, "a checkpoint at step 3")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    finally:
        stop_worker(first)
    resume_step = Checkpoint.objects.filter(run=run).latest("step").step
    wait_until(lambda: reap_lost_runs(max_silence=2, max_attempts=3) == [(run.pk, "requeued")], 20, "the requeue")
    second = start_worker(f"rescuer-{queue}@localhost", queue, ROOT / ".trainwatch" / "test-worker-resnet50-2.log")
    try:
        done = wait_until(lambda: finished(run.pk), 240, "the resumed resnet50 to finish")
    finally:
        stop_worker(second)
    assert done.status == "succeeded", done.error
    assert done.resumed_from_step == resume_step >= 3
    np.testing.assert_array_equal(read_series(run.pk, "loss")[0], np.arange(6))  # every step once
    # the latest two and the best by val_acc (measured at the epoch ends: steps 2, 4, 6) are kept
    kept = {c.step: c for c in Checkpoint.objects.filter(run=run)}
    best = checkpoints.best(run.pk)
    assert {5, 6} <= set(kept) <= {2, 4, 5, 6} and best.step in (2, 4, 6) and best.step in kept
    assert min(c.size for c in kept.values()) > 100 * 2**20  # the model and its optimizer's momentum
    # a row of a few hundred bytes each: PostgreSQL grows by the pages of a small table and its
    # indexes (48 kB here for 6+ checkpoints of 200 MB, which went to the store)
    assert checkpoint_table_bytes() - before <= 16 * 4096
    state = torch.load(io.BytesIO(checkpoints.read(best)), weights_only=True)["state"]
    fresh = _model("resnet50", 10, 32)
    fresh.load_state_dict(state["model"])
    assert state["step"] == best.step
