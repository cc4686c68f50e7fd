"""The list pages at 10,000 runs read indexes, not the table (bench/lists.py times them): each
query's plan, with the planner told to avoid scans and sorts where it has any other way, uses
the index meant for it. And a flush's rewrite of the run row is a HOT update."""

import datetime as dt
import json

import numpy as np
import pytest
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.conftest import member_of
from tracker.core import dashboard
from tracker.core.access import visible_projects, visible_runs
from tracker.core.storage import ChunkWriter, store_handoff
from tracker.models import RUN_SORTS, Run
from tracker.views.pages import _filtered_runs

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs(user):
    project = member_of(user, "lists")
    now = timezone.now()
    for index in range(30):
        Run.objects.create(
            project=project,
            name=f"run {index}",
            status="failed" if index % 3 else "succeeded",
            health="warning" if index % 4 == 0 else "ok",
            config={"optimizer": {"name": "adam" if index % 2 else "sgd", "lr": 10.0 ** -(index % 4)}},
            started_at=now - dt.timedelta(hours=index + 1),
            finished_at=now - dt.timedelta(hours=index) if index % 5 else None,
            best_val_accuracy=index / 30 if index % 7 else None,
            final_loss=1 / (index + 1),
        )
    return project


def plan_nodes(sql: str, params: tuple = ()) -> list[dict]:
    """Every node of the query's plan, with sequential scans and sorts priced out."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("SET LOCAL enable_incremental_sort = off")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        found = cursor.fetchone()[0]
    plan = (json.loads(found) if isinstance(found, str) else found)[0]["Plan"]
    nodes, pending = [], [plan]
    while pending:
        node = pending.pop()
        nodes.append(node)
        pending.extend(node.get("Plans", []))
    return nodes


def index_names(nodes: list[dict]) -> set[str]:
    return {node["Index Name"] for node in nodes if "Index Name" in node}


def sorted_by_a_sort(nodes: list[dict]) -> bool:
    return any(node["Node Type"] in ("Sort", "Incremental Sort") for node in nodes)


@pytest.mark.parametrize("who", ["staff", "member"])
@pytest.mark.parametrize(
    "sort", [f"{sign}{name}" for name, sort in RUN_SORTS.items() if sort.indexed for sign in ("-", "")]
)
def test_each_sort_of_the_runs_table_reads_its_pages_in_an_index_order(runs, user, staff, who, sort):
    request = RequestFactory().get("/runs/", {"sort": sort, "page": "2"})
    request.user = staff if who == "staff" else user
    queryset, _, _ = _filtered_runs(request)
    sql, params = queryset.values_list("pk", flat=True)[10:20].query.sql_with_params()
    nodes = plan_nodes(sql, params)
    name = sort.lstrip("-")
    suffix = "desc" if sort.startswith("-") or not RUN_SORTS[name].nullable else "asc"
    assert f"run_sort_{name[:12]}_{suffix}" in index_names(nodes)
    assert not sorted_by_a_sort(nodes)


def test_the_sorts_put_empty_values_last_and_break_ties_by_id_in_the_same_direction(runs, logged_in):
    for sort in ("best_val_accuracy", "-best_val_accuracy", "-duration", "duration", "lr", "-lr", "name"):
        name = sort.lstrip("-")
        listed = list(logged_in.get(f"/runs/?sort={sort}").context["rows"])
        key = {
            "best_val_accuracy": lambda run: run.best_val_accuracy,
            "duration": lambda run: run.finished_at - run.started_at if run.finished_at else None,
            "lr": lambda run: run.learning_rate,
            "name": lambda run: run.name,
        }[name]
        present = [run for run in listed if key(run) is not None]
        assert listed[: len(present)] == present, sort  # the empty ones last
        expected = sorted(present, key=lambda run: (key(run), run.pk), reverse=sort.startswith("-"))
        assert [run.pk for run in present] == [run.pk for run in expected], sort


def test_the_dashboard_reads_what_needs_attention_and_the_best_runs_through_their_indexes(runs, staff):
    since = timezone.now() - dt.timedelta(days=1)
    with CaptureQueriesContext(connection) as queries:
        attention = dashboard.needs_attention(visible_runs(staff), since)
        best = dashboard.best_per_project(visible_projects(staff))
    used = set()
    for query in queries.captured_queries:
        used |= index_names(plan_nodes(query["sql"]))
    assert {"run_finished_idx", "run_project_best_idx"} <= used
    assert [run.name for run in best] == ["run 29"]  # 29/30, the best of the project
    # running with a warning first (none here), then what ended badly, newest first
    ended = [run for run in attention if run.finished_at]
    assert ended == sorted(ended, key=lambda run: (run.finished_at, run.pk), reverse=True) and ended


def test_a_flush_rewrites_the_run_row_without_touching_its_indexes(runs):
    """fillfactor 70 leaves room on the row's page, and no index covers what a flush writes
    (heartbeat, progress, last loss): PostgreSQL updates it in place (HOT)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'tracker_run'")
        assert "fillfactor=70" in cursor.fetchone()[0]
    run = Run.objects.create(project=runs, name="training", status="running", config={})
    writer = ChunkWriter(run.pk)

    def updates() -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_stat_get_xact_tuples_updated('tracker_run'::regclass),"
                " pg_stat_get_xact_tuples_hot_updated('tracker_run'::regclass)"
            )
            return cursor.fetchone()

    before = updates()
    # 8 flushes: in one transaction (the test's) no old version can be pruned, so they must all
    # fit in the 30 % of the page that fillfactor 70 leaves free; committed flushes reuse it
    for flush in range(8):
        steps = np.arange(flush * 100, (flush + 1) * 100)
        store_handoff(
            run.pk,
            writer,
            {"loss": (steps, np.full(100, 1.0 / (flush + 1)))},
            [],
            [],
            {"steps_done": int(steps[-1]) + 1, "epoch": flush // 5},
            timezone.now(),
        )
    updated, hot = (after - earlier for after, earlier in zip(updates(), before))
    assert updated == 8 and hot == 8
