"""Rules on train and validation accuracy and loss: overfitting, underfitting, a stalled
best accuracy, a validation loss stuck at its initial value.
"""

from __future__ import annotations

import numpy as np

from trainer.diagnosis.base import Context, Finding, Series, _finite, _recent
from trainer.diagnosis.loss import expected_initial_loss
from trainer.diagnosis.thresholds import (
    MEMORISED,
    MEMORISED_GAP,
    MIN_EPOCHS_FOR_ACCURACY_RULES,
    OVERFIT_GAP,
    STALL_EPOCHS,
    STALL_FRACTION,
    TRAIN_PROGRESS,
    UNDERFIT_ACCURACY,
    UNDERFIT_GAP,
    UNDERFIT_YOUNG_ACCURACY,
    UNDERFIT_YOUNG_GAIN,
    VAL_LOSS_RISE,
    VAL_STILL,
    VAL_STUCK,
)


def _accuracies(
    series: Series, minimum: int = MIN_EPOCHS_FOR_ACCURACY_RULES
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(steps, train, validation) at each validation point, with the training accuracy last
    logged by then: a script may log the training accuracy at every step, the validation's once
    an epoch."""
    if "train_acc" not in series or "val_acc" not in series:
        return None
    train_steps, train = series["train_acc"]
    steps, val = series["val_acc"]
    latest = np.searchsorted(train_steps, steps, side="right") - 1
    known = latest >= 0
    if int(known.sum()) < minimum:
        return None
    return steps[known], train[latest[known]], val[known]


def overfitting(series: Series, ctx: Context) -> Finding | None:
    """A large train-validation gap with a validation set that stopped gaining from training:
    its loss rising from its minimum, or no new best accuracy while the training set is learnt
    by heart; or the training set learnt by heart with validation accuracy 0.2 behind. A gap
    alone is not enough: early on the model fits the training data first."""
    accuracies = _accuracies(series)
    if accuracies is None:
        return None
    steps, train, val = accuracies
    gap = train - val
    early = float(np.min(gap[: max(1, len(gap) // 5)]))  # the smallest gap of the first fifth of the epochs
    late = float(np.median(_recent(gap)))
    _, val_loss = series.get("val_loss", (np.empty(0), np.empty(0)))
    evidence = ""
    if len(val_loss) >= MIN_EPOCHS_FOR_ACCURACY_RULES:
        lowest, recent_loss = float(np.min(val_loss)), float(np.median(_recent(val_loss)))
        if recent_loss > VAL_LOSS_RISE * lowest and np.argmin(val_loss) < len(val_loss) - len(_recent(val_loss)):
            evidence = (
                f"; the validation loss rose from {lowest:.3g} (epoch {int(np.argmin(val_loss)) + 1}) "
                f"to {recent_loss:.3g}"
            )
    # no better validation accuracy for 3 epochs, and no lower validation loss either (a tie of the
    # best accuracy with a falling loss is a model still learning)
    stalled = len(val) > 3 and float(np.max(val[-3:])) <= float(np.max(val[:-3]))
    if len(val_loss) > 3:
        stalled = stalled and float(np.min(val_loss[-3:])) >= float(np.min(val_loss[:-3]))
    memorised = float(np.median(_recent(train))) >= MEMORISED
    if not evidence and memorised and stalled:
        evidence = "; the training set is learnt by heart and validation accuracy has not improved for 3 epochs"
    elif not evidence and memorised and late >= MEMORISED_GAP:
        evidence = (
            f"; the training set is learnt by heart while validation accuracy lags {MEMORISED_GAP:g} or more behind"
        )
    if late < OVERFIT_GAP or not evidence:
        return None
    return Finding(
        "overfitting",
        "warning",
        "overfitting",
        f"train accuracy {train[-1]:.3f} vs validation {val[-1]:.3f} at epoch {ctx.epoch_of(int(steps[-1])):.0f}: "
        f"a gap of {late:.2f} (at least {early:.2f} in the early epochs){evidence}",
        "regularise more (optimizer.weight_decay, model.dropout), get more data, or stop earlier",
        ["train_acc", "val_acc", "val_loss"],
        int(steps[-1]),
        {"gap": late, "early_gap": early},
    )


def underfitting(series: Series, ctx: Context) -> Finding | None:
    """Both accuracies low and close: from 5 epochs below 0.8; from 3, only far below (0.5) and
    barely moving, since the first epochs of a healthy run are low too. Close: within 0.05 while
    the run is running, and once it has ended within the gap that overfitting starts at."""
    accuracies = _accuracies(series, minimum=3)
    if accuracies is None:
        return None
    steps, train, val = accuracies
    recent_train, recent_val = float(np.median(_recent(train))), float(np.median(_recent(val)))
    higher = max(recent_train, recent_val)
    if len(train) < MIN_EPOCHS_FOR_ACCURACY_RULES and (
        higher >= UNDERFIT_YOUNG_ACCURACY or train[-1] - train[-2] >= UNDERFIT_YOUNG_GAIN
    ):
        return None
    # running, a gap between the two may still close or open; ended, the accuracies are what the run got
    gap = abs(recent_train - recent_val)
    apart = gap >= OVERFIT_GAP if ctx.ended else gap > UNDERFIT_GAP
    if higher >= UNDERFIT_ACCURACY or apart:
        return None
    return Finding(
        "underfitting",
        "warning",
        "underfitting",
        f"train accuracy {recent_train:.3f} and validation {recent_val:.3f} are both low and close",
        "give the model more capacity (model.hidden), train longer, or check the learning rate",
        ["train_acc", "val_acc"],
        int(steps[-1]),
        {"train_acc": recent_train, "val_acc": recent_val},
    )


def validation_stalled(series: Series, ctx: Context) -> Finding | None:
    if "val_acc" not in series:
        return None
    steps, val = series["val_acc"]
    if len(val) < STALL_EPOCHS * 2:
        return None
    best_index = int(np.argmax(val))
    since = len(val) - 1 - best_index
    if since < STALL_EPOCHS or since < STALL_FRACTION * len(val):
        return None
    return Finding(
        "validation_stalled",
        "info",
        "best validation accuracy has stalled",
        f"best validation accuracy {val[best_index]:.4f} at epoch {best_index + 1}, not improved for {since} epochs",
        "anneal the learning rate (a step or plateau schedule) or stop the run here",
        ["val_acc"],
        int(steps[best_index]),
        {"best": float(val[best_index]), "epochs_since": float(since)},
    )


def validation_loss_stuck(series: Series, ctx: Context) -> Finding | None:
    """The validation loss never goes below its first value, nor below the loss of a model with no
    signal, while the training loss falls: what the model learns does not carry over (labels
    shuffled or misaligned, different preprocessing). A model that fits noise grows confident, so
    its validation loss may start above the no-signal level and climb."""
    _, val_loss = _finite(*series.get("val_loss", (np.empty(0), np.empty(0))))
    _, losses = _finite(*series.get("loss", (np.empty(0), np.empty(0))))
    if len(val_loss) < 3 or len(losses) < 20:
        return None
    first_train, recent_train = float(np.median(losses[:5])), float(np.median(_recent(losses)))
    # "initial": the loss of a model with no signal, ln(C) (C - 1 for an SVM), when C is known
    start = expected_initial_loss(ctx.loss, ctx.classes)[0] if ctx.classes else float(val_loss[0])
    reference = min(float(val_loss[0]), start)
    if (
        float(val_loss[0]) < 0.95 * start
        or float(np.min(val_loss)) < VAL_STUCK * reference
        or float(np.median(_recent(val_loss))) < VAL_STILL * reference
        or recent_train > TRAIN_PROGRESS * first_train
    ):
        return None
    steps, _ = series["val_loss"]
    return Finding(
        "val_loss_stuck",
        "warning",
        "the validation loss is stuck at its initial value",
        f"the validation loss never went below {float(np.min(val_loss)):.3g} in {len(val_loss)} epochs (now "
        f"{float(val_loss[-1]):.3g}; a model with no signal: {start:.3g}) while the training loss fell from "
        f"{first_train:.3g} to {recent_train:.3g}",
        "what the model learns does not carry over to the validation data: check that the labels match "
        "the inputs (shuffled or misaligned) and that both sets are prepared alike",
        ["val_loss", "loss"],
        int(steps[0]),
        {"val_loss": float(val_loss[-1])},
    )
