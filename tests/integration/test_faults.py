"""Faults with real processes: a worker killed with SIGKILL in the middle of a run."""

import os
import signal
import uuid

import numpy as np
import pytest
from django.db import transaction

from tests.conftest import ROOT, start_worker, stop_worker, wait_until
from tracker.ingest import read_series
from tracker.models import Run
from tracker.runs import create_run, reap_lost_runs

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_run_whose_worker_is_killed_is_requeued_and_completes_on_another_worker(django_db_setup):
    queue = f"fault-{uuid.uuid4().hex[:6]}"  # only this test's workers listen here
    first = start_worker(f"doomed-{queue}@localhost", queue, ROOT / ".trainwatch" / "test-worker-doomed.log")
    try:
        with transaction.atomic():
            run = create_run("faults", {"epochs": 300, "batch_size": 16}, "killed mid-run")  # ~10 s
            run.queue = queue  # dispatched on commit, to this queue
            Run.objects.filter(pk=run.pk).update(queue=queue)
        wait_until(lambda: Run.objects.filter(pk=run.pk, status="running", steps_done__gt=200).exists(), 60,
                   "the run to be well under way")
        os.killpg(first.pid, signal.SIGKILL)  # the worker and its pool, without a chance to clean up
        first.wait()
    finally:
        stop_worker(first)
    stuck = Run.objects.get(pk=run.pk)
    assert stuck.status == "running" and stuck.attempts == 1

    # the reaper (Celery beat in production) finds it silent and requeues it
    wait_until(lambda: reap_lost_runs(max_silence=2, max_attempts=3) == [(run.pk, "requeued")], 20,
               "the reaper to requeue the run")
    second = start_worker(f"rescuer-{queue}@localhost", queue, ROOT / ".trainwatch" / "test-worker-rescuer.log")
    try:
        done = wait_until(lambda: Run.objects.filter(pk=run.pk, status__in=Run.FINISHED).first(), 120,
                          "the requeued run to finish")
    finally:
        stop_worker(second)
    assert done.status == "succeeded", done.error
    assert done.attempts == 2 and done.worker == f"rescuer-{queue}@localhost"
    steps, _ = read_series(run.pk, "loss")
    np.testing.assert_array_equal(steps, np.arange(done.total_steps))  # complete, no duplicated step


def test_a_second_delivery_of_a_running_job_never_runs_it_twice(django_db_setup):
    # What Redis does to an unacknowledged task after visibility_timeout, done here on purpose
    # (kombu restores unacked messages on its own schedule): the same task delivered again
    # while the run trains. The second delivery must find the run taken and do nothing.
    from tracker.tasks import train_run

    queue = f"once-{uuid.uuid4().hex[:6]}"
    logs = [ROOT / ".trainwatch" / f"test-worker-once-{i}.log" for i in (1, 2)]
    workers = [start_worker(f"once{i}-{queue}@localhost", queue, logs[i - 1]) for i in (1, 2)]
    try:
        with transaction.atomic():
            run = create_run("faults", {"epochs": 300, "batch_size": 16}, "delivered twice")  # ~10 s
            run.queue = queue
            Run.objects.filter(pk=run.pk).update(queue=queue)
        wait_until(lambda: Run.objects.filter(pk=run.pk, status="running").exists(), 60, "the run to start")
        train_run.apply_async(args=[run.pk], queue=queue)
        wait_until(lambda: "'skipped'" in "".join(log.read_text() for log in logs), 30,
                   "the second delivery to be skipped")
        done = wait_until(lambda: Run.objects.filter(pk=run.pk, status__in=Run.FINISHED).first(), 120,
                          "the run to finish")
    finally:
        for worker in workers:
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

    from tracker import services

    given, embedded = {"postgres": (settings.DATABASE_URL, 0), "redis": (settings.REDIS_URL, 1)}[server]
    if given.rsplit("/", 1)[0] != (services.recorded_urls()[embedded] or "").rsplit("/", 1)[0]:
        pytest.skip(f"restarts the embedded {server}; this suite runs against another server")
    run = create_run("faults", {"epochs": 300, "batch_size": 16}, f"{server} restarted")  # ~10 s
    wait_until(lambda: Run.objects.filter(pk=run.pk, status="running", steps_done__gt=0).exists(), 60,
               "the run to be under way")
    service = services.EmbeddedPostgres() if server == "postgres" else services.EmbeddedRedis()
    state = services._State().read()
    connection.close()
    assert service.stop(state)
    try:
        time.sleep(down_seconds)  # the worker keeps training
    finally:
        service.start(state)
    done = wait_until(lambda: Run.objects.filter(pk=run.pk, status__in=Run.FINISHED).first(), 120,
                      "the run to finish after the restart")
    assert done.status == "succeeded", done.error
    steps, _ = read_series(run.pk, "loss")
    np.testing.assert_array_equal(steps, np.arange(done.total_steps))
    # the worker is still connected to both and takes the next job
    after = create_run("faults", {"epochs": 1}, f"after the {server} restart")
    assert wait_until(lambda: Run.objects.filter(pk=after.pk, status="succeeded").exists(), 90,
                      "a job queued after the restart to run")
