"""Reports: the list, a report's page (read and edit), its history, its share link and the
read-only view that link opens, a chart block embedded alone, the self-contained HTML export,
and the JSON API a page and a script build a report with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from csp.decorators import csp_replace
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import slugify
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from tracker.core import report_export, reports
from tracker.core.access import visible_projects
from tracker.core.layers import QUANTITIES
from tracker.core.markdown import render as render_markdown
from tracker.lib.finite_json import JsonResponse
from tracker.models import RUN_SORTS, Report
from tracker.views.decorators import api_login_required, bad_request, current_user, read_json_object
from trainer import safe_json

MAX_PREVIEW = reports.MAX_MARKDOWN
# what an exported report draws with, inside the file
EXPORT_SCRIPTS = (
    "vendor/chart.js/chart.umd.min.js",
    "vendor/chartjs-chart-matrix/chartjs-chart-matrix.min.js",
    "vendor/chartjs-chart-pcp/chartjs-chart-pcp.umd.min.js",
    "js/charts.js",
    "js/report.js",
)


def _report_json(report: Report, with_blocks: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": report.pk,
        "project": report.project.name,
        "title": report.title,
        "version": report.version,
        "url": report.get_absolute_url(),
        "created_by": report.created_by.get_username() if report.created_by else None,
        "created_at": report.created_at.isoformat(),
        "updated_at": report.updated_at.isoformat(),
        "shared": bool(report.share_token),
    }
    if with_blocks:
        data["blocks"] = report.blocks
    return data


def _refused(error: reports.ReportError) -> JsonResponse:
    return JsonResponse({"errors": error.errors}, status=409 if "version" in error.errors else 400)


# --- pages ---------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def report_list(request: HttpRequest) -> HttpResponse:
    projects = visible_projects(request.user).order_by("name")
    errors: dict[str, str] = {}
    if request.method == "POST":
        project = projects.filter(name=request.POST.get("project", "")).first()
        if project is None:
            errors["project"] = "choose one of your projects"
        else:
            try:
                report = reports.create_report(project, request.POST.get("title", ""), [], current_user(request))
            except reports.ReportError as error:
                errors.update(error.errors)
            else:
                return redirect(report)
    return render(
        request,
        "tracker/reports.html",
        {"reports": reports.visible_reports(request.user)[:200], "projects": projects, "errors": errors},
        status=400 if errors else 200,
    )


def _page_context(report: Report, *, editable: bool, data_url: str, shared: bool) -> dict[str, Any]:
    return {
        "report": report,
        "blocks": reports.rendered_blocks(report),
        "editable": editable,
        "shared": shared,
        "page_data": {
            "id": report.pk,
            "version": report.version,
            "title": report.title,
            "blocks": report.blocks,
            "data_url": data_url,
            "editable": editable,
            # what a block's settings may be: the server's lists, not a copy in the page's script
            "columns": reports.TABLE_COLUMNS,
            "sorts": list(RUN_SORTS),
            "quantities": list(QUANTITIES),
        },
    }


@login_required
def report_page(request: HttpRequest, report_id: int) -> HttpResponse:
    report = get_object_or_404(reports.visible_reports(request.user), pk=report_id)
    context = _page_context(report, editable=True, data_url=f"/api/reports/{report.pk}/blocks/", shared=False)
    context["share_url"] = request.build_absolute_uri(f"/shared/{report.share_token}/") if report.share_token else ""
    return render(request, "tracker/report.html", context)


@login_required
def report_history(request: HttpRequest, report_id: int) -> HttpResponse:
    report = get_object_or_404(reports.visible_reports(request.user), pk=report_id)
    versions = report.versions.select_related("author").order_by("-number")
    return render(request, "tracker/report_history.html", {"report": report, "versions": versions})


@login_required
@require_POST
def report_restore(request: HttpRequest, report_id: int, number: int) -> HttpResponse:
    report = get_object_or_404(reports.visible_reports(request.user), pk=report_id)
    try:
        reports.restore(report, number, current_user(request))
    except reports.ReportError as error:
        messages.error(request, "; ".join(error.errors.values()))
        return redirect("report-history", report.pk)
    messages.success(request, f"Version {number} restored, as a new version.")
    return redirect(report)


@login_required
@require_POST
def report_share(request: HttpRequest, report_id: int) -> HttpResponse:
    """A new read-only link (the old one stops working), or with revoke=1 none."""
    report = get_object_or_404(reports.visible_reports(request.user), pk=report_id)
    if request.POST.get("revoke"):
        reports.revoke_share_token(report)
        messages.success(request, "The share link is revoked: it now answers 404.")
    else:
        reports.new_share_token(report)
        messages.success(request, "Anyone with the link below can read this report (and only it), without logging in.")
    return redirect(report)


def _shared_or_404(token: str) -> Report:
    report = reports.shared_report(token)
    if report is None:
        raise Http404("no such report")
    return report


@require_GET
def shared_page(request: HttpRequest, token: str) -> HttpResponse:
    report = _shared_or_404(token)
    context = _page_context(report, editable=False, data_url=f"/api/shared/{token}/blocks/", shared=True)
    return render(request, "tracker/report.html", context)


@require_GET
@xframe_options_exempt
@csp_replace({"frame-ancestors": settings.TRAINWATCH_EMBED_ANCESTORS})  # type: ignore[arg-type]
def shared_embed(request: HttpRequest, token: str, block_id: str) -> HttpResponse:
    """One block of a shared report, alone, for an iframe in another page."""
    report = _shared_or_404(token)
    block = reports.find_block(report, block_id)
    if block is None:
        raise Http404("no such block")
    context = _page_context(report, editable=False, data_url=f"/api/shared/{token}/blocks/", shared=True)
    context["blocks"] = [b for b in context["blocks"] if b["id"] == block_id]
    context["page_data"]["blocks"] = [block]
    return render(request, "tracker/report_embed.html", context)


def _static_text(name: str) -> str:
    found = finders.find(name)
    if not found:
        raise FileNotFoundError(name)
    return Path(str(found)).read_text(encoding="utf-8")


@login_required
@require_GET
def report_export_html(request: HttpRequest, report_id: int) -> HttpResponse:
    """One HTML file that opens offline: the text rendered, every block's data, Chart.js and the
    page's own drawing code inside it."""
    report = get_object_or_404(reports.visible_reports(request.user), pk=report_id)
    viewer = reports.member_viewer(request.user)
    context = _page_context(report, editable=False, data_url="", shared=True)
    context["page_data"]["embedded"] = {
        block["id"]: reports.block_data(block, viewer) for block in report.blocks if block["type"] != "markdown"
    }
    context["inline"] = {"css": _static_text("css/app.css"), "scripts": [_static_text(name) for name in EXPORT_SCRIPTS]}
    response = render(request, "tracker/report_export.html", context)
    name = slugify(report.title) or f"report-{report.pk}"
    response["Content-Disposition"] = f'attachment; filename="{name}.html"'
    return response


