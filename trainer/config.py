"""The validated configuration of one training run.

`RunConfig.from_dict` is the single place where a run's settings are checked;
the tracker's API, CLI and admin all call it. Every error names the field
(dotted path), the value and what is allowed, and all errors are reported at
once. Unknown keys, settings that the chosen optimizer / schedule / data set /
model does not have, wrong types, NaN/inf and oversized values are refused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from trainer.validation import Fields, boolean, choice, float_pair, int_list, integer, number, optional_integer, text

MAX_WIDTH = 4096
MAX_DEPTH = 16
MAX_CHANNELS = 512
MAX_BATCH_SIZE = 65536
MAX_EPOCHS = 10_000
MAX_SEED = 2**31 - 1
MAX_SAMPLES = 1_000_000
MAX_STEPS = 10**9

DEVICES = ("auto", "cpu", "cuda")
LOSSES = ("cross_entropy", "svm")
# amp: mixed precision in bfloat16 where the GPU has it, else float16 with a gradient scaler;
# bf16 / fp16 ask for one of the two
PRECISIONS = ("fp32", "amp", "bf16", "fp16")
ACTIVATIONS = ("relu", "leaky_relu", "prelu", "rrelu", "elu", "tanh", "sigmoid", "maxout")
INITS = (
    "default",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_normal",
    "kaiming_uniform",
    "normal",
    "zeros",
    "constant",
)

# Each choice lists the settings it accepts; anything else is refused rather than
# silently ignored (e.g. momentum given to Adam).
OPTIMIZER_SETTINGS: dict[str, tuple[str, ...]] = {
    "sgd": ("lr", "weight_decay"),
    "momentum": ("lr", "momentum", "weight_decay"),
    "nesterov": ("lr", "momentum", "weight_decay"),
    "adagrad": ("lr", "eps", "weight_decay"),
    "rmsprop": ("lr", "decay", "eps", "momentum", "centered", "weight_decay"),
    "adam": ("lr", "betas", "eps", "amsgrad", "weight_decay", "decoupled_weight_decay"),
    "adamw": ("lr", "betas", "eps", "amsgrad", "weight_decay"),
    "adadelta": ("lr", "rho", "eps", "weight_decay"),
}
# Defaults that differ between optimizers (the others come from OptimizerConfig).
OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 0.1},
    "momentum": {"lr": 0.01, "momentum": 0.9},
    "nesterov": {"lr": 0.01, "momentum": 0.9},
    "adagrad": {"lr": 0.01},
    "rmsprop": {"lr": 0.001},
    "adam": {"lr": 0.001},
    "adamw": {"lr": 0.001, "weight_decay": 0.01},
    "adadelta": {"lr": 1.0, "eps": 1e-6},
}

SCHEDULE_SETTINGS: dict[str, tuple[str, ...]] = {
    "fixed": (),
    "step": ("gamma", "step_size"),
    "multistep": ("gamma", "milestones"),
    "exp": ("gamma",),
    "inv": ("gamma", "power"),
    "poly": ("power", "max_iter"),
    "sigmoid": ("gamma", "step_size"),
    "linear": ("tau",),
    "cosine": ("t_max", "eta_min"),
    "plateau": ("factor", "patience", "threshold"),
}
SCHEDULE_COMMON = ("name", "interval", "warmup_steps")
SCHEDULE_DEFAULTS: dict[str, dict[str, Any]] = {
    "step": {"gamma": 0.1, "step_size": 10},
    "multistep": {"gamma": 0.1},
    "exp": {"gamma": 0.95},
    "inv": {"gamma": 1e-4, "power": 0.75, "interval": "iteration"},
    "sigmoid": {"gamma": -0.5, "step_size": 10},
}

DATA_SETTINGS: dict[str, tuple[str, ...]] = {
    "digits": (),
    "spiral": ("samples", "classes", "noise"),
    "moons": ("samples", "noise"),
    "blobs": ("samples", "classes", "features", "spread"),
    "npz": ("path",),
    "mnist": ("path",),
    "cifar10": ("path",),
}
DATA_COMMON = ("name", "val_fraction", "standardize", "train_limit", "seed", "shuffle_labels")
IMAGE_DATASETS = ("digits", "mnist", "cifar10", "npz")

MODEL_SETTINGS: dict[str, tuple[str, ...]] = {"mlp": ("hidden",), "cnn": ("channels", "kernel_size", "hidden")}
# Defaults that differ between model kinds (the others come from ModelConfig).
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {"cnn": {"hidden": (128,)}}
MODEL_COMMON = (
    "kind",
    "activation",
    "maxout_pieces",
    "leaky_slope",
    "init",
    "init_std",
    "init_value",
    "dropout",
    "batch_norm",
)


class ConfigError(ValueError):
    """One or more fields are invalid; `errors` maps the dotted field to its message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


