"""List pages with 10,000 runs, and the dashboard while a long run trains.

Builds (in the database the launcher gives it) 10,000 runs in 20 projects with resolved
configs of every optimizer and schedule, statuses, health, tags, studies and alerts, and
rewrites every run row five times as the flushes of a training run would (heartbeat,
progress, loss), then ANALYZE as autovacuum would. One more run of 5M steps and 62 series is
"training": stored through the worker's write path with its small chunks rolled up as the
live upkeep does, not compacted. Then times on the server (Django's request handling, in
process, median of REPEATS) every list page as a staff member (who sees every run) and as a
member of half the projects, and `/api/dashboard/`.

    python -m tracker.dev.launcher run -- python bench/lists.py

Also the flushes' rewrites on copies of the run table at fillfactor 100 and 70 (its size
before and after, the share of HOT updates). Prints a table, and ends with one line:
list_worst_ms=<A> dashboard_api_ms=<B> runs_default_ms=<C> runs_deep_ms=<D>
table_growth_ff70=<E> table_growth_ff100=<F> (the run table's growth under the flushes' rewrites)
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench.query import OTHER_SERIES, long_run_batches, median_ms  # noqa: E402
from tracker.core.storage import roll_up_series  # noqa: E402
from tracker.models import Alert, Project, Run, Study  # noqa: E402
from tracker.worker.sink import DatabaseSink  # noqa: E402
from trainer.config import OPTIMIZER_SETTINGS, SCHEDULE_SETTINGS, RunConfig  # noqa: E402

RUNS = 10_000
PROJECTS = 20
STUDIES = 200
RUNNING = 20
QUEUED = 40
FLUSH_REWRITES = 5  # each run row rewritten this many times, as its flushes did
LONG_STEPS = 5_000_000
ROLL_UP_EVERY = 10  # flushes between two roll-ups (the live upkeep runs every 10 s)
REPEATS = 7
PREFIX = "bench-lists"

# the flushes of each run's training, run after run: its row rewritten with progress,
# heartbeat and loss, each in a transaction of its own as the sink's are
REWRITES = (
    "DO $$ DECLARE run record; BEGIN"
    " FOR run IN SELECT id FROM tracker_run WHERE status <> 'queued' ORDER BY id LOOP"
    f"  FOR flush IN 1..{FLUSH_REWRITES} LOOP"
    "   UPDATE tracker_run SET heartbeat_at = heartbeat_at + interval '1 second',"
    "    steps_done = steps_done + 1, final_loss = final_loss * 0.999 WHERE id = run.id;"
    "   COMMIT;"
    "  END LOOP;"
    " END LOOP; END $$"
)

PAGES = [
    ("dashboard", "/"),
    ("dashboard API", "/api/dashboard/"),
    ("runs", "/runs/"),
    ("runs, page 100", "/runs/?page=100"),
    ("runs by name", "/runs/?sort=name"),
    ("runs by status", "/runs/?sort=status"),
    ("runs by health", "/runs/?sort=-health"),
    ("runs by best val acc", "/runs/?sort=-best_val_accuracy"),
    ("runs by final loss", "/runs/?sort=final_loss"),
    ("runs by duration", "/runs/?sort=-duration"),
    ("runs by optimizer", "/runs/?sort=optimizer"),
    ("runs by lr, page 150", "/runs/?sort=-lr&page=150"),
    ("runs by lr", "/runs/?sort=lr"),
    ("runs, status failed", "/runs/?status=failed"),
    ("runs, one project", f"/runs/?project={PREFIX}-07"),
    ("runs, optimizer adam", "/runs/?optimizer=adam"),
    ("runs, tag", "/runs/?tag=ablation"),
    ("runs, text (common)", "/runs/?q=sweep"),
    ("runs, text (rare)", "/runs/?q=zebra"),
    ("runs API", "/api/runs/"),
    ("studies", "/studies/"),
    ("projects", "/projects/"),
    ("job queue (admin)", "/admin/tracker/run/"),
    ("job queue, queued (admin)", "/admin/tracker/run/?status__exact=queued"),
]


def configs() -> list[dict]:
    """Resolved configs of every optimizer and schedule, at a few learning rates."""
    found = []
    for optimizer in OPTIMIZER_SETTINGS:
        for schedule in SCHEDULE_SETTINGS:
            for lr in (1e-4, 3e-3, 0.1):
                extra = {"milestones": [5, 10]} if schedule == "multistep" else {}
                raw = {
                    "epochs": 20,
                    "optimizer": {"name": optimizer, "lr": lr},
                    "schedule": {"name": schedule, **extra},
                }
                found.append(RunConfig.from_dict(raw).to_dict())
    return found


def build_runs(staff, member) -> None:
    rng = np.random.default_rng(0)
    projects = [Project.objects.create(name=f"{PREFIX}-{index:02d}") for index in range(PROJECTS)]
    for project in projects[::2]:
        project.members.add(member)
    studies = [
        Study.objects.create(
            project=projects[index % PROJECTS], name=f"study {index}", kind="grid", spec={}, created_by=staff
        )
        for index in range(STUDIES)
    ]
    choices = configs()
    statuses = ["succeeded"] * 70 + ["failed"] * 8 + ["diverged"] * 5 + ["cancelled"] * 5 + ["lost"] * 2
    statuses += ["stopped"] * 5
    # a team's queue at a busy moment: the newest runs waiting or training
    waiting = {RUNS - 1 - index: "queued" if index < QUEUED else "running" for index in range(QUEUED + RUNNING)}
    healths = ["ok"] * 60 + ["info"] * 20 + ["warning"] * 15 + ["error"] * 5
    words = ["sweep", "baseline", "ablation", "resnet", "mlp", "cnn", "warmup", "lr", "dropout", "final"]
    start = timezone.now() - dt.timedelta(days=120)
    runs = []
    for index in range(RUNS):
        status = waiting.get(index) or statuses[rng.integers(len(statuses))]
        created = start + dt.timedelta(minutes=17 * index + int(rng.integers(10)))
        started = None if status == "queued" else created + dt.timedelta(seconds=int(rng.integers(5, 600)))
        ended = status not in ("queued", "running")
        finished = started + dt.timedelta(seconds=int(rng.integers(60, 20_000))) if ended and started else None
        trained = status not in ("queued",)
        runs.append(
            Run(
                project=projects[int(rng.integers(PROJECTS))],
                name=f"{words[rng.integers(len(words))]} {words[rng.integers(len(words))]} {index}",
                tags=["ablation"] if index % 50 == 0 else ["nightly", f"week{index // 400}"],
                config=choices[int(rng.integers(len(choices)))],
                status=status,
                queue="gpu" if index % 3 == 0 else "cpu",
                study=studies[int(rng.integers(STUDIES))] if index % 4 == 0 else None,
                created_by=staff if index % 2 else member,
                created_at=created,
                started_at=started,
                finished_at=finished,
                heartbeat_at=finished or started,
                worker="gpu-1@host" if started else "",
                device="cpu" if started else "",
                attempts=1 if started else 0,
                epoch=int(rng.integers(20)) if trained else 0,
                steps_done=int(rng.integers(20_000)) if trained else 0,
                total_steps=20_000,
                steps_per_epoch=1_000,
                best_val_accuracy=float(rng.uniform(0.1, 0.99)) if trained and index % 7 else None,
                final_loss=float(rng.uniform(0.01, 2.3)) if trained else None,
                message="" if status in ("succeeded", "queued", "running") else f"{status} at step 1234",
                health=healths[rng.integers(len(healths))] if trained else "",
                findings=[
                    {"rule": "lr_too_high", "severity": "warning", "title": "learning rate too high", "step": 400}
                ]
                if index % 5 == 0
                else [],
                context={},
            )
        )
    Run.objects.bulk_create(runs, batch_size=1000)
    bad = Run.objects.filter(project__name__startswith=PREFIX, status="failed").values_list("pk", flat=True)[:300]
    Alert.objects.bulk_create(
        [
            Alert(run_id=pk, key="failed", subject="failed", body="failed", payload={}, emails=["team@example.com"])
            for pk in bad
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute(REWRITES)


def build_training_run(staff) -> Run:
    """The long run that trains while the dashboard is polled: its loss's sparkline is on it."""
    project = Project.objects.get(name=f"{PREFIX}-00")
    run = Run.objects.create(
        project=project,
        name="long training run",
        config=configs()[0],
        status="running",
        created_by=staff,
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
        worker="gpu-1@host",
        device="cuda",
        steps_per_epoch=LONG_STEPS // 1000,
        total_steps=2 * LONG_STEPS,  # half done
        tensors=[f"layer{index:02d}.weight" for index in range(OTHER_SERIES)],
    )
    sink = DatabaseSink(run, flush_seconds=0.0)
    for flush, batch in enumerate(long_run_batches(LONG_STEPS)):
        sink.scalars(batch)
        if flush % ROLL_UP_EVERY == ROLL_UP_EVERY - 1:
            roll_up_series(run.pk)  # what the live upkeep does while the run trains
    Run.objects.filter(pk=run.pk).update(steps_done=LONG_STEPS, epoch=1000)
    return run


