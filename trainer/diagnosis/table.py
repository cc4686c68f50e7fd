"""The rule table of the docs (docs/diagnosis.md), written from the thresholds the rules use.

Each row's words are formatted here from `trainer.diagnosis.thresholds` (and the trainer's own
divergence limit), so changing a threshold changes the docs; `mkdocs build` inserts the table
(docs/hooks/generated.py), and a test checks that every rule of `RULES` has its row.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainer.diagnosis import thresholds as t
from trainer.loop import EXPLOSION_FACTOR, EXPLOSION_WINDOW


def _pct(fraction: float) -> str:
    return f"{fraction:.0%}"


@dataclass(frozen=True)
class Row:
    rules: tuple[str, ...]  # the `rule` of the findings this row describes
    title: str
    severity: str
    reads: str  # the rule and its thresholds, in words


ROWS = (
    Row(
        ("divergence",),
        "training diverged",
        "error",
        f"the loss became inf/NaN, a tensor's histogram held NaN or infinite values, or the moving median of "
        f"{EXPLOSION_WINDOW} losses exceeded {EXPLOSION_FACTOR:g}x the first loss (the run ends `diverged`); "
        "the evidence names the first tensor that held NaN",
    ),
    Row(
        ("lr_too_high",),
        "learning rate too high",
        "warning",
        f"update ratio > {t.RATIO_HIGH:g} sustained ({_pct(t.SUSTAINED)} of the recent window) on a weight matrix; "
        f"while young (before step {t.YOUNG_STEPS}), > {t.RATIO_HIGH_YOUNG:g} on every weight matrix (after step "
        f"{t.TRANSIENT_STEPS}); the loss went back up ({t.LOSS_RISE:g}x its lowest level and by "
        f"{_pct(t.LOSS_RISE_MARGIN)} of its first value, or a recent loss {_pct(t.LOSS_ABOVE_START - 1)} above the "
        f"first); or a loss jumped to {t.LOSS_SPIKE:g}x its first value (not raised beside a divergence)",
    ),
    Row(
        ("lr_too_low",),
        "learning rate too low",
        "warning",
        f"the median weight matrix's recent median ratio < {t.RATIO_LOW:g} and none at {t.RATIO_TARGET:g}, while "
        f"the loss is still above {_pct(t.CONVERGED_LOSS_FRACTION)} of its first value (tiny updates after "
        "convergence are not flagged)",
    ),
    Row(
        ("adagrad_decayed",),
        "Adagrad's learning rate has decayed to nothing",
        "warning",
        f"Adagrad only: the ratio fell {t.ADAGRAD_DECAY:g}x or more from its first tenth to the recent window and "
        f"is below {t.RATIO_TARGET:g}, with the loss still above {_pct(t.CONVERGED_LOSS_FRACTION)} of its first value",
    ),
    Row(
        ("overfitting",),
        "overfitting",
        "warning",
        f"recent train - validation accuracy gap >= {t.OVERFIT_GAP:g}, and the validation set stopped gaining: its "
        f"loss rose {_pct(t.VAL_LOSS_RISE - 1)} above its minimum, or train accuracy >= {t.MEMORISED:g} with no new "
        f"best validation accuracy (nor lower validation loss) for 3 epochs, or train accuracy >= {t.MEMORISED:g} "
        f"with a gap >= {t.MEMORISED_GAP:g} ({t.MIN_EPOCHS_FOR_ACCURACY_RULES} epochs at least)",
    ),
    Row(
        ("underfitting",),
        "underfitting",
        "warning",
        f"recent train and validation accuracy both < {t.UNDERFIT_ACCURACY:g} and within {t.UNDERFIT_GAP:g} of "
        f"each other ({t.MIN_EPOCHS_FOR_ACCURACY_RULES} epochs at least; once the run has ended, within "
        f"{t.OVERFIT_GAP:g}, where overfitting's gap starts); from 3 epochs, both < {t.UNDERFIT_YOUNG_ACCURACY:g} "
        f"and the last epoch gaining < {t.UNDERFIT_YOUNG_GAIN:g}",
    ),
    Row(
        ("dead_relus",),
        "dead ReLU units",
        f"warning; error from {_pct(t.DEAD_ERROR)}",
        f"recent median fraction of units (or channels) never positive over a batch >= {_pct(t.DEAD_WARNING)}; "
        f"while young, >= {_pct(t.DEAD_RISING)} and {t.DEAD_RISE * 100:g} points more than at the first measurement",
    ),
    Row(
        ("saturated_units",),
        "saturated tanh / sigmoid units",
        "warning",
        f"recent median fraction of outputs at the activation's bounds >= {_pct(t.SATURATED_WARNING)}",
    ),
    Row(
        ("collapsed_activations",),
        "activations collapsed towards zero",
        "warning",
        f"an activation layer's output std < {t.COLLAPSED_ACTIVATION_STD:g} (from the histograms)",
    ),
    Row(
        ("symmetry",),
        "weights start all equal",
        "error",
        "a weight matrix or embedding before the output layer has a std of exactly 0 at step 0 (e.g. "
        "`init: zeros`); norm scales, biases and a zero-initialised output layer are correct starts",
    ),
    Row(
        ("frozen_layer",),
        "a layer in the middle of the model does not learn",
        "warning",
        "weight matrices with `requires_grad` off or left out of the optimizer, with learning weight matrices "
        "before and after them in the model's order (a frozen backbone under a trained head is not named)",
    ),
    Row(
        ("vanishing_gradients",),
        "vanishing gradients",
        "warning",
        f"3+ weight matrices and no norm layer; the first layer's gradient norm < {t.VANISHING_RATIO:g} of the "
        f"output layer's and no larger than {t.VANISHING_MEDIAN_SLACK:g}x the median layer's",
    ),
    Row(
        ("exploding_gradients",),
        "exploding gradients",
        "warning",
        f"a weight matrix's gradient norm grew >= {t.EXPLODING_FACTOR:g}x its first value and became as large as "
        "the weights",
    ),
    Row(
        ("gradients_accumulate",),
        "gradients accumulate across steps",
        "error",
        f"a script's own loop (`run.watch`): at {_pct(t.SUSTAINED)}+ of the measured steps (two at least), more than "
        f"{t.CARRIED_GRADIENT:g} of the smallest weight matrix's gradient at `optimizer.step()` was carried over "
        "from earlier steps, i.e. `optimizer.zero_grad()` is missing; `lr_too_high` and `exploding_gradients` "
        "are then not raised beside it",
    ),
    Row(
        ("eval_in_train_mode",),
        "evaluated in training mode",
        "warning",
        "a script's own loop (`run.watch`) on a model with dropout or batch norm: a forward pass without "
        "gradients (an evaluation) while the model was in training mode, i.e. `model.eval()` forgotten",
    ),
    Row(
        ("initial_loss",),
        "initial loss far from its expected value",
        "warning",
        f"first loss more than {_pct(t.INITIAL_LOSS_TOLERANCE)} away from ln(C) (softmax) or C - 1 (SVM), when C "
        "is known",
    ),
    Row(
        ("validation_stalled",),
        "best validation accuracy has stalled",
        "info",
        f"no new best for {t.STALL_EPOCHS}+ epochs and for {_pct(t.STALL_FRACTION)}+ of the epochs so far",
    ),
    Row(
        ("initial_plateau",),
        "the loss is stuck at its initial value",
        "warning",
        f"the loss within {_pct(t.PLATEAU_TOLERANCE)} of ln(C) (C - 1 for an SVM; its first values when C is "
        f"unknown) for the first {t.PLATEAU_STEPS}+ steps, and mostly still there after",
    ),
    Row(
        ("loss_plateau",),
        "learning rate too high: a fast drop, then a plateau",
        "warning",
        f"the smoothed loss below {t.FAST_DROP:g}x its first value within the first {_pct(t.FAST_DROP_WITHIN)} of "
        f"the steps, then no new low below {_pct(t.PLATEAU_FLAT)} of the earlier one over the later half, at a "
        f"level above {_pct(t.PLATEAU_BAD)} of the first loss (50 steps at least)",
    ),
    Row(
        ("loss_linear",),
        "learning rate too low: a straight decline",
        "warning",
        f"the smoothed loss fell by less than {_pct(t.LINEAR_SLOW)} of its first value so far, about as much in "
        f"the second half as in the first ({t.LINEAR_HALVES[0]:g}-{t.LINEAR_HALVES[1]:g}x), on a straight line "
        f"(R^2 >= {t.LINEAR_R2:g})",
    ),
    Row(
        ("noisy_loss",),
        "the loss is very noisy",
        "info",
        f"batch <= {t.NOISY_BATCH} and the recent loss scattering by >= {_pct(t.NOISY)} of its level around its "
        "running median",
    ),
    Row(
        ("val_loss_stuck",),
        "the validation loss is stuck at its initial value",
        "warning",
        f"the validation loss never goes {_pct(1 - t.VAL_STUCK)} below the lower of its first value and ln(C) "
        f"(lately not even {_pct(1 - t.VAL_STILL)}) while the training loss fell by more than "
        f"{_pct(1 - t.TRAIN_PROGRESS)} (3 epochs at least): labels shuffled or misaligned",
    ),
    Row(
        ("first_layer_noise",),
        "the first layer's filters are still noise",
        "warning",
        f"first-layer roughness >= {t.FILTERS_NOISE:g} (white noise reads 1) at every measurement from epoch "
        f"{t.FILTERS_FROM_EPOCH + 1}, two at least (three when the epochs are unknown); smooth filters read below "
        f"{t.FILTERS_SMOOTH:g}",
    ),
    Row(
        ("check", "gradient_check"),
        "sanity check failed / gradient check",
        "warning; error for a `wrong` gradient",
        "from a preflight or a check job",
    ),
)


def markdown() -> str:
    """The table, as Markdown."""
    lines = ["| finding (rule) | severity | what it reads, and its thresholds |", "| --- | --- | --- |"]
    for row in ROWS:
        names = ", ".join(f"`{rule}`" for rule in row.rules)
        lines.append(f"| {row.title} ({names}) | {row.severity} | {row.reads} |")
    return "\n".join(lines) + "\n"
