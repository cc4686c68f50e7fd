"""A per-layer quantity of one run as a layer x step matrix, for the heatmap that
replaces hundreds of lines on deep models."""

from __future__ import annotations

from typing import Any

import numpy as np

from tracker.ingest import read_many
from tracker.models import Run
from trainer.models import layer_order

# quantity -> shown on a log10 scale?
QUANTITIES = {"update_ratio": True, "grad_norm": True, "weight_norm": True, "dead_fraction": False,
              "saturated_fraction": False}


def layer_matrix(run: Run, quantity: str, buckets: int) -> dict[str, Any]:
    """Rows: the tensors (or layers) in model order; columns: equal step buckets;
    cells: the mean of the bucket's values (of log10 values for ratios and norms)."""
    prefix = f"{quantity}/"
    keys = list(run.series.filter(key__startswith=prefix).values_list("key", flat=True))
    rows = sorted((key[len(prefix):] for key in keys), key=layer_order)
    data = read_many(run.pk, {prefix + row: None for row in rows})
    last = max((int(steps[-1]) for steps, _ in data.values() if len(steps)), default=0)
    # no more columns than the densest row has points, so that short runs show no empty gaps
    buckets = max(1, min(buckets, max((len(steps) for steps, _ in data.values()), default=1)))
    edges = np.linspace(0, last + 1, buckets + 1)
    log = QUANTITIES[quantity]
    matrix = []
    for row in rows:
        steps, values = data[prefix + row]
        if log:
            with np.errstate(divide="ignore", invalid="ignore"):
                values = np.where(values > 0, np.log10(values), np.nan)
        keep = np.isfinite(values)
        column = np.clip(np.searchsorted(edges, steps[keep], side="right") - 1, 0, buckets - 1)
        sums = np.bincount(column, weights=values[keep], minlength=buckets)
        counts = np.bincount(column, minlength=buckets)
        with np.errstate(invalid="ignore"):
            means = sums / counts
        matrix.append([None if not np.isfinite(v) else round(float(v), 4) for v in means])
    return {"quantity": quantity, "log10": log, "rows": rows,
            "steps": [int(round((a + b) / 2)) for a, b in zip(edges[:-1], edges[1:])],
            "bucket_steps": float(edges[1] - edges[0]) if buckets else 0.0, "values": matrix}


HISTOGRAM_ROWS = 40  # value rows of a histogram-over-time heatmap


def histogram_matrix(histograms: list[dict[str, Any]], rows: int = HISTOGRAM_ROWS) -> dict[str, Any]:
    """Histograms of one key at many steps, each with its own range, re-binned on one
    common value grid (counts spread over the grid rows their bins overlap): the cells
    of a step x value heatmap, as fractions of each step's total."""
    if not histograms:
        return {"steps": [], "edges": [], "fractions": []}
    low = min(h["low"] for h in histograms)
    high = max(h["high"] for h in histograms)
    if high <= low:
        high = low + 1e-12
    edges = np.linspace(low, high, rows + 1)
    columns = []
    for h in histograms:
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
    return {"steps": [h["step"] for h in histograms], "edges": edges.tolist(), "fractions": columns}
