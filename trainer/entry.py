"""Training entry points: a team's own training function, queued like a built-in run.

A function that takes the client's `run` object is registered under the Python entry-point
group `trainwatch.jobs` of an installed package, with the parameters it accepts:

    # vision_jobs/resnet.py
    import trainwatch

    @trainwatch.job(params={"lr": {"type": "float", "min": 1e-6, "max": 10, "default": 0.1},
                            "arch": {"type": "choice", "choices": ["resnet18", "resnet50"], "default": "resnet18"}},
                    epochs=90)
    def train(run): ...

    # pyproject.toml
    [project.entry-points."trainwatch.jobs"]
    resnet = "vision_jobs.resnet:train"

and queued as `{"job": "entry", "entry": "resnet", "params": {"lr": 0.05}, "device": "cuda", "epochs": 90}`.
A worker imports only what this group registers (`load`): a name in a queued config is looked
up among the registered entry points, never imported as a module path. Workers report what
they have (`describe_registered`); the server validates a config against those reports
(`read_entry_job`) before it queues anything, with the rules of this module only.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import re
import subprocess
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeVar

from trainer.config import DEVICES, MAX_EPOCHS, MAX_SEED, ConfigError, RetentionConfig
from trainer.validation import Fields, choice, integer, text, type_name

ENTRY_GROUP = "trainwatch.jobs"
# Trainwatch's own trainer, registered in its own package: a run config (job train or check) runs it
BUILTIN = "builtin"
# path: text that names a file or folder on the worker; the server keeps members' paths inside
# TRAINWATCH_DATA_DIRS, as for a built-in run's data.path
PARAM_TYPES = ("float", "int", "bool", "str", "path", "choice")
# what every job has besides its params: run.config carries them too, so params may not take these names
RESERVED = ("epochs", "seed", "device")
MAX_PARAMS = 100
MAX_TEXT = 4096
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
ATTRIBUTE = "__trainwatch_job__"
DEFAULT_EPOCHS = 10

F = TypeVar("F", bound=Callable[..., Any])
Check = Callable[[dict[str, Any]], Any]


class EntryError(Exception):
    """An entry point that cannot be run here: not registered, or its import failed."""


@dataclass(frozen=True)
class JobSpec:
    """What `trainwatch.job` declares on a training function."""

    params: dict[str, dict[str, Any]] | None  # the schema; None when `check` validates
    check: Check | None = None
    epochs: int = DEFAULT_EPOCHS
    doc: str = ""


class EntryInfo(TypedDict, total=False):
    """An entry point as a worker reports it (JSON, on the Worker row)."""

    name: str
    value: str  # module:attribute
    params: dict[str, dict[str, Any]] | None
    check: bool  # params are validated by a function of the package
    epochs: int
    doc: str
    error: str  # set when the worker could not import it


# --- declaring ------------------------------------------------------------------


def job(
    params: Mapping[str, Mapping[str, Any]] | Check | None = None, *, epochs: int = DEFAULT_EPOCHS
) -> Callable[[F], F]:
    """Declare a training function's parameters: a schema, name -> {"type": float | int | bool |
    str | choice, "min", "max", "choices", "default", "help"} (no default: required), or a
    function that takes the given params and returns them cleaned or raises
    `ConfigError({"name": "what is wrong"})`. `epochs` is the default length of a run."""
    schema = None if params is None or callable(params) else parse_schema(params)
    check = params if callable(params) else None
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= MAX_EPOCHS:
        raise TypeError(f"trainwatch.job: epochs must be a whole number from 1 to {MAX_EPOCHS}, got {epochs!r}")

    def declare(function: F) -> F:
        doc = (function.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        setattr(function, ATTRIBUTE, JobSpec(schema if check is None else None, check, epochs, doc[:500]))
        return function

    return declare


def spec_of(function: Any) -> JobSpec:
    """A function's declaration; an undeclared function takes no params."""
    spec = getattr(function, ATTRIBUTE, None)
    if isinstance(spec, JobSpec):
        return spec
    doc = (getattr(function, "__doc__", None) or "").strip().split("\n\n")[0].replace("\n", " ")
    return JobSpec({}, None, DEFAULT_EPOCHS, doc[:500])