# Each setting is declared once: its default and its rule (trainer.validation) side by side.
# Choices whose defaults differ from these (an optimizer's learning rate, say) say so in the
# *_DEFAULTS tables above, which the reader applies before it reads the given settings.


@dataclass(frozen=True)
class ModelConfig:
    kind: str = field(default="mlp", metadata=choice(tuple(MODEL_SETTINGS)))
    hidden: tuple[int, ...] = field(default=(64,), metadata=int_list(0, MAX_DEPTH, 1, MAX_WIDTH))
    channels: tuple[int, ...] = field(default=(16, 32), metadata=int_list(1, 8, 1, MAX_CHANNELS))
    kernel_size: int = field(default=3, metadata=integer(1, 11))
    activation: str = field(default="relu", metadata=choice(ACTIVATIONS))
    maxout_pieces: int = field(default=2, metadata=integer(2, 8))
    leaky_slope: float = field(default=0.01, metadata=number(0.0, 1.0))
    init: str = field(default="default", metadata=choice(INITS))
    init_std: float = field(default=0.01, metadata=number(0.0, 100.0, exclusive_minimum=True))
    init_value: float = field(default=0.0, metadata=number(-100.0, 100.0))
    dropout: float = field(default=0.0, metadata=number(0.0, 0.95))
    batch_norm: bool = field(default=False, metadata=boolean())


@dataclass(frozen=True)
class DataConfig:
    name: str = field(default="digits", metadata=choice(tuple(DATA_SETTINGS)))
    path: str = field(default="", metadata=text())
    samples: int = field(default=300, metadata=integer(10, MAX_SAMPLES))
    classes: int = field(default=3, metadata=integer(2, 100))
    features: int = field(default=2, metadata=integer(1, 1000))
    noise: float = field(default=0.2, metadata=number(0.0, 10.0))
    spread: float = field(default=1.0, metadata=number(0.0, 100.0, exclusive_minimum=True))
    val_fraction: float = field(default=0.2, metadata=number(0.05, 0.9))
    standardize: bool = field(default=True, metadata=boolean())
    train_limit: int | None = field(default=None, metadata=optional_integer(1, MAX_SAMPLES))
    # of the split (and of synthetic data); None: the run's seed
    seed: int | None = field(default=None, metadata=optional_integer(0, MAX_SEED))
    # the training labels permuted (a randomisation test: nothing learnt can carry over)
    shuffle_labels: bool = field(default=False, metadata=boolean())


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = field(default="sgd", metadata=choice(tuple(OPTIMIZER_SETTINGS)))
    lr: float = field(default=0.1, metadata=number(0.0, 10.0, exclusive_minimum=True))
    momentum: float = field(default=0.0, metadata=number(0.0, 0.999))
    weight_decay: float = field(default=0.0, metadata=number(0.0, 1.0))
    decoupled_weight_decay: bool = field(default=False, metadata=boolean())
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata=float_pair(0.0, 0.9999))
    eps: float = field(default=1e-8, metadata=number(0.0, 1.0, exclusive_minimum=True))
    amsgrad: bool = field(default=False, metadata=boolean())
    decay: float = field(default=0.99, metadata=number(0.0, 0.9999))
    centered: bool = field(default=False, metadata=boolean())
    rho: float = field(default=0.9, metadata=number(0.0, 0.9999))


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = field(default="fixed", metadata=choice(tuple(SCHEDULE_SETTINGS)))
    # when the schedule advances: every "iteration" or every "epoch"
    interval: str = field(default="epoch", metadata=choice(("iteration", "epoch")))
    # linear warm-up over this many iterations, from lr0/100 to lr0
    warmup_steps: int = field(default=0, metadata=integer(0, MAX_STEPS))
    gamma: float = field(default=0.1, metadata=number(-100.0, 100.0))
    step_size: int = field(default=10, metadata=integer(1, MAX_STEPS))
    milestones: tuple[int, ...] = field(default=(), metadata=int_list(1, 100, 1, MAX_STEPS))
    power: float = field(default=1.0, metadata=number(0.0, 100.0))
    # None: the run's length in intervals
    max_iter: int | None = field(default=None, metadata=optional_integer(1, MAX_STEPS))
    tau: int | None = field(default=None, metadata=optional_integer(1, MAX_STEPS))
    t_max: int | None = field(default=None, metadata=optional_integer(1, MAX_STEPS))
    eta_min: float = field(default=0.0, metadata=number(0.0, 10.0))
    factor: float = field(default=0.5, metadata=number(0.0, 1.0, exclusive_minimum=True))
    patience: int = field(default=2, metadata=integer(0, 10_000))
    threshold: float = field(default=1e-4, metadata=number(0.0, 1.0))


