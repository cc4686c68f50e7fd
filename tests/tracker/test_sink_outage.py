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
