"""What a team opens in the morning: running and queued jobs, runs that ended badly
since the last visit, the best result per project, and the workers."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import numpy as np
from django.core.cache import cache
from django.db.models import Q, QuerySet
from django.utils import timezone

from tracker.ingest import read_many
from tracker.lib.downsample import min_max_downsample
from tracker.models import DashboardVisit, Project, Run

log = logging.getLogger(__name__)
SPARKLINE_POINTS = 120
FIRST_VISIT_WINDOW = dt.timedelta(days=1)
WORKERS_CACHE_SECONDS = 10


def previous_visit(user) -> dt.datetime:
    """The last visit before this one (a day ago on the first), and record this one."""
    now = timezone.now()
    visit, created = DashboardVisit.objects.get_or_create(user=user, defaults={"seen_at": now - FIRST_VISIT_WINDOW})
    since = visit.seen_at
    DashboardVisit.objects.filter(pk=visit.pk).update(seen_at=now)
    return since


def eta_seconds(run: Run) -> float | None:
    if not run.steps_done or not run.total_steps or run.seconds is None:
        return None
    return run.seconds * (run.total_steps - run.steps_done) / run.steps_done


# Each takes the runs the viewer may see (tracker.access.visible_runs).


def running(visible: QuerySet[Run], limit: int = 20) -> list[dict[str, Any]]:
    runs = list(visible.filter(status=Run.Status.RUNNING).select_related("project").order_by("started_at")[:limit])
    cards = []
    for run in runs:
        loss_steps, losses = read_many(run.pk, {"loss": None})["loss"]
        steps, values = min_max_downsample(loss_steps, losses, SPARKLINE_POINTS)
        cards.append({**run.to_dict(), "project": run.project.name, "eta_seconds": eta_seconds(run),
                      "loss": {"steps": steps.tolist(), "values": [v if np.isfinite(v) else None for v in values.tolist()]}})
    return cards


def queued(visible: QuerySet[Run], limit: int = 20) -> list[Run]:
    return list(visible.filter(status=Run.Status.QUEUED).select_related("project").order_by("created_at")[:limit])


def ended_badly(visible: QuerySet[Run], since: dt.datetime, limit: int = 30) -> list[Run]:
    bad = Q(status__in=[Run.Status.FAILED, Run.Status.DIVERGED, Run.Status.LOST]) | Q(health__in=["warning", "error"])
    return list(visible.filter(bad, finished_at__gte=since).select_related("project").order_by("-finished_at")[:limit])


def best_per_project(visible: QuerySet[Run]) -> list[Run]:
    # one query: PostgreSQL's DISTINCT ON keeps each project's first row in this order
    return list(visible.filter(best_val_accuracy__isnull=False).select_related("project")
                .order_by("project_id", "-best_val_accuracy").distinct("project_id"))


def workers(visible: QuerySet[Run] | None = None) -> list[dict[str, Any]]:
    """Live Celery workers (a broadcast ping, cached a few seconds) with the run each is training:
    its details only when the viewer may see it, else just that the worker is busy."""
    found = cache.get("dashboard-workers")
    if found is None:
        from tracker.celery import app

        try:
            replies = app.control.ping(timeout=0.5)  # [{"worker@host": {"ok": "pong"}}, ...]
            found = sorted(name for reply in replies for name in reply)
        except Exception:
            log.exception("could not ping the workers")
            found = []
        cache.set("dashboard-workers", found, WORKERS_CACHE_SECONDS)
    busy = {run.worker: run for run in Run.objects.filter(status=Run.Status.RUNNING, worker__in=found)}
    shown = set(visible.filter(pk__in=[run.pk for run in busy.values()]).values_list("pk", flat=True)) \
        if visible is not None else {run.pk for run in busy.values()}
    return [{"name": name, "busy": name in busy,
             "run": busy[name].to_dict() if name in busy and busy[name].pk in shown else None} for name in found]


def project_count() -> int:
    return Project.objects.count()
