"""HTML pages. Charts fetch their data from the JSON API (tracker.views.api)."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import DurationField, ExpressionWrapper, F, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from tracker import dashboard as team
from tracker.access import visible_projects, visible_runs
from tracker.models import Project, Run, Study
from tracker.runs import create_run
from trainer.config import OPTIMIZER_SETTINGS, SCHEDULE_SETTINGS

RUNS_PER_PAGE = 50


# sortable columns: ?sort=<name> or ?sort=-<name>; empty values always last
SORTS = {
    "created": F("created_at"), "name": F("name"), "status": F("status"), "best_val_accuracy": F("best_val_accuracy"),
    "final_loss": F("final_loss"), "duration": F("duration"), "optimizer": F("config__optimizer__name"),
    "lr": F("config__optimizer__lr"), "health": F("health"),
}


def _filtered_runs(request: HttpRequest):
    queryset = visible_runs(request.user).select_related("project").annotate(
        duration=ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField()))
    filters = {key: request.GET.get(key, "").strip()
               for key in ("status", "project", "study", "optimizer", "schedule", "tag", "q")}
    if filters["status"] in Run.Status.values:
        queryset = queryset.filter(status=filters["status"])
    if filters["project"]:
        queryset = queryset.filter(project__name=filters["project"])
    if filters["study"].isdigit():
        queryset = queryset.filter(study_id=int(filters["study"]))
    if filters["optimizer"]:
        queryset = queryset.filter(config__optimizer__name=filters["optimizer"])
    if filters["schedule"]:
        queryset = queryset.filter(config__schedule__name=filters["schedule"])
    if filters["tag"]:
        queryset = queryset.filter(tags__contains=[filters["tag"]])
    if filters["q"]:
        queryset = queryset.filter(Q(name__icontains=filters["q"]) | Q(project__name__icontains=filters["q"]))
    sort = request.GET.get("sort", "-created")
    column = SORTS.get(sort.lstrip("-"), SORTS["created"])
    ordering = column.desc(nulls_last=True) if sort.startswith("-") or sort.lstrip("-") not in SORTS else \
        column.asc(nulls_last=True)
    return queryset.order_by(ordering, "-id"), filters, sort


@login_required
def runs(request: HttpRequest) -> HttpResponse:
    queryset, filters, sort = _filtered_runs(request)
    page = Paginator(queryset, RUNS_PER_PAGE).get_page(request.GET.get("page"))
    keep = {key: value for key, value in filters.items() if value}
    return render(request, "tracker/runs.html", {
        "page": page, "filters": filters, "sort": sort, "statuses": Run.Status.values,
        "projects": visible_projects(request.user).order_by("name").values_list("name", flat=True),
        "studies": Study.objects.filter(project__in=visible_projects(request.user)).order_by("-created_at")
                   .values_list("pk", "name")[:200],
        "optimizers": OPTIMIZER_SETTINGS, "schedules": SCHEDULE_SETTINGS,
        "query": urlencode({**keep, "sort": sort}), "filter_query": urlencode(keep),
        "live": any(not run.is_finished for run in page),
    })


@login_required
def run(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(visible_runs(request.user).select_related("project"), pk=run_id)
    keys = list(run.series.order_by("key").values_list("key", flat=True))
    return render(request, "tracker/run.html", {
        "run": run,
        "config_json": json.dumps(run.config, indent=2),
        "page_data": {"run": run.to_dict(), "keys": keys, "steps_per_epoch": run.steps_per_epoch},
    })


@login_required
@require_POST
def queue_check(request: HttpRequest, run_id: int) -> HttpResponse:
    """Queue the sanity checks and the gradient check of this run's config as a job of its own."""
    run = get_object_or_404(visible_runs(request.user).select_related("project"), pk=run_id)
    config = {**run.config, "job": "check", "preflight": False}
    check = create_run(run.project.name, config, f"check of #{run.pk} {run.name}"[:200], request.user)
    return redirect(check)


@login_required
def compare(request: HttpRequest) -> HttpResponse:
    """The comparison page; its state (runs, metric, grouping, lr overlay, x axis) is in the URL."""
    return render(request, "tracker/compare.html", {})


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """The home page: running and queued jobs, what ended badly since the last visit,
    the best result per project, the workers."""
    since = team.previous_visit(request.user)
    runs = visible_runs(request.user)
    return render(request, "tracker/dashboard.html", {
        "since": since, "running": team.running(runs), "queued": team.queued(runs),
        "ended_badly": team.ended_badly(runs, since), "best": team.best_per_project(runs), "workers": team.workers(runs),
    })
