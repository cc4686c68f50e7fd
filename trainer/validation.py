"""Reading one JSON object field by field, with an error per bad field under its
dotted path (e.g. `optimizer.lr`). Used by trainer.config, the one validator.

A dataclass field declares its rule in its metadata (`field(default=0.1, metadata=number(0, 10))`),
next to its default; `Fields.read(SomeConfig)` reads every field by its rule."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, TypeVar

MAX_PATH_LENGTH = 4096
RULE = "rule"  # the metadata key of a field's rule: (reader method, its arguments)
T = TypeVar("T")


def _rule(method: str, *args: Any, **kwargs: Any) -> Mapping[str, Any]:
    return {RULE: (method, args, kwargs)}


def number(minimum: float, maximum: float, exclusive_minimum: bool = False) -> Mapping[str, Any]:
    return _rule("number", minimum, maximum, exclusive_minimum=exclusive_minimum)


def integer(minimum: int, maximum: int) -> Mapping[str, Any]:
    return _rule("integer", minimum, maximum)


def optional_integer(minimum: int, maximum: int) -> Mapping[str, Any]:
    """A whole number, or null / absent for "derived from the run" (e.g. the run's length)."""
    return _rule("optional_integer", minimum, maximum)


def choice(allowed: tuple[str, ...]) -> Mapping[str, Any]:
    return _rule("choice", allowed)


def boolean() -> Mapping[str, Any]:
    return _rule("boolean")


def int_list(min_len: int, max_len: int, minimum: int, maximum: int) -> Mapping[str, Any]:
    return _rule("int_list", min_len, max_len, minimum, maximum)


def float_pair(minimum: float, maximum: float) -> Mapping[str, Any]:
    return _rule("float_pair", minimum, maximum)


def text(max_length: int = MAX_PATH_LENGTH) -> Mapping[str, Any]:
    return _rule("text", max_length=max_length)


def type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


class Fields:
    """Reads one JSON object, recording an error per bad field under its dotted path."""

    def __init__(self, raw: Any, prefix: str, errors: dict[str, str]):
        self.prefix = prefix
        self.errors = errors
        self.seen: set[str] = set()
        self.allowed: tuple[str, ...] | None = None
        self.allowed_phrase = ""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            errors[prefix or "config"] = f"must be an object, got {type_name(raw)}"
            raw = {}
        self.raw: dict[str, Any] = raw

    def path(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def ok(self, name: str) -> bool:
        return self.path(name) not in self.errors

    def restrict_to(self, names: tuple[str, ...], phrase: str) -> None:
        self.allowed, self.allowed_phrase = names, phrase

    def _get(self, name: str) -> tuple[bool, Any]:
        self.seen.add(name)
        if name not in self.raw:
            return False, None
        return True, self.raw[name]

    def _fail(self, name: str, message: str) -> None:
        self.errors.setdefault(self.path(name), message)

    def read(self, cls: type[T], defaults: Mapping[str, Any] | None = None, **given: Any) -> T:
        """A `cls` dataclass from this object: each field by the rule in its metadata, from
        `defaults` or its own default when absent; fields in `given` are already read."""
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
            if spec.name in given:
                self.seen.add(spec.name)
                values[spec.name] = given[spec.name]
                continue
            method, args, kwargs = spec.metadata[RULE]
            default = (defaults or {}).get(spec.name, spec.default)
            values[spec.name] = getattr(self, method)(spec.name, default, *args, **kwargs)
        self.finish()
        return cls(**values)

    def section(self, name: str) -> Fields:
        _, raw = self._get(name)
        return Fields(raw, self.path(name), self.errors)

    def number(
        self, name: str, default: float, minimum: float, maximum: float, exclusive_minimum: bool = False
    ) -> float:
        present, value = self._get(name)
        if not present:
            return default
        return self._check_number(name, value, default, minimum, maximum, exclusive_minimum)

    def _check_number(
        self, name: str, value: Any, default: Any, minimum: float, maximum: float, exclusive_minimum: bool
    ) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self._fail(name, f"must be a number, got {type_name(value)} {value!r}")
            return default
        if not math.isfinite(value):
            self._fail(name, f"must be a finite number, got {value!r}")
            return default
        low_ok = value > minimum if exclusive_minimum else value >= minimum
        if not low_ok or value > maximum:
            low = f"> {minimum:g}" if exclusive_minimum else f">= {minimum:g}"
            self._fail(name, f"must be {low} and <= {maximum:g}, got {value!r}")
            return default
        return float(value)

    def integer(self, name: str, default: int, minimum: int, maximum: int) -> int:
        present, value = self._get(name)
        if not present:
            return default
        return self._check_integer(name, value, default, minimum, maximum)

    def _check_integer(self, name: str, value: Any, default: Any, minimum: int, maximum: int) -> Any:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            self._fail(name, f"must be a whole number from {minimum} to {maximum}, got {value!r}")
            return default
        return value

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        present, value = self._get(name)
        if not present:
            return default
        if value not in allowed:
            self._fail(name, f"must be one of {', '.join(allowed)}; got {value!r}")
            return default
        return value

    def boolean(self, name: str, default: bool) -> bool:
        present, value = self._get(name)
        if not present:
            return default
        if not isinstance(value, bool):
            self._fail(name, f"must be true or false, got {value!r}")
            return default
        return value

    def int_list(
        self, name: str, default: tuple[int, ...], min_len: int, max_len: int, minimum: int, maximum: int
    ) -> tuple[int, ...]:
        present, value = self._get(name)
        if not present:
            return default
        rule = f"a list of {min_len} to {max_len} whole numbers from {minimum} to {maximum}"
        if (
            not isinstance(value, list)
            or not min_len <= len(value) <= max_len
            or any(isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= maximum for v in value)
        ):
            self._fail(name, f"must be {rule}, got {value!r}")
            return default
        return tuple(value)

    def float_pair(
        self, name: str, default: tuple[float, float], minimum: float, maximum: float
    ) -> tuple[float, float]:
        present, value = self._get(name)
        if not present:
            return default
        if not isinstance(value, list) or len(value) != 2:
            self._fail(name, f"must be a list of two numbers in [{minimum:g}, {maximum:g}], got {value!r}")
            return default
        first = self._check_number(name, value[0], default[0], minimum, maximum, False)
        second = self._check_number(name, value[1], default[1], minimum, maximum, False)
        return (first, second)

    def finish(self) -> None:
        """Unknown keys are errors: a typo must not silently fall back to a default."""
        for key in self.raw:
            if key in self.seen and (self.allowed is None or key in self.allowed):
                continue
            if self.allowed is not None and key in self.seen:
                self._fail(key, f"is not {self.allowed_phrase}; allowed: {', '.join(self.allowed)}")
            else:
                known = sorted(self.seen if self.allowed is None else self.allowed)
                self._fail(key, f"unknown setting; allowed here: {', '.join(known)}")

    def optional_integer(self, name: str, default: int | None, minimum: int, maximum: int) -> int | None:
        present, value = self._get(name)
        if not present or value is None:
            return default
        return self._check_integer(name, value, default, minimum, maximum)

    def text(self, name: str, default: str, max_length: int = MAX_PATH_LENGTH) -> str:
        present, value = self._get(name)
        if not present:
            return default
        if not isinstance(value, str) or not value.strip() or len(value) > max_length or "\x00" in value:
            self._fail(name, f"must be non-empty text of at most {max_length} characters, got {value!r}")
            return default
        return value