def clean_up() -> None:
    Project.objects.filter(name__startswith=PREFIX).delete()
    get_user_model().objects.filter(username__startswith=PREFIX).delete()
    with connection.cursor() as cursor:
        # the bench's rows were the table's last pages: VACUUM gives them back, so that the
        # next run's scans read a table of the same size
        cursor.execute("VACUUM tracker_run")


def fillfactor_growth() -> dict[int, tuple[float, float, float]]:
    """The flushes' rewrites of every run row (as in build_runs) on copies of the run table with
    all its indexes, at PostgreSQL's default fillfactor (100) and at the table's (70):
    fillfactor -> (MB before, MB after, share of HOT updates)."""
    found = {}
    with connection.cursor() as cursor:
        for fillfactor in (100, 70):
            cursor.execute("DROP TABLE IF EXISTS bench_run_copy")
            cursor.execute(
                f"CREATE TABLE bench_run_copy (LIKE tracker_run INCLUDING ALL) WITH (fillfactor = {fillfactor})"
            )
            cursor.execute(
                "INSERT INTO bench_run_copy SELECT * FROM tracker_run WHERE project_id IN"
                f" (SELECT id FROM tracker_project WHERE name LIKE '{PREFIX}-%%')"
            )
            cursor.execute("SELECT pg_relation_size('bench_run_copy')")
            before = cursor.fetchone()[0]
            cursor.execute(REWRITES.replace("tracker_run", "bench_run_copy"))
            time.sleep(1)  # the statistics' reports
            cursor.execute(
                "SELECT pg_relation_size('bench_run_copy'), n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                " WHERE relname = 'bench_run_copy'"
            )
            after, updates, hot = cursor.fetchone()
            found[fillfactor] = (before / 2**20, after / 2**20, hot / max(updates, 1))
        cursor.execute("DROP TABLE bench_run_copy")
    return found


