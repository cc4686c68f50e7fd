"""A report as Markdown with its charts as image files, in one zip: the text blocks as written
(disarmed: tracker.core.markdown.inert), every other block's data as a table, and each chart as
the PNG the page drew (sent by the page, so that the file shows what the page showed)."""

from __future__ import annotations

import base64
import binascii
import io
import zipfile
from typing import Any

from tracker.core.markdown import inert
from tracker.core.reports import Viewer, block_data
from tracker.core.study_report import shown
from tracker.models import Report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_IMAGE_BYTES = 8 * 2**20
DRAWN = ("chart", "layers", "first_layer")  # the blocks the page draws on canvases


class ExportError(Exception):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def decoded_images(raw: Any, report: Report) -> dict[str, bytes]:
    """{block id: PNG bytes} from the page's {block id: "data:image/png;base64,..."}; only the
    report's chart blocks, each a PNG under MAX_IMAGE_BYTES."""
    if not isinstance(raw, dict):
        raise ExportError({"images": "must be an object of block id -> PNG data URL"})
    charts = {block["id"] for block in report.blocks if block["type"] in DRAWN}
    images: dict[str, bytes] = {}
    for block_id, url in raw.items():
        where = f"images.{block_id}"
        if block_id not in charts:
            raise ExportError({where: "is not a chart, heatmap or image block of this report"})
        if not isinstance(url, str) or not url.startswith("data:image/png;base64,"):
            raise ExportError({where: "must be a data:image/png;base64 URL"})
        if len(url) > MAX_IMAGE_BYTES * 4 // 3 + 100:
            raise ExportError({where: f"must be at most {MAX_IMAGE_BYTES // 2**20} MiB"})
        try:
            png = base64.b64decode(url.split(",", 1)[1], validate=True)
        except (binascii.Error, ValueError):
            raise ExportError({where: "is not valid base64"}) from None
        if not png.startswith(PNG_SIGNATURE):
            raise ExportError({where: "is not a PNG image"})
        images[block_id] = png
    return images


def _cell(value: Any) -> str:
    # a table cell is one line of Markdown text: no pipe, no raw HTML, no newline
    return inert(shown(value)).replace("|", "\\|").replace("\n", " ")


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    return [
        "| " + " | ".join(_cell(cell) for cell in head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
        *("| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows),
        "",
    ]


def _block_markdown(block: dict[str, Any], data: dict[str, Any], images: dict[str, bytes]) -> list[str]:
    lines: list[str] = []
    if block.get("title"):
        lines += [f"## {_cell(block['title'])}", ""]
    if block.get("frozen"):
        frozen = block["frozen"]
        lines += [f"*Frozen {frozen.get('at', '')[:10]}: {len(frozen['runs'])} runs, to step {frozen['step']}.*", ""]
    if data.get("missing"):
        lines += [f"*{data['missing']}.*", ""]
    kind = block["type"]
    if kind == "chart":
        if block["id"] in images:
            lines += [f"![{_cell(block.get('title') or ', '.join(block['metrics']))}](images/{block['id']}.png)", ""]
        names = ", ".join(f"#{run['id']} {run['label']}" for run in data.get("runs", []))
        lines += [f"{_cell(', '.join(block['metrics']))} of {len(data.get('runs', []))} runs: {_cell(names)}", ""]
    elif kind in ("layers", "first_layer"):
        what = (
            f"{block['quantity'].replace('_', ' ')} of each tensor" if kind == "layers" else "the first layer's weights"
        )
        if block["id"] in images:
            lines += [f"![{_cell(block.get('title') or what)}](images/{block['id']}.png)", ""]
        run = data.get("run")
        if run:
            lines += [f"{what}, run #{run['id']} {_cell(run['name'])}", ""]
    elif kind == "runs":
        lines += _table(data["columns"], [row["cells"] for row in data["rows"]])
    elif kind == "config_diff":
        head = ["config key", *(f"#{run['id']} {run['name']}" for run in data["runs"])]
        lines += (
            _table(head, [[key, *values] for key, values in data["diff"].items()])
            if data["diff"]
            else ["The configs are identical.", ""]
        )
    elif kind == "findings":
        for run in data["runs"]:
            lines += [f"### #{run['id']} {_cell(run['name'])} ({run['health'] or '–'})", ""]
            lines += [
                f"- **{finding['severity']}: {_cell(finding['title'])}** {_cell(finding['evidence'])}"
                for finding in run["findings"]
            ] or ["- no finding"]
            lines.append("")
    elif kind == "leaderboard":
        head = ["rank", "run", *data["keys"], "best val acc", "final loss", "status", "diagnosis"]
        rows = [
            [
                rank,
                f"#{row['id']} {row['name']}",
                *(row["values"].get(key) for key in data["keys"]),
                row["best_val_accuracy"],
                row["final_loss"],
                row["status"],
                row["finding"],
            ]
            for rank, row in enumerate(data["rows"], 1)
        ]
        lines += _table(head, rows)
    return lines


def markdown_zip(report: Report, viewer: Viewer, images: dict[str, bytes]) -> bytes:
    lines = [f"# {_cell(report.title)}", "", f"*Project {_cell(report.project.name)}, version {report.version}.*", ""]
    for block in report.blocks:
        if block["type"] == "markdown":
            lines += [inert(block["text"]), ""]
        else:
            lines += _block_markdown(block, block_data(block, viewer), images)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("report.md", "\n".join(lines))
        for block_id, png in images.items():
            bundle.writestr(f"images/{block_id}.png", png)
    return out.getvalue()
