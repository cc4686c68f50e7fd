"""A study's report as Markdown and CSV, from its summary (tracker.core.studies.summary)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from tracker.core.studies import StudySummary


def shown(value: Any) -> str:
    """A value in a table of a Markdown or CSV document: 4 significant digits, a config
    choice by its name, a dash for nothing."""
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return str(value.get("name") or json.dumps(value, sort_keys=True))
    return str(value)


def report_markdown(data: StudySummary) -> str:
    lines = [f"# Study: {data['name']}", ""]
    if data["question"]:
        lines += [f"**Question.** {data['question']}", ""]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(data["counts"].items()))
    lines += [f"{data['kind']} study, {data['total']} runs ({counts}).", ""]
    lines += [
        "## Leaderboard",
        "",
        "| rank | run | " + " | ".join(data["keys"]) + " | best val acc | final loss (smoothed) | status | diagnosis |",
        "| --- | --- | " + " | ".join("---" for _ in data["keys"]) + " | --- | --- | --- | --- |",
    ]
    for rank, row in enumerate(data["rows"], 1):
        cells = [
            str(rank),
            f"#{row['id']} {row['name']}",
            *(shown(row["values"].get(k)) for k in data["keys"]),
            shown(row["best_val_accuracy"]),
            shown(row["final_loss"]),
            row["status"],
            row["finding"] or row["health"] or "–",
        ]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    lines.append("")
    if data["warnings"]:
        lines += ["## Warnings", "", *(f"- {w}" for w in data["warnings"]), ""]
    if data["ensemble"]:
        e = data["ensemble"]
        members = ", #".join(map(str, e["runs"]))
        lines += [
            "## Ensemble",
            "",
            f"Top {e['k']} runs (#{members}) averaged: validation accuracy "
            f"{e['accuracy']:.4f}, against {e['best_single']:.4f} for the best single run "
            f"({e['examples']} examples).",
            "",
        ]
    findings: dict[str, int] = {}
    for row in data["rows"]:
        if row["finding"]:
            findings[row["finding"]] = findings.get(row["finding"], 0) + 1
    ranked = sorted(findings.items(), key=lambda item: -item[1])
    lines += ["## Diagnosis", "", *([f"- {title}: {n} run(s)" for title, n in ranked] or ["- no finding"]), ""]
    lines += ["## Notes", "", data["notes"] or "(none)", ""]
    return "\n".join(lines)


# a spreadsheet runs a cell that starts with one of these as a formula (OWASP's CSV injection)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, quoted with a leading ' so that it
    shows as the text it is; numbers, and text that reads as a number (-0.5), are left alone."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


def report_csv(data: StudySummary) -> str:
    """The study's leaderboard as CSV; run names, config values and findings are people's text,
    so a cell that would run as a formula in a spreadsheet is quoted."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "rank",
            "run",
            "name",
            "stage",
            *data["keys"],
            "best_val_accuracy",
            "final_loss",
            "status",
            "health",
            "finding",
            "seconds",
        ]
    )
    for rank, row in enumerate(data["rows"], 1):
        writer.writerow(
            _cell(cell)
            for cell in [
                rank,
                row["id"],
                row["name"],
                row["stage"],
                *(shown(row["values"].get(k)) for k in data["keys"]),
                row["best_val_accuracy"],
                row["final_loss"],
                row["status"],
                row["health"],
                row["finding"],
                row["seconds"],
            ]
        )
    return out.getvalue()
