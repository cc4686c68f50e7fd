"""A per-layer quantity of one run as a layer x step matrix, for the heatmap that
replaces hundreds of lines on deep models."""

from __future__ import annotations

import math
from typing import TypedDict

import numpy as np

from tracker.core.storage import read_groups
from tracker.models import HistogramDict, Run
from trainer.diagnosis import thresholds
from trainer.tensor_names import layer_order

# The pages' charts (a run's, a report's) draw the diagnosis's own thresholds (json_script),
# never a copy.
PAGE_THRESHOLDS = {
    "ratio_low": thresholds.RATIO_LOW,
    "ratio_target": thresholds.RATIO_TARGET,
    "ratio_high": thresholds.RATIO_HIGH,
    "filters_noise": thresholds.FILTERS_NOISE,
    "filters_smooth": thresholds.FILTERS_SMOOTH,
}

# quantity -> shown on a log10 scale?
QUANTITIES = {
    "update_ratio": True,
    "grad_norm": True,
    "weight_norm": True,
    "dead_fraction": False,
    "saturated_fraction": False,
}


class LayerMatrix(TypedDict):
    quantity: str
    log10: bool
    rows: list[str]  # tensors (or layers), input first
    steps: list[int]  # the middle step of each bucket
    bucket_steps: float
    values: list[list[float | None]]  # row x bucket


class HistogramMatrix(TypedDict):
    steps: list[int]
    edges: list[float]  # the common value grid
    fractions: list[list[float]]  # step x grid row, each step's column summing to 1


def in_model_order(names: list[str], tensors: list[str]) -> list[str]:
    """Tensors (fc1.weight) or layers (act1, layer1.0.relu) input first: in the order the
    model registered its parameters when it is known (any model), else by trainer's naming."""
    if not tensors:
        return sorted(names, key=layer_order)
    position = {name: index for index, name in enumerate(tensors)}
    # a layer without parameters (an activation) sits after the tensors of the module it belongs to
    prefixes = [(name.rsplit(".", 1)[0] if "." in name else "", index) for index, name in enumerate(tensors)]

    def rank(name: str) -> tuple[float, tuple[int, int, int, str]]:
        if name in position:
            return float(position[name]), layer_order(name)
        parent = name.rsplit(".", 1)[0] if "." in name else ""
        owned = (
            [index for prefix, index in prefixes if prefix == parent or prefix.startswith(parent + ".")]
            if parent
            else []
        )
        return (max(owned) + 0.5 if owned else float(len(tensors))), layer_order(name)

    return sorted(names, key=rank)


