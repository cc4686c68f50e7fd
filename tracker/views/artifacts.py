"""Artifacts over HTTP: file uploads in chunks that resume, versions logged by a run, what a run
used, downloads streamed (or redirected to the object store's signed URL), and the artifact and
Models pages."""

from __future__ import annotations

import json
import re
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_http_methods, require_POST

from tracker.core import artifacts, blobs, checkpoints
from tracker.core.access import visible_projects, visible_runs
from tracker.core.compare import config_diff
from tracker.lib.finite_json import JsonResponse
from tracker.models import Artifact, ArtifactVersion, Blob
from tracker.views.decorators import api_login_required, bad_request, current_user, read_json_object
from trainer.config import ConfigError, retention_of

RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def _not_found(what: str) -> JsonResponse:
    return JsonResponse({"errors": {what: "not found"}}, status=404)


@require_http_methods(["GET", "PUT"])
@api_login_required
def blob_upload(request: HttpRequest, digest: str) -> JsonResponse:
    """GET: {"stored", "received", "chunk_bytes"}: whether the server has the file, else where its
    upload goes on. PUT ?size=&offset= with the next chunk: the same answer after it; 409 with
    "received" when the chunk does not start there; 400 naming what is wrong."""
    user = current_user(request)
    if request.method == "GET":
        errors: dict[str, str] = {}
        artifacts.check_digest(digest, "digest", errors)
        return bad_request(errors) if errors else JsonResponse(artifacts.upload_state(digest, user).as_json())
    try:
        size, offset = int(request.GET.get("size", "")), int(request.GET.get("offset", ""))
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return bad_request({"query": "size and offset must be whole numbers of bytes, and Content-Length given"})
    try:
        state = artifacts.receive_chunk(digest, size, offset, request, length, user)
    except ConfigError as error:
        return bad_request(error.errors)
    except blobs.OffsetMismatch as mismatch:
        return JsonResponse(
            {"errors": {"offset": str(mismatch)}, "received": mismatch.received, "stored": False}, status=409
        )
    return JsonResponse(state.as_json())


@require_http_methods(["GET", "HEAD"])
@api_login_required
def blob_download(request: HttpRequest, digest: str) -> HttpResponseBase:
    """The file, streamed (a Range header resumes it), or a redirect to the object store's
    short-lived signed URL; 404 unless it is in a version of one of the user's projects."""
    user = current_user(request)
    if not blobs.DIGEST.match(digest) or not artifacts.blob_visible(digest, user):
        return _not_found("file")
    return _send_blob(request, digest, request.GET.get("name") or digest)


def _send_blob(request: HttpRequest, digest: str, filename: str) -> HttpResponseBase:
    store = blobs.store()
    signed = store.signed_url(digest, filename.rsplit("/", 1)[-1])
    if signed is not None:
        return HttpResponseRedirect(signed)
    size = Blob.objects.get(digest=digest).size
    start, end, status = 0, size, 200
    wanted = RANGE.match(request.headers.get("Range", ""))
    if wanted:
        start = int(wanted.group(1))
        end = min(size, int(wanted.group(2)) + 1) if wanted.group(2) else size
        if start >= size or start >= end:
            answer = HttpResponse(status=416)
            answer["Content-Range"] = f"bytes */{size}"
            return answer
        status = 206
    response = StreamingHttpResponse(store.read(digest, start, end), status=status)
    response["Content-Type"] = "application/octet-stream"
    response["Content-Length"] = str(end - start)
    response["Accept-Ranges"] = "bytes"
    response["Content-Disposition"] = content_disposition_header(True, filename.rsplit("/", 1)[-1])
    response["X-Content-SHA256"] = digest
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return response


@require_POST
@api_login_required
def log_artifact(request: HttpRequest, run_id: int) -> JsonResponse:
    """POST /api/runs/<id>/artifacts/ {"name", "type", "files": [{"path", "digest", "size"}],
    "aliases", "metadata"}: 201 and the new version (200 and the existing one when the files
    are those of an earlier version)."""
    run = get_object_or_404(visible_runs(request.user).select_related("project"), pk=run_id)
    body, refused = read_json_object(request, ("name", "type", "files", "aliases", "metadata"))
    if refused is not None:
        return refused
    try:
        version, created = artifacts.log_version(
            run,
            body.get("name"),
            body.get("type", "file"),
            body.get("files"),
            body.get("aliases", []),
            body.get("metadata"),
            request.user,
        )
    except ConfigError as error:
        return bad_request(error.errors)
    return JsonResponse(
        {"version": artifacts.manifest(version), "created": created, "url": version.artifact.get_absolute_url()},
        status=201 if created else 200,
    )


