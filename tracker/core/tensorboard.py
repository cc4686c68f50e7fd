"""TensorBoard, both ways, with the `tensorboard` package's own reader and writer (neither
needs torch or TensorFlow).

- import: every folder of a log directory that holds event files becomes a run of its own
  (external, ended): its scalars become series, its histograms become histograms re-binned on
  equal bins over each one's [min, max];
- export: a run's series (as scalars) and histograms, as one event file.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from tracker.core.findings import diagnose_run
from tracker.core.runs import project_for
from tracker.core.storage import ChunkWriter, compact_series, final_loss, read_many, write_histograms
from tracker.models import Histogram, Run
from trainer.sink import HistogramRecord
from trainer.wire import SERIES_KEY

IMPORT_BINS = 30  # equal bins of an imported histogram, as the trainer's defaults
_NOT_IN_A_KEY = re.compile(r"[^A-Za-z0-9_./-]+")


def series_key(tag: str) -> str:
    """A TensorBoard tag as a series key: letters, digits, _ . / - (others become _)."""
    key = _NOT_IN_A_KEY.sub("_", tag).strip("_")[:200] or "tag"
    assert SERIES_KEY.match(key)
    return key


def run_folders(logdir: Path) -> list[Path]:
    """Every folder at or under logdir that holds an event file: one run each."""
    return sorted({path.parent for path in logdir.rglob("events.out.tfevents.*") if path.is_file()})


def rebinned(value: Any, bins: int = IMPORT_BINS) -> tuple[float, float, np.ndarray]:
    """A TensorBoard histogram (buckets of any widths, bucket_limit their right edges) on equal
    bins over [min, max]: each bucket's count spread over the bins it overlaps."""
    low, high = float(value.min), float(value.max)
    counts = np.asarray(value.bucket, dtype=float)
    rights = np.clip(np.asarray(value.bucket_limit, dtype=float), low, high)
    lefts = np.concatenate([[low], rights[:-1]])
    if high <= low:
        return low, high, np.concatenate([[counts.sum()], np.zeros(bins - 1)]).round().astype(np.int64)
    edges = np.linspace(low, high, bins + 1)
    grid = np.zeros(bins)
    for count, left, right in zip(counts, lefts, rights):
        if count == 0:
            continue
        if right <= left:  # a bucket squeezed to one value by the clipping
            grid[min(bins - 1, max(0, int(np.searchsorted(edges, left, side="right")) - 1))] += count
            continue
        grid += count * np.clip(np.minimum(edges[1:], right) - np.maximum(edges[:-1], left), 0, None) / (right - left)
    return low, high, grid.round().astype(np.int64)


def import_folder(folder: Path, name: str, project_name: str) -> Run:
    """One run from one folder's event files, stored like a finished external run."""
    events = event_accumulator.EventAccumulator(
        str(folder), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0}
    )
    events.Reload()
    tags = events.Tags()
    times: list[float] = []
    batch = {}
    for tag in tags["scalars"]:
        scalars = events.Scalars(tag)
        times += [scalars[0].wall_time, scalars[-1].wall_time] if scalars else []
        batch[series_key(tag)] = (
            np.array([s.step for s in scalars], dtype=np.int64),
            np.array([s.value for s in scalars], dtype=np.float64),
        )
    records = []
    for tag in tags["histograms"]:
        for event in events.Histograms(tag):
            value = event.histogram_value
            low, high, counts = rebinned(value)
            mean = value.sum / value.num if value.num else 0.0
            std = math.sqrt(max(0.0, value.sum_squares / value.num - mean * mean)) if value.num else 0.0
            records.append(HistogramRecord(series_key(tag), int(event.step), low, high, counts, mean, std))
            times.append(event.wall_time)
    started = dt.datetime.fromtimestamp(min(times), dt.UTC) if times else timezone.now()
    finished = dt.datetime.fromtimestamp(max(times), dt.UTC) if times else started
    last_step = max((int(steps[-1]) for steps, _ in batch.values() if len(steps)), default=0)
    with transaction.atomic():
        run = Run.objects.create(
            project=project_for(project_name, None),
            name=name[:200],
            kind=Run.Kind.EXTERNAL,
            status=Run.Status.SUCCEEDED,
            queue="",
            config={},
            source={"script": f"TensorBoard: {folder}"[:500]},
            started_at=started,
            finished_at=finished,
            heartbeat_at=finished,
            steps_done=last_step + 1,
            message=f"imported from {folder}"[:2000],
        )
        ChunkWriter(run.pk).write(batch)
        write_histograms(run.pk, records)
        compact_series(run.pk)
        diagnosis = diagnose_run(run.pk, save=False)  # history, not news: an import raises no alert
        loss = batch.get("loss") or next((values for key, values in batch.items() if "loss" in key.lower()), None)
        Run.objects.filter(pk=run.pk).update(
            **diagnosis.fields, final_loss=final_loss(loss[1]) if loss is not None else None
        )
    return run


