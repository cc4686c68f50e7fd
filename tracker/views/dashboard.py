"""The dashboard: its page, and the JSON its page refreshes from every few seconds. Both
render the panels from the same templates, so a refresh shows exactly what a reload would."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET

from tracker.core import dashboard as team
from tracker.core.access import visible_projects, visible_runs
from tracker.lib.finite_json import JsonResponse
from tracker.models import Run
from tracker.views.decorators import api_login_required, current_user

PANELS = ("running", "queue", "attention", "best", "reports", "workers")


def _context(request: HttpRequest) -> dict[str, Any]:
    visible = visible_runs(request.user)
    since = team.visit_since(current_user(request))
    return {
        "since": since,
        "running": team.running(visible),
        "queued": team.queued(visible),
        "queue_count": visible.filter(status=Run.Status.QUEUED).count(),
        "attention": team.needs_attention(visible, since),
        "best": team.best_per_project(visible_projects(request.user)),
        "workers": team.workers(visible),
        "report_changes": team.recent_report_changes(visible_projects(request.user)),
    }


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """The home page: running and queued jobs, what needs attention since the last visit,
    the best result per project, the workers."""
    return render(request, "tracker/dashboard.html", {**_context(request), "panels": PANELS})


@require_GET
@api_login_required
def api_dashboard(request: HttpRequest) -> JsonResponse:
    """GET /api/dashboard/: the running runs (with a sparkline of their loss and ETA), the queue
    length, and every panel as HTML."""
    context = _context(request)
    panels = {name: render_to_string(f"tracker/dashboard/{name}.html", context, request) for name in PANELS}
    return JsonResponse(
        {
            "running": context["running"],
            "queued": context["queue_count"],
            "since": context["since"].isoformat(),
            "panels": panels,
        }
    )