# the page's chart images travel in this request
MAX_EXPORT_BYTES = 64 * 2**20


@require_POST
@api_login_required
def report_export_markdown(request: HttpRequest, report_id: int) -> HttpResponse:
    """POST {"images": {block id: PNG data URL}} (the charts as the page drew them): a zip of
    report.md and images/<block>.png."""
    report = get_object_or_404(reports.visible_reports(current_user(request)), pk=report_id)
    if len(request.body) > MAX_EXPORT_BYTES:
        return bad_request({"body": f"must be at most {MAX_EXPORT_BYTES // 2**20} MiB"})
    try:
        body = safe_json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError) as error:
        return bad_request({"body": f"is not valid JSON: {error}"})
    if not isinstance(body, dict) or set(body) - {"images"}:
        return bad_request({"body": "must be a JSON object with images"})
    try:
        images = report_export.decoded_images(body.get("images", {}), report)
    except report_export.ExportError as error:
        return bad_request(error.errors)
    bundle = report_export.markdown_zip(report, reports.member_viewer(current_user(request)), images)
    response = HttpResponse(bundle, content_type="application/zip")
    name = slugify(report.title) or f"report-{report.pk}"
    response["Content-Disposition"] = f'attachment; filename="{name}-markdown.zip"'
    return response


# --- JSON API ------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@api_login_required
def api_reports(request: HttpRequest) -> JsonResponse:
    """GET: the reports of your projects (newest change first). POST {"project", "title",
    "blocks"}: a new report, its blocks validated whole (nothing is saved when one is wrong)."""
    user = current_user(request)
    if request.method == "GET":
        return JsonResponse(
            {
                "reports": [_report_json(report, with_blocks=False) for report in reports.visible_reports(user)[:500]],
                # where a new one may go
                "projects": list(visible_projects(user).order_by("name").values_list("name", flat=True)),
            }
        )
    body, refused = read_json_object(request, ("project", "title", "blocks"))
    if refused is not None:
        return refused
    project = (
        visible_projects(user).filter(name=body.get("project")).first()
        if isinstance(body.get("project"), str)
        else None
    )
    if project is None:
        return bad_request({"project": "must be the name of one of your projects"})
    try:
        report = reports.create_report(project, body.get("title"), body.get("blocks", []), user)
    except reports.ReportError as error:
        return _refused(error)
    return JsonResponse(_report_json(report), status=201)


