import datetime as dt

import numpy as np
import pytest

from tracker.core import console, external
from tracker.core.storage import FINAL_LOSS_SPAN, ChunkWriter, final_loss, read_series, store_handoff
from tracker.models import Histogram, Project, Run, RunImage, Series, SeriesChunk
from tracker.worker.sink import DatabaseSink
from trainer.sink import HistogramRecord, ImageRecord
from trainer.wire import Payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def run():
    return Run.objects.create(project=Project.objects.create(name="p"), config={})


def batch(start: int, stop: int, key: str = "loss"):
    steps = np.arange(start, stop, dtype=np.int64)
    return {key: (steps, steps * 0.5)}


def test_a_series_is_read_back_in_step_order_across_chunks(run):
    writer = ChunkWriter(run.pk)
    for start in range(0, 300, 100):
        writer.write(batch(start, start + 100))
    steps, values = read_series(run.pk, "loss")
    np.testing.assert_array_equal(steps, np.arange(300))
    np.testing.assert_array_equal(values, np.arange(300) * 0.5)
    assert SeriesChunk.objects.filter(run=run).count() == 3


def test_a_retried_flush_stores_nothing_twice(run):
    writer = ChunkWriter(run.pk)
    writer.write(batch(0, 100))
    writer.high_water.clear()  # as if the first attempt's success was never seen
    assert writer.write(batch(0, 100)) == 100
    steps, _ = read_series(run.pk, "loss")
    assert len(steps) == 100
    series = Series.objects.get(run=run, key="loss")
    assert series.count == 100 and series.last_step == 99


def test_a_resumed_writer_drops_the_steps_already_stored(run):
    ChunkWriter(run.pk).write(batch(0, 100))
    resumed = ChunkWriter(run.pk)  # a new process: its high-water mark comes from the database
    assert resumed.write(batch(60, 150)) == 50
    steps, _ = read_series(run.pk, "loss")
    np.testing.assert_array_equal(steps, np.arange(150))
    assert Series.objects.get(run=run, key="loss").count == 150


def test_unsorted_and_repeated_steps_within_a_flush_are_stored_once_in_order(run):
    steps = np.array([3, 1, 2, 2, 0], dtype=np.int64)
    ChunkWriter(run.pk).write({"loss": (steps, steps.astype(float))})
    stored, values = read_series(run.pk, "loss")
    np.testing.assert_array_equal(stored, [0, 1, 2, 3])
    np.testing.assert_array_equal(values, [0.0, 1.0, 2.0, 3.0])


def test_nan_is_stored_but_left_out_of_the_summary_range(run):
    ChunkWriter(run.pk).write({"loss": (np.arange(3), np.array([1.0, np.nan, 3.0]))})
    _, values = read_series(run.pk, "loss")
    assert np.isnan(values[1])
    series = Series.objects.get(run=run, key="loss")
    assert (series.min_value, series.max_value, series.last_value) == (1.0, 3.0, 3.0)


def test_reading_after_and_until_a_step_returns_only_that_range(run):
    writer = ChunkWriter(run.pk)
    writer.write(batch(0, 50))
    writer.write(batch(50, 100))
    steps, _ = read_series(run.pk, "loss", after_step=40, until_step=60)
    np.testing.assert_array_equal(steps, np.arange(41, 61))
    assert len(read_series(run.pk, "loss", after_step=99)[0]) == 0
    assert len(read_series(run.pk, "missing")[0]) == 0


def test_mismatched_lengths_are_refused(run):
    with pytest.raises(ValueError, match="3 steps but 2 values"):
        ChunkWriter(run.pk).write({"loss": (np.arange(3), np.zeros(2))})


