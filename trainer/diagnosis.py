"""Automatic diagnosis: what is wrong with a run, with the evidence, in plain words.

One small rule per finding (docs/training-dynamics.md, sections 1 and 2). A rule
reads the run's series (key -> (steps, values)) and its context and returns a
Finding or None. `diagnose` runs every rule; healthy runs get no warnings.

Series the rules read: loss, train_acc, val_acc, update_ratio/<tensor>,
grad_norm/<tensor>, dead_fraction/<layer>, saturated_fraction/<layer>, and,
derived from the stored histograms by the caller, activation_std/<layer> and
weight_std/<tensor>.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from trainer.config import RunConfig
from trainer.payloads import CheckResults, FindingDict, WaitingRules
from trainer.tensor_names import (
    CARRIED_GRADIENT_KEY,
    EMBEDDING,
    EVAL_IN_TRAIN_MODE_KEY,
    KIND_WORDS,
    MATRIX_KINDS,
    NORM_SCALE,
    NORM_SHIFT,
    ROUGHNESS_KEY,
    kind_from_name,
    layer_order,
)

Series = dict[str, tuple[np.ndarray, np.ndarray]]

SEVERITY_ORDER = {"info": 1, "warning": 2, "error": 3}

# Thresholds (the README lists each with its rule)
RATIO_TARGET = 1e-3
RATIO_HIGH = 1e-2  # update ratios above this mean the learning rate is too high
RATIO_LOW = 1e-4  # ... below this, too low (unless the loss has already converged)
SUSTAINED = 0.8  # fraction of the recent measurements that must be past a threshold
RECENT = 0.25  # the recent window: the last quarter of a series (at least 5 points)
CONVERGED_LOSS_FRACTION = 0.3  # a loss below this fraction of its first value has made real progress
OVERFIT_GAP = 0.10  # train - validation accuracy
VAL_LOSS_RISE = 1.05  # ... or the validation loss 5 % above its minimum ...
MEMORISED = 0.99  # ... or the training set learnt by heart, with validation stalled ...
MEMORISED_GAP = 0.20  # ... or this far behind however it still creeps up
UNDERFIT_ACCURACY = 0.80  # both accuracies below this ...
UNDERFIT_GAP = 0.05  # ... and this close together while the run is running; once it has ended, any gap
# short of OVERFIT_GAP: low accuracies that the gap does not call overfitting are underfitting
MIN_EPOCHS_FOR_ACCURACY_RULES = 5
DEAD_WARNING = 0.40  # "with a large learning rate as many as 40% of ReLU units can die"
DEAD_ERROR = 0.90
SATURATED_WARNING = 0.50
COLLAPSED_ACTIVATION_STD = 0.05  # activations all near 0 (too small an initialisation)
VANISHING_RATIO = 5e-2  # gradient norm of the first weight layer / the last one ...
# ... with the first no larger than this times the median layer's: layers whose gradients vanished
# alike scatter by tens of per cent (one deep tanh net: 4.1e-6 to 5.9e-6 under an output layer's 6e-4),
# while activations that collapsed without the gradient vanishing leave the first layer's (whose
# input, the data, did not collapse) above the middle ones' (whose inputs did)
VANISHING_MEDIAN_SLACK = 1.5
EXPLODING_FACTOR = 100.0  # gradient norm grew this many times its first value
# optimizer.zero_grad() forgotten: the share of a gradient carried over from earlier steps
# (trainwatch.watch measures it; 0 to 1e-6 when the gradients are zeroed, 0.5 and more when
# they are summed onto the last step's), above this at most measurements
CARRIED_GRADIENT = 0.1
INITIAL_LOSS_TOLERANCE = 0.5  # relative distance of the first loss from ln(C) (or C - 1)
ADAGRAD_DECAY = 3.0  # Adagrad's update ratio fell this many times while the loss has not converged
STALL_EPOCHS = 10  # best validation accuracy not improved for this many epochs ...
STALL_FRACTION = 0.25  # ... and for this fraction of the epochs so far
# A young run is read with care: optimizers settle in their first steps (Adam's first updates
# are large by design), and the first epochs' accuracies move fast.
YOUNG_STEPS = 200
TRANSIENT_STEPS = 5  # the ratios of the very first updates are not read at all
# while young, the first updates of one layer (often the output) can be large in a healthy run;
# a rate that is too high lifts every layer: each weight tensor's ratio above this
RATIO_HIGH_YOUNG = 3e-2
LOSS_RISE = 1.5  # the loss back above 1.5x its lowest level so far ...
LOSS_RISE_MARGIN = 0.1  # ... and by at least this fraction of its first value: it went up, not just noise
LOSS_ABOVE_START = 1.1  # or a recent loss 10 % above the first: worse than not training
# or a loss that jumped to this many times its first value: steps so large they threw the weights
# off (AdamW 0.3 on a transformer: 1.44, 3.3, 15.9 in its first steps, then stuck at one class
# with update ratios of 1e-5 on weights grown huge); a healthy start never comes near it
LOSS_SPIKE = 4.0
DEAD_RISING = 0.30  # while young: this many dead units, ...
DEAD_RISE = 0.10  # ... this many more than at the first measurement
UNDERFIT_YOUNG_ACCURACY = 0.5  # from 3 epochs: both accuracies below this, ...
UNDERFIT_YOUNG_GAIN = 0.02  # ... and the last epoch gaining less than this
PLATEAU_TOLERANCE = 0.03  # the loss within 3 % of its expected initial value ...
PLATEAU_STEPS = 30  # ... for at least this many steps from the start: stuck at ln(C)
FAST_DROP = 0.5  # the loss below half its first value ...
FAST_DROP_WITHIN = 0.2  # ... within the first fifth of the steps so far, ...
PLATEAU_FLAT = 0.9  # ... then never below 90 % of the lowest level before, over the later half, ...
PLATEAU_BAD = 0.15  # ... whose level is more than 15 % of the first loss: a plateau at a bad value
LINEAR_R2 = 0.9  # the loss on a straight line (R^2 of a linear fit), ...
LINEAR_HALVES = (0.5, 2.0)  # ... falling about as much in the second half as in the first, ...
LINEAR_SLOW = 0.4  # ... and by less than 40 % of its first value so far: a learning rate too low
NOISY_BATCH = 16  # a batch this small or smaller ...
NOISY = 0.45  # ... with the loss scattering by 45 % of its level around its running median (about 0.3 at batch 64)
VAL_STUCK = 0.97  # the validation loss never 3 % below its first value, ...
VAL_STILL = 0.99  # ... lately not even 1 % below it, ...
TRAIN_PROGRESS = 0.97  # ... while the training loss fell more than 3 %
# The first layer's filters (trainer.instrument.filter_roughness: white noise 1, smooth 0): from
# the third epoch on, still this rough means the layer has not moved from its random start.
# Learnt filters read 0.6-0.94 without weight decay, below 0.2 with it (README, Diagnosis).
FILTERS_NOISE = 0.98
FILTERS_SMOOTH = 0.3  # below: smooth filters (the run page says so; no rule reads it)
FILTERS_FROM_EPOCH = 2


@dataclass
class Context:
    optimizer: str
    lr: float
    loss: str
    classes: int | None
    activation: str
    steps_per_epoch: int
    status: str = "running"
    message: str = ""
    tensors: tuple[str, ...] = ()  # parameter tensors in the model's order, when known
    batch_size: int | None = None
    # each tensor's kind (trainer.tensor_names) as the instrumentation found it; a tensor the run
    # did not describe is read by its name
    kinds: dict[str, str] = field(default_factory=dict)
    # tensors that do not learn: requires_grad off, or not stepped by the optimizer
    frozen: tuple[str, ...] = ()
    own_loop: bool = False  # trained by a script's own loop (the client), not the worker's trainer

    @classmethod
    def from_config(
        cls,
        config: RunConfig,
        classes: int | None,
        steps_per_epoch: int,
        status: str = "running",
        message: str = "",
        kinds: dict[str, str] | None = None,
    ) -> Context:
        """`classes`: as the trainer found them in the data (RunInfo.classes), None when unknown."""
        return cls(
            config.optimizer.name,
            config.optimizer.lr,
            config.loss,
            classes,
            config.model.activation,
            max(1, steps_per_epoch),
            status,
            message,
            batch_size=config.batch_size,
            kinds=dict(kinds or {}),
        )

    @classmethod
    def from_facts(
        cls,
        facts: dict[str, Any],
        tensors: list[str],
        steps_per_epoch: int,
        status: str = "running",
        message: str = "",
        kinds: dict[str, str] | None = None,
    ) -> Context:
        """A run trained by someone's own script: what the client saw of it (trainer.wire's
        describe.context); a rule that needs what is unknown (the classes, say) stays quiet."""
        return cls(
            str(facts.get("optimizer") or ""),
            float(facts.get("lr") or 0.0),
            str(facts.get("loss") or "cross_entropy"),
            facts.get("classes"),
            str(facts.get("activation") or ""),
            max(1, steps_per_epoch),
            status,
            message,
            tuple(tensors),
            kinds=dict(kinds or {}),
            frozen=tuple(facts.get("frozen") or ()),
            own_loop=True,
        )

    def kind_of(self, tensor: str) -> str:
        return self.kinds.get(tensor) or kind_from_name(tensor)

    def named(self, tensor: str) -> str:
        """A tensor in a finding's words: its name and what it is."""
        return f"{tensor} ({KIND_WORDS.get(self.kind_of(tensor), 'parameter')})"

    @property
    def ended(self) -> bool:
        """The run will add no more points (a queued run has none yet)."""
        return self.status not in ("queued", "running")

    def epoch_of(self, step: int) -> float:
        return (step + 1) / self.steps_per_epoch