@dataclass(frozen=True)
class InstrumentConfig:
    # Defaults keep the cost at about 10 % of a digits-MLP step (bench/overhead.py).
    # Update-to-weight ratios need a copy of every parameter before the step, so they
    # (with gradient and weight norms) are measured every K steps rather than every step.
    ratio_every: int = field(default=20, metadata=integer(1, MAX_STEPS))
    # Histograms of activations, gradients and weights every H steps (0: never).
    histogram_every: int = field(default=250, metadata=integer(0, MAX_STEPS))
    histogram_bins: int = field(default=30, metadata=integer(4, 256))
    # The start, when most pathologies show first, is measured densely: for this many steps,
    # ratios and norms four times as often (every 5 steps with K = 20) and activations every
    # quarter of it (0: no dense start); bench/overhead.py counts it in.
    dense_steps: int = field(default=100, metadata=integer(0, 10_000))
    # First-layer weights as an image grid at epoch ends, at least H steps apart
    # (every epoch when epochs are longer than H steps); image data only.
    first_layer_images: bool = field(default=True, metadata=boolean())

    def measures_parameters(self, step: int) -> bool:
        """Update ratios, gradient and weight norms at this step?"""
        dense = step < self.dense_steps and step % max(1, self.ratio_every // 4) == 0
        return dense or step % self.ratio_every == 0

    def measures_histograms(self, step: int) -> bool:
        """Activation histograms (and dead and saturated fractions) at this step?"""
        if not self.histogram_every:
            return False
        dense = step < self.dense_steps and step % max(1, self.dense_steps // 4) == 0
        return dense or self.measures_parameter_histograms(step)

    def measures_parameter_histograms(self, step: int) -> bool:
        """Gradient and weight histograms too? Every H steps, the dense start included: what the
        early rules read of a histogram is the activations' (dead, saturated, collapsed units),
        and the weights barely move in a hundred steps."""
        return bool(self.histogram_every) and step % self.histogram_every == 0


@dataclass(frozen=True)
class ChecksConfig:
    """The gradient check of a preflight or a check job (the sanity checks take no settings)."""

    # a smaller h is not always better: floating-point error takes over
    h: float = field(default=1e-5, metadata=number(1e-10, 1e-1))
    # dimensions sampled from every parameter tensor
    dims_per_tensor: int = field(default=10, metadata=integer(1, 1000))
    # few data points: fewer kinks crossed, faster
    examples: int = field(default=4, metadata=integer(1, 256))
    # train this many steps first: at tiny initial weights a wrong gradient can look right
    warmup_steps: int = field(default=0, metadata=integer(0, 100_000))


@dataclass(frozen=True)
class RetentionConfig:
    """Which of a run's checkpoints are kept as new ones come (the others are deleted): the
    latest `keep_latest`, the best by the series `best_metric` (highest or lowest, `best_mode`;
    "" for none), and one every `keep_every` steps (0: none). A resume reads the latest."""

    keep_latest: int = field(default=2, metadata=integer(1, 1000))
    best_metric: str = field(default="val_acc", metadata=text(200))
    best_mode: str = field(default="max", metadata=choice(("max", "min")))
    keep_every: int = field(default=0, metadata=integer(0, MAX_STEPS))


def retention_of(config: Any) -> RetentionConfig:
    """The checkpoint retention of a stored run config (its defaults where it names none)."""
    section = config.get("checkpoints") if isinstance(config, dict) else None
    errors: dict[str, str] = {}
    policy = Fields(section if isinstance(section, dict) else {}, "checkpoints", errors).read(RetentionConfig)
    return RetentionConfig() if errors else policy


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    instrument: InstrumentConfig = field(default_factory=InstrumentConfig)
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    checkpoints: RetentionConfig = field(default_factory=RetentionConfig)
    # "check": the sanity checks and the gradient check only
    job: str = field(default="train", metadata=choice(("train", "check")))
    preflight: bool = field(default=False, metadata=boolean())  # run the checks before training
    loss: str = field(default="cross_entropy", metadata=choice(LOSSES))
    batch_size: int = field(default=64, metadata=integer(1, MAX_BATCH_SIZE))
    epochs: int = field(default=10, metadata=integer(1, MAX_EPOCHS))
    seed: int = field(default=0, metadata=integer(0, MAX_SEED))
    device: str = field(default="auto", metadata=choice(DEVICES))
    precision: str = field(default="fp32", metadata=choice(PRECISIONS))
    # steps between checkpoints; 0: at each epoch end
    checkpoint_every: int = field(default=0, metadata=integer(0, MAX_STEPS))

    @classmethod
    def from_dict(cls, raw: Any) -> RunConfig:
        errors: dict[str, str] = {}
        top = Fields(raw, "", errors)
        config = top.read(
            cls,
            model=_model(top.section("model"), errors),
            data=_data(top.section("data"), errors),
            optimizer=_optimizer(top.section("optimizer"), errors),
            schedule=_schedule(top.section("schedule"), errors),
            instrument=top.section("instrument").read(InstrumentConfig),
            checks=top.section("checks").read(ChecksConfig),
            checkpoints=top.section("checkpoints").read(RetentionConfig),
        )
        if config.model.kind == "cnn" and config.data.name not in IMAGE_DATASETS and "data.name" not in errors:
            errors["model.kind"] = (
                f"a cnn needs image data ({', '.join(IMAGE_DATASETS)}); data.name is {config.data.name!r}"
            )
        if config.precision != "fp32" and config.device == "cpu":
            errors["precision"] = f"{config.precision} (mixed precision) is for CUDA; use fp32 with device 'cpu'"
        if errors:
            raise ConfigError(errors)
        return config

    def to_dict(self) -> dict[str, Any]:
        """The resolved config (defaults filled in, only the settings each choice has),
        JSON-ready; from_dict(to_dict()) gives the same config."""
        resolved = _jsonable(dataclasses.asdict(self))
        resolved["optimizer"] = _only(resolved["optimizer"], ("name", *OPTIMIZER_SETTINGS[self.optimizer.name]))
        resolved["schedule"] = _only(resolved["schedule"], (*SCHEDULE_COMMON, *SCHEDULE_SETTINGS[self.schedule.name]))
        resolved["data"] = _only(resolved["data"], (*DATA_COMMON, *DATA_SETTINGS[self.data.name]))
        resolved["model"] = _only(
            resolved["model"], (*MODEL_COMMON, *MODEL_SETTINGS[self.model.kind]), _model_unused(self.model)
        )
        return resolved

    @property
    def data_seed(self) -> int:
        """Runs that differ only in `seed` share the data split when data.seed is set: a
        seed band then shows the spread of initialisation and order, and an ensemble of
        them is evaluated on examples none of its members trained on."""
        return self.seed if self.data.seed is None else self.data.seed

    def summary(self) -> str:
        """A short label that says what distinguishes the run, e.g. 'adam lr=0.001 step'."""
        label = f"{self.optimizer.name} lr={self.optimizer.lr:g}"
        if self.job == "check":
            label = f"check: {label}"
        if self.schedule.name != "fixed":
            label += f" {self.schedule.name}"
        return label


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


def _only(section: dict[str, Any], allowed: tuple[str, ...], unused: tuple[str, ...] = ()) -> dict[str, Any]:
    return {key: value for key, value in section.items() if key in allowed and key not in unused}


def _model_unused(model: ModelConfig) -> tuple[str, ...]:
    """Settings that belong to another activation or initialisation than the chosen one."""
    unused = []
    if model.activation != "maxout":
        unused.append("maxout_pieces")
    if model.activation != "leaky_relu":
        unused.append("leaky_slope")
    if model.init != "normal":
        unused.append("init_std")
    if model.init != "constant":
        unused.append("init_value")
    return tuple(unused)


def _model(fields: Fields, errors: dict[str, str]) -> ModelConfig:
    kind = fields.choice("kind", ModelConfig.kind, tuple(MODEL_SETTINGS))
    fields.restrict_to((*MODEL_COMMON, *MODEL_SETTINGS.get(kind, ())), f"a setting of the {kind} model")
    config = fields.read(ModelConfig, MODEL_DEFAULTS.get(kind, {}), kind=kind)
    for setting in _model_unused(config):
        if setting in fields.raw:
            owner = {
                "maxout_pieces": "activation 'maxout'",
                "leaky_slope": "activation 'leaky_relu'",
                "init_std": "init 'normal'",
                "init_value": "init 'constant'",
            }[setting]
            errors.setdefault(fields.path(setting), f"is only used with {owner}")
    return config


def _data(fields: Fields, errors: dict[str, str]) -> DataConfig:
    name = fields.choice("name", DataConfig.name, tuple(DATA_SETTINGS))
    fields.restrict_to((*DATA_COMMON, *DATA_SETTINGS.get(name, ())), f"a setting of the {name} data set")
    if "path" in DATA_SETTINGS.get(name, ()) and "path" not in fields.raw:
        errors[fields.path("path")] = f"is required for {name}: the local file or folder to read"
    return fields.read(DataConfig, name=name)


def _optimizer(fields: Fields, errors: dict[str, str]) -> OptimizerConfig:
    name = fields.choice("name", OptimizerConfig.name, tuple(OPTIMIZER_SETTINGS))
    fields.restrict_to(("name", *OPTIMIZER_SETTINGS.get(name, ())), f"a setting of {name}")
    config = fields.read(OptimizerConfig, OPTIMIZER_DEFAULTS.get(name, {}), name=name)
    if name in ("momentum", "nesterov") and config.momentum <= 0 and fields.ok("momentum"):
        errors[fields.path("momentum")] = f"{name} needs momentum > 0 (usually 0.9; 0 is plain sgd)"
    return config


def _schedule(fields: Fields, errors: dict[str, str]) -> ScheduleConfig:
    name = fields.choice("name", ScheduleConfig.name, tuple(SCHEDULE_SETTINGS))
    fields.restrict_to((*SCHEDULE_COMMON, *SCHEDULE_SETTINGS.get(name, ())), f"a setting of the {name} schedule")
    config = fields.read(ScheduleConfig, SCHEDULE_DEFAULTS.get(name, {}), name=name)
    if name == "multistep" and fields.ok("milestones"):
        if not config.milestones:
            errors[fields.path("milestones")] = "is required for multistep: increasing steps, e.g. [30, 60]"
        elif list(config.milestones) != sorted(set(config.milestones)):
            errors[fields.path("milestones")] = f"must be strictly increasing, got {list(config.milestones)}"
    if name in ("exp", "step", "multistep") and fields.ok("gamma") and not 0 < config.gamma <= 1:
        errors[fields.path("gamma")] = f"must be > 0 and <= 1 for the {name} schedule, got {config.gamma!r}"
    if name == "inv" and fields.ok("gamma") and config.gamma < 0:
        errors[fields.path("gamma")] = f"must be >= 0 for the inv schedule, got {config.gamma!r}"
    if name == "plateau" and config.interval != "epoch" and fields.ok("interval"):
        errors[fields.path("interval")] = (
            "plateau follows the validation loss, which is measured every epoch: use 'epoch'"
        )
    return config
