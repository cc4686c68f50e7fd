import numpy as np
import pytest
from django.db import OperationalError

import tracker.worker.sink as sink_module
from tracker.core.storage import read_series
from tracker.models import Project, Run, Series
from tracker.worker.sink import DatabaseSink

pytestmark = pytest.mark.django_db(transaction=True)  # real commits: the high-water mark moves on commit


def test_a_flush_that_fails_half_way_is_written_whole_by_the_next_one(monkeypatch):
    run = Run.objects.create(project=Project.objects.create(name="o"), config={}, status="running")
    sink = DatabaseSink(run, flush_seconds=3600)
    sink.scalars({"loss": (np.arange(100), np.ones(100))})
    original = sink_module.Run.objects.filter

    def unreachable(*args, **kwargs):  # the chunks are written, then the connection dies
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(sink_module.Run.objects, "filter", unreachable)
    sink.flush()  # no exception: kept for later
    assert not Series.objects.filter(run=run).exists()  # rolled back as a whole

    monkeypatch.setattr(sink_module.Run.objects, "filter", original)
    sink.scalars({"loss": (np.arange(100, 150), np.ones(50))})
    sink.flush()
    steps, _ = read_series(run.pk, "loss")
    np.testing.assert_array_equal(steps, np.arange(150))  # nothing lost, nothing doubled
    assert Series.objects.get(run=run, key="loss").count == 150


def test_an_outage_longer_than_allowed_fails_the_run(monkeypatch, settings):
    settings.TRAINWATCH_DB_OUTAGE_SECONDS = 0
    run = Run.objects.create(project=Project.objects.create(name="o"), config={}, status="running")
    sink = DatabaseSink(run, flush_seconds=3600)
    sink.scalars({"loss": (np.arange(5), np.ones(5))})
    monkeypatch.setattr(
        sink_module.Run.objects, "filter", lambda *a, **k: (_ for _ in ()).throw(OperationalError("down"))
    )
    sink.flush()
    sink._outage_since -= 1  # the outage has lasted longer than allowed
    with pytest.raises(OperationalError):
        sink.flush()


def test_the_last_flush_of_a_run_that_ends_during_an_outage_waits_for_the_database(monkeypatch):
    run = Run.objects.create(project=Project.objects.create(name="o"), config={}, status="running")
    sink = DatabaseSink(run, flush_seconds=3600)
    sink.scalars({"loss": (np.arange(50), np.ones(50))})
    original = sink_module.Run.objects.filter
    attempts = []

    def down_for_three_flushes(*args, **kwargs):
        attempts.append(1)
        if len(attempts) <= 3:
            raise OperationalError("the database system is shutting down")
        return original(*args, **kwargs)

    monkeypatch.setattr(sink_module.Run.objects, "filter", down_for_three_flushes)
    sink.drain(retry_seconds=0.01)  # returns once written, not at the first failure as a flush does
    assert len(attempts) > 3 and sink._outage_since is None
    np.testing.assert_array_equal(read_series(run.pk, "loss")[0], np.arange(50))


def test_a_flush_never_waits_for_the_live_diagnosis_which_runs_in_a_thread_of_its_own(settings, monkeypatch):
    import threading

    from tests.conftest import wait_until
    from tracker.core import live
    from trainer.sink import RunInfo

    settings.TRAINWATCH_DIAGNOSE_SECONDS = 0
    run = Run.objects.create(project=Project.objects.create(name="d"), config={}, status="running")
    flushed = threading.Event()
    seen = []
    real = live.diagnose_run

    def diagnose(run_id):
        # blocks until the flush has returned: a diagnosis inside the flush would wait 10 s here
        seen.append((threading.current_thread().name, flushed.wait(10)))
        return real(run_id)

    monkeypatch.setattr(live, "diagnose_run", diagnose)
    sink = DatabaseSink(run, flush_seconds=0)
    sink.start(RunInfo("cpu", 100, 10, 10, ("fc1.weight",), classes=10))
    sink.scalars({"loss": (np.arange(50), np.linspace(2.3, 0.5, 50))})
    sink.flush()
    flushed.set()
    wait_until(lambda: Run.objects.get(pk=run.pk).findings is not None, 10, "the live diagnosis")
    sink.close()
    assert seen[0] == (f"upkeep of run {run.pk}", True)
    assert not any(thread.name == f"upkeep of run {run.pk}" for thread in threading.enumerate())  # stopped
