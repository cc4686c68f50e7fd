"""Reports: a project's documents of what its team learned. A report is a title and an ordered
list of blocks: Markdown text, or a *query* of runs (which runs, which metric, how drawn) that is
read again whenever the report is shown, unless the block is frozen (its runs and last step
pinned). Every save is validated whole (nothing is half-saved) and kept as a version.

Who reads a block's data is a Viewer: a member reads the runs and studies of their projects, a
share link only those of the report's own project. A run or study a viewer may not read is
counted as "not available", never named."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Annotated, Any, Literal

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from tracker.core.access import sees_everything, visible_projects, visible_runs
from tracker.core.compare import comparison, config_diff, flatten
from tracker.core.layers import PAGE_THRESHOLDS, QUANTITIES, layer_matrix
from tracker.core.markdown import render
from tracker.core.runs import RUN_FILTERS, filter_runs
from tracker.core.studies import summary
from tracker.models import RUN_SORTS, Project, Report, ReportVersion, Run, RunImage, Study, run_ordering

MAX_BLOCKS = 100
MAX_RUNS = 100  # of one block: a report is read by people, not a bulk export
MAX_MARKDOWN = 50_000
MAX_IMAGES = 8  # of a first-layer block
MAX_METRICS = 4  # of a chart block
HEATMAP_BUCKETS = 100
CHART_POINTS = 1000
SERIES_KEY = r"^[A-Za-z0-9_.:/@+-]{1,100}$"
CONFIG_KEY = r"^[A-Za-z0-9_.-]{1,100}$"
TABLE_COLUMNS = (
    "name",
    "status",
    "project",
    "optimizer",
    "lr",
    "best_val_accuracy",
    "final_loss",
    "steps",
    "health",
    "finding",
    "created",
)
DEFAULT_COLUMNS = ["name", "status", "optimizer", "lr", "best_val_accuracy", "final_loss", "health"]


class ReportError(Exception):
    """Bad input, as {field: message} (e.g. {"blocks[2].metric": "..."})."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Selection(_Strict):
    """Which runs a block shows: by id, of a study, with all these tags, or passing the runs
    table's filters; the conditions given all hold."""

    runs: list[Annotated[int, Field(ge=1)]] | None = Field(default=None, min_length=1, max_length=MAX_RUNS)
    study: Annotated[int, Field(ge=1)] | None = None
    tags: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(default_factory=list, max_length=10)
    filter: dict[str, Annotated[str, Field(max_length=200)]] = Field(default_factory=dict)

    @field_validator("filter")
    @classmethod
    def _known_filters(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(RUN_FILTERS))
        if unknown:
            raise ValueError(f"unknown filter {', '.join(unknown)}; allowed: {', '.join(RUN_FILTERS)}")
        return {key: text for key, text in value.items() if text.strip()}

    @model_validator(mode="after")
    def _says_which(self) -> Selection:
        if not (self.runs or self.study or self.tags or self.filter):
            raise ValueError("name the runs: runs (ids), study, tags or filter")
        return self


class Frozen(_Strict):
    """A frozen block's pinned runs and the last step it showed."""

    runs: list[Annotated[int, Field(ge=1)]] = Field(max_length=MAX_RUNS)
    step: Annotated[int, Field(ge=0)]
    at: str = ""  # when it was frozen (ISO time), for the page


BlockId = Annotated[str, Field(pattern=r"^[a-z0-9]{1,16}$")]


class MarkdownBlock(_Strict):
    type: Literal["markdown"]
    id: BlockId | None = None
    text: str = Field(default="", max_length=MAX_MARKDOWN)


class _ShowsRuns(_Strict):
    """A block that shows runs: a title, frozen or live, and the page it was added from."""

    id: BlockId | None = None
    title: str = Field(default="", max_length=200)
    frozen: Frozen | None = None
    # the page of this site it was added from (a path), for a link back
    source: str = Field(default="", max_length=1000)

    @field_validator("source")
    @classmethod
    def _a_path_here(cls, value: str) -> str:
        # "//host" and "/\\host" would leave the site
        if value and (not value.startswith("/") or value[1:2] in ("/", "\\") or any(c.isspace() for c in value)):
            raise ValueError("must be a path of this site, such as /compare/?runs=1,2")
        return value


