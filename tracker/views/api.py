"""JSON API. Errors are 400 with {"errors": {field: message}}, never 500."""

from __future__ import annotations

import numpy as np
from django.db.models import QuerySet
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from tracker.core import console
from tracker.core.access import visible_runs
from tracker.core.compare import comparison, flatten
from tracker.core.layers import histogram_matrix, layer_matrix
from tracker.core.lifecycle import cancel_by_member
from tracker.core.runs import create_run, registered_jobs
from tracker.core.storage import read_downsampled, read_series
from tracker.forms import AtStepQuery, CompareQuery, LayersQuery, SeriesQuery, first_errors
from tracker.lib.finite_json import JsonResponse
from tracker.models import Histogram, RunImage, Series, run_ordering
from tracker.views.decorators import api_login_required, bad_request, read_json_object
from trainer.config import ConfigError
from trainer.tensor_names import ROUGHNESS_KEY

# a heatmap of step x bin needs no more columns than this
MAX_HISTOGRAM_STEPS = 400
RUN_FIELDS = ("project", "name", "config", "tags", "priority")


@require_GET
@api_login_required
def run_series(request: HttpRequest, run_id: int) -> JsonResponse:
    """GET /api/runs/<id>/series/?series=loss:120,val_acc&max_points=1000[&from=S&until=T]

    For each key, the points after the given step (all points without one), within
    [from, until] when given (a zoomed chart asks for its visible range), downsampled on
    the server to at most ~max_points keeping each bucket's first, last, min and max.
    Also the run's status, so that a page knows when to stop polling.
    """
    run = get_object_or_404(visible_runs(request.user), pk=run_id)
    query = SeriesQuery(request.GET)
    if not query.is_valid():
        return bad_request(first_errors(query))
    start, until = query.cleaned_data["from"], query.cleaned_data["until"]
    lower_bounds = {}
    for key, after in query.cleaned_data["series"].items():
        # strictly after both the client's last step and the step before `from`
        bounds = [bound for bound in (after, None if start is None else start - 1) if bound is not None]
        lower_bounds[key] = max(bounds) if bounds else None
    series = {}
    for key, (steps, values) in read_downsampled(run.pk, lower_bounds, until, query.cleaned_data["max_points"]).items():
        # arrays: the encoder writes them in one pass, NaN as null (a gap on the chart)
        series[key] = {"steps": steps, "values": values}
    keys = list(run.series.order_by("key").values_list("key", flat=True))
    response = JsonResponse({"run": run.to_dict(), "keys": keys, "series": series})
    # an ended run's series never change: let the browser reuse the answer
    response["Cache-Control"] = "private, max-age=3600" if run.is_finished else "no-store"
    return response


@require_GET
@api_login_required
def run_detail(request: HttpRequest, run_id: int) -> JsonResponse:
    run = get_object_or_404(visible_runs(request.user), pk=run_id)
    return JsonResponse({"run": run.to_dict(), "config": run.config})


@require_POST
@api_login_required
def cancel_run(request: HttpRequest, run_id: int) -> JsonResponse:
    """POST /api/runs/<id>/cancel/: a queued run never starts; a running one stops within about
    a second (a client run's script sees run.should_stop). 409 once it has ended."""
    run = get_object_or_404(visible_runs(request.user), pk=run_id)
    refused = cancel_by_member(run)
    if refused:
        return JsonResponse({"errors": {"run": refused}}, status=409)
    run.refresh_from_db()
    return JsonResponse({"run": run.to_dict()})


@require_http_methods(["GET", "POST"])
@api_login_required
def runs(request: HttpRequest) -> JsonResponse:
    """GET: the latest runs. POST {"project", "name", "config", "tags", "priority"}: validate and queue a run."""
    if request.method == "GET":
        latest = visible_runs(request.user).order_by(*run_ordering("created", descending=True))[:100]
        return JsonResponse({"runs": [run.to_dict() for run in latest]})
    body, refused = read_json_object(request, RUN_FIELDS)
    if refused is not None:
        return refused
    try:
        run = create_run(
            body.get("project", "default"),
            body.get("config", {}),
            body.get("name", ""),
            request.user,
            body.get("tags"),
            body.get("priority"),
        )
    except ConfigError as error:
        return bad_request(error.errors)
    return JsonResponse({"run": run.to_dict(), "config": run.config}, status=201)


@require_GET
@api_login_required
def jobs(request: HttpRequest) -> JsonResponse:
    """GET /api/jobs/: the training functions a run config may name ({"job": "entry", "entry": name,
    "params": {...}}), as the workers reported them: params schema, default epochs, queues."""
    return JsonResponse({"entry_points": registered_jobs(with_errors=request.user.is_staff)})


def _at_step(rows: QuerySet, step: int) -> object | None:
    """The row at the last step <= step (the first row when all are later)."""
    return rows.filter(step__lte=step).last() or rows.first()


def _evenly_spaced(items: list[int], limit: int) -> list[int]:
    if len(items) <= limit:
        return items
    picks = np.unique(np.linspace(0, len(items) - 1, limit).round().astype(int))
    return [items[i] for i in picks]


