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
OVERFIT_GAP_GROWTH = 0.03  # ... and grown by this much since its early epochs
VAL_LOSS_RISE = 1.05  # ... or the validation loss 5 % above its minimum ...
MEMORISED = 0.99  # ... or the training set learnt by heart
UNDERFIT_ACCURACY = 0.80  # both accuracies below this ...
UNDERFIT_GAP = 0.05  # ... and this close together
MIN_EPOCHS_FOR_ACCURACY_RULES = 5
DEAD_WARNING = 0.40  # "with a large learning rate as many as 40% of ReLU units can die"
DEAD_ERROR = 0.90
SATURATED_WARNING = 0.50
COLLAPSED_ACTIVATION_STD = 0.05  # activations all near 0 (too small an initialisation)
VANISHING_RATIO = 1e-2  # gradient norm of the first weight layer / the last one
EXPLODING_FACTOR = 100.0  # gradient norm grew this many times its first value
INITIAL_LOSS_TOLERANCE = 0.5  # relative distance of the first loss from ln(C) (or C - 1)
ADAGRAD_DECAY = 3.0  # Adagrad's update ratio fell this many times while the loss has not converged
STALL_EPOCHS = 10  # best validation accuracy not improved for this many epochs ...
STALL_FRACTION = 0.25  # ... and for this fraction of the epochs so far


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

    @classmethod
    def from_config(cls, config: dict[str, Any], steps_per_epoch: int, status: str = "running",
                    message: str = "") -> Context:
        data = config.get("data", {})
        name = data.get("name", "digits")
        classes = {"digits": 10, "mnist": 10, "cifar10": 10, "moons": 2}.get(name, data.get("classes"))
        return cls(config.get("optimizer", {}).get("name", "sgd"), float(config.get("optimizer", {}).get("lr", 0.0)),
                   config.get("loss", "cross_entropy"), classes, config.get("model", {}).get("activation", "relu"),
                   max(1, steps_per_epoch), status, message)

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _recent(values: np.ndarray) -> np.ndarray:
    n = len(values)
    return values[max(0, n - max(5, int(math.ceil(n * RECENT)))):]


