"""The JSON shapes the trainer produces and the tracker stores and shows: check results
(a preflight or a check job) and diagnosis findings. Typed here, once, for both sides."""

from __future__ import annotations

from typing_extensions import TypedDict


class SanityCheckDict(TypedDict):
    name: str
    passed: bool
    numbers: dict[str, float]
    message: str


class TensorCheckDict(TypedDict):
    tensor: str
    dims_checked: int
    max_relative_error: float
    median_relative_error: float
    kink_crossings: int
    verdict: str
    worst: dict[str, float]


class GradientPartDict(TypedDict):
    part: str  # "data loss" or "regularisation"
    h: float
    kinked_objective: bool
    tensors: list[TensorCheckDict]
    verdict: str
    max_relative_error: float


class CheckResults(TypedDict):
    sanity: list[SanityCheckDict]
    gradient: list[GradientPartDict]
    passed: bool


class WaitingRules(TypedDict):
    """Rules of the diagnosis that cannot read a run yet: what they need and how to give it."""

    needs: str  # what is missing, in words
    how: str  # what to log, or how to watch, for it
    rules: list[str]


class FindingDict(TypedDict):
    rule: str
    severity: str  # info | warning | error
    title: str
    evidence: str
    advice: str
    series: list[str]
    step: int | None
    numbers: dict[str, float]
