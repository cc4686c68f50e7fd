"""Findings from a preflight's or a check job's results."""

from __future__ import annotations

from trainer.diagnosis.base import Finding
from trainer.payloads import CheckResults


def check_findings(checks: CheckResults | None) -> list[Finding]:
    """Findings from a preflight's or a check job's results: a failed sanity check, a
    gradient check worse than ok."""
    if not checks:
        return []
    findings = [
        Finding(
            "check",
            "warning",
            f"sanity check failed: {c['name']}",
            c["message"],
            "fix this before training on all the data",
            [],
            None,
            c["numbers"],
        )
        for c in checks.get("sanity", [])
        if not c["passed"]
    ]
    for part in checks.get("gradient", []):
        if part["verdict"] not in ("good", "ok"):
            worst = max(part["tensors"], key=lambda t: t["max_relative_error"])
            findings.append(
                Finding(
                    "gradient_check",
                    "error" if part["verdict"] == "wrong" else "warning",
                    f"gradient check of the {part['part']}: {part['verdict']}",
                    f"max relative error {worst['max_relative_error']:.2e} on {worst['tensor']} "
                    f"({worst['dims_checked']} dimensions, {worst['kink_crossings']} kink crossings)",
                    "a wrong analytic gradient: check custom layers and losses; try a larger h before blaming the code",
                    [],
                    None,
                    {"max_relative_error": worst["max_relative_error"]},
                )
            )
    return findings