@dataclass
class Finding:
    rule: str
    severity: str  # info | warning | error
    title: str  # the plain-words verdict, e.g. "learning rate too high"
    evidence: str  # which series, which steps, which numbers
    advice: str
    series: list[str] = field(default_factory=list)
    step: int | None = None  # where it starts (or happened)
    numbers: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> FindingDict:
        return FindingDict(**asdict(self))  # type: ignore[typeddict-item]


def _recent(values: np.ndarray) -> np.ndarray:
    n = len(values)
    return values[max(0, n - max(5, int(math.ceil(n * RECENT)))) :]


def _finite(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(values)
    return steps[keep], values[keep]


def _per_tensor(series: Series, prefix: str, suffix: str = "") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        key[len(prefix) :]: _finite(*value)
        for key, value in series.items()
        if key.startswith(prefix) and key.endswith(suffix) and len(value[0])
    }


def _matrices(series: Series, prefix: str, ctx: Context) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """_per_tensor of the weight matrices alone (linear, conv, recurrent): the tensors the
    layer-by-layer rules compare; gains, shifts, biases and embeddings have norms of their own."""
    return {
        tensor: value for tensor, value in _per_tensor(series, prefix).items() if ctx.kind_of(tensor) in MATRIX_KINDS
    }


def _since(steps: np.ndarray, past: np.ndarray) -> int:
    """The first step of the trailing stretch in which (nearly) every point is past the threshold."""
    start = len(past)
    misses = 0
    for index in range(len(past) - 1, -1, -1):
        if not past[index]:
            misses += 1
            if misses > max(1, (len(past) - index) * (1 - SUSTAINED)):
                break
        start = index
    return int(steps[start]) if start < len(steps) else int(steps[-1])


