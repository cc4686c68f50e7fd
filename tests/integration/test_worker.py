"""End to end: the real broker, a real `celery worker` process, the real database."""

import json

import numpy as np
import pytest
import torch
from django.db import transaction

from tests.conftest import wait_until
from tracker.core.dispatch import send_train_token
from tracker.core.lifecycle import request_cancel
from tracker.core.runs import create_run
from tracker.core.storage import read_series
from tracker.models import Run, Series, SeriesChunk
from trainer.config import InstrumentConfig

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
# `device: auto`, the default, trains on the worker's GPU where it has one
AUTO_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def finished(run_id: int) -> Run | None:
    run = Run.objects.get(pk=run_id)
    return run if run.is_finished else None


def test_a_queued_run_is_trained_by_a_worker_and_its_series_are_stored_and_served(
    celery_worker_process, logged_in, user
):
    run = create_run("e2e", {"epochs": 1, "batch_size": 32, "instrument": {"ratio_every": 5}}, "one epoch", user)
    run = wait_until(lambda: finished(run.pk), 90, "the run to finish")

    assert run.status == "succeeded", run.error
    assert run.worker == celery_worker_process and run.device == AUTO_DEVICE
    assert run.steps_per_epoch == 45 and run.steps_done == 45 and run.epoch == 1
    assert 0.5 < run.best_val_accuracy <= 1.0 and run.final_loss is not None

    steps, losses = read_series(run.pk, "loss")
    np.testing.assert_array_equal(steps, np.arange(45))  # count, order, no duplicates
    assert np.isfinite(losses).all()
    assert Series.objects.get(run=run, key="loss").count == 45
    ratio_steps, _ = read_series(run.pk, "update_ratio/fc1.weight")
    cadence = InstrumentConfig(ratio_every=5)  # with the default dense start: every step of the first 100
    np.testing.assert_array_equal(ratio_steps, [s for s in range(45) if cadence.measures_parameters(s)])
    chunk_steps = [np.frombuffer(bytes(c.steps), "<i8") for c in SeriesChunk.objects.filter(run=run, key="loss")]
    assert sum(len(s) for s in chunk_steps) == 45

    body = logged_in.get(f"/api/runs/{run.pk}/series/?series=loss,val_acc,lr").json()
    assert body["series"]["loss"]["steps"] == list(range(45))
    assert body["series"]["loss"]["values"] == pytest.approx(losses.tolist())
    assert body["series"]["val_acc"]["steps"] == [44]
    assert body["run"]["status"] == "succeeded" and body["run"]["finished"] is True
    newer = logged_in.get(f"/api/runs/{run.pk}/series/?series=loss:40").json()
    assert newer["series"]["loss"]["steps"] == [41, 42, 43, 44]


def test_cancelling_a_running_run_stops_it_long_before_its_end(celery_worker_process):
    """Stopped, not trained to its end (how soon it stops: bench/latency.py)."""
    long_config = {"epochs": 2000, "batch_size": 16, "model": {"hidden": [64]}}  # minutes of training
    run = create_run("e2e", long_config, "long")
    wait_until(
        lambda: Run.objects.filter(pk=run.pk, status="running", steps_done__gt=0).exists(),
        60,
        "the run to start and report progress",
    )

    assert request_cancel(run)
    run = wait_until(lambda: finished(run.pk), 60, "the run to stop")

    assert run.status == "cancelled" and run.cancel_requested
    assert run.steps_done < run.total_steps / 10
    steps, _ = read_series(run.pk, "loss")
    # every step trained until the stop is stored once, in order
    assert len(steps) > 0 and np.all(np.diff(steps) == 1) and steps[-1] == run.steps_done - 1


def test_a_cancelled_queued_run_is_never_started(celery_worker_process):
    with transaction.atomic():  # the task is sent on commit, after the cancel
        run = create_run("e2e", {"epochs": 1}, "cancel me")
        request_cancel(run)
    marker = create_run("e2e", {"epochs": 1}, "after it")
    wait_until(lambda: finished(marker.pk), 60, "the next run to finish")
    run.refresh_from_db()
    assert run.status == "cancelled" and run.started_at is None
    assert not Series.objects.filter(run=run).exists()


