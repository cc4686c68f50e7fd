"""Comparing runs: config differences, labels that say what differs, and per-group
mean / spread of a metric over all runs of the group."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NotRequired, TypedDict

import numpy as np

from tracker.core.storage import read_key_of_runs, read_key_of_runs_downsampled
from tracker.models import Run


class Points(TypedDict):
    steps: list[int]
    values: list[float | None]


class ComparedRun(TypedDict):
    id: int
    name: str
    label: str  # what distinguishes it, e.g. "adam lr=0.001"
    status: str
    steps_per_epoch: int
    steps: list[int]
    values: list[float | None]
    wall: Points  # seconds of training at epoch ends
    lr: NotRequired[Points]
    group: NotRequired[str]


class Band(TypedDict):
    runs: list[int]
    steps: list[int]
    mean: list[float | None]
    std: list[float | None]
    min: list[float | None]
    max: list[float | None]
    count: list[int]


class Comparison(TypedDict):
    metric: str
    runs: list[ComparedRun]
    diff: dict[str, list[Any]]
    groups: NotRequired[dict[str, Band]]
    keys: NotRequired[list[str]]  # every series key of the runs, added by the API


# a group's curves are compared on this many evenly spaced steps
GROUP_GRID_POINTS = 500


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"lr": 0.1}} -> {"optimizer.lr": 0.1}"""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_diff(runs: Iterable[Run]) -> dict[str, list[Any]]:
    """Only the config keys whose values differ between the runs: key -> value per run."""
    flats = [flatten(run.config) for run in runs]
    keys = sorted(set().union(*flats)) if flats else []
    return {key: [flat.get(key) for flat in flats] for key in keys if len({repr(flat.get(key)) for flat in flats}) > 1}


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def label(run: Run, differing: list[str]) -> str:
    """What distinguishes this run among the compared ones, e.g. 'adam lr=0.001'."""
    flat = flatten(run.config)
    parts: list[str] = []
    for key in differing:
        if key == "optimizer.name":
            parts.insert(0, _short(flat.get(key)))
        else:
            parts.append(f"{key.split('.')[-1]}={_short(flat.get(key))}")
    return " ".join(parts) or run.name


def group_key(run: Run, keys: list[str]) -> str:
    flat = flatten(run.config)
    return ", ".join(f"{key.split('.')[-1]}={_short(flat.get(key))}" for key in keys)


def group_bands(
    series_by_run: dict[int, tuple[np.ndarray, np.ndarray]], groups: dict[str, list[int]]
) -> dict[str, Band]:
    """Per group: mean, std, min and max over all its runs, on a common step grid
    (each run's curve interpolated; steps outside a run's range are left out for it)."""
    bands: dict[str, Band] = {}
    for name, run_ids in groups.items():
        curves = [series_by_run[i] for i in run_ids if i in series_by_run and len(series_by_run[i][0])]
        if not curves:
            continue
        low = min(int(steps[0]) for steps, _ in curves)
        high = max(int(steps[-1]) for steps, _ in curves)
        grid = np.unique(np.linspace(low, high, GROUP_GRID_POINTS).round().astype(np.int64))
        stacked = np.full((len(curves), len(grid)), np.nan)
        for row, (steps, values) in enumerate(curves):
            inside = (grid >= steps[0]) & (grid <= steps[-1])
            stacked[row, inside] = np.interp(grid[inside], steps, values)
        with np.errstate(all="ignore"):
            counts = np.sum(~np.isnan(stacked), axis=0)
            mean, std = np.nanmean(stacked, axis=0), np.nanstd(stacked, axis=0)
            lowest, highest = np.nanmin(stacked, axis=0), np.nanmax(stacked, axis=0)
        keep = counts > 0

        def listed(array: np.ndarray, keep: np.ndarray = keep) -> list[float | None]:
            return [None if not np.isfinite(v) else float(v) for v in array[keep]]

        bands[name] = Band(
            runs=run_ids,
            steps=grid[keep].tolist(),
            mean=listed(mean),
            std=listed(std),
            min=listed(lowest),
            max=listed(highest),
            count=counts[keep].tolist(),
        )
    return bands


def _jsonable(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]


def comparison(runs: list[Run], metric: str, group_by: list[str], with_lr: bool, max_points: int) -> Comparison:
    """Each run's metric (downsampled), label, wall time at epoch ends and learning rate when
    asked; the config keys that differ; per group the bands. A query per series read (the
    metric, wall_time, lr), whatever the number of runs."""
    diff = config_diff(runs)
    # a label names the keys every run has (optimizer-specific settings stay in the diff table)
    shared = [key for key, values in diff.items() if None not in values]
    differing = [key for key in shared if key != "seed"] or shared
    ids = [run.pk for run in runs]
    metrics = read_key_of_runs_downsampled(ids, metric, max_points)
    walls = read_key_of_runs(ids, "wall_time")
    rates = read_key_of_runs_downsampled(ids, "lr", max_points) if with_lr else {}
    payload_runs: list[ComparedRun] = []
    for run in runs:
        shown_steps, shown_values = metrics[run.pk]
        wall_steps, wall_seconds = walls[run.pk]
        entry = ComparedRun(
            id=run.pk,
            name=run.name,
            label=label(run, differing),
            status=run.status,
            steps_per_epoch=run.steps_per_epoch,
            steps=shown_steps.tolist(),
            values=_jsonable(shown_values),
            # per epoch end: the seconds of training so far, for a wall-time x axis
            wall=Points(steps=wall_steps.tolist(), values=_jsonable(wall_seconds)),
        )
        if with_lr:
            lr_steps, lrs = rates[run.pk]
            entry["lr"] = Points(steps=lr_steps.tolist(), values=_jsonable(lrs))
        if group_by:
            entry["group"] = group_key(run, group_by)
        payload_runs.append(entry)
    result = Comparison(metric=metric, runs=payload_runs, diff=diff)
    if group_by:
        groups: dict[str, list[int]] = {}
        for run in runs:
            groups.setdefault(group_key(run, group_by), []).append(run.pk)
        result["groups"] = group_bands(metrics, groups)
    return result
