"""Faults with real processes: a worker killed with SIGKILL in the middle of a run."""

import os
import signal
import uuid

import numpy as np
import pytest
from django.db import transaction

from tests.conftest import ROOT, start_worker, stop_worker, wait_until
from tracker.core.dispatch import send_train_token
from tracker.core.lifecycle import reap_lost_runs
from tracker.core.runs import create_run
from tracker.core.storage import read_series
from tracker.models import Checkpoint, Histogram, Run, Series
from trainer.config import InstrumentConfig

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_run_whose_worker_is_killed_resumes_from_its_checkpoint_on_another_worker(django_db_setup):
    queue = f"fault-{uuid.uuid4().hex[:6]}"  # only this test's workers listen here
    first = start_worker(
        f"doomed-{queue}@localhost",
        queue,
        ROOT / ".trainwatch" / "test-worker-doomed.log",
        TRAINWATCH_CHECKPOINT_SECONDS="1",
    )
    try:
        with transaction.atomic():
            run = create_run(
                "faults", {"epochs": 300, "batch_size": 16, "instrument": {"histogram_every": 200}}, "killed mid-run"
            )  # ~10 s
            Run.objects.filter(pk=run.pk).update(queue=queue)
            send_train_token(queue, str(uuid.uuid4()))  # on commit, to this queue
        wait_until(
            lambda: Checkpoint.objects.filter(run=run, step__gt=500).exists(),
            60,
            "the run to be well under way, with a checkpoint",
        )
        os.killpg(first.pid, signal.SIGKILL)  # the worker and its pool, without a chance to clean up
        first.wait()
    finally:
        stop_worker(first)
    stuck = Run.objects.get(pk=run.pk)
    checkpoint_step = Checkpoint.objects.filter(run=run).latest("step").step
    assert stuck.status == "running" and stuck.attempts == 1
    assert stuck.steps_done >= checkpoint_step  # the points after the checkpoint will be measured again

    # the reaper (Celery beat in production) finds it silent and requeues it
    wait_until(
        lambda: reap_lost_runs(max_silence=2, max_attempts=3) == [(run.pk, "requeued")],
        20,
        "the reaper to requeue the run",
    )
    assert f"resumes from the checkpoint at step {checkpoint_step}" in Run.objects.get(pk=run.pk).message
    second = start_worker(f"rescuer-{queue}@localhost", queue, ROOT / ".trainwatch" / "test-worker-rescuer.log")
    try:
        done = wait_until(
            lambda: Run.objects.filter(pk=run.pk, status__in=Run.FINISHED).first(), 120, "the requeued run to finish"
        )
    finally:
        stop_worker(second)
    assert done.status == "succeeded", done.error
    assert done.attempts == 2 and done.worker == f"rescuer-{queue}@localhost"
    assert done.resumed_from_step == checkpoint_step > 0  # went on, not restarted
    for key in ("loss", "lr", "grad_norm/fc1.weight"):
        steps, _ = read_series(run.pk, key)
        measured = InstrumentConfig().measures_parameters  # every 20 steps, every 5 in the dense start
        expected = [s for s in range(done.total_steps) if key != "grad_norm/fc1.weight" or measured(s)]
        np.testing.assert_array_equal(steps, expected, err_msg=key)  # complete, no duplicated step
    epochs, _ = read_series(run.pk, "epoch")
    assert len(epochs) == 300 and (np.diff(epochs) > 0).all()
    histogram_steps = sorted(Histogram.objects.filter(run=run, key="weight/fc1.weight").values_list("step", flat=True))
    histograms_at = InstrumentConfig(histogram_every=200).measures_parameter_histograms
    assert histogram_steps == [s for s in range(done.total_steps) if histograms_at(s)]
    assert Series.objects.get(run=run, key="loss").count == done.total_steps


def test_a_redelivered_job_is_never_run_twice(django_db_setup):
    """Redis redelivers an unacknowledged message after visibility_timeout: set to 2 s here, for
    a job of about 15 s. The redelivered token finds the run taken and does nothing."""
    queue = f"once-{uuid.uuid4().hex[:6]}"
    log = ROOT / ".trainwatch" / "test-worker-once.log"
    worker = start_worker(
        f"once-{queue}@localhost",
        queue,
        log,
        concurrency=2,
        CELERY_VISIBILITY_TIMEOUT="2",
        CELERY_UNACKED_RESTORE_INTERVAL="1",
        CELERY_UNACKED_RESTORE_THROTTLE="1",
    )
    try:
        with transaction.atomic():
            run = create_run("faults", {"epochs": 400, "batch_size": 16}, "outlives the visibility timeout")
            Run.objects.filter(pk=run.pk).update(queue=queue)
            send_train_token(queue, str(uuid.uuid4()))  # on commit, to this queue
        wait_until(lambda: Run.objects.filter(pk=run.pk, status="running").exists(), 60, "the run to start")
        wait_until(lambda: "'skipped'" in log.read_text(), 60, "Redis to redeliver the job, and the copy to be skipped")
        done = wait_until(
            lambda: Run.objects.filter(pk=run.pk, status__in=Run.FINISHED).first(), 180, "the run to finish"
        )
    finally:
        stop_worker(worker)
    assert done.status == "succeeded" and done.attempts == 1
    steps, _ = read_series(run.pk, "loss")
    np.testing.assert_array_equal(steps, np.arange(done.total_steps))


@pytest.mark.parametrize("server, down_seconds", [("postgres", 4), ("redis", 3)])
def test_a_server_restarted_in_the_middle_of_a_run_loses_no_point(celery_worker_process, server, down_seconds):
    """PostgreSQL down: the sink keeps the points and retries. Redis down: training needs no
    broker, and the worker reconnects for the next job."""
    import time

    from django.conf import settings
    from django.db import connection

    from tracker.dev import services

    given, embedded = {"postgres": (settings.DATABASE_URL, 0), "redis": (settings.REDIS_URL, 1)}[server]
    if given.rsplit("/", 1)[0] != (services.recorded_urls()[embedded] or "").rsplit("/", 1)[0]:
        pytest.skip(f"restarts the embedded {server}; this suite runs against another server")
    run = create_run("faults", {"epochs": 300, "batch_size": 16}, f"{server} restarted")  # ~10 s
    wait_until(
        lambda: Run.objects.filter(pk=run.pk, status="running", steps_done__gt=0).exists(),
        60,
        "the run to be under way",
    )
    connection.close()
    assert services.stop([server]) == [server]
    try:
        time.sleep(down_seconds)  # the worker keeps training
    finally:
        services.start([server])
    done = wait_until(
        lambda: Run.objects.filter(pk=run.pk, status__in=Run.FINISHED).first(),
        120,
        "the run to finish after the restart",
    )
    assert done.status == "succeeded", done.error
    steps, _ = read_series(run.pk, "loss")
    np.testing.assert_array_equal(steps, np.arange(done.total_steps))
    # the worker is still connected to both and takes the next job
    after = create_run("faults", {"epochs": 1}, f"after the {server} restart")
    assert wait_until(
        lambda: Run.objects.filter(pk=after.pk, status="succeeded").exists(),
        90,
        "a job queued after the restart to run",
    )
