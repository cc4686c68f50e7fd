"""Runs the diagnosis (trainer.diagnosis) over a run's stored series and keeps its
findings on the run: while it runs (from the sink, every DIAGNOSE_SECONDS) and at its end."""

from __future__ import annotations

from django.conf import settings

from tracker.ingest import read_series
from tracker.lib.downsample import min_max_downsample
from tracker.models import Run
from trainer.diagnosis import Context, Finding, diagnose, health, histogram_series

# per series: the rules look at first values, recent windows and extremes, which
# min/max downsampling keeps
DIAGNOSIS_POINTS = 5000
SERIES_READ = ("loss", "train_acc", "val_acc", "val_loss")
PREFIXES_READ = ("update_ratio/", "grad_norm/", "weight_norm/", "dead_fraction/", "saturated_fraction/")


def _check_findings(checks: dict | None) -> list[Finding]:
    if not checks:
        return []
    findings = [Finding("check", "warning", f"sanity check failed: {c['name']}", c["message"],
                        "fix this before training on all the data", [], None, c["numbers"])
                for c in checks.get("sanity", []) if not c["passed"]]
    for part in checks.get("gradient", []):
        if part["verdict"] not in ("good", "ok"):
            worst = max(part["tensors"], key=lambda t: t["max_relative_error"])
            findings.append(Finding(
                "gradient_check", "error" if part["verdict"] == "wrong" else "warning",
                f"gradient check of the {part['part']}: {part['verdict']}",
                f"max relative error {worst['max_relative_error']:.2e} on {worst['tensor']} "
                f"({worst['dims_checked']} dimensions, {worst['kink_crossings']} kink crossings)",
                "a wrong analytic gradient: check custom layers and losses; try a larger h before blaming the code",
                [], None, {"max_relative_error": worst["max_relative_error"]}))
    return findings


def diagnose_run(run_id: int, status: str | None = None, message: str | None = None,
                 save: bool = True) -> tuple[list[dict], str]:
    """Diagnose the run from what is stored: (findings, health), saved on the run unless
    save=False (the runner saves them with the final status, in one update)."""
    run = Run.objects.get(pk=run_id)
    keys = run.series.values_list("key", flat=True)
    series = {}
    for key in keys:
        if key in SERIES_READ or key.startswith(PREFIXES_READ):
            steps, values = read_series(run.pk, key)
            series[key] = min_max_downsample(steps, values, DIAGNOSIS_POINTS)
    summaries = run.histograms.filter(key__regex=r"^(activation|weight)/").values_list("key", "step", "std")
    series.update(histogram_series(list(summaries)))
    context = Context.from_config(run.config, run.steps_per_epoch, status or run.status,
                                  run.message if message is None else message)
    findings = _check_findings(run.checks)
    if series:
        findings += diagnose(series, context)
    as_dicts = [finding.to_dict() for finding in findings]
    run_health = health(findings) if (series or findings) else ""
    if save:
        Run.objects.filter(pk=run.pk).update(findings=as_dicts, health=run_health)
    return as_dicts, run_health