def test_many_series_are_read_in_one_query_each_from_its_own_step(run, django_assert_num_queries):
    writer = ChunkWriter(run.pk)
    writer.write({"a": (np.arange(10), np.arange(10.0)), "b": (np.arange(5), np.arange(5.0))})
    writer.write({"a": (np.arange(10, 20), np.arange(10.0, 20.0))})
    from tracker.core.storage import read_many

    with django_assert_num_queries(1):
        result = read_many(run.pk, {"a": 14, "b": None, "missing": 3}, until_step=17)
    np.testing.assert_array_equal(result["a"][0], [15, 16, 17])
    np.testing.assert_array_equal(result["b"][0], np.arange(5))
    assert len(result["missing"][0]) == 0


def test_compaction_merges_chunks_without_changing_the_series(run, monkeypatch):
    import tracker.core.storage as ingest

    monkeypatch.setattr(ingest, "COMPACT_POINTS", 250)
    writer = ChunkWriter(run.pk)
    for start in range(0, 1000, 10):
        writer.write(
            {
                "loss": (np.arange(start, start + 10), np.arange(start, start + 10) * 0.5),
                "rare": (np.array([start]), np.array([float(start)])),
            }
        )
    before_loss, before_rare = read_series(run.pk, "loss"), read_series(run.pk, "rare")
    assert ingest.compact_series(run.pk) == 200 - 4 - 1
    assert SeriesChunk.objects.filter(run=run, key="loss").count() == 4
    assert SeriesChunk.objects.filter(run=run, key="rare").count() == 1
    for key, before in (("loss", before_loss), ("rare", before_rare)):
        after = read_series(run.pk, key)
        np.testing.assert_array_equal(after[0], before[0])
        np.testing.assert_array_equal(after[1], before[1])
    # a resumed writer still refuses the steps already stored
    assert ChunkWriter(run.pk).write({"loss": (np.arange(990, 1010), np.zeros(20))}) == 10


def ema(values: np.ndarray) -> float:
    """pandas' ewm(span=FINAL_LOSS_SPAN, adjust=False).mean() at the last value, by its definition."""
    alpha, average = 2 / (FINAL_LOSS_SPAN + 1), values[0]
    for value in values[1:]:
        average = (1 - alpha) * average + alpha * value
    return average


def test_the_final_loss_is_an_average_of_the_last_steps_over_every_hand_off_not_the_last_batch(run):
    rng = np.random.default_rng(0)
    losses = np.exp(-np.arange(600) / 200) + rng.normal(0, 0.05, 600)
    losses[-1] = 3.0  # an epoch's last batch of a few examples
    losses[100] = np.nan  # a non-finite loss is left out
    writer = ChunkWriter(run.pk)
    for start in (0, 1, 250, 251, 599):  # hand-offs of 1, 249, 1, 348 and 1 steps
        stop = {0: 1, 1: 250, 250: 251, 251: 599, 599: 600}[start]
        steps = np.arange(start, stop)
        store_handoff(run.pk, writer, {"loss": (steps, losses[start:stop])}, [], [], {}, dt.datetime.now(dt.UTC))
    run.refresh_from_db()
    finite = losses[np.isfinite(losses)]
    assert run.final_loss == pytest.approx(ema(finite), rel=1e-9) == pytest.approx(final_loss(finite), rel=1e-9)
    assert 0.05 < run.final_loss < 0.2  # the last 50 steps' level (about 0.06), not 3.0
    # a hand-off with no finite loss leaves it alone
    store_handoff(run.pk, writer, {"loss": (np.array([600]), np.array([np.inf]))}, [], [], {}, dt.datetime.now(dt.UTC))
    run.refresh_from_db()
    assert run.final_loss == pytest.approx(ema(finite), rel=1e-9)


