"""Metric storage: series as packed binary chunks, histograms as rows.

Writes are idempotent per (run, key, step):
- `ChunkWriter` drops points at or below the highest stored step of their key
  (a resumed run that logs steps again never duplicates them);
- a flush that is retried after an error hits the (run, key, first_step) key
  and is skipped, and the Series summary is updated only for chunks that were
  really inserted (one statement, so both happen or neither).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest
from psycopg2.extras import execute_values

from tracker.lib.downsample import min_max_downsample
from tracker.lib.summaries import (
    LEVELS,
    choose_level,
    downsample_groups,
    point_groups,
    point_range,
    summaries_of,
    unpack,
)
from tracker.models import Run
from trainer.sink import HistogramRecord, ImageRecord, ScalarBatch

STEP_DTYPE = np.dtype("<i8")
VALUE_DTYPE = np.dtype("<f8")

GROUP_COLUMNS = tuple(f"groups_{size}" for size in LEVELS)
_GROUPS = ", ".join(GROUP_COLUMNS)

_INSERT_CHUNKS = f"""
WITH data (key, first_step, last_step, count, steps, vals, min_v, max_v, last_v, {_GROUPS}) AS (VALUES %s),
inserted AS (
    INSERT INTO tracker_serieschunk (run_id, key, first_step, last_step, count, steps, values, {_GROUPS})
    SELECT {{run}}, key, first_step, last_step, count, steps, vals, {_GROUPS} FROM data
    ON CONFLICT (run_id, key, first_step) DO NOTHING
    RETURNING key
)
INSERT INTO tracker_series AS s (run_id, key, count, last_step, last_value, min_value, max_value)
SELECT {{run}}, d.key, d.count, d.last_step, d.last_v, d.min_v, d.max_v FROM data d JOIN inserted USING (key)
ON CONFLICT (run_id, key) DO UPDATE SET
    count = s.count + EXCLUDED.count,
    last_step = GREATEST(s.last_step, EXCLUDED.last_step),
    last_value = CASE WHEN EXCLUDED.last_step >= s.last_step THEN EXCLUDED.last_value ELSE s.last_value END,
    min_value = LEAST(s.min_value, EXCLUDED.min_value),
    max_value = GREATEST(s.max_value, EXCLUDED.max_value)
