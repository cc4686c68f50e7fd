"""Projects: the ones a user sees, with their runs, and each one's alerts (where they go, a test
message, and the alerts sent lately with how each target took them)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from tracker.core.access import visible_projects
from tracker.core.alerts import MAIL, start_test
from tracker.forms import ProjectAlertsForm
from tracker.models import Alert, Run

RECENT_ALERTS = 50


@login_required
def project_list(request: HttpRequest) -> HttpResponse:
    projects = (
        visible_projects(request.user)
        .annotate(
            run_count=Count("runs", distinct=True),
            running=Count("runs", filter=Q(runs__status=Run.Status.RUNNING), distinct=True),
            last_run=Max("runs__created_at"),
            alert_count=Count("runs__alerts", distinct=True),
        )
        .order_by("name")
    )
    return render(request, "tracker/projects.html", {"projects": projects})


@login_required
@require_http_methods(["GET", "POST"])
def project_alerts(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_object_or_404(visible_projects(request.user), pk=project_id)
    form = ProjectAlertsForm(request.POST or None, instance=project)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Saved: alerts of this project's runs go to the addresses and URLs below.")
        return redirect("project-alerts", project.pk)
    alerts = Alert.objects.filter(run__project=project).select_related("run").order_by("-created_at")
    return render(
        request,
        "tracker/project_alerts.html",
        {
            "project": project,
            "form": form,
            "alerts": alerts[:RECENT_ALERTS],
            "mail": MAIL,
            "test": project.alert_test,
            "test_rows": test_rows(project.alert_test),
            "deadline": settings.TRAINWATCH_WEBHOOK_DEADLINE_SECONDS,
        },
        status=400 if request.method == "POST" else 200,
    )


def test_rows(test: dict[str, Any]) -> list[dict[str, str]]:
    """The latest test alert, a row a target: sending, sent or failed (with the error)."""
    outcomes = test.get("outcomes", {})
    rows = []
    for target in test.get("targets", []):
        error = outcomes.get(target)
        state = "sending" if error is None else "failed" if error else "sent"
        rows.append({"target": target, "state": state, "error": error or ""})
    return rows


@login_required
@require_POST
def project_alerts_test(request: HttpRequest, project_id: int) -> HttpResponse:
    project = get_object_or_404(visible_projects(request.user), pk=project_id)
    count = start_test(project, request.build_absolute_uri(reverse("project-alerts", args=[project.pk])), request.user)
    if not count:
        messages.error(request, "Nothing to send to: add an e-mail address or a webhook URL first.")
    else:
        messages.info(
            request, f"Sending a test alert to {count} target{'s' if count > 1 else ''}: each outcome shows below."
        )
    return redirect("project-alerts", project.pk)