def test_every_kind_of_measurement_of_a_cnn_run_is_stored_and_served(celery_worker_process, logged_in):
    config = {
        "model": {"kind": "cnn", "channels": [4], "hidden": [16], "activation": "tanh", "init": "xavier_uniform"},
        "optimizer": {"name": "adam", "lr": 0.003, "weight_decay": 1e-4},
        "schedule": {"name": "step", "gamma": 0.5, "step_size": 1, "warmup_steps": 5},
        "epochs": 2,
        "batch_size": 64,
        "instrument": {"ratio_every": 4, "histogram_every": 10},
    }
    response = logged_in.post("/api/runs/", data={"project": "e2e", "config": config}, content_type="application/json")
    assert response.status_code == 201, response.content
    run = wait_until(lambda: finished(response.json()["run"]["id"]), 90, "the run to finish")
    assert run.status == "succeeded", run.error

    keys = set(Series.objects.filter(run=run).values_list("key", flat=True))
    assert {
        "loss",
        "loss_reg",
        "lr",
        "train_acc",
        "val_acc",
        "val_loss",
        "update_ratio/conv1.weight",
        "grad_norm/fc1.weight",
        "weight_norm/out.bias",
        "saturated_fraction/act_conv1",
    } <= keys
    _, lrs = read_series(run.pk, "lr")
    assert lrs[0] == pytest.approx(0.003 * 0.01) and lrs[5] == pytest.approx(0.003)  # warm-up
    assert lrs[-1] == pytest.approx(0.003 * 0.5)  # halved after the first epoch

    histograms = logged_in.get(f"/api/runs/{run.pk}/histograms/").json()["keys"]
    assert "activation/act_conv1" in histograms and "gradient/conv1.weight" in histograms
    over_time = logged_in.get(f"/api/runs/{run.pk}/histograms/?key=activation/act_conv1").json()
    assert over_time["steps"] == [0, 10, 20, 25, 30, 40]  # every 10, and every 25 in the dense start
    over_time = logged_in.get(f"/api/runs/{run.pk}/histograms/?key=weight/conv1.weight").json()
    assert over_time["steps"] == [0, 10, 20, 30, 40]  # the dense start's extra steps: activations only
    image = logged_in.get(f"/api/runs/{run.pk}/images/?key=first_layer").json()
    assert image["steps"] == [22, 45] and image["image"]["width"] == 2 * 4 + 1  # 4 filters of 3 x 3


def test_a_preflight_stores_the_checks_and_the_run_is_diagnosed_at_its_end(celery_worker_process):
    run = create_run("e2e", {"epochs": 2, "preflight": True, "model": {"activation": "tanh"}}, "preflight")
    run = wait_until(lambda: finished(run.pk), 120, "the run to finish")
    assert run.status == "succeeded", run.error
    assert run.checks["passed"] is True
    assert [c["name"] for c in run.checks["sanity"]] == [
        "initial loss",
        "regularisation raises the loss",
        "overfit a tiny subset",
    ]
    assert run.checks["gradient"][0]["verdict"] == "good" and run.steps_done == 46  # 2 epochs of 23 steps
    assert run.health in ("ok", "info")


def test_a_check_job_runs_only_the_checks(celery_worker_process, logged_in, user):
    trained = create_run("e2e", {"epochs": 1}, "to check", user)
    response = logged_in.post(f"/runs/{trained.pk}/check/")
    check = Run.objects.exclude(pk=trained.pk).get(name__startswith="check of")
    assert response.status_code == 302 and response["Location"] == f"/runs/{check.pk}/"
    check = wait_until(lambda: finished(check.pk), 120, "the check job to finish")
    assert check.status == "succeeded" and check.message == "checks passed"
    assert check.checks["gradient"] and not Series.objects.filter(run=check).exists()


def test_a_problem_is_diagnosed_while_the_run_is_still_running(celery_worker_process):
    # the test worker diagnoses every second (TRAINWATCH_DIAGNOSE_SECONDS=1)
    # long enough that two diagnoses a second apart fall in its first tenth: training no longer
    # waits for the live diagnosis, so it runs ~5,000 steps a second meanwhile
    config = {"epochs": 10000, "model": {"activation": "tanh", "init": "normal", "init_std": 3.0}}
    run = create_run("e2e", config, "huge tanh initialisation")
    diagnosed = wait_until(
        lambda: Run.objects.filter(
            pk=run.pk, status="running", findings__contains=[{"rule": "saturated_units"}]
        ).first(),
        60,
        "saturated units found while the run runs",
    )
    assert diagnosed.health == "warning"
    # shown once two diagnoses in a row found it, with the step it was raised at, and in the history
    [finding] = [f for f in diagnosed.findings if f["rule"] == "saturated_units"]
    assert 0 <= finding["first_seen_step"] < finding["raised_step"]
    assert finding["raised_fraction"] == finding["raised_step"] / diagnosed.total_steps < 0.1  # of 10,000 epochs
    assert [e["event"] for e in diagnosed.finding_history if e["rule"] == "saturated_units"] == ["raised"]
    request_cancel(run)
    wait_until(lambda: finished(run.pk), 30, "the run to stop")