class ChartBlock(_ShowsRuns):
    type: Literal["chart"]
    select: Selection
    # one axis: a loss and its validation twin, accuracies; "metric": "loss" is taken for ["loss"]
    metrics: list[Annotated[str, Field(pattern=SERIES_KEY)]] = Field(
        default_factory=lambda: ["loss"], min_length=1, max_length=MAX_METRICS
    )
    group: list[Annotated[str, Field(pattern=CONFIG_KEY)]] = Field(default_factory=list, max_length=5)
    x: Literal["step", "epoch", "wall"] = "epoch"
    y: Literal["linear", "log"] = "linear"
    band: Literal["minmax", "std"] = "minmax"
    smoothing: Annotated[float, Field(ge=0, le=0.99)] = 0.0
    x_min: float | None = None
    x_max: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_metric(cls, data: Any) -> Any:
        if isinstance(data, dict) and "metric" in data:
            if "metrics" in data:
                raise ValueError("give metrics (a list) or metric (one), not both")
            data = {**data, "metrics": [data["metric"]]}
            del data["metric"]
        return data

    @model_validator(mode="after")
    def _range(self) -> ChartBlock:
        if self.x_min is not None and self.x_max is not None and self.x_min >= self.x_max:
            raise ValueError("x_min must be below x_max")
        return self


class RunsTableBlock(_ShowsRuns):
    type: Literal["runs"]
    select: Selection
    columns: list[Literal[TABLE_COLUMNS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(DEFAULT_COLUMNS), min_length=1, max_length=len(TABLE_COLUMNS)
    )
    sort: str = "-best_val_accuracy"

    @field_validator("sort")
    @classmethod
    def _known_sort(cls, value: str) -> str:
        if value.lstrip("-") not in RUN_SORTS:
            raise ValueError(f"must be one of {', '.join(RUN_SORTS)}, with - for descending")
        return value


class ConfigDiffBlock(_ShowsRuns):
    type: Literal["config_diff"]
    select: Selection


class FindingsBlock(_ShowsRuns):
    type: Literal["findings"]
    select: Selection


class LeaderboardBlock(_ShowsRuns):
    type: Literal["leaderboard"]
    study: Annotated[int, Field(ge=1)]
    parallel: bool = True  # with the parallel-coordinates view of its searched values


class LayersBlock(_ShowsRuns):
    """A run's layer x step heatmap of a per-tensor quantity."""

    type: Literal["layers"]
    run: Annotated[int, Field(ge=1)]
    quantity: Literal[tuple(QUANTITIES)] = "update_ratio"  # type: ignore[valid-type]


class FirstLayerBlock(_ShowsRuns):
    """A run's first-layer weights as images, at chosen steps (each: the image at the last step
    at or before it; none: the latest)."""

    type: Literal["first_layer"]
    run: Annotated[int, Field(ge=1)]
    steps: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list, max_length=MAX_IMAGES)


Block = Annotated[
    MarkdownBlock
    | ChartBlock
    | RunsTableBlock
    | ConfigDiffBlock
    | FindingsBlock
    | LeaderboardBlock
    | LayersBlock
    | FirstLayerBlock,
    Field(discriminator="type"),
]
BLOCK_TYPES = ("markdown", "chart", "runs", "config_diff", "findings", "leaderboard", "layers", "first_layer")
_BLOCKS = TypeAdapter(list[Block])


def _where(prefix: str, location: tuple[int | str, ...]) -> str:
    where = prefix
    for part in location:
        if isinstance(part, int):
            where += f"[{part}]"
        elif part in BLOCK_TYPES and where.endswith("]"):
            continue  # the union's branch, named by the block's own type
        else:
            where += f".{part}"
    return where


def check_blocks(raw: Any, prefix: str = "blocks") -> list[dict[str, Any]]:
    """The blocks as stored (each with an id), or ReportError naming each wrong block and field."""
    if not isinstance(raw, list):
        raise ReportError({prefix: "must be a list of blocks"})
    if len(raw) > MAX_BLOCKS:
        raise ReportError({prefix: f"at most {MAX_BLOCKS} blocks; got {len(raw)}"})
    try:
        blocks = _BLOCKS.validate_python(raw)
    except ValidationError as error:
        errors: dict[str, str] = {}
        for problem in error.errors():
            errors.setdefault(_where(prefix, tuple(problem["loc"])), problem["msg"].removeprefix("Value error, "))
        raise ReportError(errors) from None
    stored, seen = [], set()
    for index, block in enumerate(blocks):
        data = block.model_dump(exclude_none=False)
        if data["id"] is None:
            data["id"] = secrets.token_hex(4)
        if data["id"] in seen:
            raise ReportError({f"{prefix}[{index}].id": f"{data['id']!r} is the id of another block"})
        seen.add(data["id"])
        stored.append(data)
    return stored


