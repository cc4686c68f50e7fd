"""A run's findings: the diagnosis (trainer.diagnosis) run over its stored series, kept on the
run. While it runs (from the worker's sink, or an external run's ingest, every
TRAINWATCH_DIAGNOSE_SECONDS) and at its end.

What a running run shows is settled with hysteresis, so that a finding neither flickers nor
vanishes without a word: a warning (or information) shows once CONFIRMATIONS diagnoses in a
row have found it, an error at once; a shown finding is retracted once RETRACTIONS diagnoses
in a row have not found it, and the history says so and why. At the run's end the final
diagnosis is shown as it is. Each shown finding carries the step at which it was raised."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from tracker.core.alerts import alert_on_findings
from tracker.core.storage import read_downsampled
from tracker.models import Run
from trainer.config import RunConfig
from trainer.diagnosis import (
    SEVERITY_ORDER,
    Context,
    Finding,
    Series,
    check_findings,
    diagnose,
    histogram_series,
    waiting_rules,
)
from trainer.payloads import FindingDict, WaitingRules
from trainer.tensor_names import CARRIED_GRADIENT_KEY, EVAL_IN_TRAIN_MODE_KEY, ROUGHNESS_KEY

# per series: the rules look at first values, recent windows and extremes, which
# min/max downsampling keeps; a long run's series come from its summaries (tracker.lib.summaries):
# the run-level series (loss, accuracies) at about this many points ...
DIAGNOSIS_POINTS = 2000
# ... and each per-tensor series (ratios, norms, dead and saturated fractions: dozens of them)
# at about this many, which on a run of millions of steps reads 2,048-point groups
LAYER_DIAGNOSIS_POINTS = 400
SERIES_READ = ("loss", "train_acc", "val_acc", "val_loss", ROUGHNESS_KEY, CARRIED_GRADIENT_KEY, EVAL_IN_TRAIN_MODE_KEY)
PREFIXES_READ = ("update_ratio/", "grad_norm/", "weight_norm/", "dead_fraction/", "saturated_fraction/")
# On a running run: a warning shows once found by this many diagnoses in a row (an error at once) ...
CONFIRMATIONS = 2
# ... and a shown finding goes once this many diagnoses in a row have not found it.
RETRACTIONS = 3
HISTORY_LIMIT = 200  # events kept per run: a finding that keeps coming and going is not a story


@dataclass(frozen=True)
class Moment:
    """When a diagnosis looks: the run's latest step, its planned steps (0: unknown), the time,
    and whether the run has ended."""

    step: int
    total_steps: int
    at: str
    final: bool

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.step / self.total_steps) if self.total_steps else None


@dataclass
class Settled:
    shown: list[dict[str, Any]]
    state: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def health(self) -> str:
        return max((f["severity"] for f in self.shown), key=SEVERITY_ORDER.__getitem__, default="ok")


def finding_key(finding: FindingDict | dict[str, Any]) -> str:
    """One key per finding: its rule, and its title where one rule gives several (failed checks)."""
    return f"{finding['rule']}|{finding['title']}"


def settle(shown: list[dict[str, Any]], state: dict[str, Any], fresh: list[FindingDict], moment: Moment) -> Settled:
    """What the run shows after a diagnosis that found `fresh`, given what it showed and what
    was pending: the findings shown (each with raised_step, raised_fraction, raised_at,
    first_seen_step, and `missed`, the diagnoses in a row that lately did not find it), the
    new state, and the history's new events."""
    previous = {finding_key(f): f for f in shown}
    pending: dict[str, dict[str, int]] = state.get("pending", {})
    found = {finding_key(f): f for f in fresh}
    kept: dict[str, dict[str, Any]] = {}
    still_pending: dict[str, dict[str, int]] = {}
    events: list[dict[str, Any]] = []

    def event(kind: str, finding: dict[str, Any] | FindingDict, **extra: Any) -> None:
        events.append(
            {
                "event": kind,
                "rule": finding["rule"],
                "title": finding["title"],
                "severity": finding["severity"],
                "step": moment.step,
                "fraction": moment.fraction,
                "at": moment.at,
                **extra,
            }
        )

    for key, finding in found.items():
        if key in previous:
            old = previous[key]
            raised = {name: old[name] for name in ("raised_step", "raised_fraction", "raised_at", "first_seen_step")}
            kept[key] = {**finding, **raised, "missed": 0}
            if finding["severity"] != old["severity"]:
                event(
                    "changed", finding, evidence=finding["evidence"], advice=finding["advice"], previous=old["severity"]
                )
            continue
        sightings = pending.get(key, {"seen": 0, "first_step": moment.step})
        seen = sightings["seen"] + 1
        if moment.final or finding["severity"] == "error" or seen >= CONFIRMATIONS:
            kept[key] = {
                **finding,
                "raised_step": moment.step,
                "raised_fraction": moment.fraction,
                "raised_at": moment.at,
                "first_seen_step": sightings["first_step"],
                "missed": 0,
            }
            event("raised", finding, evidence=finding["evidence"], advice=finding["advice"])
        else:
            still_pending[key] = {"seen": seen, "first_step": sightings["first_step"]}

    for key, old in previous.items():
        if key in found:
            continue
        missed = old.get("missed", 0) + 1
        since = old.get("missed_since_step", moment.step) if missed > 1 else moment.step
        if moment.final:
            event("retracted", old, reason=f"the final diagnosis, at step {moment.step}, no longer finds it")
        elif missed >= RETRACTIONS:
            event("retracted", old, reason=f"not found by the last {missed} diagnoses (steps {since} to {moment.step})")
        else:
            kept[key] = {**old, "missed": missed, "missed_since_step": since}

    order = sorted(kept.values(), key=lambda f: (-SEVERITY_ORDER[f["severity"]], f["raised_step"]))
    return Settled(order, {"pending": still_pending}, events)


