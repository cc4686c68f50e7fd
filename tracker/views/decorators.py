"""What every JSON endpoint shares: login by session or API token, JSON bodies, 400 answers."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from tracker.lib.finite_json import JsonResponse
from tracker.models import ApiToken
from trainer import safe_json

MAX_BODY_BYTES = 256 * 1024


def bad_request(errors: dict[str, str]) -> JsonResponse:
    """400 with {"errors": {field: message}}: the API's answer to any bad input."""
    return JsonResponse({"errors": errors}, status=400)


def current_user(request: HttpRequest) -> User:
    """The logged-in user of a view behind login_required or api_login_required."""
    if not isinstance(request.user, User) or not request.user.is_authenticated:
        raise PermissionDenied("log in first")
    return request.user


def _token_user(request: HttpRequest) -> User | None:
    """The user of a valid `Authorization: Bearer <token>` header, else None."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    token = header[len("Bearer ") :].strip()
    found = ApiToken.objects.select_related("user").filter(digest=ApiToken.hash(token), user__is_active=True).first()
    if found is None:
        return None
    ApiToken.objects.filter(pk=found.pk).update(last_used_at=timezone.now())
    return found.user


def api_login_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """A session or an API token. A token request carries no cookie, so it needs no CSRF
    token; a session request that changes something is CSRF-checked as a form would be."""

    @csrf_exempt
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if "Authorization" in request.headers:
            user = _token_user(request)
            if user is None:
                return JsonResponse({"errors": {"auth": "the API token is not valid"}}, status=401)
            request.user = user
        elif not request.user.is_authenticated:
            return JsonResponse({"errors": {"auth": "log in first, or send Authorization: Bearer <token>"}}, status=401)
        elif request.method not in ("GET", "HEAD", "OPTIONS"):
            # the undecorated view: `wrapped` itself is csrf_exempt, which would skip the check
            refused = CsrfViewMiddleware(lambda r: HttpResponse()).process_view(request, view, (), {})
            if refused is not None:
                return JsonResponse(
                    {"errors": {"csrf": "missing or wrong CSRF token (X-CSRFToken header)"}}, status=403
                )
        return view(request, *args, **kwargs)

    return wrapped


def read_json_object(request: HttpRequest, allowed: tuple[str, ...]) -> tuple[dict[str, Any], JsonResponse | None]:
    """The request's JSON object with only the allowed fields, or the 400 that says why not."""
    if len(request.body) > MAX_BODY_BYTES:
        return {}, bad_request({"body": f"must be at most {MAX_BODY_BYTES} bytes"})
    try:
        body = safe_json.loads(request.body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return {}, bad_request({"body": f"is not valid JSON: {error}"})
    if not isinstance(body, dict):
        return {}, bad_request({"body": f"must be a JSON object with {', '.join(allowed)}"})
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        return {}, bad_request({key: f"unknown field; allowed: {', '.join(allowed)}" for key in unknown})
    problems = {key: problem.removeprefix(f"{key}: ") for key in body if (problem := safe_json.unclean(body[key], key))}
    if problems:
        return {}, bad_request(problems)
    return body, None
