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

from trainer.validation import Fields

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
PRECISIONS = ("fp32", "amp")
ACTIVATIONS = ("relu", "leaky_relu", "prelu", "rrelu", "elu", "tanh", "sigmoid", "maxout")
INITS = ("default", "xavier_uniform", "xavier_normal", "kaiming_normal", "kaiming_uniform", "normal",
         "zeros", "constant")

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
DATA_COMMON = ("name", "val_fraction", "standardize", "train_limit", "seed")
IMAGE_DATASETS = ("digits", "mnist", "cifar10", "npz")

MODEL_SETTINGS: dict[str, tuple[str, ...]] = {
    "mlp": ("hidden",),
    "cnn": ("channels", "kernel_size", "hidden"),
}
MODEL_COMMON = ("kind", "activation", "maxout_pieces", "leaky_slope", "init", "init_std", "init_value",
                "dropout", "batch_norm")


class ConfigError(ValueError):
    """One or more fields are invalid; `errors` maps the dotted field to its message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "mlp"
    hidden: tuple[int, ...] = (64,)
    channels: tuple[int, ...] = (16, 32)
    kernel_size: int = 3
    activation: str = "relu"
    maxout_pieces: int = 2
    leaky_slope: float = 0.01
    init: str = "default"
    init_std: float = 0.01
    init_value: float = 0.0
    dropout: float = 0.0
    batch_norm: bool = False


@dataclass(frozen=True)
class DataConfig:
    name: str = "digits"
    path: str = ""
    samples: int = 300
    classes: int = 3
    features: int = 2
    noise: float = 0.2
    spread: float = 1.0
    val_fraction: float = 0.2
    standardize: bool = True
    train_limit: int | None = None
    seed: int | None = None  # of the split (and of synthetic data); None: the run's seed


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    decoupled_weight_decay: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    amsgrad: bool = False
    decay: float = 0.99
    centered: bool = False
    rho: float = 0.9


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = "fixed"
    interval: str = "epoch"  # when the schedule advances: every "iteration" or every "epoch"
    warmup_steps: int = 0  # linear warm-up over this many iterations, from lr0/100 to lr0
    gamma: float = 0.1
    step_size: int = 10
    milestones: tuple[int, ...] = ()
    power: float = 1.0
    max_iter: int | None = None  # None: the run's length in intervals
    tau: int | None = None
    t_max: int | None = None
    eta_min: float = 0.0
    factor: float = 0.5
    patience: int = 2
    threshold: float = 1e-4


@dataclass(frozen=True)
class InstrumentConfig:
    # Defaults keep the cost at about 10 % of a digits-MLP step (bench/overhead.py).
    # Update-to-weight ratios need a copy of every parameter before the step, so they
    # (with gradient and weight norms) are measured every K steps rather than every step.
    ratio_every: int = 20
    # Histograms of activations, gradients and weights every H steps (0: never).
    histogram_every: int = 250
    histogram_bins: int = 30
    # First-layer weights as an image grid at epoch ends, at least H steps apart
    # (every epoch when epochs are longer than H steps); image data only.
    first_layer_images: bool = True


@dataclass(frozen=True)
class ChecksConfig:
    """The gradient check of a preflight or a check job (the sanity checks take no settings)."""

    h: float = 1e-5  # a smaller h is not always better: floating-point error takes over
    dims_per_tensor: int = 10  # dimensions sampled from every parameter tensor
    examples: int = 4  # few data points: fewer kinks crossed, faster
    warmup_steps: int = 0  # train this many steps first: at tiny initial weights a wrong gradient can look right


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    instrument: InstrumentConfig = field(default_factory=InstrumentConfig)
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    job: str = "train"  # "check": the sanity checks and the gradient check only
    preflight: bool = False  # run the checks before training
    loss: str = "cross_entropy"
    batch_size: int = 64
    epochs: int = 10
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    checkpoint_every: int = 0  # steps between checkpoints; 0: at each epoch end

    @classmethod
    def from_dict(cls, raw: Any) -> RunConfig:
        errors: dict[str, str] = {}
        top = Fields(raw, "", errors)
        config = cls(
            model=_model(top.section("model"), errors),
            data=_data(top.section("data"), errors),
            optimizer=_optimizer(top.section("optimizer"), errors),
            schedule=_schedule(top.section("schedule"), errors),
            instrument=_instrument(top.section("instrument")),
            checks=_checks(top.section("checks")),
            job=top.choice("job", "train", ("train", "check")),
            preflight=top.boolean("preflight", False),
            loss=top.choice("loss", "cross_entropy", LOSSES),
            batch_size=top.integer("batch_size", 64, 1, MAX_BATCH_SIZE),
            epochs=top.integer("epochs", 10, 1, MAX_EPOCHS),
            seed=top.integer("seed", 0, 0, MAX_SEED),
            device=top.choice("device", "auto", DEVICES),
            precision=top.choice("precision", "fp32", PRECISIONS),
            checkpoint_every=top.integer("checkpoint_every", 0, 0, MAX_STEPS),
        )
        top.finish()
        if config.model.kind == "cnn" and config.data.name not in IMAGE_DATASETS and "data.name" not in errors:
            errors["model.kind"] = (f"a cnn needs image data ({', '.join(IMAGE_DATASETS)}); "
                                    f"data.name is {config.data.name!r}")
        if config.precision == "amp" and config.device == "cpu":
            errors["precision"] = "amp (mixed precision) is for CUDA; use fp32 with device 'cpu'"
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
        resolved["model"] = _only(resolved["model"], (*MODEL_COMMON, *MODEL_SETTINGS[self.model.kind]),
                                  _model_unused(self.model))
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
    kind = fields.choice("kind", "mlp", tuple(MODEL_SETTINGS))
    fields.restrict_to((*MODEL_COMMON, *MODEL_SETTINGS.get(kind, ())), f"a setting of the {kind} model")
    hidden_default = (64,) if kind == "mlp" else (128,)
    config = ModelConfig(
        kind=kind,
        hidden=fields.int_list("hidden", hidden_default, 0, MAX_DEPTH, 1, MAX_WIDTH),
        channels=fields.int_list("channels", (16, 32), 1, 8, 1, MAX_CHANNELS),
        kernel_size=fields.integer("kernel_size", 3, 1, 11),
        activation=fields.choice("activation", "relu", ACTIVATIONS),
        maxout_pieces=fields.integer("maxout_pieces", 2, 2, 8),
        leaky_slope=fields.number("leaky_slope", 0.01, 0.0, 1.0),
        init=fields.choice("init", "default", INITS),
        init_std=fields.number("init_std", 0.01, 0.0, 100.0, exclusive_minimum=True),
        init_value=fields.number("init_value", 0.0, -100.0, 100.0),
        dropout=fields.number("dropout", 0.0, 0.0, 0.95),
        batch_norm=fields.boolean("batch_norm", False),
    )
    for setting in _model_unused(config):
        if setting in fields.raw:
            owner = {"maxout_pieces": "activation 'maxout'", "leaky_slope": "activation 'leaky_relu'",
                     "init_std": "init 'normal'", "init_value": "init 'constant'"}[setting]
            errors.setdefault(fields.path(setting), f"is only used with {owner}")
    fields.finish()
    return config


def _data(fields: Fields, errors: dict[str, str]) -> DataConfig:
    name = fields.choice("name", "digits", tuple(DATA_SETTINGS))
    fields.restrict_to((*DATA_COMMON, *DATA_SETTINGS.get(name, ())), f"a setting of the {name} data set")
    needs_path = "path" in DATA_SETTINGS.get(name, ())
    if needs_path and "path" not in fields.raw:
        errors[fields.path("path")] = f"is required for {name}: the local file or folder to read"
    config = DataConfig(
        name=name,
        path=fields.text("path", ""),
        samples=fields.integer("samples", 300, 10, MAX_SAMPLES),
        classes=fields.integer("classes", 3, 2, 100),
        features=fields.integer("features", 2, 1, 1000),
        noise=fields.number("noise", 0.2, 0.0, 10.0),
        spread=fields.number("spread", 1.0, 0.0, 100.0, exclusive_minimum=True),
        val_fraction=fields.number("val_fraction", 0.2, 0.05, 0.9),
        standardize=fields.boolean("standardize", True),
        train_limit=fields.optional_integer("train_limit", 1, MAX_SAMPLES),
        seed=fields.optional_integer("seed", 0, MAX_SEED),
    )
    fields.finish()
    return config


def _optimizer(fields: Fields, errors: dict[str, str]) -> OptimizerConfig:
    name = fields.choice("name", "sgd", tuple(OPTIMIZER_SETTINGS))
    fields.restrict_to(("name", *OPTIMIZER_SETTINGS.get(name, ())), f"a setting of {name}")
    base = dataclasses.replace(OptimizerConfig(), **OPTIMIZER_DEFAULTS.get(name, {}))
    config = OptimizerConfig(
        name=name,
        lr=fields.number("lr", base.lr, 0.0, 10.0, exclusive_minimum=True),
        momentum=fields.number("momentum", base.momentum, 0.0, 0.999),
        weight_decay=fields.number("weight_decay", base.weight_decay, 0.0, 1.0),
        decoupled_weight_decay=fields.boolean("decoupled_weight_decay", False),
        betas=fields.float_pair("betas", base.betas, 0.0, 0.9999),
        eps=fields.number("eps", base.eps, 0.0, 1.0, exclusive_minimum=True),
        amsgrad=fields.boolean("amsgrad", False),
        decay=fields.number("decay", base.decay, 0.0, 0.9999),
        centered=fields.boolean("centered", False),
        rho=fields.number("rho", base.rho, 0.0, 0.9999),
    )
    if name in ("momentum", "nesterov") and config.momentum <= 0 and fields.ok("momentum"):
        errors[fields.path("momentum")] = f"{name} needs momentum > 0 (usually 0.9; 0 is plain sgd)"
    fields.finish()
    return config


def _schedule(fields: Fields, errors: dict[str, str]) -> ScheduleConfig:
    name = fields.choice("name", "fixed", tuple(SCHEDULE_SETTINGS))
    fields.restrict_to((*SCHEDULE_COMMON, *SCHEDULE_SETTINGS.get(name, ())), f"a setting of the {name} schedule")
    base = dataclasses.replace(ScheduleConfig(), **SCHEDULE_DEFAULTS.get(name, {}))
    config = ScheduleConfig(
        name=name,
        interval=fields.choice("interval", base.interval, ("iteration", "epoch")),
        warmup_steps=fields.integer("warmup_steps", 0, 0, MAX_STEPS),
        gamma=fields.number("gamma", base.gamma, -100.0, 100.0),
        step_size=fields.integer("step_size", base.step_size, 1, MAX_STEPS),
        milestones=fields.int_list("milestones", (), 1, 100, 1, MAX_STEPS),
        power=fields.number("power", base.power, 0.0, 100.0),
        max_iter=fields.optional_integer("max_iter", 1, MAX_STEPS),
        tau=fields.optional_integer("tau", 1, MAX_STEPS),
        t_max=fields.optional_integer("t_max", 1, MAX_STEPS),
        eta_min=fields.number("eta_min", 0.0, 0.0, 10.0),
        factor=fields.number("factor", 0.5, 0.0, 1.0, exclusive_minimum=True),
        patience=fields.integer("patience", 2, 0, 10_000),
        threshold=fields.number("threshold", 1e-4, 0.0, 1.0),
    )
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
        errors[fields.path("interval")] = "plateau follows the validation loss, which is measured every epoch: use 'epoch'"
    fields.finish()
    return config


def _instrument(fields: Fields) -> InstrumentConfig:
    config = InstrumentConfig(
        ratio_every=fields.integer("ratio_every", 20, 1, MAX_STEPS),
        histogram_every=fields.integer("histogram_every", 250, 0, MAX_STEPS),
        histogram_bins=fields.integer("histogram_bins", 30, 4, 256),
        first_layer_images=fields.boolean("first_layer_images", True),
    )
    fields.finish()
    return config


def _checks(fields: Fields) -> ChecksConfig:
    config = ChecksConfig(
        h=fields.number("h", 1e-5, 1e-10, 1e-1),
        dims_per_tensor=fields.integer("dims_per_tensor", 10, 1, 1000),
        examples=fields.integer("examples", 4, 1, 256),
        warmup_steps=fields.integer("warmup_steps", 0, 0, 100_000),
    )
    fields.finish()
    return config
