"""Study pages: the list with the creation form, a study's page (leaderboard, charts,
edge warnings, promote, ensemble, notes), its printable report (and Markdown / CSV),
and the JSON API the study page draws from."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from tracker.core.access import visible_projects
from tracker.core.reports import study_view
from tracker.core.studies import create_study, evaluate_ensemble, promote, set_notes, summary
from tracker.core.study_report import report_csv, report_markdown
from tracker.forms import StudyForm
from tracker.lib.finite_json import JsonResponse
from tracker.models import Study
from tracker.views.decorators import api_login_required, bad_request, read_json_object
from trainer.config import ConfigError
from trainer.presets import PRESETS

STUDY_FIELDS = ("project", "name", "spec", "preset", "notes")


def visible_studies(user: Any) -> QuerySet[Study]:
    return Study.objects.filter(project__in=visible_projects(user))


@login_required
@require_http_methods(["GET", "POST"])
def study_list(request: HttpRequest) -> HttpResponse:
    form = StudyForm(request.POST or None, initial={"name": "", "project": "default"})
    if request.method == "POST" and form.is_valid():
        study = form.create(request.user)
        if study is not None:
            return redirect(study)
    studies = visible_studies(request.user).select_related("project").order_by("-created_at")[:200]
    presets = json.dumps({key: value["spec"] for key, value in PRESETS.items()})
    return render(
        request,
        "tracker/studies.html",
        {"studies": studies, "form": form, "presets": presets},
        status=400 if request.method == "POST" else 200,
    )


@login_required
def study_page(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(visible_studies(request.user).select_related("project"), pk=study_id)
    data = summary(study)
    return render(
        request,
        "tracker/study.html",
        {"study": study, "data": data, "page_data": data, "report_blocks": study_view(study, data["group_by"])},
    )


def _posted_whole(request: HttpRequest, name: str, default: str) -> int:
    raw = request.POST.get(name, default)
    try:
        return int(raw)
    except ValueError:
        raise ConfigError({name: f"must be a whole number, got {raw!r}"}) from None


def _study_action(request: HttpRequest, study_id: int, action: Callable[[Study], object]) -> HttpResponse:
    """Run a button's action on a study the user sees; its errors go back on the page (400)."""
    study = get_object_or_404(visible_studies(request.user).select_related("project"), pk=study_id)
    try:
        action(study)
    except ConfigError as error:
        message = "; ".join(f"{field}: {text}" for field, text in error.errors.items())
    except ValueError as error:  # e.g. an ensemble of runs trained on different splits
        message = str(error)
    else:
        return redirect(study)
    data = summary(study)
    return render(
        request, "tracker/study.html", {"study": study, "data": data, "page_data": data, "error": message}, status=400
    )


@login_required
@require_POST
def study_promote(request: HttpRequest, study_id: int) -> HttpResponse:
    return _study_action(
        request,
        study_id,
        lambda study: promote(
            study, _posted_whole(request, "k", "3"), _posted_whole(request, "epochs", "0"), request.user
        ),
    )


@login_required
@require_POST
def study_ensemble(request: HttpRequest, study_id: int) -> HttpResponse:
    return _study_action(request, study_id, lambda study: evaluate_ensemble(study, _posted_whole(request, "k", "3")))


@login_required
@require_POST
def study_notes(request: HttpRequest, study_id: int) -> HttpResponse:
    return _study_action(request, study_id, lambda study: set_notes(study, request.POST.get("notes", "")))


@login_required
def study_report(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(visible_studies(request.user).select_related("project"), pk=study_id)
    data = summary(study)
    kind = request.GET.get("format", "html")
    filename = f"study-{study.pk}"
    if kind in ("md", "csv"):
        text, content_type = (
            (report_markdown(data), "text/markdown") if kind == "md" else (report_csv(data), "text/csv")
        )
        response = HttpResponse(text, content_type=f"{content_type}; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}.{kind}"'
        return response
    if kind != "html":
        return HttpResponse("format: must be html, md or csv", status=400, content_type="text/plain")
    return render(request, "tracker/study_report.html", {"study": study, "data": data, "page_data": data})


@require_GET
@api_login_required
def api_study(request: HttpRequest, study_id: int) -> JsonResponse:
    study = get_object_or_404(visible_studies(request.user), pk=study_id)
    return JsonResponse(summary(study))


@require_http_methods(["GET", "POST"])
@api_login_required
def api_studies(request: HttpRequest) -> JsonResponse:
    """GET: the latest studies. POST {"project", "name", "spec"} or {"project", "name", "preset"}."""
    if request.method == "GET":
        studies = visible_studies(request.user).order_by("-created_at")[:100]
        return JsonResponse(
            {
                "studies": [
                    {"id": s.pk, "name": s.name, "kind": s.kind, "status": s.status, "url": s.get_absolute_url()}
                    for s in studies
                ]
            }
        )
    body, refused = read_json_object(request, STUDY_FIELDS)
    if refused is not None:
        return refused
    try:
        study = create_study(
            body.get("project", "default"),
            body.get("name"),
            body.get("spec"),
            request.user,
            preset=body.get("preset"),
            notes=body.get("notes", ""),
        )
    except ConfigError as error:
        return bad_request(error.errors)
    return JsonResponse(summary(study), status=201)
