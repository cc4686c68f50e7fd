"""Rules on the training loss: divergence, the initial loss, and the shapes of its curve
(stuck at the start, a fast drop then a plateau, a straight decline, noise).
"""

from __future__ import annotations

import math

import numpy as np

from trainer.diagnosis.base import NONFINITE, Context, Finding, Series, _finite, _recent
from trainer.diagnosis.thresholds import (
    FAST_DROP,
    FAST_DROP_WITHIN,
    INITIAL_LOSS_TOLERANCE,
    LINEAR_HALVES,
    LINEAR_R2,
    LINEAR_SLOW,
    LOSS_ABOVE_START,
    LOSS_RISE,
    LOSS_RISE_MARGIN,
    LOSS_SPIKE,
    NOISY,
    NOISY_BATCH,
    PLATEAU_BAD,
    PLATEAU_FLAT,
    PLATEAU_STEPS,
    PLATEAU_TOLERANCE,
)


def divergence(series: Series, ctx: Context) -> Finding | None:
    steps, losses = series.get("loss", (np.empty(0), np.empty(0)))
    bad = ~np.isfinite(losses)
    # the first histogram of a tensor that held NaN or infinite values: (step, count, what)
    broken = min(
        (
            (int(held[0][0]), int(held[1][0]), key.removeprefix(NONFINITE))
            for key, held in series.items()
            if key.startswith(NONFINITE) and len(held[0])
        ),
        default=None,
    )
    if not bad.any() and ctx.status != "diverged" and broken is None:
        return None
    step = int(steps[np.argmax(bad)]) if bad.any() else None
    what = f"the loss became {losses[np.argmax(bad)]} at step {step} (loss series)" if bad.any() else ctx.message
    if broken is not None:
        held_at, count, tensor = broken
        step = held_at if step is None else min(step, held_at)
        what = f"{what}; {tensor} held {count:,} NaN or infinite values at step {held_at} (histograms)".lstrip("; ")
    return Finding(
        "divergence",
        "error",
        "training diverged",
        what,
        f"lower the base learning rate (optimizer.lr={ctx.lr:g}, e.g. to {ctx.lr / 10:g}) and restart",
        ["loss"],
        step,
    )


def _smoothed(values: np.ndarray) -> np.ndarray:
    """A running median over about a twentieth of the points (at least 5): the loss's level,
    without its step-to-step scatter."""
    window = max(5, len(values) // 20)
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, window), axis=1)


def _loss_rose(series: Series) -> tuple[float, float, int] | None:
    """(lowest level, recent level, step of the lowest) when the loss went back up well above
    the lowest level it had reached: the steps overshoot."""
    steps, losses = _finite(*series.get("loss", (np.empty(0), np.empty(0))))
    if len(losses) < 20:
        return None
    level = _smoothed(losses)
    recent = float(np.median(_recent(losses)))
    earlier = level[: max(1, len(level) - len(_recent(losses)))]
    lowest_index = int(np.argmin(earlier))
    lowest = float(earlier[lowest_index])
    first = float(losses[0])  # before any update: too high a rate can blow up the very next steps
    went_up = recent > LOSS_RISE * lowest and recent - lowest > LOSS_RISE_MARGIN * first
    # a loss still above where it started, past the first steps, is worse than no training at all
    above_start = recent > LOSS_ABOVE_START * first
    if went_up or above_start:
        return lowest, recent, int(steps[lowest_index])
    return None


def _loss_spike(series: Series) -> tuple[float, float, int] | None:
    """(first loss, highest loss, its step) when a loss jumped to LOSS_SPIKE x the first."""
    steps, losses = _finite(*series.get("loss", (np.empty(0), np.empty(0))))
    if len(losses) < 2 or losses[0] <= 0:
        return None
    peak = int(np.argmax(losses))
    if losses[peak] < LOSS_SPIKE * losses[0]:
        return None
    return float(losses[0]), float(losses[peak]), int(steps[peak])


def expected_initial_loss(loss: str, classes: int) -> tuple[float, str]:
    """With small random weights: ln(C) for a softmax classifier, C - 1 for a multiclass SVM
    (docs/training-dynamics.md, section 2); the value and its formula in words."""
    if loss == "cross_entropy":
        return math.log(classes), f"ln({classes})"
    return classes - 1.0, f"{classes} - 1"


def initial_loss_off(series: Series, ctx: Context) -> Finding | None:
    if ctx.classes is None or "loss" not in series or not len(series["loss"][1]):
        return None
    first = float(series["loss"][1][0])
    expected, formula = expected_initial_loss(ctx.loss, ctx.classes)
    if not math.isfinite(first) or abs(first - expected) <= INITIAL_LOSS_TOLERANCE * expected:
        return None
    return Finding(
        "initial_loss",
        "warning",
        "initial loss far from its expected value",
        f"the first loss is {first:.4g}; with small random weights it should be about {formula} = {expected:.3g}",
        "check the initialisation (too large weights give confident wrong scores) and the loss",
        ["loss"],
        0,
        {"first_loss": first, "expected": expected},
    )


# --------------------------------------------------------------------------
# the loss curve, read as the notes read it (docs/training-dynamics.md, section 1)