@require_http_methods(["GET", "PUT", "PATCH", "DELETE"])
@api_login_required
def api_report(request: HttpRequest, report_id: int) -> JsonResponse:
    """GET: the report. PUT/PATCH {"title"?, "blocks"?, "version"?}: a new version (with
    "version", the one the change was made on: 409 when another change came first). DELETE."""
    user = current_user(request)
    report = get_object_or_404(reports.visible_reports(user), pk=report_id)
    if request.method == "GET":
        return JsonResponse(_report_json(report))
    if request.method == "DELETE":
        report.delete()
        return JsonResponse({"deleted": report_id})
    body, refused = read_json_object(request, ("title", "blocks", "version", "what"))
    if refused is not None:
        return refused
    base = body.get("version")
    if base is not None and (not isinstance(base, int) or isinstance(base, bool)):
        return bad_request({"version": "must be the whole number of the version the change was made on"})
    what = str(body["what"]) if isinstance(body.get("what"), str) else "edited"
    try:
        report = reports.save_report(
            report, user, title=body.get("title"), blocks=body.get("blocks"), base=base, what=what
        )
    except reports.ReportError as error:
        return _refused(error)
    return JsonResponse(_report_json(report))


@require_POST
@api_login_required
def api_add_block(request: HttpRequest, report_id: int) -> JsonResponse:
    """POST {"block": {...}, "position"?: n}: the block added (at the end by default)."""
    user = current_user(request)
    report = get_object_or_404(reports.visible_reports(user), pk=report_id)
    body, refused = read_json_object(request, ("block", "position"))
    if refused is not None:
        return refused
    try:
        report, block = reports.add_block(report, user, body.get("block"), body.get("position"))
    except reports.ReportError as error:
        return _refused(error)
    return JsonResponse({"report": _report_json(report), "block": block}, status=201)


@require_GET
@api_login_required
def api_block_data(request: HttpRequest, report_id: int, block_id: str) -> JsonResponse:
    user = current_user(request)
    report = get_object_or_404(reports.visible_reports(user), pk=report_id)
    block = reports.find_block(report, block_id)
    if block is None:
        return JsonResponse({"errors": {"block": f"no block {block_id!r} in this report"}}, status=404)
    return JsonResponse(reports.block_data(block, reports.member_viewer(user)))


@require_POST
@api_login_required
def api_freeze(request: HttpRequest, report_id: int, block_id: str) -> JsonResponse:
    """POST {"frozen": true|false}: pin the block's runs and last step, or make it live again."""
    user = current_user(request)
    report = get_object_or_404(reports.visible_reports(user), pk=report_id)
    body, refused = read_json_object(request, ("frozen",))
    if refused is not None:
        return refused
    if not isinstance(body.get("frozen"), bool):
        return bad_request({"frozen": "must be true or false"})
    try:
        report = reports.freeze(report, block_id, user, body["frozen"])
    except reports.ReportError as error:
        return _refused(error)
    return JsonResponse(_report_json(report))


@require_GET
@api_login_required
def api_versions(request: HttpRequest, report_id: int) -> JsonResponse:
    report = get_object_or_404(reports.visible_reports(current_user(request)), pk=report_id)
    return JsonResponse(
        {
            "versions": [
                {
                    "number": version.number,
                    "title": version.title,
                    "author": version.author.get_username() if version.author else None,
                    "created_at": version.created_at.isoformat(),
                    "what": version.what,
                    "blocks": len(version.blocks),
                }
                for version in report.versions.select_related("author").order_by("-number")
            ]
        }
    )


@require_POST
@api_login_required
def api_restore(request: HttpRequest, report_id: int, number: int) -> JsonResponse:
    user = current_user(request)
    report = get_object_or_404(reports.visible_reports(user), pk=report_id)
    try:
        report = reports.restore(report, number, user)
    except reports.ReportError as error:
        return _refused(error)
    return JsonResponse(_report_json(report))


@require_POST
@api_login_required
def api_markdown(request: HttpRequest) -> JsonResponse:
    """POST {"text"}: the sanitised HTML a text block shows (the editor's preview)."""
    body, refused = read_json_object(request, ("text",))
    if refused is not None:
        return refused
    text = body.get("text")
    if not isinstance(text, str) or len(text) > MAX_PREVIEW:
        return bad_request({"text": f"must be text of at most {MAX_PREVIEW} characters"})
    return JsonResponse({"html": render_markdown(text)})


@require_GET
def api_shared_block(request: HttpRequest, token: str, block_id: str) -> JsonResponse:
    """A shared report's block data: what the token opens, and nothing else."""
    report = _shared_or_404(token)
    block = reports.find_block(report, block_id)
    if block is None:
        raise Http404("no such block")
    return JsonResponse(reports.block_data(block, reports.share_viewer(report)))