def check_title(title: Any) -> str:
    if not isinstance(title, str) or not title.strip():
        raise ReportError({"title": "must be non-empty text"})
    if len(title.strip()) > 200:
        raise ReportError({"title": "must be at most 200 characters"})
    return title.strip()


def visible_reports(user) -> QuerySet[Report]:
    return Report.objects.filter(project__in=visible_projects(user)).select_related("project", "created_by")


@transaction.atomic
def create_report(project: Project, title: Any, blocks: Any, user) -> Report:
    checked_title, checked = check_title(title), check_blocks(blocks)
    now = timezone.now()
    report = Report.objects.create(
        project=project, title=checked_title, blocks=checked, created_by=user, created_at=now, updated_at=now
    )
    ReportVersion.objects.create(
        report=report, number=1, title=checked_title, blocks=checked, author=user, created_at=now, what="created"
    )
    return report


def save_report(
    report: Report, user, *, title: Any = None, blocks: Any = None, base: int | None = None, what: str
) -> Report:
    """A new version of the report (title and/or blocks replaced). `base`: the version the
    editor started from; when another save came in between, ReportError on "version" (409)."""
    checked_title = check_title(title) if title is not None else None
    checked = check_blocks(blocks) if blocks is not None else None
    with transaction.atomic():
        locked = Report.objects.select_for_update().get(pk=report.pk)
        if base is not None and base != locked.version:
            raise ReportError(
                {"version": f"the report is at version {locked.version} (you edited version {base}); reload it"}
            )
        if checked_title is not None:
            locked.title = checked_title
        if checked is not None:
            locked.blocks = checked
        locked.version += 1
        locked.updated_at = timezone.now()
        locked.save(update_fields=["title", "blocks", "version", "updated_at"])
        ReportVersion.objects.create(
            report=locked,
            number=locked.version,
            title=locked.title,
            blocks=locked.blocks,
            author=user,
            created_at=locked.updated_at,
            what=what[:200],
        )
    return locked


def add_block(report: Report, user, block: Any, position: Any = None) -> tuple[Report, dict[str, Any]]:
    """The block appended (or put at `position`), as a new version."""
    (checked,) = check_blocks([block], prefix="block")
    blocks = [b for b in report.blocks]
    if position is None:
        position = len(blocks)
    if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position <= len(blocks):
        raise ReportError({"position": f"must be a whole number from 0 to {len(blocks)}"})
    while checked["id"] in {b["id"] for b in blocks}:
        checked["id"] = secrets.token_hex(4)
    blocks.insert(position, checked)
    return save_report(report, user, blocks=blocks, what=f"added a {checked['type']} block"), checked


def restore(report: Report, number: int, user) -> Report:
    old = report.versions.filter(number=number).first()
    if old is None:
        raise ReportError({"version": f"must be one of the report's versions (1 to {report.version})"})
    return save_report(report, user, title=old.title, blocks=old.blocks, what=f"restored version {number}")


def new_share_token(report: Report) -> str:
    token = secrets.token_urlsafe(24)
    Report.objects.filter(pk=report.pk).update(share_token=token)
    report.share_token = token
    return token


def revoke_share_token(report: Report) -> None:
    Report.objects.filter(pk=report.pk).update(share_token="")
    report.share_token = ""


def shared_report(token: str) -> Report | None:
    if not token or len(token) > 64:
        return None
    return Report.objects.select_related("project").filter(share_token=token).first()


# --- reading a block's data --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Viewer:
    """What a reader of a report may see of runs and studies."""

    runs: QuerySet[Run]
    studies: QuerySet[Study]


def member_viewer(user) -> Viewer:
    if sees_everything(user):
        return Viewer(Run.objects.all(), Study.objects.all())
    return Viewer(visible_runs(user), Study.objects.filter(project__in=visible_projects(user)))


