"""JSON API. Errors are 400 with {"errors": {field: message}}, never 500."""

from __future__ import annotations

import functools
import json
import math
import re

import numpy as np
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from tracker.compare import comparison, flatten
from tracker.ingest import read_many
from tracker.access import visible_runs
from tracker.layers import QUANTITIES, histogram_matrix, layer_matrix
from tracker.lib.downsample import min_max_downsample
from tracker.models import ApiToken, Histogram, Run, RunImage, Series
from tracker.runs import create_run
from trainer.config import ConfigError

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_./-]{1,200}$")
DEFAULT_MAX_POINTS = 1000
# a heatmap of step x bin needs no more columns than this
MAX_HISTOGRAM_STEPS = 400
MAX_KEYS_PER_REQUEST = 300
MAX_BODY_BYTES = 256 * 1024


def _bad_request(errors: dict[str, str]) -> JsonResponse:
    return JsonResponse({"errors": errors}, status=400)


def _token_user(request: HttpRequest):
    """The user of a valid `Authorization: Bearer <token>` header, else None."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    token = header[len("Bearer "):].strip()
    found = ApiToken.objects.select_related("user").filter(digest=ApiToken.hash(token), user__is_active=True).first()
    if found is None:
        return None
    ApiToken.objects.filter(pk=found.pk).update(last_used_at=timezone.now())
    return found.user


def read_json_object(request: HttpRequest, fields: str) -> tuple[dict, JsonResponse | None]:
    """The request's JSON object, or the 400 that says why there is none."""
    if len(request.body) > MAX_BODY_BYTES:
        return {}, _bad_request({"body": f"must be at most {MAX_BODY_BYTES} bytes"})
    try:
        body = json.loads(request.body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return {}, _bad_request({"body": f"is not valid JSON: {error}"})
    if not isinstance(body, dict):
        return {}, _bad_request({"body": f"must be a JSON object with {fields}"})
    return body, None


def _api_login_required(view):
    """A session or an API token. A token request carries no cookie, so it needs no CSRF
    token; a session request that changes something is CSRF-checked as a form would be."""
    @csrf_exempt
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        if "Authorization" in request.headers:
            user = _token_user(request)
            if user is None:
                return JsonResponse({"errors": {"auth": "the API token is not valid"}}, status=401)
            request.user = user
        elif not request.user.is_authenticated:
            return JsonResponse({"errors": {"auth": "log in first, or send Authorization: Bearer <token>"}},
                                status=401)
        elif request.method not in ("GET", "HEAD", "OPTIONS"):
            refused = CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})
            if refused is not None:
                return JsonResponse({"errors": {"csrf": "missing or wrong CSRF token (X-CSRFToken header)"}},
                                    status=403)
        return view(request, *args, **kwargs)

    return wrapped


def _jsonable(values: np.ndarray) -> list[float | None]:
    """JSON has no NaN or infinity: they travel as null (a gap on the chart)."""
    out = values.tolist()
    if not np.isfinite(values).all():
        out = [v if math.isfinite(v) else None for v in out]
    return out


def _parse_series_param(raw: str) -> tuple[dict[str, int | None], dict[str, str]]:
    """`loss:120,val_acc,lr:119` -> {key: after_step or None}."""
    wanted: dict[str, int | None] = {}
    for item in filter(None, raw.split(",")):
        key, _, after = item.partition(":")
        if not KEY_PATTERN.match(key):
            return {}, {"series": f"{key!r} is not a series key (letters, digits, _ . / -)"}
        if after:
            try:
                wanted[key] = int(after)
            except ValueError:
                return {}, {"series": f"{item!r}: the part after ':' must be a step number"}
        else:
            wanted[key] = None
    if len(wanted) > MAX_KEYS_PER_REQUEST:
        return {}, {"series": f"at most {MAX_KEYS_PER_REQUEST} keys per request"}
    return wanted, {}


def _max_points(request: HttpRequest, errors: dict[str, str]) -> int:
    try:
        max_points = int(request.GET.get("max_points", DEFAULT_MAX_POINTS))
        if 10 <= max_points <= 100_000:
            return max_points
    except ValueError:
        pass
    errors["max_points"] = "must be a whole number from 10 to 100000"
    return DEFAULT_MAX_POINTS


def _optional_step(request: HttpRequest, name: str, errors: dict[str, str]) -> int | None:
    raw = request.GET.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        errors[name] = "must be a whole number (a step)"
        return None