@dataclass
class Diagnosis:
    """A diagnosis's outcome: the run's fields to update, and what changed (for the alerts)."""

    fields: dict[str, Any]
    events: list[dict[str, Any]]

    @property
    def findings(self) -> list[dict[str, Any]]:
        return self.fields["findings"]

    @property
    def health(self) -> str:
        return self.fields["health"]


def stored_findings(
    run: Run, status: str, message: str, until_step: int | None = None
) -> tuple[list[Finding], Series, list[WaitingRules]]:
    """What the rules find in the run's stored points (up to `until_step`: the run as it stood
    then), with the series they read and the rules that could not read it."""
    keys = [
        key for key in run.series.values_list("key", flat=True) if key in SERIES_READ or key.startswith(PREFIXES_READ)
    ]
    # the summaries of a long series, not its points: two reads whatever the number of keys
    layer_keys = [key for key in keys if key.startswith(PREFIXES_READ)]
    series = read_downsampled(
        run.pk, dict.fromkeys(k for k in keys if k not in layer_keys), until_step, DIAGNOSIS_POINTS
    )
    series.update(read_downsampled(run.pk, dict.fromkeys(layer_keys), until_step, LAYER_DIAGNOSIS_POINTS))
    summaries = run.histograms.filter(Q(key__regex=r"^(activation|weight)/") | Q(nonfinite__gt=0))
    if until_step is not None:
        summaries = summaries.filter(step__lte=until_step)
    series.update(histogram_series(list(summaries.values_list("key", "step", "std", "nonfinite"))))
    if run.measured_by_client:
        context = Context.from_facts(
            run.context, run.tensors, run.steps_per_epoch, status, message, kinds=run.tensor_kinds
        )
    else:
        context = Context.from_config(
            RunConfig.from_dict(run.config), run.classes, run.steps_per_epoch, status, message, kinds=run.tensor_kinds
        )
    findings = check_findings(run.checks)
    if series:
        findings += diagnose(series, context)
    return findings, series, waiting_rules(series.keys(), context)


def diagnose_run(run_id: int, status: str | None = None, message: str | None = None, save: bool = True) -> Diagnosis:
    """Diagnose the run from what is stored and settle what it shows; saved on the run (and
    its alerts raised) unless save=False: tracker.core.lifecycle saves the final one with the
    final status, in one update, then raises them."""
    run = Run.objects.get(pk=run_id)
    status, message = status or run.status, run.message if message is None else message
    findings, series, waiting = stored_findings(run, status, message)
    fresh = [finding.to_dict() for finding in findings]
    last_step = max((int(steps[-1]) for steps, _ in series.values() if len(steps)), default=run.steps_done)
    moment = Moment(last_step, run.total_steps, timezone.now().isoformat(), final=status in Run.FINISHED)
    with transaction.atomic():
        # one settling at a time: a worker's last periodic diagnosis and its final one, or two ingests
        locked = Run.objects.select_for_update().only("findings", "finding_state", "finding_history").get(pk=run.pk)
        settled = settle(locked.findings, locked.finding_state, fresh, moment)
        diagnosis = Diagnosis(
            {
                "findings": settled.shown,
                "health": settled.health if (series or fresh or settled.shown) else "",
                "finding_state": settled.state,
                "finding_history": (locked.finding_history + settled.events)[-HISTORY_LIMIT:],
                "rules_waiting": waiting,
            },
            settled.events,
        )
        if save:
            Run.objects.filter(pk=run.pk).update(**diagnosis.fields)
    if save:
        alert_on_findings(run.pk, diagnosis.events)
    return diagnosis