def parse_schema(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """A declared schema, checked (a mistake in it is the developer's: TypeError naming the
    param) and normalised to JSON: every param with its type, bounds and default."""
    if not isinstance(raw, Mapping) or len(raw) > MAX_PARAMS:
        raise TypeError(f"trainwatch.job: params must be a dict of at most {MAX_PARAMS} names")
    schema: dict[str, dict[str, Any]] = {}
    for name, spec in raw.items():
        where = f"trainwatch.job: param {name!r}"
        if not isinstance(name, str) or not PARAM_NAME.match(name) or name in RESERVED:
            raise TypeError(f"{where}: a name is a Python identifier, not one of {', '.join(RESERVED)}")
        if not isinstance(spec, Mapping) or spec.get("type") not in PARAM_TYPES:
            raise TypeError(f"{where}: needs a type, one of {', '.join(PARAM_TYPES)}")
        unknown = set(spec) - {"type", "min", "max", "choices", "default", "help", "required_when"}
        if unknown:
            raise TypeError(f"{where}: unknown keys {sorted(unknown)}")
        clean = {"type": spec["type"], "help": str(spec.get("help", ""))[:500]}
        kind = spec["type"]
        if kind in ("float", "int"):
            for bound in ("min", "max"):
                value = spec.get(bound)
                if value is not None and (
                    isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                ):
                    raise TypeError(f"{where}: {bound} must be a finite number")
                clean[bound] = value
        if kind == "choice":
            choices = spec.get("choices")
            if not isinstance(choices, (list, tuple)) or not choices or not all(isinstance(c, str) for c in choices):
                raise TypeError(f"{where}: a choice needs choices, a list of strings")
            clean["choices"] = list(choices)
        if "required_when" in spec:
            # text that may be left empty unless another param has one of these values, e.g. a
            # path required when data is cifar10 or folder
            when = spec["required_when"]
            if (
                kind not in ("str", "path")
                or not isinstance(when, Mapping)
                or not all(isinstance(other, str) and other in raw and other != name for other in when)
                or not all(isinstance(values, (list, tuple)) and values for values in when.values())
            ):
                raise TypeError(f"{where}: required_when maps other params of this job to lists of their values")
            clean["required_when"] = {other: list(values) for other, values in when.items()}
        if "default" in spec:
            if not (kind in ("str", "path") and spec["default"] == ""):  # empty text: none given
                errors: dict[str, str] = {}
                read_params({name: clean}, {name: spec["default"]}, errors)
                if errors:
                    raise TypeError(f"{where}: its default {spec['default']!r} breaks its own rule: {errors}")
            clean["default"] = spec["default"]
        schema[name] = clean
    return schema


# --- validating -------------------------------------------------------------------


def describe_rule(spec: Mapping[str, Any]) -> str:
    """What a param accepts, in words (for messages and the pages)."""
    kind = spec["type"]
    if kind == "choice":
        return "one of " + ", ".join(spec["choices"])
    if kind == "bool":
        return "true or false"
    if kind in ("str", "path"):
        return f"text of at most {MAX_TEXT} characters" + (" (a path on the worker)" if kind == "path" else "")
    noun = "a number" if kind == "float" else "a whole number"
    low, high = spec.get("min"), spec.get("max")
    if low is not None and high is not None:
        return f"{noun} from {low:g} to {high:g}"
    if low is not None:
        return f"{noun} >= {low:g}"
    if high is not None:
        return f"{noun} <= {high:g}"
    return noun


def read_params(
    schema: Mapping[str, Mapping[str, Any]], raw: Any, errors: dict[str, str], prefix: str = ""
) -> dict[str, Any]:
    """The given params by the schema, defaults filled in; an error per bad, missing or unknown
    param under `prefix.name`."""
    fields = Fields(raw, prefix, errors)
    values: dict[str, Any] = {}
    for name, spec in schema.items():
        kind = spec["type"]
        if name not in fields.raw and "default" not in spec:
            fields.seen.add(name)
            errors.setdefault(fields.path(name), f"is required: {describe_rule(spec)}")
            continue
        default: Any = spec.get("default")
        low = spec.get("min")
        high = spec.get("max")
        if kind == "float":
            values[name] = fields.number(
                name, default, -math.inf if low is None else low, math.inf if high is None else high
            )
        elif kind == "int":
            values[name] = fields.integer(
                name, default, -(2**63) if low is None else math.ceil(low), 2**63 - 1 if high is None else int(high)
            )
        elif kind == "bool":
            values[name] = fields.boolean(name, default)
        elif kind in ("str", "path") and default == "" and fields.raw.get(name) == "":
            # empty text is "none given" for a param whose default is empty: what the server
            # stored when it filled in the defaults is read the same way on the worker
            fields.seen.add(name)
            values[name] = ""
        elif kind in ("str", "path"):
            values[name] = fields.text(name, default, MAX_TEXT)
        else:
            values[name] = fields.choice(name, default, tuple(spec["choices"]))
    for name, spec in schema.items():
        for other, wanted in spec.get("required_when", {}).items():
            if name in values and not values[name] and values.get(other) in wanted:
                errors.setdefault(
                    fields.path(name), f"is required when {other} is {values[other]}: {describe_rule(spec)}"
                )
    fields.finish()
    return values


def run_check(check: Check, raw: Any, errors: dict[str, str], prefix: str = "params") -> dict[str, Any]:
    """A package's own validation function: its ConfigError's fields under `prefix`; any other
    error is the whole params' (its message should name the field)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors[prefix] = f"must be an object, got {type_name(raw)}"
        return {}
    try:
        cleaned = check(dict(raw))
    except ConfigError as error:
        errors.update({f"{prefix}.{name}": message for name, message in error.errors.items()})
        return {}
    except (ValueError, TypeError) as error:
        errors[prefix] = str(error) or type(error).__name__
        return {}
    return dict(cleaned) if isinstance(cleaned, Mapping) else dict(raw)


@dataclass(frozen=True)
class EntryJob:
    """A queued run of a registered entry point, validated."""

    entry: str = field(default="", metadata=text(200))
    params: dict[str, Any] = field(default_factory=dict)
    device: str = field(default="auto", metadata=choice(DEVICES))
    epochs: int = field(default=DEFAULT_EPOCHS, metadata=integer(1, MAX_EPOCHS))
    seed: int = field(default=0, metadata=integer(0, MAX_SEED))
    checkpoints: RetentionConfig = field(default_factory=RetentionConfig)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": "entry",
            "entry": self.entry,
            "params": self.params,
            "device": self.device,
            "epochs": self.epochs,
            "seed": self.seed,
            "checkpoints": dataclasses.asdict(self.checkpoints),
        }

    @property
    def run_config(self) -> dict[str, Any]:
        """What the function reads as run.config: its params, and the run's length, seed and device."""
        return {**self.params, "epochs": self.epochs, "seed": self.seed, "device": self.device}

    def summary(self, given: Any = None) -> str:
        """A name for the run from the params it was given, e.g. 'resnet18 lr=0.05 optimizer=adam'."""
        keys = [key for key in self.params if isinstance(given, dict) and key in given]
        shown = " ".join(_label(key, self.params[key]) for key in keys)
        return f"{self.entry} {shown}".strip()[:200]


def _label(key: str, value: Any) -> str:
    return f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"


def is_entry_job(raw: Any) -> bool:
    return isinstance(raw, dict) and raw.get("job") == "entry"


def read_entry_job(raw: Any, catalog: Mapping[str, EntryInfo], where: str, check: Check | None = None) -> EntryJob:
    """An entry-point job config, validated against the entry points `where` (e.g. "the workers of
    the gpu queue") have; `check` is the entry point's own validation function when it declares
    one (the caller loads it). Raises ConfigError naming each bad field."""
    errors: dict[str, str] = {}
    top = Fields(raw, "", errors)
    top.seen.update(("job", "params"))
    base = top.read(EntryJob, params={}, checkpoints=top.section("checkpoints").read(RetentionConfig))
    name = base.entry
    info = find(catalog, name) if "entry" in top.raw and "entry" not in errors else None
    params: dict[str, Any] = {}
    if "entry" not in top.raw:
        errors["entry"] = "is required: the name of a registered entry point; " + _registered_phrase(catalog, where)
    elif name == BUILTIN or (info is not None and info.get("name") == BUILTIN):
        # by its name or by its module:function: its data paths are a run config's, checked as such
        errors["entry"] = "the built-in trainer takes a run config (job 'train' or 'check'), not params"
    elif info is None and "entry" not in errors:
        errors["entry"] = f"{name!r} is not a registered entry point: " + _registered_phrase(catalog, where)
    elif info is not None and info.get("error"):
        # why (a traceback from a worker's host) is for staff: the admin's job queue shows it
        errors["entry"] = (
            f"{info['name']!r} could not be imported on the workers; staff see why in the admin's job queue"
        )
    elif info is not None:
        name = info["name"]
        if info.get("params") is not None:
            params = read_params(info["params"] or {}, top.raw.get("params"), errors, "params")
        elif check is not None:
            params = run_check(check, top.raw.get("params"), errors)
        else:
            errors["params"] = (
                f"{name!r} validates its params with a function of its package, which must be installed "
                "where the web server runs too"
            )
    if errors:
        raise ConfigError(errors)
    epochs = base.epochs if "epochs" in top.raw else int((info or {}).get("epochs", DEFAULT_EPOCHS))
    return EntryJob(name, params, base.device, epochs, base.seed, base.checkpoints)


def find(catalog: Mapping[str, EntryInfo], name: str) -> EntryInfo | None:
    """By its name, or by its module:attribute."""
    if name in catalog:
        return catalog[name]
    return next((info for info in catalog.values() if info.get("value") == name), None)


def _registered_phrase(catalog: Mapping[str, EntryInfo], where: str) -> str:
    names = sorted(name for name in catalog if name != BUILTIN)
    if not names:
        return f"{where} have none (a package registers them under the entry-point group {ENTRY_GROUP})"
    return f"{where} have {', '.join(names)}"


# --- the worker's side --------------------------------------------------------------


def registered() -> dict[str, importlib.metadata.EntryPoint]:
    """The entry points of the group installed here, by name."""
    return {point.name: point for point in importlib.metadata.entry_points(group=ENTRY_GROUP)}


def load(name: str) -> Callable[..., Any]:
    """The registered function of that name. Nothing else is ever imported: a name that is not
    registered here is refused before any import."""
    point = registered().get(name)
    if point is None:
        names = ", ".join(sorted(registered())) or "none"
        raise EntryError(f"entry point {name!r} is not registered on this worker (group {ENTRY_GROUP}; here: {names})")
    try:
        function = point.load()
    except Exception as error:
        raise EntryError(
            f"entry point {name!r} ({point.value}) could not be imported: {type(error).__name__}: {error}"
        ) from error
    if not callable(function):
        raise EntryError(f"entry point {name!r} ({point.value}) is not a function")
    return function


def describe_registered() -> list[EntryInfo]:
    """Every registered entry point, imported to read its declaration; one that fails to import
    is listed with its error rather than hidden."""
    described = []
    for name, point in sorted(registered().items()):
        info = EntryInfo(name=name, value=point.value)
        try:
            spec = spec_of(load(name))
        except (EntryError, TypeError) as error:
            cause = error.__cause__ or error
            info["error"] = "".join(traceback.format_exception_only(type(cause), cause)).strip()[-1000:]
        else:
            info["params"], info["check"] = spec.params, spec.check is not None
            info["epochs"], info["doc"] = spec.epochs, spec.doc
        described.append(info)
    return described


# --- validation by code, away from the web process -------------------------------


def check_in_child(name: str, timeout: float = 60.0) -> Check:
    """A `check` for read_entry_job that runs the entry point's own validation function in a
    short-lived Python process: importing a team's package (and the torch it imports, about
    600 MB) must not grow the web server's processes. Raises EntryError when the package cannot
    be imported here, or the check does not answer within `timeout` seconds."""

    def check(params: dict[str, Any]) -> Any:
        try:
            child = subprocess.run(
                [sys.executable, "-m", "trainer.entry", "check", name],
                input=json.dumps(params),
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise ValueError(f"{name!r}'s own validation did not answer within {timeout:g} s") from None
        lines = child.stdout.strip().splitlines()
        answer: dict[str, Any] = (
            json.loads(lines[-1]) if child.returncode == 0 and lines else {"unavailable": child.stderr[-500:]}
        )
        if "errors" in answer:
            raise ConfigError(answer["errors"])
        if "error" in answer:
            raise ValueError(answer["error"])
        if "unavailable" in answer:
            raise EntryError(answer["unavailable"])
        return answer["params"]

    return check


def _check_here(name: str) -> dict[str, Any]:
    """The child's side: the params on stdin, checked by the entry point's function."""
    params = json.loads(sys.stdin.read())
    try:
        check = spec_of(load(name)).check
    except EntryError as error:
        return {"unavailable": str(error)}
    if check is None:
        return {"unavailable": f"{name!r} declares no validation function"}
    try:
        return {"params": dict(check(params))}
    except ConfigError as error:
        return {"errors": error.errors}
    except (ValueError, TypeError) as error:
        return {"error": str(error) or type(error).__name__}


if __name__ == "__main__":
    # the module as the package imports it (trainwatch.job marks functions with its JobSpec), not __main__
    from trainer import entry

    if len(sys.argv) == 3 and sys.argv[1] == "check":
        print(json.dumps(entry._check_here(sys.argv[2])))
    else:
        sys.exit("usage: python -m trainer.entry check ENTRY_POINT_NAME < params.json")
