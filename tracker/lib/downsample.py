"""One downsampling function for every chart."""

from __future__ import annotations

import numpy as np


def min_max_downsample(steps: np.ndarray, values: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ~max_points points: per bucket, the first, minimum, maximum and last
    point in step order, so a one-step spike or a NaN stays visible at any zoom."""
    n = len(steps)
    if n <= max_points or max_points < 4:
        return steps, values
    buckets = max(1, max_points // 4)
    size = -(-n // buckets)  # ceil: equal buckets, the last one padded
    buckets = -(-n // size)
    padding = buckets * size - n
    nan = np.isnan(values)
    # NaN must win both the min and the max, so that a divergence is never smoothed away;
    # the padding must win neither
    low = np.concatenate([np.where(nan, -np.inf, values), np.full(padding, np.inf)]).reshape(buckets, size)
    high = np.concatenate([np.where(nan, np.inf, values), np.full(padding, -np.inf)]).reshape(buckets, size)
    starts = np.arange(buckets) * size
    ends = np.minimum(starts + size, n) - 1
    picks = np.concatenate([starts, ends, starts + low.argmin(axis=1), starts + high.argmax(axis=1)])
    index = np.unique(picks)
    return steps[index], values[index]
