"""TensorBoard both ways: a log directory written by torch's SummaryWriter imported as runs, and
a run exported so that TensorBoard's own EventAccumulator finds the same steps and values."""

import io
import zipfile

import numpy as np
import pytest
import torch
from django.core.management import CommandError, call_command
from tensorboard.backend.event_processing import event_accumulator
from torch.utils.tensorboard import SummaryWriter

from tests.conftest import member_of
from tracker.core.storage import ChunkWriter, final_loss, read_series, write_histograms
from tracker.core.tensorboard import export_run, rebinned
from tracker.models import Histogram, Run
from trainer.sink import HistogramRecord

pytestmark = pytest.mark.django_db


def accumulated(folder) -> event_accumulator.EventAccumulator:
    events = event_accumulator.EventAccumulator(
        str(folder), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0}
    )
    events.Reload()
    return events


def test_a_log_directory_becomes_one_run_per_folder(tmp_path, capsys):
    torch.manual_seed(0)
    for name, lr in (("adam", 1e-3), ("sgd/lr0.1", 0.1)):
        writer = SummaryWriter(tmp_path / name)
        for step in range(0, 50, 5):
            writer.add_scalar("Loss/train", 2.3 * np.exp(-lr * step), step)
            writer.add_scalar("accuracy (val)", step / 50, step)
        for step in (0, 25):
            writer.add_histogram("fc1.weight", torch.randn(1000) * (1 + step / 25), step)
        writer.close()
    call_command("import_tensorboard", str(tmp_path), "--project", "tb")
    runs = {run.name: run for run in Run.objects.all()}
    assert set(runs) == {"adam", "sgd/lr0.1"} and "imported run" in capsys.readouterr().out
    run = runs["sgd/lr0.1"]
    assert run.kind == "external" and run.status == "succeeded" and run.project.name == "tb"
    steps, values = read_series(run.pk, "Loss/train")
    assert steps.tolist() == list(range(0, 50, 5))
    np.testing.assert_allclose(values, 2.3 * np.exp(-0.1 * steps), rtol=1e-6)  # float32 in the file
    assert read_series(run.pk, "accuracy_val")[0].tolist() == list(range(0, 50, 5))  # the tag as a key
    histograms = list(Histogram.objects.filter(run=run, key="fc1.weight").order_by("step"))
    assert [h.step for h in histograms] == [0, 25]
    counts = np.frombuffer(bytes(histograms[1].counts), dtype="<i8")
    assert len(counts) == 30 and abs(int(counts.sum()) - 1000) <= 2 and histograms[1].std == pytest.approx(2, rel=0.15)
    assert run.final_loss == pytest.approx(final_loss(values), rel=1e-6)  # smoothed, as a live run's


def test_a_folder_without_event_files_is_refused(tmp_path):
    with pytest.raises(CommandError, match="no TensorBoard event file"):
        call_command("import_tensorboard", str(tmp_path))


def test_tensorboards_own_reader_finds_the_exported_steps_and_values(tmp_path, user):
    run = Run.objects.create(project=member_of(user, "p"), name="exported", config={}, status="succeeded")
    loss = np.array([2.3, 1.7, float("nan"), 0.9])
    ChunkWriter(run.pk).write(
        {"loss": (np.arange(4), loss), "update_ratio/fc1.weight": (np.array([0, 2]), np.array([1e-3, 2e-3]))}
    )
    write_histograms(run.pk, [HistogramRecord("weight/fc1.weight", 2, -1.0, 1.0, np.array([1, 2, 3, 4]), 0.1, 0.5)])
    events = accumulated(export_run(run, tmp_path / "out").parent)
    assert set(events.Tags()["scalars"]) == {"loss", "update_ratio/fc1.weight"}
    exported = events.Scalars("loss")
    assert [e.step for e in exported] == [0, 1, 2, 3]
    np.testing.assert_array_equal(np.array([e.value for e in exported]), loss.astype(np.float32))
    [histogram] = events.Histograms("weight/fc1.weight")
    value = histogram.histogram_value
    assert histogram.step == 2 and list(value.bucket) == [1, 2, 3, 4] and (value.min, value.max) == (-1.0, 1.0)
    # and back: the same counts on the same bins
    low, high, counts = rebinned(value, bins=4)
    assert (low, high, counts.tolist()) == (-1.0, 1.0, [1, 2, 3, 4])


def test_the_run_page_offers_the_export_as_a_log_directory(logged_in, user):
    run = Run.objects.create(project=member_of(user, "p"), name="zip", config={}, status="succeeded")
    ChunkWriter(run.pk).write({"loss": (np.arange(3), np.ones(3))})
    response = logged_in.get(f"/runs/{run.pk}/tensorboard/")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert len(names) == 1 and names[0].startswith(f"trainwatch-run-{run.pk}/events.out.tfevents.")
    assert f'href="/runs/{run.pk}/tensorboard/"' in logged_in.get(f"/runs/{run.pk}/").content.decode()