"""
_ROW_TEMPLATE = (
    "(%s, %s::bigint, %s::bigint, %s::int, %s::bytea, %s::bytea, %s::float8, %s::float8, %s::float8"
    + ", %s::bytea" * len(LEVELS)
    + ")"
)


def _finite_min_max(values: np.ndarray) -> tuple[float | None, float | None]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return None, None
    return float(finite.min()), float(finite.max())


class ChunkWriter:
    """Writes one run's series. One instance per run and writer process."""

    def __init__(self, run_id: int):
        self.run_id = int(run_id)
        self.high_water: dict[str, int] = self._load_high_water()

    def _load_high_water(self) -> dict[str, int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT key, last_step FROM tracker_series WHERE run_id = %s", [self.run_id])
            return {key: int(step) for key, step in cursor.fetchall()}

    def write(self, batch: ScalarBatch) -> int:
        """Store one flush (one chunk per key); returns the number of new points."""
        rows: list[tuple[Any, ...]] = []
        marks: dict[str, int] = {}
        written = 0
        for key, (steps, values) in batch.items():
            steps = np.asarray(steps, dtype=STEP_DTYPE)
            values = np.asarray(values, dtype=VALUE_DTYPE)
            if len(steps) != len(values):
                raise ValueError(f"series {key!r}: {len(steps)} steps but {len(values)} values")
            high = self.high_water.get(key)
            if high is not None and len(steps) and steps[0] <= high:
                keep = steps > high
                steps, values = steps[keep], values[keep]
            if not len(steps):
                continue
            if len(steps) > 1 and not np.all(steps[1:] > steps[:-1]):
                order = np.argsort(steps, kind="stable")
                steps, values = steps[order], values[order]
                unique = np.concatenate(([True], steps[1:] != steps[:-1]))
                steps, values = steps[unique], values[unique]
            low, top = _finite_min_max(values)
            rows.append(
                (
                    key,
                    int(steps[0]),
                    int(steps[-1]),
                    len(steps),
                    steps.tobytes(),
                    values.tobytes(),
                    low,
                    top,
                    float(values[-1]),
                    *summaries_of(steps, values),
                )
            )
            marks[key] = int(steps[-1])
            written += len(steps)
        if rows:
            sql = _INSERT_CHUNKS.format(run=self.run_id)
            with transaction.atomic(), connection.cursor() as cursor:
                execute_values(cursor.cursor, sql, rows, template=_ROW_TEMPLATE, page_size=len(rows))
                # only once committed: a rolled-back or lost write must be sent again, not skipped
                transaction.on_commit(lambda: self.high_water.update(marks))
        return written


# Chunks are written per flush, so a sparse series (say one point every 20 steps) gets
# a few dozen points per row and reading it costs a row per few points. When a run
# ends its chunks are merged into chunks of up to this many points (a whole number of the
# coarsest summary groups).
COMPACT_POINTS = 2 * LEVELS[-1]


def compact_series(run_id: int) -> int:
    """Merge each series' chunks into as few as possible; returns the rows saved."""
    saved = 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT key, count(*) FROM tracker_serieschunk WHERE run_id = %s GROUP BY key HAVING count(*) > 1",
            [int(run_id)],
        )
        for key, rows in cursor.fetchall():
            steps, values = read_series(run_id, key)
            merged = [
                (int(run_id), key, int(s[0]), int(s[-1]), len(s), s.tobytes(), v.tobytes(), *summaries_of(s, v))
                for s, v in (
                    (steps[i : i + COMPACT_POINTS], values[i : i + COMPACT_POINTS])
                    for i in range(0, len(steps), COMPACT_POINTS)
                )
            ]
            if len(merged) >= rows:
                continue
            cursor.execute("DELETE FROM tracker_serieschunk WHERE run_id = %s AND key = %s", [int(run_id), key])
            execute_values(
                cursor.cursor,
                f"INSERT INTO tracker_serieschunk (run_id, key, first_step, last_step, count, steps, values, {_GROUPS})"
                " VALUES %s",
                merged,
            )
            saved += rows - len(merged)
    return saved


def roll_up_series(run_id: int, keep_recent: int = 10) -> int:
    """While a run trains: merge runs of consecutive small chunks (one per flush) into chunks of
    32,768 to 65,536 points, which carry every summary level, so that a chart of a long live run
    reads a few hundred groups, not a row per flush. The newest `keep_recent` chunks of each key
    are left alone: a flush retried after an unseen commit can only concern those. Returns the
    rows saved."""
    low, high = COMPACT_POINTS // 2, COMPACT_POINTS
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT key, id, count FROM tracker_serieschunk WHERE run_id = %s ORDER BY key, first_step", [int(run_id)]
        )
        by_key: dict[str, list[tuple[int, int]]] = {}
        for key, chunk_id, count in cursor.fetchall():
            by_key.setdefault(key, []).append((chunk_id, count))
    merges: list[tuple[str, list[int]]] = []
    for key, chunks in by_key.items():
        group: list[int] = []
        total = 0
        for chunk_id, count in chunks[: max(0, len(chunks) - keep_recent)]:
            if count >= low or total + count > high:  # a chunk already large, or the group is full
                if total >= low and len(group) > 1:
                    merges.append((key, group))
                group, total = ([], 0) if count >= low else ([chunk_id], count)
                continue
            group.append(chunk_id)
            total += count
        if total >= low and len(group) > 1:
            merges.append((key, group))
    if not merges:
        return 0
    saved = 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, steps, values FROM tracker_serieschunk WHERE id = ANY(%s) ORDER BY first_step",
            [[chunk_id for _, group in merges for chunk_id in group]],
        )
        points = {chunk_id: (steps, values) for chunk_id, steps, values in cursor.fetchall()}
        rows = []
        for key, group in merges:
            if not all(chunk_id in points for chunk_id in group):
                continue  # changed under us (the run ended and was compacted): nothing to do
            steps = np.concatenate([np.frombuffer(points[c][0], dtype=STEP_DTYPE) for c in group])
            values = np.concatenate([np.frombuffer(points[c][1], dtype=VALUE_DTYPE) for c in group])
            head = (int(run_id), key, int(steps[0]), int(steps[-1]), len(steps), steps.tobytes(), values.tobytes())
            rows.append((*head, *summaries_of(steps, values)))
            cursor.execute("DELETE FROM tracker_serieschunk WHERE id = ANY(%s)", [group])
            saved += len(group) - 1
        if rows:
            execute_values(
                cursor.cursor,
                f"INSERT INTO tracker_serieschunk (run_id, key, first_step, last_step, count, steps, values, {_GROUPS})"
                " VALUES %s",
                rows,
            )
    return saved