def _finite(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(values)
    return steps[keep], values[keep]


def _per_tensor(series: Series, prefix: str, suffix: str = "") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {key[len(prefix):]: _finite(*value) for key, value in series.items()
            if key.startswith(prefix) and key.endswith(suffix) and len(value[0])}


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
    steps, losses = _finite(*series["loss"])
    if len(losses) < 10:
        return None
    return float(losses[0]), float(np.median(_recent(losses)))


# --------------------------------------------------------------------------
# rules


def divergence(series: Series, ctx: Context) -> Finding | None:
    steps, losses = series.get("loss", (np.empty(0), np.empty(0)))
    bad = ~np.isfinite(losses)
    if not bad.any() and ctx.status != "diverged":
        return None
    step = int(steps[np.argmax(bad)]) if bad.any() else None
    what = f"the loss became {losses[np.argmax(bad)]} at step {step}" if bad.any() else ctx.message
    return Finding("divergence", "error", "training diverged", f"{what} (loss series)",
                   f"lower the base learning rate (optimizer.lr={ctx.lr:g}, e.g. to {ctx.lr / 10:g}) and restart",
                   ["loss"], step)


def learning_rate_too_high(series: Series, ctx: Context) -> Finding | None:
    worst = None
    for tensor, (steps, ratios) in _per_tensor(series, "update_ratio/", ".weight").items():
        recent_steps, recent = _recent(steps), _recent(ratios)
        if len(recent) >= 5 and np.mean(recent > RATIO_HIGH) >= SUSTAINED:
            median = float(np.median(recent))
            if worst is None or median > worst[1]:
                worst = (tensor, median, _since(recent_steps, recent > RATIO_HIGH))
    if worst is None:
        return None
    tensor, median, since = worst
    progress = _loss_progress(series)
    stuck = f"; the loss is still {progress[1]:.3g} (from {progress[0]:.3g})" if progress else ""
    return Finding("lr_too_high", "warning", "learning rate too high",
                   f"update ratio {median:.1e} on {tensor} since step {since} (target about {RATIO_TARGET:g}, "
                   f"too high above {RATIO_HIGH:g}){stuck}",
                   f"lower optimizer.lr (now {ctx.lr:g}) by about {max(1.0, median / RATIO_TARGET):.0f}x, "
                   f"or anneal it (a step or plateau schedule)",
                   [f"update_ratio/{tensor}", "loss"], since, {"update_ratio": median})


def learning_rate_too_low(series: Series, ctx: Context) -> Finding | None:
    if ctx.optimizer == "adagrad":
        return None  # adagrad_decayed says it more precisely
    progress = _loss_progress(series)
    if progress is None or progress[1] < CONVERGED_LOSS_FRACTION * progress[0]:
        return None  # tiny updates after real progress mean convergence, not a low rate
    medians = {tensor: float(np.median(_recent(ratios)))
               for tensor, (steps, ratios) in _per_tensor(series, "update_ratio/", ".weight").items() if len(ratios) >= 5}
    if not medians or not all(m < RATIO_LOW for m in medians.values()):
        return None
    tensor, median = max(medians.items(), key=lambda item: item[1])
    return Finding("lr_too_low", "warning", "learning rate too low",
                   f"update ratios at most {median:.1e} (on {tensor}; target about {RATIO_TARGET:g}, too low below "
                   f"{RATIO_LOW:g}) while the loss only went from {progress[0]:.3g} to {progress[1]:.3g}",
                   f"raise optimizer.lr (now {ctx.lr:g}) by about {RATIO_TARGET / max(median, 1e-12):.0f}x",
                   [f"update_ratio/{tensor}", "loss"], None, {"update_ratio": median})


def adagrad_decayed(series: Series, ctx: Context) -> Finding | None:
    if ctx.optimizer != "adagrad":
        return None
    progress = _loss_progress(series)
    if progress is None or progress[1] < CONVERGED_LOSS_FRACTION * progress[0]:
        return None
    pairs = []
    for tensor, (steps, ratios) in _per_tensor(series, "update_ratio/", ".weight").items():
        if len(ratios) >= 10:
            pairs.append((tensor, float(np.median(ratios[:max(3, len(ratios) // 10)])), float(np.median(_recent(ratios)))))
    if not pairs or not all(late < RATIO_TARGET and late * ADAGRAD_DECAY < early for _, early, late in pairs):
        return None
    tensor, early, late = pairs[0]
    return Finding("adagrad_decayed", "warning", "Adagrad's learning rate has decayed to nothing",
                   f"update ratio on {tensor} fell from {early:.1e} to {late:.1e} while the loss is still "
                   f"{progress[1]:.3g} (from {progress[0]:.3g}): Adagrad's step shrinks as squared gradients add up",
                   "raise the base rate (optimizer.lr), or use rmsprop / adam, whose averages forget old gradients",
                   [f"update_ratio/{tensor}", "loss"], None, {"early_ratio": early, "late_ratio": late})


def _accuracies(series: Series) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    if "train_acc" not in series or "val_acc" not in series:
        return None
    steps, train = series["train_acc"]
    _, val = series["val_acc"]
    n = min(len(train), len(val))
    if n < MIN_EPOCHS_FOR_ACCURACY_RULES:
        return None
    return steps[:n], train[:n], val[:n]


def overfitting(series: Series, ctx: Context) -> Finding | None:
    """A large train-validation gap that grew, or with a validation loss rising from its minimum,
    or with the training set learnt by heart."""
    accuracies = _accuracies(series)
    if accuracies is None:
        return None
    steps, train, val = accuracies
    gap = train - val
    early = float(np.min(gap[:max(1, len(gap) // 5)]))  # the smallest gap of the first fifth of the epochs
    late = float(np.median(_recent(gap)))
    _, val_loss = series.get("val_loss", (np.empty(0), np.empty(0)))
    rising = ""
    if len(val_loss) >= MIN_EPOCHS_FOR_ACCURACY_RULES:
        lowest, recent_loss = float(np.min(val_loss)), float(np.median(_recent(val_loss)))
        if recent_loss > VAL_LOSS_RISE * lowest:
            rising = f"; the validation loss rose from {lowest:.3g} (epoch {int(np.argmin(val_loss)) + 1}) to {recent_loss:.3g}"
    memorised = float(np.median(_recent(train))) >= MEMORISED
    if late < OVERFIT_GAP or (late - early < OVERFIT_GAP_GROWTH and not rising and not memorised):
        return None
    return Finding("overfitting", "warning", "overfitting",
                   f"train accuracy {train[-1]:.3f} vs validation {val[-1]:.3f} at epoch {ctx.epoch_of(int(steps[-1])):.0f}: "
                   f"a gap of {late:.2f} (at least {early:.2f} in the early epochs){rising}",
                   "regularise more (optimizer.weight_decay, model.dropout), get more data, or stop earlier",
                   ["train_acc", "val_acc", "val_loss"], int(steps[-1]), {"gap": late, "early_gap": early})


def underfitting(series: Series, ctx: Context) -> Finding | None:
    accuracies = _accuracies(series)
    if accuracies is None:
        return None
    steps, train, val = accuracies
    recent_train, recent_val = float(np.median(_recent(train))), float(np.median(_recent(val)))
    if recent_train >= UNDERFIT_ACCURACY or abs(recent_train - recent_val) > UNDERFIT_GAP:
        return None
    return Finding("underfitting", "warning", "underfitting",
                   f"train accuracy {recent_train:.3f} and validation {recent_val:.3f} are both low and close",
                   "give the model more capacity (model.hidden), train longer, or check the learning rate",
                   ["train_acc", "val_acc"], int(steps[-1]), {"train_acc": recent_train, "val_acc": recent_val})


def dead_relus(series: Series, ctx: Context) -> Finding | None:
    worst = None
    for layer, (steps, dead) in _per_tensor(series, "dead_fraction/").items():
        recent = float(np.median(_recent(dead)))
        if recent >= DEAD_WARNING and (worst is None or recent > worst[1]):
            past = dead >= DEAD_WARNING
            worst = (layer, recent, _since(steps, past))
    if worst is None:
        return None
    layer, fraction, since = worst
    return Finding("dead_relus", "error" if fraction >= DEAD_ERROR else "warning", "dead ReLU units",
                   f"{fraction:.0%} of the units of {layer} never fire over a batch, since step {since}",
                   f"lower the learning rate (optimizer.lr={ctx.lr:g}; a large update can kill a unit for good), "
                   "or use leaky_relu / elu, or kaiming initialisation",
                   [f"dead_fraction/{layer}"], since, {"dead_fraction": fraction})


def saturated_units(series: Series, ctx: Context) -> Finding | None:
    worst = None
    for layer, (steps, saturated) in _per_tensor(series, "saturated_fraction/").items():
        recent = float(np.median(_recent(saturated)))
        if recent >= SATURATED_WARNING and (worst is None or recent > worst[1]):
            worst = (layer, recent, _since(steps, saturated >= SATURATED_WARNING))
    if worst is None:
        return None
    layer, fraction, since = worst
    return Finding("saturated_units", "warning", f"saturated {ctx.activation} units",
                   f"{fraction:.0%} of the outputs of {layer} are at the activation's bounds since step {since}: "
                   "their gradient is about zero",
                   "use a smaller initialisation (xavier_uniform for tanh), batch_norm, or relu",
                   [f"saturated_fraction/{layer}"], since, {"saturated_fraction": fraction})


def collapsed_activations(series: Series, ctx: Context) -> Finding | None:
    collapsed = {layer: float(np.median(_recent(stds))) for layer, (steps, stds) in
                 _per_tensor(series, "activation_std/").items() if len(stds)}
    low = {layer: std for layer, std in collapsed.items() if std < COLLAPSED_ACTIVATION_STD}
    if not low:
        return None
    layer, std = min(low.items(), key=lambda item: item[1])
    return Finding("collapsed_activations", "warning", "activations collapsed towards zero",
                   f"the outputs of {layer} have a standard deviation of {std:.1e} (below {COLLAPSED_ACTIVATION_STD:g})",
                   "the initialisation is too small: use xavier (tanh, sigmoid) or kaiming (relu)",
                   [f"activation_std/{layer}"], None, {"activation_std": std})


def symmetric_weights(series: Series, ctx: Context) -> Finding | None:
    for tensor, (steps, stds) in _per_tensor(series, "weight_std/", ".weight").items():
        if len(stds) and steps[0] == 0 and stds[0] == 0:
            return Finding("symmetry", "error", "weights start all equal",
                           f"every weight of {tensor} has the same value at step 0 (standard deviation 0): "
                           "all its units compute the same thing and get the same update, so they stay identical",
                           "initialise with random weights (model.init xavier_uniform or kaiming_normal)",
                           [f"weight_std/{tensor}"], 0, {"weight_std": 0.0})
    return None


def _weight_layers_in_order(series: Series, prefix: str) -> list[tuple[str, float]]:
    from trainer.models import layer_order

    values = [(tensor, float(np.median(_recent(v)))) for tensor, (s, v) in
              _per_tensor(series, prefix, ".weight").items() if len(v)]
    return sorted(values, key=lambda item: layer_order(item[0]))


def vanishing_gradients(series: Series, ctx: Context) -> Finding | None:
    layers = _weight_layers_in_order(series, "grad_norm/")
    if len(layers) < 3:
        return None
    norms = [norm for _, norm in layers]
    first, last = norms[0], norms[-1]
    # far smaller at the input than at the output, and no larger than the layers in between
    if last <= 0 or first / last >= VANISHING_RATIO or first > float(np.median(norms)):
        return None
    return Finding("vanishing_gradients", "warning", "vanishing gradients",
                   f"gradient norms shrink layer by layer towards the input: {layers[-1][0]} {last:.1e} -> "
                   f"{layers[0][0]} {first:.1e} ({first / last:.1e} of the last layer's)",
                   "use relu (or leaky_relu) with kaiming initialisation, batch_norm, or fewer layers",
                   [f"grad_norm/{name}" for name, _ in layers], None, {"first_over_last": first / last})


def exploding_gradients(series: Series, ctx: Context) -> Finding | None:
    """Gradient norms that grew EXPLODING_FACTOR x and became as large as the weights themselves
    (growth alone is normal when training starts from tiny weights)."""
    worst = None
    for tensor, (steps, norms) in _per_tensor(series, "grad_norm/", ".weight").items():
        weights = dict(zip(*_per_tensor(series, "weight_norm/", ".weight").get(tensor, (np.empty(0), np.empty(0)))))
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
    return Finding("exploding_gradients", "warning", "exploding gradients",
                   f"the gradient norm of {tensor} reached {peak:.2e} at step {step}, {growth:.0f}x its first value "
                   f"{start:.2e} and as large as the weights",
                   f"lower the learning rate (optimizer.lr={ctx.lr:g}), clip gradients, or normalise (batch_norm)",
                   [f"grad_norm/{tensor}", f"weight_norm/{tensor}"], step, {"growth": growth})


def initial_loss_off(series: Series, ctx: Context) -> Finding | None:
    if ctx.classes is None or "loss" not in series or not len(series["loss"][1]):
        return None
    first = float(series["loss"][1][0])
    expected = math.log(ctx.classes) if ctx.loss == "cross_entropy" else ctx.classes - 1.0
    if not math.isfinite(first) or abs(first - expected) <= INITIAL_LOSS_TOLERANCE * expected:
        return None
    formula = f"ln({ctx.classes})" if ctx.loss == "cross_entropy" else f"{ctx.classes} - 1"
    return Finding("initial_loss", "warning", "initial loss far from its expected value",
                   f"the first loss is {first:.4g}; with small random weights it should be about {formula} = {expected:.3g}",
                   "check the initialisation (too large weights give confident wrong scores) and the loss",
                   ["loss"], 0, {"first_loss": first, "expected": expected})


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
    return Finding("validation_stalled", "info", "best validation accuracy has stalled",
                   f"best validation accuracy {val[best_index]:.4f} at epoch {best_index + 1}, not improved for {since} epochs",
                   "anneal the learning rate (a step or plateau schedule) or stop the run here",
                   ["val_acc"], int(steps[best_index]), {"best": float(val[best_index]), "epochs_since": float(since)})


RULES = (divergence, learning_rate_too_high, learning_rate_too_low, adagrad_decayed, overfitting, underfitting,
         dead_relus, saturated_units, collapsed_activations, symmetric_weights, vanishing_gradients,
         exploding_gradients, initial_loss_off, validation_stalled)


def diagnose(series: Series, ctx: Context) -> list[Finding]:
    """Every rule's finding, the most severe first. After a divergence the other rules
    read only what came before it (NaN weights would look like dead units)."""
    diverged = divergence(series, ctx)
    if diverged is not None and diverged.step is not None:
        series = {key: (steps[steps < diverged.step], values[steps < diverged.step])
                  for key, (steps, values) in series.items()}
    findings = [diverged] if diverged else []
    findings += [finding for rule in RULES[1:] if (finding := rule(series, ctx)) is not None]
    return sorted(findings, key=lambda f: -SEVERITY_ORDER[f.severity])


def health(findings: list[Finding]) -> str:
    """ok, or the worst finding's severity."""
    return max((f.severity for f in findings), key=SEVERITY_ORDER.get, default="ok")


def histogram_series(summaries: list[tuple[str, int, float]]) -> Series:
    """activation_std/<layer> and weight_std/<tensor> series from (histogram key, step, std)."""
    collected: dict[str, tuple[list[int], list[float]]] = {}
    for key, step, std in sorted(summaries, key=lambda item: (item[0], item[1])):
        kind, _, name = key.partition("/")
        if kind in ("activation", "weight"):
            steps, values = collected.setdefault(f"{kind}_std/{name}", ([], []))
            steps.append(step)
            values.append(std)
    return {key: (np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64))
            for key, (steps, values) in collected.items()}