@require_GET
@api_login_required
def run_histograms(request: HttpRequest, run_id: int) -> JsonResponse:
    """GET /api/runs/<id>/histograms/            -> the histogram keys
    GET /api/runs/<id>/histograms/?key=K         -> K's histograms over time (at most 400 steps, evenly spaced)
    GET /api/runs/<id>/histograms/?key=K&step=S  -> K's histogram at the last step <= S"""
    run = get_object_or_404(visible_runs(request.user), pk=run_id)
    query = AtStepQuery(request.GET)
    if not query.is_valid():
        return bad_request(first_errors(query))
    key, step = query.cleaned_data["key"], query.cleaned_data["step"]
    if key is None:
        return JsonResponse({"keys": list(run.histograms.order_by("key").values_list("key", flat=True).distinct())})
    rows = Histogram.objects.filter(run=run, key=key).order_by("step")
    if step is not None:
        row = _at_step(rows, step)
        return JsonResponse({"key": key, "histograms": [row.to_dict()] if isinstance(row, Histogram) else []})
    steps = list(rows.values_list("step", flat=True))
    histograms = [h.to_dict() for h in rows.filter(step__in=_evenly_spaced(steps, MAX_HISTOGRAM_STEPS))]
    # the same histograms on one value grid, for a step x value heatmap
    return JsonResponse({"key": key, "steps": steps, "histograms": histograms, "matrix": histogram_matrix(histograms)})


@require_GET
@api_login_required
def run_images(request: HttpRequest, run_id: int) -> JsonResponse:
    """GET /api/runs/<id>/images/?key=first_layer[&step=S]: the steps that have an image,
    and the image at the last step <= S (the latest without S); pixels are base64 uint8. A
    first-layer image comes with its filters' roughness at that step (null when not measured)."""
    run = get_object_or_404(visible_runs(request.user), pk=run_id)
    query = AtStepQuery(request.GET)
    if not query.is_valid():
        return bad_request(first_errors(query))
    key, step = query.cleaned_data["key"] or "first_layer", query.cleaned_data["step"]
    rows = RunImage.objects.filter(run=run, key=key).order_by("step")
    row = _at_step(rows, step) if step is not None else rows.last()
    roughness = None
    if isinstance(row, RunImage) and key == "first_layer":
        _, values = read_series(run.pk, ROUGHNESS_KEY, after_step=row.step - 1, until_step=row.step)
        roughness = float(values[0]) if len(values) else None
    return JsonResponse(
        {
            "key": key,
            "steps": list(rows.values_list("step", flat=True)),
            "image": row.to_dict() if isinstance(row, RunImage) else None,
            "roughness": roughness,
        }
    )


@require_GET
@api_login_required
def compare(request: HttpRequest) -> JsonResponse:
    """GET /api/compare/?runs=1,2,3&metric=loss[&group=optimizer.name,schedule.name][&lr=1][&max_points=1000]

    Each run's metric (downsampled), a label saying what differs, the config keys that
    differ, and per group (runs sharing the group keys' values) the mean, std, min and
    max over all its runs on a common step grid."""
    query = CompareQuery(request.GET)
    if not query.is_valid():
        return bad_request(first_errors(query))
    ids, group_by = query.cleaned_data["runs"], query.cleaned_data["group"]
    found = {run.pk: run for run in visible_runs(request.user).filter(pk__in=ids)}
    missing = [str(run_id) for run_id in ids if run_id not in found]
    if missing:
        return bad_request({"runs": f"no run with id {', '.join(missing)}"})
    ordered = [found[run_id] for run_id in ids]
    known = set().union(*(flatten(run.config) for run in ordered))
    unknown = [key for key in group_by if key not in known]
    if unknown:
        return bad_request({"group": f"{', '.join(unknown)} is not a key of these runs' configs"})
    result = comparison(
        ordered, query.cleaned_data["metric"], group_by, query.cleaned_data["lr"], query.cleaned_data["max_points"]
    )
    result["keys"] = sorted(set(Series.objects.filter(run__in=ordered).values_list("key", flat=True)))
    return JsonResponse(result)


@require_GET
@api_login_required
def run_layers(request: HttpRequest, run_id: int) -> JsonResponse:
    """GET /api/runs/<id>/layers/?quantity=update_ratio&buckets=100: a layer x step matrix
    (log10 for ratios and norms) for the heatmap."""
    run = get_object_or_404(visible_runs(request.user), pk=run_id)
    query = LayersQuery(request.GET)
    if not query.is_valid():
        return bad_request(first_errors(query))
    return JsonResponse(layer_matrix(run, query.cleaned_data["quantity"], query.cleaned_data["buckets"]))


@require_GET
@api_login_required
def run_console(request: HttpRequest, run_id: int) -> JsonResponse:
    """GET /api/runs/<id>/console/?tail=500 | ?after=<chunk> [&q=text]: the run's output lines
    [chunk, time, stream, text]: its last `tail`, or those after a chunk the page has; with q,
    only the lines that hold it. `last` is the newest chunk, `live` whether more may come."""
    run = get_object_or_404(visible_runs(request.user), pk=run_id)
    try:
        after = int(request.GET["after"]) if request.GET.get("after") else None
        tail = min(max(int(request.GET.get("tail") or 500), 1), console.MAX_ANSWER_LINES)
    except ValueError:
        return bad_request({"query": "after and tail must be whole numbers"})
    query = request.GET.get("q", "")[:200]
    return JsonResponse(console.read(run, after=after, tail=tail, query=query))