def import_logdir(logdir: Path, project_name: str) -> list[Run]:
    folders = run_folders(logdir)
    return [
        import_folder(folder, str(folder.relative_to(logdir)) if folder != logdir else logdir.name, project_name)
        for folder in folders
    ]


def _event(wall_time: float, step: int, value: summary_pb2.Summary.Value) -> event_pb2.Event:
    return event_pb2.Event(wall_time=wall_time, step=step, summary=summary_pb2.Summary(value=[value]))


def export_run(run: Run, folder: Path) -> Path:
    """The run's series and histograms as one TensorBoard event file in folder; returns its path.
    Wall times spread the run's duration over its steps."""
    folder.mkdir(parents=True, exist_ok=True)
    started = (run.started_at or run.created_at).timestamp()
    seconds = run.seconds or 0.0
    keys = list(run.series.order_by("key").values_list("key", flat=True))
    series = read_many(run.pk, dict.fromkeys(keys))
    last = max((int(steps[-1]) for steps, _ in series.values() if len(steps)), default=0)

    def wall(step: int) -> float:
        return started + seconds * step / max(1, last)

    writer = EventFileWriter(str(folder), filename_suffix=f".trainwatch-run-{run.pk}")
    for key, (steps, values) in series.items():
        for step, value in zip(steps.tolist(), values.tolist()):
            writer.add_event(_event(wall(step), step, summary_pb2.Summary.Value(tag=key, simple_value=value)))
    # a histogram of a tensor that held NaN or infinite values has no range for TensorBoard to draw
    for histogram in Histogram.objects.filter(run=run, nonfinite=0).order_by("key", "step").iterator():
        counts = np.frombuffer(bytes(histogram.counts), dtype="<i8")
        total = float(counts.sum())
        proto = summary_pb2.HistogramProto(
            min=histogram.low,
            max=histogram.high,
            num=total,
            sum=histogram.mean * total,
            sum_squares=(histogram.std**2 + histogram.mean**2) * total,
            bucket_limit=np.linspace(histogram.low, histogram.high, len(counts) + 1)[1:].tolist(),
            bucket=counts.astype(float).tolist(),
        )
        writer.add_event(
            _event(wall(histogram.step), histogram.step, summary_pb2.Summary.Value(tag=histogram.key, histo=proto))
        )
    writer.close()
    return max(folder.glob(f"events.out.tfevents.*.trainwatch-run-{run.pk}"), key=lambda path: path.stat().st_mtime)


def export_zip(run: Run) -> bytes:
    """The export as a zip holding `trainwatch-run-<id>/events.out.tfevents...`: unpacked, a log
    directory for `tensorboard --logdir`."""
    with tempfile.TemporaryDirectory(prefix="trainwatch-export-") as scratch:
        path = export_run(run, Path(scratch) / f"trainwatch-run-{run.pk}")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(path, f"trainwatch-run-{run.pk}/{path.name}")
        return buffer.getvalue()