def test_the_worker_samples_cpu_and_memory_of_a_training_run(celery_worker_process):
    run = create_run("e2e", {"epochs": 300, "batch_size": 16}, "system metrics")  # ~10 s
    run = wait_until(lambda: finished(run.pk), 120, "the run to finish")
    steps, cpu = read_series(run.pk, "system/cpu_percent")
    _, memory = read_series(run.pk, "system/memory_mb")
    assert len(steps) >= 1 and np.all(np.diff(steps) > 0)  # about every 5 s, at the step it was taken
    assert (cpu >= 0).all() and (memory > 50).all()  # a process with torch loaded: well over 50 MB
    # GPU utilisation and memory (NVML) where the run trained on a GPU, none otherwise
    assert Series.objects.filter(run=run, key="system/gpu_percent").exists() == torch.cuda.is_available()


@needs_cuda
def test_a_cuda_run_queued_through_the_api_is_trained_by_a_gpu_worker_with_gpu_metrics(
    celery_worker_process, logged_in, user
):
    config = {"epochs": 300, "batch_size": 16, "device": "cuda", "precision": "amp"}  # ~15 s on a GPU
    response = logged_in.post(
        "/api/runs/", data=json.dumps({"project": "gpu", "config": config}), content_type="application/json"
    )
    assert response.status_code == 201, response.content
    run = Run.objects.get(pk=response.json()["run"]["id"])
    assert run.queue == "gpu"
    run = wait_until(lambda: finished(run.pk), 240, "the run to finish")
    assert run.status == "succeeded", run.error
    assert run.device.startswith("cuda") and run.best_val_accuracy > 0.9
    assert "mixed precision" in run.message
    steps, utilisation = read_series(run.pk, "system/gpu_percent")
    _, memory = read_series(run.pk, "system/gpu_memory_mb")
    assert len(steps) >= 1 and ((utilisation >= 0) & (utilisation <= 100)).all() and (memory > 100).all()
    body = logged_in.get(f"/api/runs/{run.pk}/series/?series=system/gpu_percent,system/gpu_memory_mb").json()
    assert len(body["series"]["system/gpu_memory_mb"]["values"]) == len(steps)


def test_a_worker_describes_itself_and_the_job_queue_lists_it(django_db_setup, client, staff):
    # its own worker: the suite empties every table between tests, the row written when the
    # session's worker started included
    import uuid

    from tests.conftest import ROOT, start_worker, stop_worker
    from tracker.models import Worker

    queue = f"described-{uuid.uuid4().hex[:6]}"
    name = f"described-{queue}@localhost"
    proc = start_worker(name, queue, ROOT / ".trainwatch" / "test-worker-described.log")
    try:
        with transaction.atomic():
            run = create_run("e2e", {"epochs": 300, "batch_size": 16}, "watched")
            send_train_token(queue, str(uuid.uuid4()))  # on commit, to this queue
            Run.objects.filter(pk=run.pk).update(queue=queue)
        wait_until(lambda: Run.objects.filter(pk=run.pk, status="running", steps_done__gt=0).exists(), 60, "the run")
        worker = wait_until(lambda: Worker.objects.filter(name=name).first(), 30, "the worker row")
        assert worker.queues == [queue]
        if torch.cuda.is_available():  # the GPU's name and memory, e.g. "NVIDIA H100 80GB HBM3 (79 GiB)"
            assert worker.device.startswith(torch.cuda.get_device_name(0)) and "GiB)" in worker.device
        else:
            assert worker.device.startswith("CPU (")
        client.force_login(staff)
        html = client.get("/admin/tracker/worker/").content.decode()
        assert name in html and "icon-yes" in html  # answering the ping
        assert f"#{run.pk} watched" in html  # what it trains
        request_cancel(run)
        wait_until(lambda: finished(run.pk), 30, "the run to stop")
    finally:
        stop_worker(proc)
