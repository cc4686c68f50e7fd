"""Studies: the specification of a set of runs, and the pure logic around it.

A spec (JSON, or YAML through the CLI) is validated here, expanded into run configs,
narrowed between the stages of a coarse-to-fine search, and read back for the edge
warning. The tracker stores studies and dispatches their runs; nothing here touches a
database. See docs/training-dynamics.md, section 6, and docs/studies.md.

    {"kind": "comparison", "base": {...}, "seeds": 3,
     "choices": {"optimizer": [{"name": "sgd"}, {"name": "adam"}], "schedule.name": ["step", "exp"]}}
    {"kind": "random", "base": {...}, "runs": 20,
     "params": {"optimizer.lr": {"distribution": "log_uniform", "low": 1e-6, "high": 10}}}
    {"kind": "grid", "base": {...}, "choices": {"optimizer.lr": [0.1, 0.01], "batch_size": [32, 64]}}
    {"kind": "coarse_to_fine", "base": {...}, "params": {...}, "top_k": 3,
     "stages": [{"runs": 20, "epochs": 1}, {"runs": 10, "epochs": 10}]}
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import numpy as np
import yaml

from trainer import safe_json
from trainer.config import ConfigError, RunConfig

# a generated config -> the config to queue (validated and resolved), or ConfigError naming each field
Resolver = Callable[[dict[str, Any]], dict[str, Any]]

KINDS = ("comparison", "random", "grid", "coarse_to_fine")
DISTRIBUTIONS = ("log_uniform", "uniform", "int", "log_int", "choice")
MAX_RUNS = 500
MAX_SEEDS = 20
MAX_STAGES = 5
MAX_CHOICES = 50
SPEC_KEYS = (
    "kind",
    "base",
    "seeds",
    "choices",
    "params",
    "runs",
    "stages",
    "top_k",
    "early_stopping",
    "ensemble_k",
    "sample_seed",
)
EARLY_STOPPING_RULES = ("median",)
# the best value within this fraction of a searched range (in log space for log
# distributions) from either end "sits on the edge": the optimum may lie outside
EDGE_FRACTION = 0.1
# coarse-to-fine: the new range spans the top-k values plus this fraction of their
# spread on each side (at least this fraction of the old range when they coincide)
NARROW_MARGIN = 0.25


@dataclass(frozen=True)
class Param:
    key: str  # dotted config path, e.g. optimizer.lr
    distribution: str
    low: float = 0.0  # low and high: of the numeric distributions
    high: float = 0.0
    values: tuple[Any, ...] = ()  # of a choice

    @property
    def log(self) -> bool:
        return self.distribution in ("log_uniform", "log_int")

    @property
    def numeric(self) -> bool:
        return self.distribution != "choice"

    def to_dict(self) -> dict[str, Any]:
        if self.distribution == "choice":
            return {"distribution": "choice", "values": list(self.values)}
        return {"distribution": self.distribution, "low": self.low, "high": self.high}

    def sample(self, rng: np.random.Generator) -> Any:
        if self.distribution == "choice":
            return copy.deepcopy(self.values[int(rng.integers(len(self.values)))])
        if self.distribution == "uniform":
            return float(rng.uniform(self.low, self.high))
        if self.distribution == "log_uniform":
            return float(10 ** rng.uniform(math.log10(self.low), math.log10(self.high)))
        if self.distribution == "int":
            return int(rng.integers(int(self.low), int(self.high) + 1))
        # log_int: e.g. a hidden width from 16 to 1024, each octave as likely
        return int(round(2 ** rng.uniform(math.log2(self.low), math.log2(self.high))))

    def position(self, value: float) -> float:
        """Where `value` sits in the range: 0 at low, 1 at high (log space for log params)."""
        if self.log:
            return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low)


@dataclass(frozen=True)
class Stage:
    runs: int
    epochs: int | None = None  # None: the base config's


@dataclass(frozen=True)
class EarlyStopping:
    rule: str = "median"
    min_epochs: int = 2  # never judged before this many epochs
    min_runs: int = 3  # other runs that reached the epoch, for the median to mean something


@dataclass(frozen=True)
class StudySpec:
    kind: str
    base: dict[str, Any]
    seeds: int = 1
    choices: dict[str, tuple] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    stages: tuple[Stage, ...] = ()
    top_k: int = 3
    early_stopping: EarlyStopping | None = None
    ensemble_k: int = 0
    sample_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "base": self.base,
            "seeds": self.seeds,
            "top_k": self.top_k,
            "ensemble_k": self.ensemble_k,
            "sample_seed": self.sample_seed,
        }
        if self.choices:
            out["choices"] = {key: list(values) for key, values in self.choices.items()}
        if self.params:
            out["params"] = {p.key: p.to_dict() for p in self.params}
        if self.stages:
            out["stages"] = [{"runs": s.runs, **({"epochs": s.epochs} if s.epochs else {})} for s in self.stages]
        if self.early_stopping:
            out["early_stopping"] = {
                "rule": self.early_stopping.rule,
                "min_epochs": self.early_stopping.min_epochs,
                "min_runs": self.early_stopping.min_runs,
            }
        return out

    @property
    def log_keys(self) -> tuple[str, ...]:
        return tuple(p.key for p in self.params if p.log)


@dataclass(frozen=True)
class PlannedRun:
    """One run a study will queue: its name, config and the values that vary."""

    name: str
    config: dict[str, Any]
    values: dict[str, Any]  # dotted key -> value, what the study varied (seed included)


# --- parsing ------------------------------------------------------------------


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _parse_param(key: str, raw: Any, errors: dict[str, str]) -> Param | None:
    where = f"params.{key}"
    if not isinstance(raw, dict):
        errors[where] = f"must be an object with a distribution ({', '.join(DISTRIBUTIONS)}); got {raw!r}"
        return None
    distribution = raw.get("distribution")
    if distribution not in DISTRIBUTIONS:
        errors[f"{where}.distribution"] = f"must be one of {', '.join(DISTRIBUTIONS)}; got {distribution!r}"
        return None
    allowed = {"distribution", "values"} if distribution == "choice" else {"distribution", "low", "high"}
    for unknown in sorted(set(raw) - allowed):
        errors[f"{where}.{unknown}"] = f"unknown setting for {distribution}; allowed: {', '.join(sorted(allowed))}"
    if distribution == "choice":
        values = raw.get("values")
        if not isinstance(values, list) or not 1 <= len(values) <= MAX_CHOICES:
            errors[f"{where}.values"] = f"must be a list of 1 to {MAX_CHOICES} values"
            return None
        return Param(key, distribution, values=tuple(values))
    low, high = raw.get("low"), raw.get("high")
    for name, value in (("low", low), ("high", high)):
        if not _number(value):
            errors[f"{where}.{name}"] = f"must be a finite number; got {value!r}"
    if not (_number(low) and _number(high)):
        return None
    if not low < high:
        errors[where] = f"low ({low:g}) must be below high ({high:g})"
        return None
    if distribution in ("log_uniform", "log_int") and low <= 0:
        errors[f"{where}.low"] = f"must be > 0 for a log-scale distribution; got {low:g}"
        return None
    if distribution in ("int", "log_int") and not (float(low).is_integer() and float(high).is_integer()):
        errors[where] = f"an integer distribution needs whole low and high; got {low:g}..{high:g}"
        return None
    return Param(key, distribution, float(low), float(high))


def _positive(raw: dict, key: str, default: int, high: int, errors: dict[str, str]) -> int:
    value = raw.get(key, default)
    if not _whole(value, 1 if default else 0, high):
        errors[key] = f"must be a whole number from {1 if default else 0} to {high}; got {value!r}"
        return default
    return value


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases: a spec written by hand needs none, and each one can multiply what
    the text expands to (379 bytes of nested aliases: 18 MiB, growing 10x a level)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not accepted: write the value out", self.peek_event().start_mark
            )
        return super().compose_node(parent, index)


def _yaml_loads(text: str) -> Any:
    try:
        value = yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader, aliases refused
    except RecursionError:
        raise yaml.YAMLError(f"nested deeper than {safe_json.MAX_DEPTH} levels") from None
    if safe_json.too_deep(value):
        raise yaml.YAMLError(f"nested deeper than {safe_json.MAX_DEPTH} levels")
    return value


def parse_spec_text(text: str) -> Any:
    """A spec as JSON, or YAML (a superset of JSON) for people who write it by hand;
    raises ConfigError on `spec` when it is neither."""
    try:
        value = safe_json.loads(text)
    except json.JSONDecodeError as json_error:
        try:
            value = _yaml_loads(text)
        except yaml.YAMLError as yaml_error:
            first_line = str(yaml_error).splitlines()[0]
            raise ConfigError({"spec": f"is neither JSON ({json_error}) nor YAML ({first_line})"}) from None
    problem = safe_json.unclean(value, "spec")
    if problem:
        raise ConfigError({"spec": problem.removeprefix("spec: ").removeprefix("spec")})
    return value


def resolve_builtin(config: dict[str, Any]) -> dict[str, Any]:
    """A run config, validated and resolved (the tracker resolves entry-point jobs too)."""
    return RunConfig.from_dict(config).to_dict()


def parse_spec(raw: Any, check_runs: bool = True, resolve: Resolver = resolve_builtin) -> StudySpec:
    """Validate a spec; raises ConfigError naming every bad field (dotted paths). check_runs:
    also validate every config it generates (a stored spec was, when it was created)."""
    errors: dict[str, str] = {}
    if not isinstance(raw, dict):
        raise ConfigError({"spec": f"must be an object with a kind ({', '.join(KINDS)}); got {type(raw).__name__}"})
    for unknown in sorted(set(raw) - set(SPEC_KEYS)):
        errors[unknown] = f"unknown key; allowed: {', '.join(SPEC_KEYS)}"
    kind = raw.get("kind")
    if kind not in KINDS:
        errors["kind"] = f"must be one of {', '.join(KINDS)}; got {kind!r}"
    base = raw.get("base", {})
    if not isinstance(base, dict):
        errors["base"] = "must be a run config object"
        base = {}
    seeds = _positive(raw, "seeds", 1, MAX_SEEDS, errors)
    top_k = _positive(raw, "top_k", 3, MAX_RUNS, errors)
    ensemble_k = _positive(raw, "ensemble_k", 0, 20, errors)
    sample_seed = raw.get("sample_seed", 0)
    if not _whole(sample_seed, 0, 2**31 - 1):
        errors["sample_seed"] = f"must be a whole number from 0 to {2**31 - 1}; got {sample_seed!r}"
        sample_seed = 0

    choices: dict[str, tuple] = {}
    if kind in ("comparison", "grid"):
        raw_choices = raw.get("choices")
        if not isinstance(raw_choices, dict) or not raw_choices:
            errors["choices"] = (
                'must be an object of config keys to lists of values, e.g. {"optimizer.lr": [0.1, 0.01]}'
            )
        else:
            for key, values in raw_choices.items():
                if not isinstance(values, list) or not 1 <= len(values) <= MAX_CHOICES:
                    errors[f"choices.{key}"] = f"must be a list of 1 to {MAX_CHOICES} values"
                else:
                    choices[key] = tuple(values)
    elif "choices" in raw:
        errors["choices"] = f"is for comparison and grid studies; a {kind} study uses params"

    params: list[Param] = []
    if kind in ("random", "coarse_to_fine"):
        raw_params = raw.get("params")
        if not isinstance(raw_params, dict) or not raw_params:
            errors["params"] = (
                "must be an object of config keys to distributions, e.g. "
                '{"optimizer.lr": {"distribution": "log_uniform", "low": 1e-6, "high": 10}}'
            )
        else:
            for key, value in raw_params.items():
                param = _parse_param(key, value, errors)
                if param is not None:
                    params.append(param)
    elif "params" in raw:
        errors["params"] = f"is for random and coarse_to_fine studies; a {kind} study uses choices"

    stages: list[Stage] = []
    if kind == "random":
        stages.append(Stage(_positive(raw, "runs", 20, MAX_RUNS, errors)))
    elif kind == "coarse_to_fine":
        raw_stages = raw.get("stages")
        if not isinstance(raw_stages, list) or not 2 <= len(raw_stages) <= MAX_STAGES:
            errors["stages"] = (
                f'must be a list of 2 to {MAX_STAGES} stages, e.g. [{{"runs": 20, "epochs": 1}}, {{"runs": 10}}]'
            )
        else:
            for index, stage in enumerate(raw_stages):
                where = f"stages[{index}]"
                if not isinstance(stage, dict) or set(stage) - {"runs", "epochs"}:
                    errors[where] = "must be an object with runs and optionally epochs"
                    continue
                if not _whole(stage.get("runs"), 1, MAX_RUNS):
                    errors[f"{where}.runs"] = f"must be a whole number from 1 to {MAX_RUNS}"
                    continue
                epochs = stage.get("epochs")
                if epochs is not None and not _whole(epochs, 1, 10_000):
                    errors[f"{where}.epochs"] = "must be a whole number from 1 to 10000"
                    continue
                stages.append(Stage(stage["runs"], epochs))
    elif "runs" in raw or "stages" in raw:
        errors["runs" if "runs" in raw else "stages"] = f"a {kind} study's runs come from its choices and seeds"

    early = None
    raw_early = raw.get("early_stopping")
    if raw_early is not None:
        if not isinstance(raw_early, dict) or set(raw_early) - {"rule", "min_epochs", "min_runs"}:
            errors["early_stopping"] = "must be null or an object with rule, min_epochs, min_runs"
        elif raw_early.get("rule", "median") not in EARLY_STOPPING_RULES:
            errors["early_stopping.rule"] = f"must be one of {', '.join(EARLY_STOPPING_RULES)}"
        else:
            sub: dict[str, str] = {}
            early = EarlyStopping(
                raw_early.get("rule", "median"),
                _positive(raw_early, "min_epochs", 2, 10_000, sub),
                _positive(raw_early, "min_runs", 3, MAX_RUNS, sub),
            )
            errors.update({f"early_stopping.{key}": message for key, message in sub.items()})

    if errors:
        raise ConfigError(errors)
    spec = StudySpec(
        str(kind), base, seeds, choices, tuple(params), tuple(stages), top_k, early, ensemble_k, sample_seed
    )
    if not check_runs:
        return spec
    planned = plan_stage(spec, 0, resolve=resolve)  # every generated config must be valid, or nothing is created
    if len(planned) > MAX_RUNS:
        raise ConfigError({"choices": f"{len(planned)} runs; a study has at most {MAX_RUNS}"})
    return spec


# --- expanding ----------------------------------------------------------------


def set_path(config: dict[str, Any], key: str, value: Any) -> None:
    """config["a"]["b"] = value for key "a.b", creating sections on the way. A dict value
    replaces the whole section: an optimizer's settings belong to that optimizer."""
    parts = key.split(".")
    node = config
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def get_path(config: dict[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _label(value: Any) -> str:
    if isinstance(value, dict):
        return value.get("name") or json.dumps(value, sort_keys=True)
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    return str(value)


def _planned(spec: StudySpec, values: dict[str, Any], epochs: int | None) -> PlannedRun:
    config = copy.deepcopy(spec.base)
    for key, value in values.items():
        set_path(config, key, value)
    if epochs is not None:
        config["epochs"] = epochs
    if "seed" in values and config.get("job") != "entry" and get_path(config, "data.seed") is None:
        # the seeds vary initialisation and order on one split (RunConfig.data_seed)
        set_path(config, "data.seed", spec.base.get("seed", 0) if isinstance(spec.base.get("seed"), int) else 0)
    name = " ".join(
        f"{key.rsplit('.', 1)[-1] if key != 'seed' else 'seed'}={_label(value)}"
        if not isinstance(value, dict)
        else _label(value)
        for key, value in values.items()
    )
    return PlannedRun(name, config, values)


def _validated(runs: list[PlannedRun], resolve: Resolver) -> list[PlannedRun]:
    for index, run in enumerate(runs):
        try:
            resolved = resolve(run.config)
        except ConfigError as error:
            raise ConfigError(
                {f"run {index + 1} ({run.name}): {key}": message for key, message in error.errors.items()}
            ) from None
        runs[index] = PlannedRun(run.name, resolved, run.values)
    return runs


def plan_stage(
    spec: StudySpec, stage: int, params: tuple[Param, ...] | None = None, resolve: Resolver = resolve_builtin
) -> list[PlannedRun]:
    """The runs of one stage (comparison, grid and random studies have one), validated."""
    if spec.kind in ("comparison", "grid"):
        keys = list(spec.choices)
        runs = []
        for combination in itertools.product(*(spec.choices[key] for key in keys)):
            for seed in range(spec.seeds):
                values = dict(zip(keys, combination))
                if spec.seeds > 1:
                    values["seed"] = seed
                runs.append(_planned(spec, values, None))
        return _validated(runs, resolve)
    params = spec.params if params is None else params
    current = spec.stages[stage]
    rng = np.random.default_rng([spec.sample_seed, stage])
    runs = []
    for _ in range(current.runs):
        values = {param.key: param.sample(rng) for param in params}
        runs.append(_planned(spec, values, current.epochs))
    return _validated(runs, resolve)


# --- reading results ---------------------------------------------------------


@dataclass(frozen=True)
class Result:
    values: dict[str, Any]
    metric: float | None  # None: diverged, failed or not measured


def top(results: list[Result], k: int) -> list[Result]:
    """The k best by metric (higher is better); runs without a metric never count."""
    scored = [(r.metric, r) for r in results if r.metric is not None and math.isfinite(r.metric)]
    return [r for _, r in sorted(scored, key=lambda pair: pair[0], reverse=True)[:k]]


def narrow(params: tuple[Param, ...], results: list[Result], k: int) -> tuple[Param, ...]:
    """The next stage's ranges: around the values of the k best runs, with a margin, inside
    the old range. Choices keep only the values the best runs had."""
    best = top(results, k)
    if not best:
        return params
    narrowed = []
    for param in params:
        chosen = [r.values[param.key] for r in best if param.key in r.values]
        if not chosen:
            narrowed.append(param)
            continue
        if not param.numeric:
            kept = tuple(v for v in param.values if v in chosen)
            narrowed.append(Param(param.key, "choice", values=kept or param.values))
            continue
        to_space = math.log if param.log else float
        from_space = math.exp if param.log else float
        lo, hi = min(map(to_space, chosen)), max(map(to_space, chosen))
        old_lo, old_hi = to_space(param.low), to_space(param.high)
        margin = max(NARROW_MARGIN * (hi - lo), NARROW_MARGIN * 0.2 * (old_hi - old_lo))
        new_lo, new_hi = max(old_lo, lo - margin), min(old_hi, hi + margin)
        low, high = from_space(new_lo), from_space(new_hi)
        if param.distribution in ("int", "log_int"):
            low, high = math.floor(low), math.ceil(high)
            if low == high:
                low, high = max(param.low, low - 1), min(param.high, high + 1)
        narrowed.append(Param(param.key, param.distribution, float(low), float(high)))
    return tuple(narrowed)


def edge_warnings(params: tuple[Param, ...], results: list[Result]) -> list[str]:
    """ "widen the range" when the best run's value sits within EDGE_FRACTION of an end of
    its searched range: the optimum may be outside it."""
    best = top(results, 1)
    if not best:
        return []
    warnings = []
    for param in params:
        value = best[0].values.get(param.key)
        if not param.numeric or not _number(value):
            continue
        where = param.position(float(value))
        if where <= EDGE_FRACTION or where >= 1 - EDGE_FRACTION:
            end, direction = ("low", "down") if where <= EDGE_FRACTION else ("high", "up")
            warnings.append(
                f"{param.key}: the best run's value {value:.3g} sits at the {end} edge of the searched "
                f"range [{param.low:g}, {param.high:g}]; widen the range {direction}wards"
            )
    return warnings


def median_stopping(history: list[float], others: list[list[float]], rule: EarlyStopping) -> str | None:
    """The median stopping rule (Golovin et al., 2017): stop a run whose best validation
    accuracy after epoch e is below the median of the other runs' best after the same epoch.
    `history` and each of `others` are validation accuracies per epoch."""
    epoch = len(history)
    if epoch < rule.min_epochs:
        return None
    peers = [max(other[:epoch]) for other in others if len(other) >= epoch]
    if len(peers) < rule.min_runs:
        return None
    mine, median = max(history), float(np.median(peers))
    if mine < median:
        return (
            f"stopped early after epoch {epoch}: best validation accuracy {mine:.4f} is below the median "
            f"{median:.4f} of {len(peers)} other runs of the study at that epoch"
        )
    return None
