"""A job's function on a worker: its client's hand-offs go to the worker's DatabaseSink as they
are (never encoded, never written to a file), with the system panel, the watched model's
description and a database outage handled by the sink, as for Trainwatch's own trainer."""

import numpy as np
import pytest
import torch
from django.db import OperationalError

import tracker.worker.sink as sink_module
import trainer.wire
from tracker.core.storage import read_series
from tracker.models import Project, Run
from tracker.worker.jobs import JobRun

pytestmark = pytest.mark.django_db(transaction=True)  # the sender thread writes through its own connection


def a_job_run(name: str) -> JobRun:
    row = Run.objects.create(project=Project.objects.create(name=name), config={}, status="running", worker="w@h")
    return JobRun(row, {"lr": 0.1}, torch.device("cpu"), None)


def train(run: JobRun, steps: int) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run.watch(model, optimizer, loss="cross_entropy", classes=3)
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    for step in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        run.log({"loss": loss.detach(), "lr": 0.1}, step=step)


def test_a_job_runs_measurements_reach_the_database_without_encoding_or_a_spool(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINWATCH_DIR", str(tmp_path))
    monkeypatch.setattr(trainer.wire, "encode", lambda payload: pytest.fail("a job's hand-off was encoded"))
    monkeypatch.setattr("trainwatch.transport.encode", lambda payload: pytest.fail("a job's hand-off was encoded"))
    monkeypatch.setattr("trainer.system.SYSTEM_SECONDS", 0.0)
    monkeypatch.setattr(sink_module, "SYSTEM_SECONDS", 0.0)
    run = a_job_run("in process")
    train(run, 40)
    run.finish()
    assert list(tmp_path.iterdir()) == []  # no spool folder
    row = Run.objects.get(pk=run.row.pk)
    np.testing.assert_array_equal(read_series(row.pk, "loss")[0], np.arange(40))
    assert row.steps_done == 40 and row.heartbeat_at is not None
    assert row.tensors == ["0.weight", "0.bias", "2.weight", "2.bias"] and row.tensor_kinds["0.bias"] == "bias"
    assert row.context["loss"] == "cross_entropy" and row.context["lr_last"] == 0.1
    assert row.histograms.filter(key__startswith="weight/").exists()
    # the system panel, sampled by the sink in the worker's process
    assert len(read_series(row.pk, "system/memory_mb")[0]) >= 1 and len(read_series(row.pk, "system/cpu_percent")[0])


def test_a_job_run_keeps_its_points_through_a_database_outage(monkeypatch):
    run = a_job_run("outage")
    original = sink_module.Run.objects.filter
    down = {"flushes": 0}

    def unreachable_for_a_while(*args, **kwargs):
        if down["flushes"] < 3:
            down["flushes"] += 1
            raise OperationalError("server closed the connection unexpectedly")
        return original(*args, **kwargs)

    monkeypatch.setattr(sink_module.Run.objects, "filter", unreachable_for_a_while)
    train(run, 30)
    run.finish()  # waits for the database, then stores the rest
    assert down["flushes"] == 3
    np.testing.assert_array_equal(read_series(run.row.pk, "loss")[0], np.arange(30))


def test_a_job_run_fails_once_the_outage_outlasts_the_limit(monkeypatch, settings):
    settings.TRAINWATCH_DB_OUTAGE_SECONDS = 0.5
    run = a_job_run("long outage")
    monkeypatch.setattr(
        sink_module.Run.objects, "filter", lambda *a, **k: (_ for _ in ()).throw(OperationalError("down"))
    )
    run.log({"loss": 1.0}, step=0)
    with pytest.raises(RuntimeError, match="the database stayed unreachable"):
        run.finish()


def test_trainwatchs_own_trainer_starts_no_thread_it_does_not_use():
    import threading

    row = Run.objects.create(project=Project.objects.create(name="own"), config={}, status="running")
    run = JobRun(row, {}, torch.device("cpu"), None, direct=True)
    assert not any(thread.name == "trainwatch-sender" for thread in threading.enumerate())
    run.sink.scalars({"loss": (np.arange(5), np.ones(5))})
    run.sink.drain()
    run.close_sink()
    run.finish("succeeded", "done")
    assert run.end()["status"] == "succeeded"
    np.testing.assert_array_equal(read_series(row.pk, "loss")[0], np.arange(5))