@require_GET
@_api_login_required
def run_series(request: HttpRequest, run_id: int) -> JsonResponse:
    """GET /api/runs/<id>/series/?series=loss:120,val_acc&max_points=1000[&from=S&until=T]

    For each key, the points after the given step (all points without one), within
    [from, until] when given (a zoomed chart asks for its visible range), downsampled on
    the server to at most ~max_points keeping each bucket's first, last, min and max.
    Also the run's status, so that a page knows when to stop polling.
    """
    run = get_object_or_404(visible_runs(request.user), pk=run_id)
    wanted, errors = _parse_series_param(request.GET.get("series", ""))
    max_points = _max_points(request, errors)
    start = _optional_step(request, "from", errors)
    until = _optional_step(request, "until", errors)
    if start is not None and until is not None and until < start:
        errors["until"] = f"must not be before from ({start})"
    if errors:
        return _bad_request(errors)
    lower_bounds = {}
    for key, after in wanted.items():
        # strictly after both the client's last step and the step before `from`
        bounds = [bound for bound in (after, None if start is None else start - 1) if bound is not None]
        lower_bounds[key] = max(bounds) if bounds else None
    series = {}
    for key, (steps, values) in read_many(run.pk, lower_bounds, until_step=until).items():
        steps, values = min_max_downsample(steps, values, max_points)
        series[key] = {"steps": steps.tolist(), "values": _jsonable(values)}
    keys = list(run.series.order_by("key").values_list("key", flat=True))
    response = JsonResponse({"run": run.to_dict(), "keys": keys, "series": series})
    if run.is_finished:
        # an ended run's series never change: let the browser reuse the answer
        response["Cache-Control"] = "private, max-age=3600"
    else:
        response["Cache-Control"] = "no-store"
    return response


@require_GET
@_api_login_required
def run_detail(request: HttpRequest, run_id: int) -> JsonResponse:
    run = get_object_or_404(visible_runs(request.user), pk=run_id)
    return JsonResponse({"run": run.to_dict(), "config": run.config})


@require_http_methods(["GET", "POST"])
@_api_login_required
def runs(request: HttpRequest) -> JsonResponse:
    """GET: the latest runs. POST {"project", "name", "config"}: validate and queue a run."""
    if request.method == "GET":
        latest = visible_runs(request.user).order_by("-created_at")[:100]
        return JsonResponse({"runs": [run.to_dict() for run in latest]})
    body, refused = read_json_object(request, "project, name and config")
    if refused is not None:
        return refused
    unknown = set(body) - {"project", "name", "config", "tags", "priority"}
    if unknown:
        return _bad_request({key: "unknown field; allowed: project, name, config, tags, priority"
                             for key in sorted(unknown)})
    try:
        run = create_run(body.get("project", "default"), body.get("config", {}), body.get("name", ""), request.user,
                         body.get("tags"), body.get("priority"))
    except ConfigError as error:
        return _bad_request(error.errors)
    return JsonResponse({"run": run.to_dict(), "config": run.config}, status=201)


class _BadStep(ValueError):
    pass


def _row_at_step(request: HttpRequest, rows):
    """The row at the last step <= ?step= (the first row when all are later); raises _BadStep."""
    try:
        step = int(request.GET["step"])
    except ValueError:
        raise _BadStep from None
    return rows.filter(step__lte=step).last() or rows.first()


def _evenly_spaced(items: list, limit: int) -> list:
    if len(items) <= limit:
        return items
    picks = np.unique(np.linspace(0, len(items) - 1, limit).round().astype(int))
    return [items[i] for i in picks]


@require_GET
@_api_login_required
def run_histograms(request: HttpRequest, run_id: int) -> JsonResponse:
    """GET /api/runs/<id>/histograms/            -> the histogram keys
    GET /api/runs/<id>/histograms/?key=K         -> K's histograms over time (at most 400 steps, evenly spaced)
    GET /api/runs/<id>/histograms/?key=K&step=S  -> K's histogram at the last step <= S"""
    run = get_object_or_404(visible_runs(request.user), pk=run_id)
    key = request.GET.get("key")
    if key is None:
        keys = list(run.histograms.order_by("key").values_list("key", flat=True).distinct())
        return JsonResponse({"keys": keys})
    if not KEY_PATTERN.match(key):
        return _bad_request({"key": f"{key!r} is not a histogram key (letters, digits, _ . / -)"})
    rows = Histogram.objects.filter(run=run, key=key).order_by("step")
    if "step" in request.GET:
        try:
            row = _row_at_step(request, rows)
        except _BadStep:
            return _bad_request({"step": "must be a whole number"})
        return JsonResponse({"key": key, "histograms": [row.to_dict()] if row else []})
    steps = list(rows.values_list("step", flat=True))
    chosen = _evenly_spaced(steps, MAX_HISTOGRAM_STEPS)
    histograms = [h.to_dict() for h in rows.filter(step__in=chosen)]
    # the same histograms on one value grid, for a step x value heatmap
    return JsonResponse({"key": key, "steps": steps, "histograms": histograms,
                         "matrix": histogram_matrix(histograms)})


