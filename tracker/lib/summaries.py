"""Summaries of a series at several resolutions, so that a chart of a long run reads a few
hundred kilobytes instead of every point.

Each stored chunk of a series carries, beside its points, its points grouped by `size` in
step order for each size of LEVELS that it can fill at least once: per group its first,
last, lowest and highest point (NaN counts as both the lowest and the highest, so a
divergence is never smoothed away), its number of points, and the sum and number of its
finite values (for a bucket mean). A group never spans two chunks, so a chunk's summaries
depend on its own points only: a retried flush, a resumed run that trims a chunk and the
compaction that merges chunks each recompute exactly what they change.

`downsample_groups` turns a sequence of groups (of any sizes, single points included) into
the same kind of answer as `min_max_downsample`: per bucket the first, lowest, highest and
last point, every one of them a stored point.
"""

from __future__ import annotations

import numpy as np

# Points per group at each level. 88 bytes a group: against 16 bytes a point, the finest
# level adds 4.3 % to a chunk and the others 0.3 % together.
LEVELS = (128, 2048, 32768)

GROUP_DTYPE = np.dtype(
    [
        ("first_step", "<i8"),
        ("last_step", "<i8"),
        ("min_step", "<i8"),
        ("max_step", "<i8"),
        ("count", "<i8"),
        ("finite", "<i8"),
        ("first", "<f8"),
        ("last", "<f8"),
        ("min", "<f8"),
        ("max", "<f8"),
        ("sum", "<f8"),
    ]
)


def summarise(steps: np.ndarray, values: np.ndarray, size: int) -> bytes | None:
    """The groups of `size` points of one chunk (the last one may be shorter), packed; None
    when the chunk has fewer than `size` points (its points are as cheap to read)."""
    n = len(steps)
    if n < size:
        return None
    groups = -(-n // size)
    padding = groups * size - n
    nan = np.isnan(values)
    low = np.concatenate([np.where(nan, -np.inf, values), np.full(padding, np.inf)]).reshape(groups, size)
    high = np.concatenate([np.where(nan, np.inf, values), np.full(padding, -np.inf)]).reshape(groups, size)
    finite = np.isfinite(values)
    starts = np.arange(groups) * size
    ends = np.minimum(starts + size, n) - 1
    lows = starts + low.argmin(axis=1)
    highs = starts + high.argmax(axis=1)
    out = np.empty(groups, GROUP_DTYPE)
    out["first_step"], out["first"] = steps[starts], values[starts]
    out["last_step"], out["last"] = steps[ends], values[ends]
    out["min_step"], out["min"] = steps[lows], values[lows]
    out["max_step"], out["max"] = steps[highs], values[highs]
    out["count"] = ends - starts + 1
    out["finite"] = np.add.reduceat(finite.astype(np.int64), starts)
    out["sum"] = np.add.reduceat(np.where(finite, values, 0.0), starts)
    return out.tobytes()


def summaries_of(steps: np.ndarray, values: np.ndarray) -> tuple[bytes | None, ...]:
    """One packed summary (or None) per level of LEVELS."""
    return tuple(summarise(steps, values, size) for size in LEVELS)


def unpack(blob: bytes | memoryview) -> np.ndarray:
    return np.frombuffer(blob, GROUP_DTYPE)


def point_range(groups: np.ndarray, after: int | None, until: int | None) -> tuple[int, int]:
    """From a chunk's finest groups: the first point and the number of points of the groups
    that hold steps in (after, until], so that only that slice of the chunk is read."""
    lo = 0 if after is None else int(np.searchsorted(groups["last_step"], after, side="right"))
    hi = len(groups) if until is None else int(np.searchsorted(groups["first_step"], until, side="right"))
    ends = np.cumsum(groups["count"])
    first = int(ends[lo - 1]) if lo > 0 else 0
    return first, max(0, (int(ends[hi - 1]) if hi > 0 else 0) - first)


def point_groups(steps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each point as a group of one (for raw points read beside summaries)."""
    out = np.empty(len(steps), GROUP_DTYPE)
    for name in ("first_step", "last_step", "min_step", "max_step"):
        out[name] = steps
    for name in ("first", "last", "min", "max"):
        out[name] = values
    finite = np.isfinite(values)
    out["count"] = 1
    out["finite"] = finite
    out["sum"] = np.where(finite, values, 0.0)
    return out


def choose_level(points: int, max_points: int) -> int | None:
    """The coarsest group size that still gives a group for each of the max_points / 4 buckets
    of the answer; None: read the points."""
    if max_points < 4 or points <= 8 * max_points:
        return None
    usable = [size for size in LEVELS if points / size >= max_points / 4]
    return max(usable) if usable else None


def downsample_groups(groups: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Groups in step order -> at most ~max_points points: max_points // 4 buckets of about
    equal numbers of points, each giving its first, lowest, highest and last point."""
    if not len(groups):
        return np.empty(0, np.int64), np.empty(0, np.float64)
    buckets = max(1, max_points // 4)
    counts = groups["count"]
    before = np.concatenate(([0], np.cumsum(counts)[:-1]))
    bucket = before * buckets // max(1, int(counts.sum()))
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    ends = np.concatenate((starts[1:], [len(groups)])) - 1
    low_key = np.where(np.isnan(groups["min"]), -np.inf, groups["min"])
    high_key = np.where(np.isnan(groups["max"]), np.inf, groups["max"])
    # per bucket, the group holding its lowest (highest) point: the first such group on ties
    lowest = np.lexsort((np.arange(len(groups)), low_key, bucket))[starts]
    highest = np.lexsort((np.arange(len(groups)), -high_key, bucket))[starts]
    steps = np.concatenate(
        [
            groups["first_step"][starts],
            groups["min_step"][lowest],
            groups["max_step"][highest],
            groups["last_step"][ends],
        ]
    )
    values = np.concatenate(
        [groups["first"][starts], groups["min"][lowest], groups["max"][highest], groups["last"][ends]]
    )
    steps, first = np.unique(steps, return_index=True)
    return steps, values[first]