def main() -> None:
    from django.core.cache import cache

    clean_up()
    users = get_user_model()
    staff = users.objects.create(username=f"{PREFIX}-staff", is_staff=True, is_superuser=True)
    member = users.objects.create(username=f"{PREFIX}-member")
    try:
        t0 = time.perf_counter()
        build_runs(staff, member)
        print(f"stored {RUNS:,} runs, rewrote each row {FLUSH_REWRITES} times, in {time.perf_counter() - t0:.1f} s")
        growth = fillfactor_growth()
        for fillfactor, (before, after, hot) in growth.items():
            print(
                f"the same rewrites on a copy at fillfactor {fillfactor}: {before:.1f} MB -> {after:.1f} MB"
                f" ({after / before:.2f}x), {hot * 100:.0f} % of the updates HOT"
            )
        t0 = time.perf_counter()
        training = build_training_run(staff)
        chunks = training.chunks.count()
        print(
            f"stored a {LONG_STEPS:,}-step run with 62 series ({chunks:,} chunks) in {time.perf_counter() - t0:.1f} s"
        )
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE tracker_run")  # what autovacuum does after so many updates
        cache.set("dashboard-workers", ["gpu-1@host"], 3600)  # no broker round trip in the timings
        rows = []
        for who, user in (("staff", staff), ("member", member)):
            client = Client(HTTP_HOST="127.0.0.1")
            client.force_login(user)
            for name, url in PAGES:
                if url.startswith("/admin/") and not user.is_staff:
                    continue
                rows.append((name, who, url, median_ms(client, url, REPEATS)))
        print(f"\nserver time, median of {REPEATS}, {RUNS:,} runs (+ one of {LONG_STEPS:,} steps training)")
        print("| page | as | URL | ms |")
        print("| --- | --- | --- | --- |")
        for name, who, url, ms in rows:
            print(f"| {name} | {who} | `{url}` | {ms:.1f} |")
        worst = max(rows, key=lambda row: row[3])
        timing = {(name, who): ms for name, who, _, ms in rows}
        dashboard_api = max(timing[("dashboard API", "staff")], timing[("dashboard API", "member")])
        print(
            f"list_worst_ms={worst[3]:.1f} dashboard_api_ms={dashboard_api:.1f} "
            f"runs_default_ms={timing[('runs', 'staff')]:.1f} runs_deep_ms={timing[('runs by lr, page 150', 'staff')]:.1f}"
            f" table_growth_ff70={growth[70][1] / growth[70][0]:.2f} table_growth_ff100={growth[100][1] / growth[100][0]:.2f}"
        )
    finally:
        clean_up()


if __name__ == "__main__":
    main()