# A run's final loss: an exponential moving average of its training loss over about its last
# FINAL_LOSS_SPAN logged steps (pandas' span), not the last batch's loss (an epoch's last batch
# can hold 8 examples). Non-finite losses are left out: a diverged run says so by its status.
FINAL_LOSS_SPAN = 50
_FINAL_LOSS_KEEP = 1 - 2 / (FINAL_LOSS_SPAN + 1)


def final_loss_terms(losses: np.ndarray) -> tuple[float, float, float] | None:
    """Of a hand-off's losses in step order, the terms that move a run's final loss on:
    (what the previous figure keeps, what these losses add, the first of them, which stands for
    the previous figure on the run's first losses); None when none is finite."""
    finite = np.asarray(losses, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return None
    weights = (1 - _FINAL_LOSS_KEEP) * _FINAL_LOSS_KEEP ** np.arange(len(finite) - 1, -1, -1, dtype=np.float64)
    return float(_FINAL_LOSS_KEEP ** len(finite)), float(weights @ finite), float(finite[0])


def final_loss(losses: np.ndarray, previous: float | None = None) -> float | None:
    """The final loss after `losses`, from `previous` (None: the run's first losses)."""
    terms = final_loss_terms(losses)
    if terms is None:
        return previous
    kept, added, first = terms
    return (first if previous is None else previous) * kept + added


def store_handoff(
    run_id: int,
    writer: ChunkWriter,
    batch: ScalarBatch,
    histograms: Iterable[HistogramRecord],
    images: Iterable[ImageRecord],
    progress: Mapping[str, int | None],
    heartbeat: dt.datetime,
    fields: Mapping[str, Any] | None = None,
) -> bool:
    """One hand-off of a run's measurements (tracker.core.ingest.write), and the run's summary
    row with it (progress, heartbeat, smoothed final loss, best validation accuracy, and the
    other `fields` the hand-off sets), in the caller's transaction. Returns whether a cancel
    has been asked for."""
    writer.write(batch)
    write_histograms(run_id, histograms)
    write_images(run_id, images)
    updates: dict[str, Any] = {"heartbeat_at": heartbeat, **(fields or {})}
    updates.update({field: value for field, value in progress.items() if value is not None})
    terms = final_loss_terms(batch["loss"][1]) if "loss" in batch else None
    if terms is not None:
        kept, added, first = terms
        updates["final_loss"] = Coalesce(F("final_loss"), Value(first)) * kept + added
    if "val_acc" in batch and len(batch["val_acc"][1]):
        # PostgreSQL's GREATEST skips NULL, so the first value simply becomes the best
        updates["best_val_accuracy"] = Greatest(F("best_val_accuracy"), float(np.nanmax(batch["val_acc"][1])))
    Run.objects.filter(pk=run_id).update(**updates)
    return Run.objects.filter(pk=run_id, cancel_requested=True).exists()


def write_histograms(run_id: int, records: Iterable[HistogramRecord]) -> None:
    rows = [
        (
            int(run_id),
            r.key,
            int(r.step),
            float(r.low),
            float(r.high),
            np.asarray(r.counts, dtype=STEP_DTYPE).tobytes(),
            float(r.mean),
            float(r.std),
            float(r.zero_fraction),
            float(r.saturated_fraction),
            int(r.nonfinite),
        )
        for r in records
    ]
    if not rows:
        return
    with connection.cursor() as cursor:
        execute_values(
            cursor.cursor,
            "INSERT INTO tracker_histogram (run_id, key, step, low, high, counts, mean, std, zero_fraction,"
            " saturated_fraction, nonfinite) VALUES %s ON CONFLICT (run_id, key, step) DO NOTHING",
            rows,
            page_size=1000,
        )


def write_images(run_id: int, records: Iterable[ImageRecord]) -> None:
    rows = []
    for record in records:
        pixels = np.ascontiguousarray(record.pixels, dtype=np.uint8)
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        rows.append(
            (int(run_id), record.key, int(record.step), pixels.shape[0], pixels.shape[1], channels, pixels.tobytes())
        )
    if not rows:
        return
    with connection.cursor() as cursor:
        execute_values(
            cursor.cursor,
            "INSERT INTO tracker_runimage (run_id, key, step, height, width, channels, pixels) VALUES %s"
            " ON CONFLICT (run_id, key, step) DO NOTHING",
            rows,
        )


Points = tuple[np.ndarray, np.ndarray]


def _empty() -> Points:
    return np.empty(0, STEP_DTYPE), np.empty(0, VALUE_DTYPE)


def _joined(parts: list[tuple[bytes, bytes]], after: int | None, until: int | None) -> Points:
    """One series from its chunks (in step order), keeping after < step <= until."""
    if not parts:
        return _empty()
    steps = np.concatenate([np.frombuffer(s, dtype=STEP_DTYPE) for s, _ in parts])
    values = np.concatenate([np.frombuffer(v, dtype=VALUE_DTYPE) for _, v in parts])
    return _within(steps, values, after, until)


def _within(steps: np.ndarray, values: np.ndarray, after: int | None, until: int | None) -> Points:
    if after is None and until is None:
        return steps, values
    keep = np.ones(len(steps), dtype=bool)
    if after is not None:
        keep &= steps > after
    if until is not None:
        keep &= steps <= until
    return steps[keep], values[keep]


def read_many(run_id: int, after: dict[str, int | None], until_step: int | None = None) -> dict[str, Points]:
    """Several series of one run in one query: key -> points with after[key] < step <= until_step."""
    if not after:
        return {}
    sql = "SELECT key, steps, values FROM tracker_serieschunk WHERE run_id = %s AND key = ANY(%s) AND last_step > %s"
    floor = min((step for step in after.values() if step is not None), default=None)
    params: list[Any] = [int(run_id), list(after), -1 if floor is None or None in after.values() else int(floor)]
    if until_step is not None:
        sql += " AND first_step <= %s"
        params.append(int(until_step))
    sql += " ORDER BY key, first_step"
    chunks: dict[str, list[tuple[bytes, bytes]]] = {key: [] for key in after}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for key, steps, values in cursor.fetchall():
            chunks[key].append((steps, values))
    return {key: _joined(parts, after[key], until_step) for key, parts in chunks.items()}


def read_series(run_id: int, key: str, after_step: int | None = None, until_step: int | None = None) -> Points:
    """All points of one series with after_step < step <= until_step, in step order."""
    return read_many(run_id, {key: after_step}, until_step)[key]


def read_key_of_runs(run_ids: list[int], key: str) -> dict[int, Points]:
    """One series of many runs in one query (a comparison, the dashboard's sparklines)."""
    chunks: dict[int, list[tuple[bytes, bytes]]] = {int(run_id): [] for run_id in run_ids}
    if not chunks:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT run_id, steps, values FROM tracker_serieschunk WHERE run_id = ANY(%s) AND key = %s"
            " ORDER BY run_id, first_step",
            [list(chunks), key],
        )
        for run_id, steps, values in cursor.fetchall():
            chunks[run_id].append((steps, values))
    return {run_id: _joined(parts, None, None) for run_id, parts in chunks.items()}


