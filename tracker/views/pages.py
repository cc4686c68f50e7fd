"""HTML pages. Charts fetch their data from the JSON API (tracker.views.api)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import DurationField, ExpressionWrapper, F, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from tracker.core import checkpoints, console
from tracker.core.access import visible_projects, visible_runs
from tracker.core.artifacts import versions_of_run
from tracker.core.environment import differences as environment_differences
from tracker.core.findings import CONFIRMATIONS, RETRACTIONS
from tracker.core.layers import PAGE_THRESHOLDS
from tracker.core.lifecycle import cancel_by_member
from tracker.core.reports import run_view, runs_view
from tracker.core.runs import RUN_FILTERS, create_run, filter_runs
from tracker.core.tensorboard import export_zip
from tracker.models import RUN_SORTS, Run, RunEnvironment, Study, run_ordering
from trainer.config import OPTIMIZER_SETTINGS, SCHEDULE_SETTINGS, ConfigError

RUNS_PER_PAGE = 50


def _filtered_runs(request: HttpRequest) -> tuple[QuerySet[Run], dict[str, str], str]:
    filters = {key: request.GET.get(key, "").strip() for key in RUN_FILTERS}
    queryset = filter_runs(visible_runs(request.user), filters)
    queryset = queryset.select_related("project").annotate(
        duration=ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    )
    sort = request.GET.get("sort", "-created")
    name = sort.lstrip("-")
    if name not in RUN_SORTS:
        name, sort = "created", "-created"
    # each order is an index's (Run.Meta): a page is read in index order, never sorted
    return queryset.order_by(*run_ordering(name, sort.startswith("-"))), filters, sort


@login_required
def runs(request: HttpRequest) -> HttpResponse:
    queryset, filters, sort = _filtered_runs(request)
    # the page's ids first, read in its sort's index order however deep the page (an index-only
    # scan where it can), then those 50 rows: not thousands of whole rows skipped by OFFSET
    page = Paginator(queryset.values_list("pk", flat=True), RUNS_PER_PAGE).get_page(request.GET.get("page"))
    found = queryset.in_bulk(list(page))
    rows = [found[pk] for pk in page]
    keep = {key: value for key, value in filters.items() if value}
    return render(
        request,
        "tracker/runs.html",
        {
            "page": page,
            "rows": rows,
            "filters": filters,
            "sort": sort,
            "statuses": Run.Status.values,
            "projects": visible_projects(request.user).order_by("name").values_list("name", flat=True),
            "studies": Study.objects.filter(project__in=visible_projects(request.user))
            .order_by("-created_at")
            .values_list("pk", "name")[:200],
            "optimizers": OPTIMIZER_SETTINGS,
            "schedules": SCHEDULE_SETTINGS,
            "query": urlencode({**keep, "sort": sort}),
            "filter_query": urlencode(keep),
            "live": any(not run.is_finished for run in rows),
            "report_blocks": runs_view(keep, sort, [run.pk for run in rows], request.get_full_path()),
        },
    )


@login_required
@require_POST
def cancel_run(request: HttpRequest, run_id: int) -> HttpResponse:
    """The run page's Cancel button, for anyone who sees the run (its project's members)."""
    run = get_object_or_404(visible_runs(request.user), pk=run_id)
    refused = cancel_by_member(run)
    if refused:
        messages.error(request, f"Not cancelled: {refused}.")
    else:
        messages.success(request, "Cancel requested: a queued run never starts; a running one stops within a second.")
    return redirect(run)


@login_required
def run(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(visible_runs(request.user).select_related("project"), pk=run_id)
    keys = list(run.series.order_by("key").values_list("key", flat=True))
    page_data: dict[str, Any] = {
        "run": run.to_dict(),
        "keys": keys,
        "steps_per_epoch": run.steps_per_epoch,
        "thresholds": PAGE_THRESHOLDS,
        "diagnose_seconds": settings.TRAINWATCH_DIAGNOSE_SECONDS,
    }
    return render(
        request,
        "tracker/run.html",
        {
            "run": run,
            "config_json": json.dumps(run.config, indent=2),
            "page_data": page_data,
            "confirmations": CONFIRMATIONS,
            "retractions": RETRACTIONS,
            "artifacts": versions_of_run(run),
            "checkpoints": checkpoints.rows(run),
            "last_lines": console.last_lines(run) if run.status == Run.Status.FAILED else [],
            "environment": RunEnvironment.objects.filter(run=run).values_list("data", flat=True).first() or {},
            "report_blocks": run_view(run),
        },
    )


@login_required
def console_text(request: HttpRequest, run_id: int) -> StreamingHttpResponse:
    """The run's whole console output as a text file."""
    run = get_object_or_404(visible_runs(request.user), pk=run_id)
    response = StreamingHttpResponse(console.as_text(run), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-console.txt"'
    return response


@login_required
@require_POST
def queue_check(request: HttpRequest, run_id: int) -> HttpResponse:
    """Queue the sanity checks and the gradient check of this run's config as a job of its own."""
    run = get_object_or_404(visible_runs(request.user).select_related("project"), pk=run_id)
    if run.measured_by_client:
        messages.error(
            request, "This run is not a run config: its code runs its own checks (trainwatch.gradient_check)."
        )
        return redirect(run)
    config = {**run.config, "job": "check", "preflight": False}
    try:
        check = create_run(run.project.name, config, f"check of #{run.pk} {run.name}"[:200], request.user)
    except ConfigError as error:  # e.g. a staff member's data.path that this user may not use
        messages.error(request, "No check was queued: " + "; ".join(f"{k}: {v}" for k, v in error.errors.items()))
        return redirect(run)
    return redirect(check)


@login_required
def tensorboard_export(request: HttpRequest, run_id: int) -> HttpResponse:
    """The run as a TensorBoard log directory, zipped."""
    run = get_object_or_404(visible_runs(request.user), pk=run_id)
    response = HttpResponse(export_zip(run), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="trainwatch-run-{run.pk}-tensorboard.zip"'
    return response


@login_required
def compare(request: HttpRequest) -> HttpResponse:
    """The comparison page; its state (runs, metric, grouping, lr overlay, x axis) is in the URL.
    What differs between the runs' environments is drawn here, the rest by compare.js."""
    ids = [int(part) for part in request.GET.get("runs", "").split(",") if part.strip().isdigit()][:50]
    runs = list(visible_runs(request.user).filter(pk__in=ids).order_by("pk"))
    found = dict(RunEnvironment.objects.filter(run__in=runs).values_list("run_id", "data"))
    return render(
        request,
        "tracker/compare.html",
        {"env_runs": runs, "env_rows": environment_differences({run.pk: found.get(run.pk, {}) for run in runs})},
    )