def share_viewer(report: Report) -> Viewer:
    """A share link reads the report's own project only, whatever its blocks name."""
    return Viewer(Run.objects.filter(project_id=report.project_id), Study.objects.filter(project_id=report.project_id))


def _unavailable(count: int, what: str = "run") -> str:
    if not count:
        return ""
    return f"{count} {what}{'s' if count > 1 else ''} of this block {'is' if count == 1 else 'are'} not available (deleted, or not shared with you)"


def selected_runs(block: dict[str, Any], viewer: Viewer) -> tuple[list[Run], str]:
    """The block's runs this viewer may read (its frozen runs when frozen, in their order), and
    what is missing, in words that name nothing."""
    frozen = block.get("frozen")
    if frozen:
        ids = frozen["runs"]
        found = viewer.runs.select_related("project").in_bulk(ids)
        return [found[pk] for pk in ids if pk in found], _unavailable(len(ids) - len(found))
    select = block["select"]
    queryset = viewer.runs.select_related("project")
    missing = ""
    if select.get("study"):
        if not viewer.studies.filter(pk=select["study"]).exists():
            return [], "the study of this block is not available (deleted, or not shared with you)"
        queryset = queryset.filter(study_id=select["study"])
    if select.get("tags"):
        queryset = queryset.filter(tags__contains=select["tags"])
    if select.get("filter"):
        queryset = filter_runs(queryset, select["filter"])
    if select.get("runs"):
        ids = select["runs"]
        found = queryset.in_bulk(ids)
        missing = _unavailable(sum(1 for pk in ids if pk not in found and not viewer.runs.filter(pk=pk).exists()))
        return [found[pk] for pk in ids if pk in found], missing
    return list(queryset.order_by("pk")[:MAX_RUNS]), missing


def _cut(steps: list[int], values: list[Any], last: int) -> tuple[list[int], list[Any]]:
    keep = [i for i, step in enumerate(steps) if step <= last]
    return [steps[i] for i in keep], [values[i] for i in keep]


def _frozen_comparison(data: dict[str, Any], last: int) -> None:
    for run in data["runs"]:
        run["steps"], run["values"] = _cut(run["steps"], run["values"], last)
        run["wall"]["steps"], run["wall"]["values"] = _cut(run["wall"]["steps"], run["wall"]["values"], last)
    for band in data.get("groups", {}).values():
        keep = [i for i, step in enumerate(band["steps"]) if step <= last]
        for field in ("steps", "mean", "std", "min", "max", "count"):
            band[field] = [band[field][i] for i in keep]