def read_downsampled(
    run_id: int, after: dict[str, int | None], until_step: int | None, max_points: int
) -> dict[str, Points]:
    """As read_many followed by min_max_downsample, for a chart: at most ~max_points points per
    key, every spike and NaN kept. A long range is read from the chunks' summaries (a few
    hundred kilobytes for a 10-million-point series), never from every point."""
    found = _downsampled([(int(run_id), key, step) for key, step in after.items()], until_step, max_points)
    return {key: found[(int(run_id), key)] for key in after}


def read_key_of_runs_downsampled(run_ids: list[int], key: str, max_points: int) -> dict[int, Points]:
    """One series of many runs, each downsampled as by read_downsampled; a fixed number of
    queries whatever the number of runs."""
    found = _downsampled([(int(run_id), key, None) for run_id in run_ids], None, max_points)
    return {int(run_id): found[(int(run_id), key)] for run_id in run_ids}


def _downsampled(
    targets: list[tuple[int, str, int | None]], until: int | None, max_points: int
) -> dict[tuple[int, str], Points]:
    """(run, key) -> its points with after < step <= until, downsampled."""
    return {
        target: downsample_groups(found, max_points)
        if isinstance(found, np.ndarray)
        else min_max_downsample(*found, max_points)
        for target, found in _read(targets, until, max_points).items()
    }