def layer_matrix(run: Run, quantity: str, buckets: int) -> LayerMatrix:
    """Rows: the tensors (or layers) in model order; columns: equal step buckets; cells: the
    mean of the bucket's finite values (its log10 for ratios and norms), held over buckets
    between two measurements. Read from the series'
    summaries (sums and counts of a few groups a bucket), so a long run costs what a short one does."""
    prefix = f"{quantity}/"
    keys = list(run.series.filter(key__startswith=prefix).values_list("key", flat=True))
    rows = in_model_order([key[len(prefix) :] for key in keys], run.tensors)
    data = read_groups(run.pk, [prefix + row for row in rows], buckets)
    last = max((int(groups["last_step"][-1]) for groups in data.values() if len(groups)), default=0)
    # no more columns than the densest row has points, so that short runs show no empty gaps
    buckets = max(1, min(buckets, max((int(groups["count"].sum()) for groups in data.values()), default=1)))
    edges = np.linspace(0, last + 1, buckets + 1)
    log = QUANTITIES[quantity]
    matrix: list[list[float | None]] = []
    for row in rows:
        groups = data[prefix + row]
        # a group (no wider than a bucket) that straddles a bucket edge is shared between the two
        # buckets in proportion to its steps on each side
        first = np.clip(np.searchsorted(edges, groups["first_step"], side="right") - 1, 0, buckets - 1)
        second = np.clip(np.searchsorted(edges, groups["last_step"], side="right") - 1, 0, buckets - 1)
        span = (groups["last_step"] - groups["first_step"] + 1).astype(float)
        share = np.where(second > first, np.clip((edges[first + 1] - groups["first_step"]) / span, 0, 1), 1.0)
        column = np.concatenate([first, second])
        sums = np.bincount(
            column, weights=np.concatenate([groups["sum"] * share, groups["sum"] * (1 - share)]), minlength=buckets
        )
        counts = np.bincount(
            column,
            weights=np.concatenate([groups["finite"] * share, groups["finite"] * (1 - share)]),
            minlength=buckets,
        )
        points = np.bincount(
            column, weights=np.concatenate([groups["count"] * share, groups["count"] * (1 - share)]), minlength=buckets
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            means = sums / counts
            if log:
                means = np.where(means > 0, np.log10(means), np.nan)
        matrix.append(_held_over_gaps(means, points > 0))
    return LayerMatrix(
        quantity=quantity,
        log10=log,
        rows=rows,
        steps=[int(round((a + b) / 2)) for a, b in zip(edges[:-1], edges[1:])],
        bucket_steps=float(edges[1] - edges[0]) if buckets else 0.0,
        values=matrix,
    )


def _held_over_gaps(means: np.ndarray, measured: np.ndarray) -> list[float | None]:
    """A row's cells, a bucket between two measurements (a run measured every 20 steps after a
    dense start every 5 leaves some) showing the value before it: a quantity holds until it is
    measured again. A measured bucket without a finite value stays empty, as do those before the
    row's first measurement and after its last."""
    cells: list[float | None] = []
    seen = np.flatnonzero(measured)
    held: float | None = None
    for index, value in enumerate(means):
        if measured[index]:
            held = None if not np.isfinite(value) else round(float(value), 4)
            cells.append(held)
        else:
            cells.append(held if len(seen) and seen[0] < index < seen[-1] else None)
    return cells


HISTOGRAM_ROWS = 40  # value rows of a histogram-over-time heatmap


def histogram_matrix(histograms: list[HistogramDict], rows: int = HISTOGRAM_ROWS) -> HistogramMatrix:
    """Histograms of one key at many steps, each with its own range, re-binned on one
    common value grid (counts spread over the grid rows their bins overlap): the cells
    of a step x value heatmap, as fractions of each step's total."""
    if not histograms:
        return HistogramMatrix(steps=[], edges=[], fractions=[])
    # a tensor that held NaN or infinite values has no range: its column stays empty
    ranged = [h for h in histograms if not h.get("nonfinite") and math.isfinite(h["low"]) and math.isfinite(h["high"])]
    low = min((h["low"] for h in ranged), default=0.0)
    high = max((h["high"] for h in ranged), default=1.0)
    if high <= low:
        high = low + 1e-12
    edges = np.linspace(low, high, rows + 1)
    columns = []
    for h in histograms:
        if h not in ranged:
            columns.append([0.0] * rows)
            continue
        counts = np.asarray(h["counts"], dtype=float)
        bin_edges = np.linspace(h["low"], h["high"], len(counts) + 1)
        grid = np.zeros(rows)
        for count, a, b in zip(counts, bin_edges[:-1], bin_edges[1:]):
            if count == 0:
                continue
            if b <= a:  # a zero-width range: everything at one value
                grid[min(rows - 1, int(np.searchsorted(edges, a, side="right") - 1))] += count
                continue
            overlap = np.clip(np.minimum(edges[1:], b) - np.maximum(edges[:-1], a), 0, None)
            grid += count * overlap / (b - a)
        total = grid.sum()
        columns.append((grid / total if total else grid).round(5).tolist())
    return HistogramMatrix(steps=[h["step"] for h in histograms], edges=edges.tolist(), fractions=columns)
