import datetime as dt

import numpy as np
import pytest
from django.utils import timezone

from tracker.core import checkpoints
from tracker.core.lifecycle import reap_lost_runs
from tracker.core.storage import ChunkWriter
from tracker.models import Checkpoint, Project, Run, Series

pytestmark = pytest.mark.django_db


def running(seconds_silent: float, attempts: int = 1) -> Run:
    run = Run.objects.create(
        project=Project.objects.get_or_create(name="r")[0],
        config={"epochs": 1},
        status="running",
        worker="w1@host",
        attempts=attempts,
        steps_done=40,
        heartbeat_at=timezone.now() - dt.timedelta(seconds=seconds_silent),
    )
    ChunkWriter(run.pk).write({"loss": (np.arange(40), np.ones(40))})
    return run


def test_a_silent_run_is_requeued_from_scratch_while_it_has_attempts_left():
    lost = running(120, attempts=1)
    alive = running(5)
    assert reap_lost_runs(60, 3) == [(lost.pk, "requeued")]
    lost.refresh_from_db()
    assert lost.status == "queued" and lost.steps_done == 0 and lost.worker == ""
    assert "w1@host went silent" in lost.message and "attempt 2 of 3" in lost.message
    assert "restarts from scratch" in lost.message
    assert not Series.objects.filter(run=lost).exists()  # no mix of two attempts
    alive.refresh_from_db()
    assert alive.status == "running"


def test_after_its_last_attempt_a_silent_run_is_lost():
    run = running(120, attempts=3)
    assert reap_lost_runs(60, 3) == [(run.pk, "lost")]
    run.refresh_from_db()
    assert run.status == "lost" and run.is_finished and "no attempts left" in run.message


def test_a_silent_run_with_a_checkpoint_keeps_it_and_its_measurements_to_resume():
    lost = running(120, attempts=1)
    checkpoints.save(lost.pk, 30, 3, b"state", timezone.now())
    assert reap_lost_runs(60, 3) == [(lost.pk, "requeued")]
    lost.refresh_from_db()
    assert lost.status == "queued" and "resumes from the checkpoint at step 30" in lost.message
    assert Series.objects.get(run=lost, key="loss").count == 40  # the worker drops steps 30..39 when it resumes
    assert Checkpoint.objects.filter(run=lost, step=30).exists()