@require_POST
@api_login_required
def use_artifact(request: HttpRequest, run_id: int) -> JsonResponse:
    """POST /api/runs/<id>/artifacts/used/ {"ref"}: the version the run reads (name, name:vN or
    name:alias of its project), recorded as used by it; its manifest."""
    run = get_object_or_404(visible_runs(request.user).select_related("project"), pk=run_id)
    body, refused = read_json_object(request, ("ref",))
    if refused is not None:
        return refused
    try:
        version = artifacts.resolve(run.project, body.get("ref"))
    except ConfigError as error:
        return bad_request(error.errors)
    artifacts.record_use(run, version)
    return JsonResponse({"version": artifacts.manifest(version)})


@require_http_methods(["GET"])
@api_login_required
def api_artifacts(request: HttpRequest) -> JsonResponse:
    """GET /api/artifacts/?project=&type=: the artifacts of the user's projects, newest version first."""
    found = (
        artifacts.visible_artifacts(current_user(request)).select_related("project").order_by("project__name", "name")
    )
    if request.GET.get("project"):
        found = found.filter(project__name=request.GET["project"])
    if request.GET.get("type"):
        found = found.filter(type=request.GET["type"])
    return JsonResponse({"artifacts": [_artifact_json(artifact, versions=False) for artifact in found[:1000]]})


@require_http_methods(["GET"])
@api_login_required
def api_artifact(request: HttpRequest, artifact_id: int) -> JsonResponse:
    artifact = get_object_or_404(artifacts.visible_artifacts(current_user(request)), pk=artifact_id)
    return JsonResponse(_artifact_json(artifact, versions=True))


@require_http_methods(["GET"])
@api_login_required
def api_resolve(request: HttpRequest) -> JsonResponse:
    """GET /api/artifacts/resolve/?project=&ref=name:alias: the version's manifest."""
    project = visible_projects(current_user(request)).filter(name=request.GET.get("project", "")).first()
    if project is None:
        return _not_found("project")
    try:
        return JsonResponse({"version": artifacts.manifest(artifacts.resolve(project, request.GET.get("ref")))})
    except ConfigError as error:
        return JsonResponse({"errors": error.errors}, status=404)


@require_http_methods(["POST", "DELETE"])
@api_login_required
def api_alias(request: HttpRequest, artifact_id: int, name: str) -> JsonResponse:
    """POST {"version": n}: the alias points at version n (from wherever it pointed); DELETE: removed."""
    user = current_user(request)
    artifact = get_object_or_404(artifacts.visible_artifacts(user), pk=artifact_id)
    errors: dict[str, str] = {}
    artifacts.check_alias(name, "alias", errors)
    if name == artifacts.LATEST:
        errors["alias"] = f"{artifacts.LATEST!r} always names the newest version"
    if request.method == "DELETE":
        if errors:
            return bad_request(errors)
        return JsonResponse({"removed": artifacts.remove_alias(artifact, name, user)})
    body, refused = read_json_object(request, ("version",))
    if refused is not None:
        return refused
    number = body.get("version")
    version = artifact.versions.filter(version=number).first() if isinstance(number, int) else None
    if version is None:
        errors["version"] = f"must be the number of one of {artifact.name}'s versions; got {number!r}"
    if errors:
        return bad_request(errors)
    assert version is not None
    artifacts.set_alias(version, name, user)
    return JsonResponse(_artifact_json(artifact, versions=True))


def _artifact_json(artifact: Artifact, versions: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": artifact.pk,
        "project": artifact.project.name,
        "name": artifact.name,
        "type": artifact.type,
        "url": artifact.get_absolute_url(),
        "aliases": {alias.name: alias.version.version for alias in artifact.aliases.select_related("version")},
    }
    if versions:
        data["versions"] = [
            {**artifacts.manifest(version), "used_by": list(version.uses.values_list("run_id", flat=True))}
            for version in artifact.versions.order_by("-version")
        ]
        data["alias_history"] = [
            {
                "alias": event.name,
                "version": event.version.version if event.version else None,
                "by": event.by.username if event.by else None,
                "at": event.at.isoformat(),
            }
            for event in artifact.alias_events.select_related("version", "by")[:200]
        ]
    return data


