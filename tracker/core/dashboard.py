"""What a team opens in the morning: running and queued jobs, runs that need attention since
the last visit, the best result per project, and the workers."""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import TYPE_CHECKING, TypedDict

from django.core.cache import cache
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from tracker.celery import app
from tracker.core.storage import read_key_of_runs_downsampled
from tracker.models import DashboardVisit, Project, ReportVersion, Run, RunDict

if TYPE_CHECKING:
    from django.contrib.auth.models import User

log = logging.getLogger(__name__)
SPARKLINE_POINTS = 120
FIRST_VISIT_WINDOW = dt.timedelta(days=1)
# Looking at the dashboard again within this long (a reload, its own refresh, a round trip to
# a run page) is the same visit: what ended since the last visit stays listed through it.
VISIT_GAP = dt.timedelta(minutes=30)
WORKERS_CACHE_SECONDS = 10
BAD_STATUSES = (Run.Status.FAILED, Run.Status.DIVERGED, Run.Status.LOST)
BAD_HEALTH = ("warning", "error")


def visit_since(user: User) -> dt.datetime:
    """Where "since your last visit" starts, and record that the user is looking now. The
    first visit looks back FIRST_VISIT_WINDOW; a new visit starts after VISIT_GAP without
    a look, and goes back to the last look of the one before."""
    now = timezone.now()
    visit, created = DashboardVisit.objects.get_or_create(
        user=user, defaults={"seen_at": now, "since": now - FIRST_VISIT_WINDOW}
    )
    if not created:
        if now - visit.seen_at >= VISIT_GAP:
            visit.since = visit.seen_at
        visit.seen_at = now
        visit.save(update_fields=["since", "seen_at"])
    return visit.since


def eta_seconds(run: Run) -> float | None:
    seconds = run.seconds
    if not run.steps_done or not run.total_steps or seconds is None:
        return None
    return seconds * (run.total_steps - run.steps_done) / run.steps_done


class Sparkline(TypedDict):
    steps: list[int]
    values: list[float | None]


class RunningCard(RunDict):
    project: str
    eta_seconds: float | None
    loss: Sparkline


class WorkerEntry(TypedDict):
    name: str
    busy: int  # runs it trains
    runs: list[RunDict]  # those the viewer may see


# Each takes the runs the viewer may see (tracker.core.access.visible_runs).


def running(visible: QuerySet[Run], limit: int = 20) -> list[RunningCard]:
    runs = list(visible.filter(status=Run.Status.RUNNING).select_related("project").order_by("started_at")[:limit])
    losses = read_key_of_runs_downsampled([run.pk for run in runs], "loss", SPARKLINE_POINTS)
    cards = []
    for run in runs:
        steps, values = losses[run.pk]
        sparkline = Sparkline(steps=steps.tolist(), values=[v if math.isfinite(v) else None for v in values.tolist()])
        cards.append(
            RunningCard(**run.to_dict(), project=run.project.name, eta_seconds=eta_seconds(run), loss=sparkline)
        )
    return cards


def queued(visible: QuerySet[Run], limit: int = 20) -> list[Run]:
    return list(visible.filter(status=Run.Status.QUEUED).select_related("project").order_by("created_at")[:limit])


def needs_attention(visible: QuerySet[Run], since: dt.datetime, limit: int = 30) -> list[Run]:
    """Running runs with a warning or error now, then the runs that ended badly (failed,
    diverged, lost, or with a warning or error of the diagnosis) since `since`, newest first."""
    # two index reads (run_status_created_idx, run_finished_idx) rather than one OR that reads the table
    warned = list(
        visible.filter(status=Run.Status.RUNNING, health__in=BAD_HEALTH)
        .select_related("project")
        .order_by("-pk")[:limit]
    )
    ended_badly = (
        visible.filter(finished_at__gte=since)
        .filter(Q(status__in=BAD_STATUSES) | Q(health__in=BAD_HEALTH))
        .select_related("project")
        .order_by("-finished_at", "-pk")
    )
    return warned + list(ended_badly[: limit - len(warned)])


def best_per_project(projects: QuerySet[Project]) -> list[Run]:
    """The run of best validation accuracy of each project: one index lookup per project
    (run_project_best_idx), in one query, rather than a sort of every run."""
    best = Run.objects.filter(project=OuterRef("pk"), best_val_accuracy__isnull=False).order_by(
        "-best_val_accuracy", "pk"
    )
    bests = projects.annotate(best=Subquery(best.values("pk")[:1])).filter(best__isnull=False).values("best")
    return list(Run.objects.filter(pk__in=bests).select_related("project").order_by("project_id"))


def live_worker_names() -> list[str]:
    """The workers that answer Celery's broadcast ping (cached a few seconds)."""
    found = cache.get("dashboard-workers")
    if found is None:
        try:
            replies = app.control.ping(timeout=0.5)  # [{"worker@host": {"ok": "pong"}}, ...]
            found = sorted(name for reply in replies for name in reply)
        except Exception:
            log.exception("could not ping the workers")
            found = []
        cache.set("dashboard-workers", found, WORKERS_CACHE_SECONDS)
    return found


def workers(visible: QuerySet[Run]) -> list[WorkerEntry]:
    """Live workers with every run each is training (a worker may train several at once): the
    details of those the viewer may see, and a count of all."""
    found = live_worker_names()
    busy: dict[str, list[Run]] = {}
    for run in Run.objects.filter(status=Run.Status.RUNNING, worker__in=found).order_by("started_at"):
        busy.setdefault(run.worker, []).append(run)
    shown = set(visible.filter(status=Run.Status.RUNNING, worker__in=found).values_list("pk", flat=True))
    return [
        WorkerEntry(
            name=name,
            busy=len(busy.get(name, [])),
            runs=[run.to_dict() for run in busy.get(name, []) if run.pk in shown],
        )
        for name in found
    ]


def recent_report_changes(projects: QuerySet[Project], limit: int = 8) -> list[ReportVersion]:
    """The latest changes to the reports of these projects: who, when, what."""
    return list(
        ReportVersion.objects.filter(report__project__in=projects)
        .select_related("report", "report__project", "author")
        .order_by("-created_at", "-pk")[:limit]
    )