def _loss_progress(series: Series) -> tuple[float, float] | None:
    """(first loss, recent median loss) or None."""
    if "loss" not in series:
        return None
    _, losses = _finite(*series["loss"])
    if len(losses) < 10:
        return None
    return float(losses[0]), float(np.median(_recent(losses)))


# --------------------------------------------------------------------------
# rules


# diagnosis series of the tensors whose histograms held NaN or infinite values (histogram_series)
NONFINITE = "nonfinite/"


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


def learning_rate_too_high(series: Series, ctx: Context) -> Finding | None:
    """Update ratios above 1e-2 sustained on a weight matrix; while the run is young (past its
    very first steps), above 3e-2 on every weight matrix; a loss that went back up well above
    the level it had reached; or a loss that jumped to 4x its first value."""
    weights = {
        tensor: (steps[steps >= TRANSIENT_STEPS], ratios[steps >= TRANSIENT_STEPS])
        for tensor, (steps, ratios) in _matrices(series, "update_ratio/", ctx).items()
    }
    weights = {tensor: value for tensor, value in weights.items() if len(value[0]) >= 5}
    young = any(len(steps) and steps[-1] < YOUNG_STEPS for steps, _ in weights.values())
    worst = None
    if young and weights:
        medians = {tensor: float(np.median(_recent(ratios))) for tensor, (_, ratios) in weights.items()}
        if all(median > RATIO_HIGH_YOUNG for median in medians.values()):
            tensor = min(medians, key=lambda name: medians[name])  # even the calmest layer
            steps, ratios = weights[tensor]
            worst = (tensor, medians[tensor], _since(steps, ratios > RATIO_HIGH_YOUNG), RATIO_HIGH_YOUNG)
    elif weights:
        for tensor, (steps, ratios) in weights.items():
            recent_steps, recent = _recent(steps), _recent(ratios)
            if np.mean(recent > RATIO_HIGH) >= SUSTAINED:
                median = float(np.median(recent))
                if worst is None or median > worst[1]:
                    worst = (tensor, median, _since(recent_steps, recent > RATIO_HIGH), RATIO_HIGH)
    rose = _loss_rose(series)
    spike = _loss_spike(series)
    if worst is None and rose is None and spike is None:
        return None
    evidence, names, numbers, since = [], ["loss"], {}, None
    if spike is not None:
        first, peak, spike_step = spike
        evidence.append(f"the loss jumped from {first:.3g} to {peak:.3g} at step {spike_step}")
        numbers["loss_spike"] = peak / first
        since = spike_step
    if worst is not None:
        tensor, median, since, threshold = worst
        evidence.append(
            f"update ratio {median:.1e} on {ctx.named(tensor)} since step {since} (target about {RATIO_TARGET:g}, "
            f"too high above {threshold:g})"
        )
        names.insert(0, f"update_ratio/{tensor}")
        numbers["update_ratio"] = median
    if rose is not None:
        lowest, latest, lowest_step = rose
        evidence.append(f"the loss went back up from {lowest:.3g} (step {lowest_step}) to {latest:.3g}")
        numbers["loss_rise"] = latest / max(lowest, 1e-12)
        since = lowest_step if since is None else since
    else:
        progress = _loss_progress(series)
        if progress:
            evidence.append(f"the loss is {progress[1]:.3g} (from {progress[0]:.3g})")
    factor = max(1.0, numbers.get("update_ratio", 0.0) / RATIO_TARGET, 3.0 if rose else 1.0, 10.0 if spike else 1.0)
    return Finding(
        "lr_too_high",
        "warning",
        "learning rate too high",
        "; ".join(evidence),
        f"lower optimizer.lr (now {ctx.lr:g}) by about {factor:.0f}x, or anneal it (a step or plateau schedule)",
        names,
        since,
        numbers,
    )