@require_GET
@_api_login_required
def run_images(request: HttpRequest, run_id: int) -> JsonResponse:
    """GET /api/runs/<id>/images/?key=first_layer[&step=S]: the steps that have an image,
    and the image at the last step <= S (the latest without S); pixels are base64 uint8."""
    run = get_object_or_404(visible_runs(request.user), pk=run_id)
    key = request.GET.get("key", "first_layer")
    if not KEY_PATTERN.match(key):
        return _bad_request({"key": f"{key!r} is not an image key (letters, digits, _ . / -)"})
    rows = RunImage.objects.filter(run=run, key=key).order_by("step")
    steps = list(rows.values_list("step", flat=True))
    try:
        row = _row_at_step(request, rows) if "step" in request.GET else rows.last()
    except _BadStep:
        return _bad_request({"step": "must be a whole number"})
    return JsonResponse({"key": key, "steps": steps, "image": row.to_dict() if row else None})


MAX_COMPARED_RUNS = 50
CONFIG_KEY_PATTERN = re.compile(r"^[a-z_]+(\.[a-z_]+)*$")


@require_GET
@_api_login_required
def compare(request: HttpRequest) -> JsonResponse:
    """GET /api/compare/?runs=1,2,3&metric=loss[&group=optimizer.name,schedule.name][&lr=1][&max_points=1000]

    Each run's metric (downsampled), a label saying what differs, the config keys that
    differ, and per group (runs sharing the group keys' values) the mean, std, min and
    max over all its runs on a common step grid."""
    errors: dict[str, str] = {}
    try:
        ids = [int(part) for part in request.GET.get("runs", "").split(",") if part.strip()]
        if not 1 <= len(ids) <= MAX_COMPARED_RUNS:
            raise ValueError
    except ValueError:
        errors["runs"] = f"must be 1 to {MAX_COMPARED_RUNS} run ids separated by commas, e.g. runs=3,4"
        ids = []
    metric = request.GET.get("metric", "loss")
    if not KEY_PATTERN.match(metric):
        errors["metric"] = f"{metric!r} is not a series key (letters, digits, _ . / -)"
    group_by = [key for key in request.GET.get("group", "").split(",") if key]
    bad_keys = [key for key in group_by if not CONFIG_KEY_PATTERN.match(key)]
    if bad_keys:
        errors["group"] = f"{', '.join(bad_keys)}: config keys look like optimizer.name or schedule.name"
    max_points = _max_points(request, errors)
    runs = {run.pk: run for run in visible_runs(request.user).filter(pk__in=ids)} if ids else {}
    missing = [str(run_id) for run_id in ids if run_id not in runs]
    if missing:
        errors["runs"] = f"no run with id {', '.join(missing)}"
    if not errors and group_by:
        known = set().union(*(flatten(run.config) for run in runs.values()))
        unknown = [key for key in group_by if key not in known]
        if unknown:
            errors["group"] = f"{', '.join(unknown)} is not a key of these runs' configs"
    if errors:
        return _bad_request(errors)
    ordered = [runs[run_id] for run_id in dict.fromkeys(ids)]
    result = comparison(ordered, metric, group_by, request.GET.get("lr") == "1", max_points)
    result["keys"] = sorted(set(Series.objects.filter(run__in=ordered).values_list("key", flat=True)))
    return JsonResponse(result)


@require_GET
@_api_login_required
def run_layers(request: HttpRequest, run_id: int) -> JsonResponse:
    """GET /api/runs/<id>/layers/?quantity=update_ratio&buckets=100: a layer x step matrix
    (log10 for ratios and norms) for the heatmap."""
    run = get_object_or_404(visible_runs(request.user), pk=run_id)
    errors: dict[str, str] = {}
    quantity = request.GET.get("quantity", "update_ratio")
    if quantity not in QUANTITIES:
        errors["quantity"] = f"must be one of {', '.join(QUANTITIES)}; got {quantity!r}"
    try:
        buckets = int(request.GET.get("buckets", 100))
        if not 1 <= buckets <= 1000:
            raise ValueError
    except ValueError:
        errors["buckets"] = "must be a whole number from 1 to 1000"
    if errors:
        return _bad_request(errors)
    return JsonResponse(layer_matrix(run, quantity, buckets))


@require_GET
@_api_login_required
def dashboard(request: HttpRequest) -> JsonResponse:
    """GET /api/dashboard/: the running runs with a sparkline of their loss, and the queue length."""
    from tracker import dashboard as team

    runs = visible_runs(request.user)
    return JsonResponse({"running": team.running(runs), "queued": len(team.queued(runs, limit=1000))})