@require_http_methods(["GET", "POST"])
@api_login_required
def api_checkpoints(request: HttpRequest, run_id: int) -> JsonResponse:
    """GET /api/runs/<id>/checkpoints/: the checkpoints the run's retention keeps, newest first,
    each with why it is kept and its file's digest (GET /api/blobs/<digest>/ downloads it).
    POST {"step", "epoch", "digest", "size"}: a client's checkpoint, its file uploaded first."""
    user = current_user(request)
    run = get_object_or_404(visible_runs(user), pk=run_id)
    if request.method == "POST":
        body, refused = read_json_object(request, ("step", "epoch", "digest", "size"))
        if refused is not None:
            return refused
        errors: dict[str, str] = {}
        digest = artifacts.check_digest(body.get("digest"), "digest", errors)
        for field in ("step", "epoch"):
            value = body.get(field)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**12:
                errors[field] = f"must be a whole number from 0; got {value!r}"
        if digest and not artifacts.blob_visible(digest, user):
            errors["digest"] = "no file with this digest has been uploaded (send it first)"
        if errors:
            return bad_request(errors)
        checkpoints.record(run.pk, body["step"], body["epoch"], Blob.objects.get(digest=digest), timezone.now())
    return JsonResponse({"retention": retention_of(run.config).__dict__, "checkpoints": checkpoints.rows(run)})


@login_required
def checkpoint_file(request: HttpRequest, run_id: int, step: int) -> HttpResponseBase:
    """A checkpoint of a run, downloaded as <run name>-step<N>.pt."""
    run = get_object_or_404(visible_runs(current_user(request)), pk=run_id)
    found = get_object_or_404(run.checkpoints, step=step)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", run.name).strip("-") or f"run{run.pk}"
    return _send_blob(request, found.blob_id, f"{safe}-step{step}.pt")


# --- pages ------------------------------------------------------------------------


@login_required
def artifact_page(request: HttpRequest, artifact_id: int) -> HttpResponse:
    user = current_user(request)
    artifact = get_object_or_404(artifacts.visible_artifacts(user).select_related("project"), pk=artifact_id)
    versions = (
        artifact.versions.select_related("run", "created_by")
        .prefetch_related("aliases", "files", "uses__run")
        .order_by("-version")
    )
    return render(
        request,
        "tracker/artifact.html",
        {
            "artifact": artifact,
            "versions": versions,
            "history": artifact.alias_events.select_related("version", "by")[:50],
            "latest": artifacts.LATEST,
        },
    )


@login_required
@require_POST
def artifact_alias_form(request: HttpRequest, artifact_id: int) -> HttpResponse:
    """The artifact page's form: set (or remove) an alias."""
    user = current_user(request)
    artifact = get_object_or_404(artifacts.visible_artifacts(user), pk=artifact_id)
    name = request.POST.get("alias", "").strip()
    errors: dict[str, str] = {}
    artifacts.check_alias(name, "alias", errors)
    if name == artifacts.LATEST:
        errors["alias"] = f"{artifacts.LATEST!r} always names the newest version"
    if request.POST.get("remove"):
        if not errors and artifacts.remove_alias(artifact, name, user):
            messages.success(request, f"Alias {name!r} removed.")
        return redirect(artifact)
    try:
        version = artifact.versions.get(version=int(request.POST.get("version", "")))
    except (ValueError, ArtifactVersion.DoesNotExist):
        errors["version"] = "choose one of the versions"
    if errors:
        messages.error(request, "No alias was set: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
    else:
        artifacts.set_alias(version, name, user)
        messages.success(request, f"{artifact.name}:{name} is now v{version.version}.")
    return redirect(artifact)


@login_required
def artifact_file(request: HttpRequest, version_id: int, path: str) -> HttpResponseBase:
    """One file of a version, downloaded with its own name."""
    found = artifacts.file_of(current_user(request), version_id, path)
    if found is None:
        return HttpResponse("not found", status=404, content_type="text/plain")
    return _send_blob(request, found.blob_id, found.path)


@login_required
def models_page(request: HttpRequest) -> HttpResponse:
    """The model registry: model artifacts by name, their versions with the producing run's
    numbers and diagnosis, their aliases."""
    models = (
        artifacts.visible_artifacts(current_user(request))
        .filter(type=Artifact.Type.MODEL)
        .select_related("project")
        .prefetch_related("aliases__version")
        .order_by("project__name", "name")
    )
    rows = []
    for model in models:
        versions = list(model.versions.select_related("run").prefetch_related("aliases").order_by("-version")[:20])
        # what sets the versions apart: the config keys whose values differ between their runs
        produced = [version for version in versions if version.run is not None]
        differing = config_diff([version.run for version in produced if version.run is not None])
        rows.append(
            {
                "artifact": model,
                "versions": [
                    {
                        "version": version,
                        "differs": [(key, values[produced.index(version)]) for key, values in differing.items()]
                        if version in produced
                        else [],
                        "config": json.dumps(version.run.config, indent=2, sort_keys=True) if version.run else "",
                    }
                    for version in versions
                ],
            }
        )
    return render(request, "tracker/models.html", {"rows": rows})