def learning_rate_too_low(series: Series, ctx: Context) -> Finding | None:
    """The weight matrices' update ratios below 1e-4 (the median matrix; none up to 1e-3) while
    the loss has made no real progress."""
    if ctx.optimizer == "adagrad":
        return None  # adagrad_decayed says it more precisely
    progress = _loss_progress(series)
    if progress is None or progress[1] < CONVERGED_LOSS_FRACTION * progress[0]:
        return None  # tiny updates after real progress mean convergence, not a low rate
    medians = {
        tensor: float(np.median(_recent(ratios)))
        for tensor, (steps, ratios) in _matrices(series, "update_ratio/", ctx).items()
        if len(ratios) >= 5
    }
    # most weight matrices below 1e-4 and none up to the target: in a deep network with norm
    # layers the first and last layers' ratios sit a few times above the rest (a rate 5000x too
    # low on resnet18: conv1 3e-4 and fc 1.3e-4, the 18 other convolutions 4e-6 to 2e-5)
    if not medians or float(np.median(list(medians.values()))) >= RATIO_LOW or max(medians.values()) >= RATIO_TARGET:
        return None
    median = float(np.median(list(medians.values())))
    tensor, highest = max(medians.items(), key=lambda item: item[1])
    return Finding(
        "lr_too_low",
        "warning",
        "learning rate too low",
        f"update ratios of about {median:.1e} (the median of {len(medians)} weight tensors, at most {highest:.1e} "
        f"on {ctx.named(tensor)}; target about {RATIO_TARGET:g}, too low below {RATIO_LOW:g}) while the loss "
        f"only went from {progress[0]:.3g} to {progress[1]:.3g}",
        f"raise optimizer.lr (now {ctx.lr:g}) by about {RATIO_TARGET / max(median, 1e-12):.0f}x",
        [f"update_ratio/{tensor}", "loss"],
        None,
        {"update_ratio": median},
    )