def _read(
    targets: list[tuple[int, str, int | None]], until: int | None, max_points: int
) -> dict[tuple[int, str], Points | np.ndarray]:
    """(run, key) -> its points with after < step <= until (a short range), or its summary groups
    (a long one, at the level that max_points needs). At most seven queries: the chunks'
    extents, the summaries of each level used, the slices of cut chunks and the points of the rest."""
    if not targets:
        return {}
    after = {(run_id, key): step for run_id, key, step in targets}
    floor = None if None in after.values() else min(step for step in after.values() if step is not None)
    sql = (
        "SELECT run_id, key, id, first_step, last_step, count FROM tracker_serieschunk"
        " WHERE run_id = ANY(%s) AND key = ANY(%s) AND last_step > %s"
    )
    params: list[Any] = [
        sorted({t[0] for t in targets}),
        sorted({t[1] for t in targets}),
        -1 if floor is None else floor,
    ]
    if until is not None:
        sql += " AND first_step <= %s"
        params.append(int(until))
    sql += " ORDER BY run_id, key, first_step"
    extents: dict[tuple[int, str], list[tuple[int, int, int, int]]] = {target: [] for target in after}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for run_id, key, chunk_id, first, last, count in cursor.fetchall():
            start = after.get((run_id, key), -2)
            if start != -2 and (start is None or last > start):
                extents[(run_id, key)].append((chunk_id, first, last, count))

    # per chunk: the coarsest summary level it has, up to the one the target's range needs;
    # its points where the range cuts it, where it has none, or where the range is short
    by_level: dict[int, list[int]] = {size: [] for size in LEVELS}
    raw: list[int] = []
    edges: list[tuple[int, int | None, int | None]] = []  # chunks the range cuts: a slice of their points
    levels: dict[tuple[int, str], int | None] = {}
    for target, chunks in extents.items():
        start = after[target]
        level = choose_level(sum(count for *_, count in chunks), max_points)
        levels[target] = level
        for chunk_id, first, last, count in chunks:
            inside = (start is None or first > start) and (until is None or last <= until)
            size = max((size for size in LEVELS if size <= (level or 0) and count >= size), default=None)
            if inside and size is not None:
                by_level[size].append(chunk_id)
            elif not inside and count >= LEVELS[0]:
                edges.append((chunk_id, start, until))
            else:
                raw.append(chunk_id)
    blocks: dict[int, np.ndarray] = {}
    with connection.cursor() as cursor:
        for size, ids in by_level.items():
            if ids:
                cursor.execute(f"SELECT id, groups_{size} FROM tracker_serieschunk WHERE id = ANY(%s)", [ids])
                for chunk_id, blob in cursor.fetchall():
                    if blob is None:  # not summarised (cannot happen after migration 0016): read its points
                        raw.append(chunk_id)
                    else:
                        blocks[chunk_id] = unpack(blob)
        points: dict[int, Points] = {}
        if edges:
            # a zoomed range inside a chunk of 65,536 points reads its 10,000, not the whole chunk:
            # the finest groups say where they lie, substring reads only those bytes (EXTERNAL storage)
            cursor.execute(
                f"SELECT id, groups_{LEVELS[0]} FROM tracker_serieschunk WHERE id = ANY(%s)", [[e[0] for e in edges]]
            )
            finest = {chunk_id: unpack(blob) for chunk_id, blob in cursor.fetchall() if blob is not None}
            slices = []
            for chunk_id, start, stop in edges:
                if chunk_id not in finest:
                    raw.append(chunk_id)
                    continue
                first, count = point_range(finest[chunk_id], start, stop)
                slices.append((chunk_id, 8 * first + 1, 8 * count))
            if slices:
                sliced = execute_values(
                    cursor.cursor,
                    "SELECT c.id, substring(c.steps FROM s.start FOR s.length), substring(c.values FROM s.start FOR"
                    " s.length) FROM tracker_serieschunk c JOIN (VALUES %s) AS s (id, start, length) ON c.id = s.id",
                    slices,
                    template="(%s::bigint, %s::int, %s::int)",
                    fetch=True,
                )
                for chunk_id, steps, values in sliced:
                    points[chunk_id] = (
                        np.frombuffer(steps, dtype=STEP_DTYPE),
                        np.frombuffer(values, dtype=VALUE_DTYPE),
                    )
        if raw:
            cursor.execute("SELECT id, steps, values FROM tracker_serieschunk WHERE id = ANY(%s)", [raw])
            for chunk_id, steps, values in cursor.fetchall():
                points[chunk_id] = (np.frombuffer(steps, dtype=STEP_DTYPE), np.frombuffer(values, dtype=VALUE_DTYPE))

    result: dict[tuple[int, str], Points | np.ndarray] = {}
    for target, chunks in extents.items():
        start = after[target]
        if levels[target] is None:
            if not chunks:
                result[target] = _empty()
                continue
            steps = np.concatenate([points[chunk_id][0] for chunk_id, *_ in chunks])
            values = np.concatenate([points[chunk_id][1] for chunk_id, *_ in chunks])
            result[target] = _within(steps, values, start, until)
            continue
        groups = [
            blocks[chunk_id] if chunk_id in blocks else point_groups(*_within(*points[chunk_id], start, until))
            for chunk_id, *_ in chunks
        ]
        result[target] = np.concatenate(groups)
    return result


