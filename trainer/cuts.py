"""The diagnosis as a live run shows it: the series of a run trained for real, cut at a
fraction of its steps, diagnosed as the tracker diagnoses a running run (its end: as an ended
one). tests/diagnosis/test_pathologies.py and bench/diagnosis.py read trainer.pathologies
through here."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from trainer.config import RunConfig
from trainer.diagnosis import Context, Finding, diagnose, health, histogram_series
from trainer.loop import RunResult, train
from trainer.pathologies import HEALTHY, PATHOLOGIES, with_instrumentation
from trainer.sink import MemorySink

CUTS = (0.10, 0.25, 0.50, 1.0)


@dataclass
class TrainedRun:
    config: RunConfig
    sink: MemorySink
    result: RunResult

    def diagnosed(self, fraction: float = 1.0) -> list[Finding]:
        """What the diagnosis says when the run has done `fraction` of its steps."""
        info = self.sink.info
        assert info is not None
        ended = fraction >= 1.0
        limit = np.iinfo(np.int64).max if ended else int(info.total_steps * fraction)
        series = {}
        for key in self.sink.series:
            steps, values = self.sink.get(key)
            series[key] = (steps[steps < limit], values[steps < limit])
        series.update(
            histogram_series(
                [(h.key, h.step, h.std, h.nonfinite) for h in self.sink.histogram_records if h.step < limit]
            )
        )
        status, message = (self.result.status, self.result.message) if ended else ("running", "")
        return diagnose(
            series,
            Context.from_config(
                self.config, info.classes, info.steps_per_epoch, status, message, kinds=info.parameter_kinds
            ),
        )


def train_for_cuts(raw: dict, seed: int | None = None) -> TrainedRun:
    config = RunConfig.from_dict({**with_instrumentation(raw), **({"seed": seed} if seed is not None else {})})
    sink = MemorySink()
    return TrainedRun(config, sink, train(config, sink))


@dataclass
class CutTable:
    """Per cut: the pathologies named by their rule, and the healthy runs with no warning or error."""

    named: dict[float, list[str]] = field(default_factory=dict)
    quiet: dict[float, list[str]] = field(default_factory=dict)

    def markdown(self) -> str:
        lines = ["| cut at | pathologies named | healthy runs with no warning |", "| --- | --- | --- |"]
        for fraction in CUTS:
            label = "end" if fraction >= 1.0 else f"{fraction:.0%} of the steps"
            lines.append(
                f"| {label} | {len(self.named[fraction])} of {len(PATHOLOGIES)} "
                f"| {len(self.quiet[fraction])} of {len(HEALTHY)} |"
            )
        return "\n".join(lines)


def train_all(seed: int | None = None) -> dict[str, TrainedRun]:
    runs = {name: train_for_cuts(raw, seed) for name, raw in HEALTHY.items()}
    runs.update({name: train_for_cuts(raw, seed) for name, (raw, _) in PATHOLOGIES.items()})
    return runs


def cut_table(runs: dict[str, TrainedRun]) -> CutTable:
    table = CutTable()
    for fraction in CUTS:
        table.named[fraction] = [
            name
            for name, (_, rule) in PATHOLOGIES.items()
            if any(f.rule == rule for f in runs[name].diagnosed(fraction))
        ]
        table.quiet[fraction] = [name for name in HEALTHY if health(runs[name].diagnosed(fraction)) in ("ok", "info")]
    return table
