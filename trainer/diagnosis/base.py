"""What every rule reads and returns: the series, the run's context, a finding, and the
small helpers over series (recent window, finite points, per-tensor keys, model order).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from trainer.config import RunConfig
from trainer.diagnosis.thresholds import RECENT, SUSTAINED
from trainer.payloads import FindingDict
from trainer.tensor_names import KIND_WORDS, MATRIX_KINDS, kind_from_name, layer_order

Series = dict[str, tuple[np.ndarray, np.ndarray]]

SEVERITY_ORDER = {"info": 1, "warning": 2, "error": 3}


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
