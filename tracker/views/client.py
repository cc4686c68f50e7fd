"""What the trainwatch client calls: start a run, then send its payloads (trainer.wire) in
order. Token or session login, project membership, and a 400 that names what is wrong."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_POST

from tracker.core.access import visible_runs
from tracker.core.external import PayloadRefused, RunEnded, SeqError, receive, start_external_run
from tracker.lib.finite_json import JsonResponse
from tracker.views.decorators import api_login_required, bad_request, read_json_object
from trainer.config import ConfigError

START_FIELDS = ("project", "name", "config", "tags", "source", "client_id", "started_at", "environment")


@require_POST
@api_login_required
def start(request: HttpRequest) -> JsonResponse:
    """POST /api/runs/start/ {"project", "name", "config", "tags", "source", "client_id"}: 201 and the
    run (200 when the same client_id asked before), with where to send its payloads."""
    body, refused = read_json_object(request, START_FIELDS)
    if refused is not None:
        return refused
    try:
        run, created = start_external_run(
            body.get("project", "default"),
            body.get("name"),
            body.get("config"),
            body.get("tags"),
            body.get("source"),
            body.get("client_id"),
            request.user,
            body.get("started_at"),
            body.get("environment"),
        )
    except ConfigError as error:
        return bad_request(error.errors)
    return JsonResponse(
        {
            "run": run.to_dict(),
            "url": request.build_absolute_uri(run.get_absolute_url()),
            "ingest": {
                "url": f"/api/runs/{run.pk}/ingest/",
                "next_seq": run.ingest_seq + 1,
                "max_bytes": settings.TRAINWATCH_INGEST_MAX_BYTES,
            },
        },
        status=201 if created else 200,
    )


@require_POST
@api_login_required
def ingest_payload(request: HttpRequest, run_id: int) -> JsonResponse:
    """POST /api/runs/<id>/ingest/ with one payload: 200 {"seq", "stop", "status"}; 409 with the
    payload expected next when one is missing; 400 naming what is malformed; 413 over the limit."""
    run = get_object_or_404(visible_runs(request.user), pk=run_id)
    limit = settings.TRAINWATCH_INGEST_MAX_BYTES
    try:
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return bad_request({"body": "Content-Length must be a whole number"})
    if length > limit:
        return JsonResponse(
            {
                "errors": {
                    "body": f"the payload is {length:,} bytes; at most {limit:,} per request "
                    "(TRAINWATCH_INGEST_MAX_BYTES); the client splits larger hand-offs"
                }
            },
            status=413,
        )
    if not run.is_external:
        return bad_request(
            {"run": f"run {run.pk} is trained by a worker; only runs started by the client take payloads"}
        )
    # read(), not .body: a payload may exceed Django's form-size limit, ours is checked above
    data = request.read(limit + 1)
    try:
        _, answer = receive(run, data)
    except PayloadRefused as refused:
        return bad_request({"payload": str(refused)})
    except SeqError as error:
        return JsonResponse({"errors": {"seq": str(error)}, "expected": error.expected}, status=409)
    except RunEnded as error:
        return JsonResponse({"errors": {"run": str(error)}, "status": error.status}, status=409)
    return JsonResponse(answer)