def adagrad_decayed(series: Series, ctx: Context) -> Finding | None:
    if ctx.optimizer != "adagrad":
        return None
    progress = _loss_progress(series)
    if progress is None or progress[1] < CONVERGED_LOSS_FRACTION * progress[0]:
        return None
    pairs = []
    for tensor, (_, ratios) in _matrices(series, "update_ratio/", ctx).items():
        if len(ratios) >= 10:
            pairs.append(
                (tensor, float(np.median(ratios[: max(3, len(ratios) // 10)])), float(np.median(_recent(ratios))))
            )
    # already decayed well below its start and down to about the target, with the loss far from converged
    if not pairs or not all(late < 2 * RATIO_TARGET and late * ADAGRAD_DECAY < early for _, early, late in pairs):
        return None
    tensor, early, late = pairs[0]
    return Finding(
        "adagrad_decayed",
        "warning",
        "Adagrad's learning rate has decayed to nothing",
        f"update ratio on {ctx.named(tensor)} fell from {early:.1e} to {late:.1e} while the loss is still "
        f"{progress[1]:.3g} (from {progress[0]:.3g}): Adagrad's step shrinks as squared gradients add up",
        "raise the base rate (optimizer.lr), or use rmsprop / adam, whose averages forget old gradients",
        [f"update_ratio/{tensor}", "loss"],
        None,
        {"early_ratio": early, "late_ratio": late},
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


def dead_relus(series: Series, ctx: Context) -> Finding | None:
    """Many units that never fire: 40 % of a layer; while the run is young, already 30 % and
    rising, since a unit that dies from a large update stays dead."""
    worst = None
    for layer, (steps, dead) in _per_tensor(series, "dead_fraction/").items():
        recent = float(np.median(_recent(dead)))
        young = len(steps) and steps[-1] < YOUNG_STEPS
        dying = young and recent >= DEAD_RISING and recent - float(dead[0]) >= DEAD_RISE
        if (recent >= DEAD_WARNING or dying) and (worst is None or recent > worst[1]):
            worst = (layer, recent, _since(steps, dead >= min(DEAD_WARNING, DEAD_RISING if dying else 1.0)))
    if worst is None:
        return None
    layer, fraction, since = worst
    return Finding(
        "dead_relus",
        "error" if fraction >= DEAD_ERROR else "warning",
        "dead ReLU units",
        f"{fraction:.0%} of the units of {layer} never fire over a batch, since step {since}",
        f"lower the learning rate (optimizer.lr={ctx.lr:g}; a large update can kill a unit for good), "
        "or use leaky_relu / elu, or kaiming initialisation",
        [f"dead_fraction/{layer}"],
        since,
        {"dead_fraction": fraction},
    )


def saturated_units(series: Series, ctx: Context) -> Finding | None:
    worst = None
    for layer, (steps, saturated) in _per_tensor(series, "saturated_fraction/").items():
        recent = float(np.median(_recent(saturated)))
        if recent >= SATURATED_WARNING and (worst is None or recent > worst[1]):
            worst = (layer, recent, _since(steps, saturated >= SATURATED_WARNING))
    if worst is None:
        return None
    layer, fraction, since = worst
    return Finding(
        "saturated_units",
        "warning",
        f"saturated {ctx.activation or 'tanh / sigmoid'} units",
        f"{fraction:.0%} of the outputs of {layer} are at the activation's bounds since step {since}: "
        "their gradient is about zero",
        "use a smaller initialisation (xavier_uniform for tanh), batch_norm, or relu",
        [f"saturated_fraction/{layer}"],
        since,
        {"saturated_fraction": fraction},
    )


def collapsed_activations(series: Series, ctx: Context) -> Finding | None:
    collapsed = {
        layer: float(np.median(_recent(stds)))
        for layer, (steps, stds) in _per_tensor(series, "activation_std/").items()
        if len(stds)
    }
    low = {layer: std for layer, std in collapsed.items() if std < COLLAPSED_ACTIVATION_STD}
    if not low:
        return None
    layer, std = min(low.items(), key=lambda item: item[1])
    return Finding(
        "collapsed_activations",
        "warning",
        "activations collapsed towards zero",
        f"the outputs of {layer} have a standard deviation of {std:.1e} (below {COLLAPSED_ACTIVATION_STD:g})",
        "the initialisation is too small: use xavier (tanh, sigmoid) or kaiming (relu)",
        [f"activation_std/{layer}"],
        None,
        {"activation_std": std},
    )


def symmetric_weights(series: Series, ctx: Context) -> Finding | None:
    """A hidden layer's weights all equal at step 0. Norm scales start at ones and biases at
    zeros by design, and so can the output layer (zero-initialised heads are a recipe: the
    targets tell its units apart), so only the weight matrices and embeddings before it count."""
    stds = {
        tensor: value
        for tensor, value in _per_tensor(series, "weight_std/").items()
        if ctx.kind_of(tensor) in (*MATRIX_KINDS, EMBEDDING)
    }
    ordered = _in_model_order(list(stds), ctx)
    for tensor in ordered[:-1]:
        steps, values = stds[tensor]
        if len(values) and steps[0] == 0 and values[0] == 0:
            return Finding(
                "symmetry",
                "error",
                "weights start all equal",
                f"every weight of {ctx.named(tensor)} has the same value at step 0 (standard deviation 0): "
                "all its units compute the same thing and get the same update, so they stay identical",
                "initialise with random weights (model.init xavier_uniform or kaiming_normal)",
                [f"weight_std/{tensor}"],
                0,
                {"weight_std": 0.0},
            )
    return None


def _in_model_order(tensors: list[str], ctx: Context) -> list[str]:
    if ctx.tensors:  # the model's own order
        position = {name: index for index, name in enumerate(ctx.tensors)}
        return sorted(tensors, key=lambda name: (position.get(name, len(position)), layer_order(name)))
    return sorted(tensors, key=layer_order)


def _weight_layers_in_order(series: Series, prefix: str, ctx: Context) -> list[tuple[str, float]]:
    medians = {
        tensor: float(np.median(_recent(v))) for tensor, (_, v) in _matrices(series, prefix, ctx).items() if len(v)
    }
    return [(tensor, medians[tensor]) for tensor in _in_model_order(list(medians), ctx)]


def vanishing_gradients(series: Series, ctx: Context) -> Finding | None:
    """The weight matrices' gradient norms, input to output, as one plain stack's layers. A model
    with norm layers re-scales its gradients at every one of them (the notes' cure for vanishing
    gradients), so its per-tensor norms say nothing of this and the rule stays quiet."""
    if any(ctx.kind_of(tensor) in (NORM_SCALE, NORM_SHIFT) for tensor in _per_tensor(series, "grad_norm/")):
        return None
    layers = _weight_layers_in_order(series, "grad_norm/", ctx)
    if len(layers) < 3:
        return None
    norms = [norm for _, norm in layers]
    first, last = norms[0], norms[-1]
    # far smaller at the input than at the output, and not well above the layers in between
    if last <= 0 or first / last >= VANISHING_RATIO or first > VANISHING_MEDIAN_SLACK * float(np.median(norms)):
        return None
    return Finding(
        "vanishing_gradients",
        "warning",
        "vanishing gradients",
        f"gradient norms shrink layer by layer towards the input: {ctx.named(layers[-1][0])} {last:.1e} -> "
        f"{ctx.named(layers[0][0])} {first:.1e} ({first / last:.1e} of the last layer's)",
        "use relu (or leaky_relu) with kaiming initialisation, batch_norm, or fewer layers",
        [f"grad_norm/{name}" for name, _ in layers],
        None,
        {"first_over_last": first / last},
    )


def frozen_layer(series: Series, ctx: Context) -> Finding | None:
    """Weight matrices that do not learn (requires_grad off, or left out of the optimizer) with
    learning ones before and after them in the model: a hole in the middle is a mistake, where
    a frozen backbone under a trained head (fine-tuning) is a frozen prefix and is not named."""
    order = [tensor for tensor in ctx.tensors if ctx.kind_of(tensor) in MATRIX_KINDS]
    frozen = set(ctx.frozen)
    learning = [index for index, tensor in enumerate(order) if tensor not in frozen]
    if not learning:
        return None
    hole = [tensor for tensor in order[learning[0] : learning[-1]] if tensor in frozen]
    if not hole:
        return None
    more = f" and {len(hole) - 1} more weight tensors" if len(hole) > 1 else ""
    return Finding(
        "frozen_layer",
        "warning",
        "a layer in the middle of the model does not learn",
        f"{ctx.named(hole[0])}{more} between {order[learning[0]]} and {order[learning[-1]]} get no update: "
        "requires_grad is off, or the optimizer does not step them",
        "set requires_grad=True on them, and build the optimizer over model.parameters() after changing the "
        "model (a frozen backbone under a trained head is not named)",
        [],
        0,
        {"frozen_tensors": float(len(hole))},
    )


def exploding_gradients(series: Series, ctx: Context) -> Finding | None:
    """Gradient norms that grew EXPLODING_FACTOR x and became as large as the weights themselves
    (growth alone is normal when training starts from tiny weights)."""
    worst = None
    weight_norms = _per_tensor(series, "weight_norm/")
    for tensor, (steps, norms) in _matrices(series, "grad_norm/", ctx).items():
        weights = dict(zip(*weight_norms.get(tensor, (np.empty(0), np.empty(0)))))
        if len(norms) < 3 or norms[0] <= 0:
            continue
        peak_index = int(np.argmax(norms))
        growth = float(norms[peak_index]) / float(norms[0])
        weight = weights.get(steps[peak_index], math.inf)
        if growth >= EXPLODING_FACTOR and norms[peak_index] >= weight and (worst is None or growth > worst[1]):
            worst = (tensor, growth, int(steps[peak_index]), float(norms[0]), float(norms[peak_index]))
    if worst is None:
        return None
    tensor, growth, step, start, peak = worst
    return Finding(
        "exploding_gradients",
        "warning",
        "exploding gradients",
        f"the gradient norm of {ctx.named(tensor)} reached {peak:.2e} at step {step}, {growth:.0f}x its first value "
        f"{start:.2e} and as large as the weights",
        f"lower the learning rate (optimizer.lr={ctx.lr:g}), clip gradients, or normalise (batch_norm)",
        [f"grad_norm/{tensor}", f"weight_norm/{tensor}"],
        step,
        {"growth": growth},
    )


def gradients_accumulate(series: Series, ctx: Context) -> Finding | None:
    """optimizer.zero_grad() forgotten: at most measured steps, the gradient the optimizer steps
    with holds more than what the backward passes since the last step brought."""
    steps, carried = _finite(*series.get(CARRIED_GRADIENT_KEY, (np.empty(0), np.empty(0))))
    # two measurements suffice: a zeroed gradient leaves 1e-6 at most, a carried one a share of 0.3 and more
    if len(carried) < 2 or np.mean(carried > CARRIED_GRADIENT) < SUSTAINED:
        return None
    since = _since(steps, carried > CARRIED_GRADIENT)
    share = float(np.median(carried))
    return Finding(
        "gradients_accumulate",
        "error",
        "gradients accumulate across steps",
        f"at {int(np.sum(carried > CARRIED_GRADIENT))} of {len(carried)} measured steps since step {since}, "
        f"{share:.0%} of the gradient the optimizer stepped with was left from earlier steps "
        "(the backward passes since the last step brought the rest)",
        "call optimizer.zero_grad() before each backward() (or after each step): each gradient is "
        "summed onto all those before it; for gradient accumulation on purpose, zero them every N steps",
        [CARRIED_GRADIENT_KEY, "loss"],
        since,
        {"carried": share},
    )


def evaluated_in_train_mode(series: Series, ctx: Context) -> Finding | None:
    """model.eval() forgotten: forward passes without gradients (an evaluation) through a model in
    training mode that has dropout or batch norm (trainwatch.watch counts them)."""
    steps, passes = _finite(*series.get(EVAL_IN_TRAIN_MODE_KEY, (np.empty(0), np.empty(0))))
    if not len(passes) or passes.sum() <= 0:
        return None
    first = int(steps[np.argmax(passes > 0)])
    return Finding(
        "eval_in_train_mode",
        "warning",
        "evaluated in training mode",
        f"{int(passes.sum())} forward passes without gradients (an evaluation) ran with the model in training "
        f"mode, its dropout dropping units and its batch norm updating its statistics, first at step {first}",
        "call model.eval() before evaluating and model.train() after: the validation figures are of a "
        "model that drops units at random (and batch norm learns the validation data's statistics)",
        [EVAL_IN_TRAIN_MODE_KEY, "val_acc"],
        first,
        {"passes": float(passes.sum())},
    )


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


def first_layer_noise(series: Series, ctx: Context) -> Finding | None:
    """The first layer's filters still white noise from the third epoch on (two measurements at
    least; three when the epochs are not known): the layer has not learnt from the input at all."""
    steps, roughness = _finite(*series.get(ROUGHNESS_KEY, (np.empty(0), np.empty(0))))
    needed = 2
    if ctx.steps_per_epoch:
        late = steps >= FILTERS_FROM_EPOCH * ctx.steps_per_epoch
        steps, roughness = steps[late], roughness[late]
    else:
        needed = 3
    if len(roughness) < needed or float(np.min(roughness)) < FILTERS_NOISE:
        return None
    return Finding(
        "first_layer_noise",
        "warning",
        "the first layer's filters are still noise",
        f"the first layer's filters have a roughness of {float(roughness[-1]):.3f} at step {int(steps[-1])} "
        f"(white noise 1.0, noise above {FILTERS_NOISE:g}; smooth filters below {FILTERS_SMOOTH:g}): the layer has "
        "not moved from its random start",
        "if the loss falls, the gradient does not reach the first layer (see the gradient norms per "
        f"layer); if it does not, raise optimizer.lr (now {ctx.lr:g}) or train longer",
        [ROUGHNESS_KEY, "loss"],
        int(steps[0]),
        {"roughness": float(roughness[-1])},
    )


RULES = (
    divergence,
    learning_rate_too_high,
    learning_rate_too_low,
    adagrad_decayed,
    overfitting,
    underfitting,
    dead_relus,
    saturated_units,
    collapsed_activations,
    symmetric_weights,
    frozen_layer,
    vanishing_gradients,
    exploding_gradients,
    gradients_accumulate,
    evaluated_in_train_mode,
    initial_loss_off,
    validation_stalled,
    initial_plateau,
    loss_plateau,
    loss_linear,
    noisy_loss,
    validation_loss_stuck,
    first_layer_noise,
)


def diagnose(series: Series, ctx: Context) -> list[Finding]:
    """Every rule's finding, the most severe first. After a divergence the other rules
    read only what came before it (NaN weights would look like dead units)."""
    diverged = divergence(series, ctx)
    if diverged is not None and diverged.step is not None:
        series = {
            key: (steps[steps < diverged.step], values[steps < diverged.step])
            for key, (steps, values) in series.items()
        }
    findings = [diverged] if diverged else []
    # a finding names the cause, not a bystander: a divergence names the rate already (the
    # loss's climb to inf is not a second finding), and gradients summed over every step make
    # the updates and gradients huge whatever the rate
    bystanders: set[Any] = {learning_rate_too_high} if diverged else set()
    if gradients_accumulate(series, ctx) is not None:
        bystanders |= {learning_rate_too_high, exploding_gradients}
    rules = [rule for rule in RULES[1:] if rule not in bystanders]
    findings += [finding for rule in rules if (finding := rule(series, ctx)) is not None]
    return sorted(findings, key=lambda f: -SEVERITY_ORDER[f.severity])


@dataclass(frozen=True)
class Requirement:
    """Something a rule reads: in words, whether a run offers it (its series keys, a prefix
    ending in '/' standing for every tensor's, and its context), and how a script gives it."""

    needs: str
    how: str
    offered: Any  # (keys: set of series keys and prefixes, ctx) -> bool


def _has(*keys: str) -> Any:
    return lambda offered, ctx: all(key in offered for key in keys)


# the activation rules read dead or saturated fractions, or the spread of activations: which
# of them a model has depends on its activations (a GELU model has no dead ReLUs to count), so
# they wait only on a run that measured no activation at all
_ACTIVATIONS = ("dead_fraction/", "saturated_fraction/", "activation_std/")
WATCH = "run.watch(model, optimizer)"
REQUIREMENTS = {
    "loss": Requirement("the training loss", "log it every step: run.log({'loss': loss})", _has("loss")),
    "accuracies": Requirement(
        "train_acc and val_acc",
        "log both at each validation: run.log({'train_acc': ..., 'val_acc': ...})",
        _has("train_acc", "val_acc"),
    ),
    "val_acc": Requirement("val_acc", "log it at each validation: run.log({'val_acc': ...})", _has("val_acc")),
    "val_loss": Requirement("val_loss", "log it at each validation: run.log({'val_loss': ...})", _has("val_loss")),
    "ratios": Requirement("update-to-weight ratios", f"watch the model: {WATCH}", _has("update_ratio/")),
    "gradients": Requirement("gradient norms per layer", f"watch the model: {WATCH}", _has("grad_norm/")),
    "weights": Requirement(
        "weight histograms", f"{WATCH} with histogram_every above 0 (the default: 250)", _has("weight_std/")
    ),
    "activations": Requirement(
        "activation histograms",
        f"{WATCH} with histogram_every above 0, the activations being modules (nn.ReLU, nn.Tanh; "
        "F.relu inside a forward has no module to measure)",
        lambda offered, ctx: any(prefix in offered for prefix in _ACTIVATIONS),
    ),
    "carried": Requirement(
        "the gradient carried over between steps", f"watch the model: {WATCH}", _has(CARRIED_GRADIENT_KEY)
    ),
    "classes": Requirement(
        "the loss function and the number of classes",
        "run.watch(model, optimizer, loss='cross_entropy', classes=10)",
        lambda offered, ctx: ctx.classes is not None,
    ),
}
# rule -> what it reads (adagrad_decayed only on Adagrad, gradients_accumulate and
# eval_in_train_mode, measured by run.watch, only in a script's own loop; first_layer_noise only where the
# first layer's filters are large enough to judge, which is no promise a script can keep)
RULE_NEEDS: dict[str, tuple[str, ...]] = {
    "divergence": ("loss",),
    "lr_too_high": ("loss", "ratios"),
    "lr_too_low": ("ratios",),
    "adagrad_decayed": ("ratios", "accuracies"),
    "overfitting": ("accuracies",),
    "underfitting": ("accuracies",),
    "dead_relus": ("activations",),
    "saturated_units": ("activations",),
    "collapsed_activations": ("activations",),
    "symmetry": ("weights",),
    "frozen_layer": ("ratios",),
    "vanishing_gradients": ("gradients",),
    "exploding_gradients": ("gradients",),
    "gradients_accumulate": ("carried",),
    "eval_in_train_mode": ("ratios",),
    "initial_loss": ("loss", "classes"),
    "validation_stalled": ("val_acc",),
    "initial_plateau": ("loss",),
    "loss_plateau": ("loss",),
    "loss_linear": ("loss",),
    "noisy_loss": ("loss",),
    "val_loss_stuck": ("val_loss", "loss"),
}


def waiting_rules(keys: Any, ctx: Context) -> list[WaitingRules]:
    """The rules that cannot read this run (yet), grouped by what they miss: from the series
    keys it has (a per-tensor key counts for its prefix) and its context."""
    offered = set(keys) | {key.split("/", 1)[0] + "/" for key in keys if "/" in key}
    waiting: dict[str, list[str]] = {}
    for rule, needs in RULE_NEEDS.items():
        if (rule == "adagrad_decayed" and ctx.optimizer != "adagrad") or (
            rule in ("gradients_accumulate", "eval_in_train_mode") and not ctx.own_loop  # the trainer does it right
        ):
            continue
        for need in needs:
            if not REQUIREMENTS[need].offered(offered, ctx):
                waiting.setdefault(need, []).append(rule)
    return [
        WaitingRules(needs=REQUIREMENTS[need].needs, how=REQUIREMENTS[need].how, rules=rules)
        for need, rules in waiting.items()
    ]


def health(findings: list[Finding]) -> str:
    """ok, or the worst finding's severity."""
    return max((f.severity for f in findings), key=lambda severity: SEVERITY_ORDER[severity], default="ok")


def check_findings(checks: CheckResults | None) -> list[Finding]:
    """Findings from a preflight's or a check job's results: a failed sanity check, a
    gradient check worse than ok."""
    if not checks:
        return []
    findings = [
        Finding(
            "check",
            "warning",
            f"sanity check failed: {c['name']}",
            c["message"],
            "fix this before training on all the data",
            [],
            None,
            c["numbers"],
        )
        for c in checks.get("sanity", [])
        if not c["passed"]
    ]
    for part in checks.get("gradient", []):
        if part["verdict"] not in ("good", "ok"):
            worst = max(part["tensors"], key=lambda t: t["max_relative_error"])
            findings.append(
                Finding(
                    "gradient_check",
                    "error" if part["verdict"] == "wrong" else "warning",
                    f"gradient check of the {part['part']}: {part['verdict']}",
                    f"max relative error {worst['max_relative_error']:.2e} on {worst['tensor']} "
                    f"({worst['dims_checked']} dimensions, {worst['kink_crossings']} kink crossings)",
                    "a wrong analytic gradient: check custom layers and losses; try a larger h before blaming the code",
                    [],
                    None,
                    {"max_relative_error": worst["max_relative_error"]},
                )
            )
    return findings


def histogram_series(summaries: list[tuple[str, int, float, int]]) -> Series:
    """activation_std/<layer> and weight_std/<tensor> series from (histogram key, step, std,
    NaN and infinite values), and nonfinite/<histogram key> where a tensor held such values."""
    collected: dict[str, tuple[list[int], list[float]]] = {}
    for key, step, std, nonfinite in sorted(summaries, key=lambda item: (item[0], item[1])):
        kind, _, name = key.partition("/")
        if nonfinite:
            steps, values = collected.setdefault(f"{NONFINITE}{key}", ([], []))
            steps.append(step)
            values.append(float(nonfinite))
        elif kind in ("activation", "weight"):
            steps, values = collected.setdefault(f"{kind}_std/{name}", ([], []))
            steps.append(step)
            values.append(std)
    return {
        key: (np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64))
        for key, (steps, values) in collected.items()
    }