def initial_plateau(series: Series, ctx: Context) -> Finding | None:
    """The loss stuck at its initial value ln(C) (C - 1 for an SVM) from the start, then maybe a
    sudden drop: the signals do not get through the network (initialisation)."""
    steps, losses = _finite(*series.get("loss", (np.empty(0), np.empty(0))))
    if len(losses) < PLATEAU_STEPS:
        return None
    expected = expected_initial_loss(ctx.loss, ctx.classes)[0] if ctx.classes else float(np.median(losses[:5]))
    off = np.abs(losses - expected) > PLATEAU_TOLERANCE * expected
    length = int(np.argmax(off)) if off.any() else len(losses)
    if length < PLATEAU_STEPS or (off.any() and np.mean(off[length:]) < 0.5):
        return None
    dropped = bool(off.any()) and float(np.median(_recent(losses))) < (1 - 3 * PLATEAU_TOLERANCE) * expected
    evidence = f"the loss stayed at {expected:.3g} (its value with no signal) for the first {length} steps" + (
        f", then dropped to {float(np.median(_recent(losses))):.3g}" if dropped else ""
    )
    return Finding(
        "initial_plateau",
        "warning",
        "the loss is stuck at its initial value"
        if not dropped
        else "a long plateau at the initial loss, then a sudden drop",
        evidence,
        "the signals do not get through the network at this initialisation: use kaiming (relu) or xavier "
        "(tanh) initialisation (model.init), batch_norm, or fewer layers",
        ["loss"],
        int(steps[0]),
        {"plateau_steps": float(length), "level": expected},
    )


def loss_plateau(series: Series, ctx: Context) -> Finding | None:
    """A fast drop, then a plateau at a bad value: the steps are too large to settle lower."""
    steps, losses = _finite(*series.get("loss", (np.empty(0), np.empty(0))))
    if len(losses) < 50:
        return None
    level = _smoothed(losses)
    first = float(np.median(losses[:5]))
    dropped = np.flatnonzero(level < FAST_DROP * first)
    if not len(dropped) or dropped[0] > FAST_DROP_WITHIN * len(level):
        return None
    earlier, later = level[: len(level) // 2], level[len(level) // 2 :]
    end = float(np.median(later))
    # a stalled loss makes no new low, however much it bounces
    if end < PLATEAU_BAD * first or float(np.min(later)) < PLATEAU_FLAT * float(np.min(earlier)):
        return None
    return Finding(
        "loss_plateau",
        "warning",
        "learning rate too high: the loss dropped fast, then stalled",
        f"the loss fell from {first:.3g} to {float(level[dropped[0]]):.3g} by step {int(steps[dropped[0]])}, "
        f"then stayed about {end:.3g} ({end / first:.0%} of its start) over the last {len(later)} steps",
        f"lower optimizer.lr (now {ctx.lr:g}), e.g. by 3-10x, or anneal it (a step or plateau schedule)",
        ["loss"],
        int(steps[dropped[0]]),
        {"plateau": end, "first": first},
    )


def loss_linear(series: Series, ctx: Context) -> Finding | None:
    """A loss that falls in a straight line, slowly: the learning rate is too low (a good one
    gives a fast, roughly exponential decline)."""
    steps, losses = _finite(*series.get("loss", (np.empty(0), np.empty(0))))
    if len(losses) < 50:
        return None
    level = _smoothed(losses)
    first, last = float(np.median(losses[:5])), float(level[-1])
    fall = (first - last) / first if first > 0 else 0.0
    half = len(level) // 2
    first_half, second_half = float(level[0] - level[half]), float(level[half] - level[-1])
    if not 0.02 < fall < LINEAR_SLOW or first_half <= 0 or second_half <= 0:
        return None
    if not LINEAR_HALVES[0] < second_half / first_half < LINEAR_HALVES[1]:
        return None
    slope, intercept = np.polyfit(steps, level, 1)
    fitted = slope * steps + intercept
    r2 = 1 - float(np.sum((level - fitted) ** 2)) / max(float(np.sum((level - level.mean()) ** 2)), 1e-30)
    if r2 < LINEAR_R2:
        return None
    return Finding(
        "loss_linear",
        "warning",
        "learning rate too low: the loss falls in a straight line",
        f"the loss fell from {first:.3g} to {last:.3g} ({fall:.0%}) at a steady {-slope * 1000:.2g} per "
        f"1000 steps (a straight line: R^2 {r2:.2f}), where a good rate falls fast, then levels off",
        f"raise optimizer.lr (now {ctx.lr:g}), e.g. by 10x",
        ["loss"],
        None,
        {"fall": fall, "r2": r2},
    )


def noisy_loss(series: Series, ctx: Context) -> Finding | None:
    """Noise in the loss curve grows as the batch shrinks: a per-step scatter as large as the
    loss itself, with a small batch."""
    if ctx.batch_size is None or ctx.batch_size > NOISY_BATCH:
        return None
    _, losses = _finite(*series.get("loss", (np.empty(0), np.empty(0))))
    if len(losses) < 100:
        return None
    recent = _recent(losses)
    level = _smoothed(recent)
    noise = float(np.median(np.abs(recent - level)) / max(float(np.median(level)), 1e-12))
    if noise < NOISY:
        return None
    return Finding(
        "noisy_loss",
        "info",
        "the loss is very noisy: the batch is small",
        f"the loss scatters by {noise:.1f}x its own level from one step to the next with batch_size "
        f"{ctx.batch_size}; each step's gradient is a noisy estimate",
        "raise batch_size (and the learning rate with it), or lower optimizer.lr",
        ["loss"],
        None,
        {"noise": noise, "batch_size": float(ctx.batch_size)},
    )