def read_groups(run_id: int, keys: list[str], groups: int) -> dict[str, np.ndarray]:
    """Whole series as at least ~`groups` summary groups each (tracker.lib.summaries), or as
    one group per point where a series is short: for per-bucket means (the layers heatmap)."""
    found = _read([(int(run_id), key, None) for key in keys], None, 4 * groups)
    return {key: _as_groups(found[(int(run_id), key)]) for key in keys}


def _as_groups(found: Points | np.ndarray) -> np.ndarray:
    return found if isinstance(found, np.ndarray) else point_groups(*found)


def truncate_run(run_id: int, from_step: int) -> None:
    """Forget every measurement at or after `from_step`: a run resumed from a checkpoint at
    that step measures those steps again, and must not find the lost attempt's points there.
    Series summaries of the keys it touches are recomputed from what is left."""
    run_id, from_step = int(run_id), int(from_step)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT key FROM tracker_serieschunk WHERE run_id = %s AND last_step >= %s", [run_id, from_step]
        )
        touched = [key for (key,) in cursor.fetchall()]
        cursor.execute(
            "SELECT id, steps, values FROM tracker_serieschunk WHERE run_id = %s AND first_step < %s"
            " AND last_step >= %s",
            [run_id, from_step, from_step],
        )
        for chunk_id, steps, values in cursor.fetchall():
            steps = np.frombuffer(steps, dtype=STEP_DTYPE)
            values = np.frombuffer(values, dtype=VALUE_DTYPE)
            keep = steps < from_step
            steps, values = steps[keep], values[keep]
            cursor.execute(
                "UPDATE tracker_serieschunk SET steps = %s, values = %s, count = %s, last_step = %s, "
                + ", ".join(f"{column} = %s" for column in GROUP_COLUMNS)
                + " WHERE id = %s",
                [steps.tobytes(), values.tobytes(), len(steps), int(steps[-1]), *summaries_of(steps, values), chunk_id],
            )
        cursor.execute("DELETE FROM tracker_serieschunk WHERE run_id = %s AND first_step >= %s", [run_id, from_step])
        for key in touched:
            steps, values = read_series(run_id, key)
            if not len(steps):
                cursor.execute("DELETE FROM tracker_series WHERE run_id = %s AND key = %s", [run_id, key])
                continue
            low, top = _finite_min_max(values)
            cursor.execute(
                "UPDATE tracker_series SET count = %s, last_step = %s, last_value = %s, min_value = %s,"
                " max_value = %s WHERE run_id = %s AND key = %s",
                [len(steps), int(steps[-1]), float(values[-1]), low, top, run_id, key],
            )
        cursor.execute("DELETE FROM tracker_histogram WHERE run_id = %s AND step >= %s", [run_id, from_step])
        cursor.execute("DELETE FROM tracker_runimage WHERE run_id = %s AND step >= %s", [run_id, from_step])