def client_payloads() -> list[Payload]:
    """What a script's client hands off over three flushes: points, a histogram and an image,
    its model's description, learning rates, check results, progress and console lines."""
    describe = {
        "tensors": ["fc.weight", "fc.bias"],
        "kinds": ["linear_weight", "bias"],
        "context": {"loss": "cross_entropy", "optimizer": "sgd"},
        "frozen": [],
        "device": "cpu",
    }
    checks = {
        "sanity": [{"name": "initial loss", "passed": True, "numbers": {"loss": 2.3}, "message": "ok"}],
        "gradient": [],
        "passed": True,
    }
    payloads = []
    for seq, start in enumerate(range(0, 30, 10)):
        steps = np.arange(start, start + 10, dtype=np.int64)
        payloads.append(
            Payload(
                seq=seq,
                scalars={"loss": (steps, 2.0 - steps * 0.01), "lr": (steps, np.full(10, 0.09 - seq * 0.01))},
                histograms=[HistogramRecord("weight/fc.weight", start, -1.0, 1.0, np.arange(8), 0.0, 0.5)],
                images=[ImageRecord("first_layer", start, np.full((4, 4), seq + 1, dtype=np.uint8))],
                progress={"step": start + 10, "epoch": seq + 1, "total_steps": 30, "steps_per_epoch": 10},
                describe=describe if seq == 0 else None,
                checks=checks if seq == 1 else None,
                console=[(float(start), "stdout", f"epoch {seq + 1}")],
            )
        )
    return payloads


def stored(run_id: int) -> dict:
    row = Run.objects.get(pk=run_id)
    return {
        "series": {key: [list(a) for a in read_series(run_id, key)] for key in ("loss", "lr")},
        "histograms": [
            (key, step, bytes(counts))
            for key, step, counts in Histogram.objects.filter(run_id=run_id)
            .order_by("step")
            .values_list("key", "step", "counts")
        ],
        "images": [
            (key, step, bytes(pixels))
            for key, step, pixels in RunImage.objects.filter(run_id=run_id)
            .order_by("step")
            .values_list("key", "step", "pixels")
        ],
        "console": [line[1:] for line in console.last_lines(row)],  # without the chunk's number
        "row": {
            field: getattr(row, field)
            for field in (
                "steps_done",
                "epoch",
                "total_steps",
                "steps_per_epoch",
                "tensors",
                "tensor_kinds",
                "context",
                "checks",
                "device",
                "final_loss",
            )
        },
    }


@pytest.mark.django_db(transaction=True)
def test_a_client_over_http_and_a_job_on_a_worker_store_the_same_hand_offs_alike(settings):
    """One path: the same payloads, sent by a script's client (each one its own write) and handed
    to a worker's sink (gathered, then written at once), leave the same run behind."""
    settings.TRAINWATCH_DIAGNOSE_SECONDS = 3600  # no upkeep task: this compares what the writes store
    project = Project.objects.create(name="one path")
    over_http = Run.objects.create(project=project, config={}, status="running", kind=Run.Kind.EXTERNAL)
    on_a_worker = Run.objects.create(project=project, config={}, status="running", worker="w@h")
    for payload in client_payloads():
        assert external.ingest(over_http, payload)["seq"] == payload.seq
    sink = DatabaseSink(on_a_worker, flush_seconds=3600)
    for payload in client_payloads():
        sink.handoff(payload)
    sink.flush()
    sink.close()
    one_by_one, gathered = stored(over_http.pk), stored(on_a_worker.pk)
    # the smoothed final loss, updated per write, differs in its last bits only
    assert one_by_one["row"].pop("final_loss") == pytest.approx(gathered["row"].pop("final_loss"), rel=1e-12)
    assert one_by_one == gathered
    # and what was stored is what was sent
    row = one_by_one["row"]
    assert row["steps_done"] == 30 and row["total_steps"] == 30 and row["tensor_kinds"]["fc.bias"] == "bias"
    assert row["context"]["lr"] == pytest.approx(0.09) and row["context"]["lr_last"] == pytest.approx(0.07)
    assert row["checks"]["sanity"][0]["name"] == "initial loss"
    assert [line[-1] for line in one_by_one["console"]] == ["epoch 1", "epoch 2", "epoch 3"]