def chart_data(block: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    """Per metric, the comparison of the block's runs (tracker.core.compare.comparison): each
    run's points, labels, wall clock, and per group its mean and band."""
    runs, missing = selected_runs(block, viewer)
    if not runs:
        return {"metrics": block["metrics"], "series": [], "runs": [], "missing": missing, "live": False}
    known = set().union(*(flatten(run.config) for run in runs))
    group = [key for key in block["group"] if key in known]
    series = []
    for metric in block["metrics"]:
        data: dict[str, Any] = dict(comparison(runs, metric, group, False, CHART_POINTS))
        if block.get("frozen"):
            _frozen_comparison(data, block["frozen"]["step"])
        series.append(data)
    return {
        "metrics": block["metrics"],
        "series": series,
        "runs": [{"id": run["id"], "label": run["label"]} for run in series[0]["runs"]],
        "group_by": group,
        "missing": missing,
        "live": not block.get("frozen") and any(not run.is_finished for run in runs),
    }


def _cell(run: Run, column: str) -> Any:
    return {
        "name": lambda: run.name or f"run {run.pk}",
        "status": lambda: run.status,
        "project": lambda: run.project.name,
        "optimizer": lambda: run.optimizer_name,
        "lr": lambda: run.learning_rate,
        "best_val_accuracy": lambda: run.best_val_accuracy,
        "final_loss": lambda: run.final_loss,
        "steps": lambda: run.steps_done,
        "health": lambda: run.health,
        "finding": lambda: run.findings[0]["title"] if run.findings else "",
        "created": lambda: run.created_at.isoformat(),
    }[column]()


def runs_table_data(block: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    runs, missing = selected_runs(block, viewer)
    sort = block["sort"]
    ordered = Run.objects.filter(pk__in=[run.pk for run in runs]).order_by(
        *run_ordering(sort.lstrip("-"), sort.startswith("-"))
    )
    by_id = {run.pk: run for run in runs}
    rows = [
        {"id": pk, "cells": [_cell(by_id[pk], column) for column in block["columns"]]}
        for pk in ordered.values_list("pk", flat=True)
    ]
    return {"columns": block["columns"], "rows": rows, "missing": missing, "live": _live(block, runs)}


def config_diff_data(block: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    runs, missing = selected_runs(block, viewer)
    return {
        "runs": [{"id": run.pk, "name": run.name or f"run {run.pk}"} for run in runs],
        "diff": config_diff(runs),
        "missing": missing,
        "live": False,
    }


FINDING_FIELDS = ("rule", "severity", "title", "evidence", "advice", "step")


def findings_data(block: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    runs, missing = selected_runs(block, viewer)
    return {
        "runs": [
            {
                "id": run.pk,
                "name": run.name or f"run {run.pk}",
                "health": run.health,
                "findings": [{field: finding.get(field) for field in FINDING_FIELDS} for finding in run.findings],
            }
            for run in runs
        ],
        "missing": missing,
        "live": _live(block, runs),
    }


def leaderboard_data(block: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    study = viewer.studies.filter(pk=block["study"]).first()
    if study is None:
        return {
            "rows": [],
            "keys": [],
            "missing": "the study of this block is not available (deleted, or not shared with you)",
            "live": False,
        }
    data = summary(study)
    rows = data["rows"]
    frozen = block.get("frozen")
    if frozen:
        pinned = set(frozen["runs"])
        rows = [row for row in rows if row["id"] in pinned]
    return {
        "name": data["name"],
        "keys": data["keys"],
        "log_keys": data["log_keys"],
        "rows": rows,
        "missing": "",
        "live": not frozen and data["finished"] < data["total"],
    }


def _one_run(block: dict[str, Any], viewer: Viewer) -> Run | None:
    return viewer.runs.filter(pk=block["run"]).first()


RUN_UNAVAILABLE = "the run of this block is not available (deleted, or not shared with you)"


def layers_data(block: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    run = _one_run(block, viewer)
    if run is None:
        return {"rows": [], "steps": [], "values": [], "missing": RUN_UNAVAILABLE, "live": False}
    data: dict[str, Any] = dict(layer_matrix(run, block["quantity"], HEATMAP_BUCKETS))
    frozen = block.get("frozen")
    if frozen:
        keep = [i for i, step in enumerate(data["steps"]) if step <= frozen["step"]]
        data["steps"] = [data["steps"][i] for i in keep]
        data["values"] = [[row[i] for i in keep] for row in data["values"]]
    data.update(
        run={"id": run.pk, "name": run.name or f"run {run.pk}", "steps_per_epoch": run.steps_per_epoch},
        thresholds=PAGE_THRESHOLDS,
        missing="",
        live=_live(block, [run]),
    )
    return data


def first_layer_data(block: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    run = _one_run(block, viewer)
    if run is None:
        return {"images": [], "missing": RUN_UNAVAILABLE, "live": False}
    rows = RunImage.objects.filter(run=run, key="first_layer").order_by("step")
    frozen = block.get("frozen")
    if frozen:
        rows = rows.filter(step__lte=frozen["step"])
    wanted = block["steps"] or [None]
    images, shown = [], set()
    for step in wanted:
        row = rows.filter(step__lte=step).last() if step is not None else rows.last()
        if row is not None and row.step not in shown:
            shown.add(row.step)
            images.append({"asked": step, **row.to_dict()})
    return {
        "run": {"id": run.pk, "name": run.name or f"run {run.pk}", "steps_per_epoch": run.steps_per_epoch},
        "images": images,
        "missing": "" if images else "this run has no first-layer image at these steps",
        "live": _live(block, [run]) and not block["steps"],
    }


def _live(block: dict[str, Any], runs: list[Run]) -> bool:
    return not block.get("frozen") and any(not run.is_finished for run in runs)


READERS = {
    "chart": chart_data,
    "runs": runs_table_data,
    "config_diff": config_diff_data,
    "findings": findings_data,
    "leaderboard": leaderboard_data,
    "layers": layers_data,
    "first_layer": first_layer_data,
}


def block_data(block: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    """What a block shows now (a frozen block: what it showed when frozen)."""
    if block["type"] == "markdown":
        return {"html": render(block["text"]), "missing": "", "live": False}
    return READERS[block["type"]](block, viewer)


def find_block(report: Report, block_id: str) -> dict[str, Any] | None:
    return next((block for block in report.blocks if block["id"] == block_id), None)


def freeze(report: Report, block_id: str, user, frozen: bool) -> Report:
    """Pins (or unpins) a block's runs and its last step: the runs it shows now, to the step the
    furthest of them has reached."""
    block = find_block(report, block_id)
    if block is None:
        raise ReportError({"block": f"no block {block_id!r} in this report"})
    if block["type"] == "markdown":
        raise ReportError({"block": "a text block has nothing to freeze"})
    blocks = [dict(b) for b in report.blocks]
    target = next(b for b in blocks if b["id"] == block_id)
    if frozen:
        viewer = member_viewer(user)
        if block["type"] == "leaderboard":
            runs = list(viewer.runs.filter(study_id=block["study"]))
        elif block["type"] in ("layers", "first_layer"):
            runs = list(viewer.runs.filter(pk=block["run"]))
        else:
            runs, _ = selected_runs({**block, "frozen": None}, viewer)
        target["frozen"] = {
            "runs": [run.pk for run in runs][:MAX_RUNS],
            # steps count from 0: a run that has done n steps has shown step n - 1
            "step": max(0, max((run.steps_done - 1 for run in runs), default=0)),
            "at": timezone.now().isoformat(),
        }
        what = f"froze a {block['type']} block at step {target['frozen']['step']}"
    else:
        target["frozen"] = None
        what = f"made a {block['type']} block live"
    return save_report(report, user, blocks=blocks, what=what)


def rendered_blocks(report: Report) -> list[dict[str, Any]]:
    """The blocks with their Markdown as sanitised HTML, for the page's first paint."""
    return [
        {**block, "html": render(block["text"])} if block["type"] == "markdown" else block for block in report.blocks
    ]


# --- the blocks of a page's current view ("Add to report") ---------------------------------------


def study_view(study: Study, group_by: list[str]) -> list[dict[str, Any]]:
    """A study page: its leaderboard, and its loss grouped as the page groups it."""
    source = study.get_absolute_url()
    return [
        {"type": "leaderboard", "title": f"Study #{study.pk} {study.name}", "study": study.pk, "source": source},
        {
            "type": "chart",
            "title": f"Loss and validation loss of study #{study.pk} {study.name}",
            "select": {"study": study.pk},
            "metrics": ["loss", "val_loss"],
            "group": group_by,
            "source": source,
        },
    ]


def run_view(run: Run) -> list[dict[str, Any]]:
    """A run page: its loss, its findings, and where it measured them its layers' update ratios
    and its first layer's latest weights."""
    source = run.get_absolute_url()
    name = run.name or f"run {run.pk}"
    blocks: list[dict[str, Any]] = [
        {
            "type": "chart",
            "title": f"Loss of #{run.pk} {name}",
            "select": {"runs": [run.pk]},
            "metrics": ["loss"],
            "x": "step",
            "source": source,
        },
        {"type": "findings", "title": f"Diagnosis of #{run.pk} {name}", "select": {"runs": [run.pk]}, "source": source},
    ]
    if run.series.filter(key__startswith="update_ratio/").exists():
        blocks.append(
            {"type": "layers", "title": f"Update ratios of #{run.pk} {name}", "run": run.pk, "source": source}
        )
    if RunImage.objects.filter(run=run, key="first_layer").exists():
        blocks.append(
            {"type": "first_layer", "title": f"First layer of #{run.pk} {name}", "run": run.pk, "source": source}
        )
    return blocks


def runs_view(filters: dict[str, str], sort: str, shown: list[int], source: str) -> list[dict[str, Any]]:
    """The runs table: its filters (or, unfiltered, the runs of the page shown) in its order."""
    given = {key: value for key, value in filters.items() if value}
    select: dict[str, Any] = {"filter": given} if given else {"runs": shown[:MAX_RUNS]}
    if not given and not shown:
        return []
    return [{"type": "runs", "title": "Runs", "select": select, "sort": sort, "source": source}]
