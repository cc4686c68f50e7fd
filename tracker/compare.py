"""Comparing runs: config differences, labels that say what differs, and per-group
mean / spread of a metric over all runs of the group."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from tracker.ingest import read_series
from tracker.lib.downsample import min_max_downsample
from tracker.models import Run

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
    return {key: [flat.get(key) for flat in flats] for key in keys
            if len({repr(flat.get(key)) for flat in flats}) > 1}


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def label(run: Run, differing: list[str]) -> str:
    """What distinguishes this run among the compared ones, e.g. 'adam lr=0.001'."""
    flat = flatten(run.config)
    parts = []
    for key in differing:
        if key == "optimizer.name":
            parts.insert(0, _short(flat.get(key)))
        else:
            parts.append(f"{key.split('.')[-1]}={_short(flat.get(key))}")
    return " ".join(parts) or run.name


def group_key(run: Run, keys: list[str]) -> str:
    flat = flatten(run.config)
    return ", ".join(f"{key.split('.')[-1]}={_short(flat.get(key))}" for key in keys)


def group_bands(series_by_run: dict[int, tuple[np.ndarray, np.ndarray]], groups: dict[str, list[int]]
                ) -> dict[str, dict[str, list]]:
    """Per group: mean, std, min and max over all its runs, on a common step grid
    (each run's curve interpolated; steps outside a run's range are left out for it)."""
    bands = {}
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

        def listed(array: np.ndarray) -> list:
            return [None if not np.isfinite(v) else float(v) for v in array[keep]]
        bands[name] = {"runs": run_ids, "steps": grid[keep].tolist(), "mean": listed(mean), "std": listed(std),
                       "min": listed(lowest), "max": listed(highest), "count": counts[keep].tolist()}
    return bands


def comparison(runs: list[Run], metric: str, group_by: list[str], with_lr: bool, max_points: int) -> dict[str, Any]:
    diff = config_diff(runs)
    # a label names the keys every run has (optimizer-specific settings stay in the diff table)
    shared = [key for key, values in diff.items() if None not in values]
    differing = [key for key in shared if key != "seed"] or shared
    series_by_run: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    payload_runs = []
    for run in runs:
        steps, values = read_series(run.pk, metric)
        series_by_run[run.pk] = (steps, values)
        shown_steps, shown_values = min_max_downsample(steps, values, max_points)
        entry = {"id": run.pk, "name": run.name, "label": label(run, differing), "status": run.status,
                 "steps_per_epoch": run.steps_per_epoch, "steps": shown_steps.tolist(),
                 "values": [None if not np.isfinite(v) else float(v) for v in shown_values]}
        # per epoch end: the seconds of training so far, for a wall-time x axis
        wall_steps, walls = read_series(run.pk, "wall_time")
        entry["wall"] = {"steps": wall_steps.tolist(), "values": walls.tolist()}
        if with_lr:
            lr_steps, lrs = min_max_downsample(*read_series(run.pk, "lr"), max_points)
            entry["lr"] = {"steps": lr_steps.tolist(), "values": lrs.tolist()}
        if group_by:
            entry["group"] = group_key(run, group_by)
        payload_runs.append(entry)
    result: dict[str, Any] = {"metric": metric, "runs": payload_runs, "diff": diff}
    if group_by:
        groups: dict[str, list[int]] = {}
        for run in runs:
            groups.setdefault(group_key(run, group_by), []).append(run.pk)
        result["groups"] = group_bands(series_by_run, groups)
    return result
