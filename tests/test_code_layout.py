"""The layout of the code, checked: import-linter's contracts (pyproject.toml), no import
cycle in tracker/, ruff (lint and format), mypy with django-stubs, and a web process that
serves every page without importing torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import grimp
import numpy as np
import pytest

from tests.conftest import MYPY_COMMAND, ROOT, background_mypy, database_url_for
from trainer.sink import HistogramRecord, ImageRecord

BIN = os.path.dirname(sys.executable)


def run_tool(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [os.path.join(BIN, command[0]), *command[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DEBUG": "1"},
    )


def test_the_import_contracts_hold():
    result = run_tool("lint-imports", "--no-cache")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def cycles(graph: grimp.ImportGraph, package: str) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), among package's modules."""
    modules = sorted(m for m in graph.modules if m == package or m.startswith(package + "."))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in modules:
                continue
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in modules:
        if module not in index:
            visit(module)
    return found


def test_there_is_no_import_cycle_in_tracker_or_trainer():
    """Imports inside functions count too: a circle hidden in a function is still a circle."""
    graph = grimp.build_graph("tracker", "trainer")
    assert cycles(graph, "tracker") == []
    assert cycles(graph, "trainer") == []


def test_every_json_answer_and_page_goes_through_the_one_finite_encoder():
    """A NaN written by Python's json is refused by every browser's JSON.parse."""
    strays = []
    for path in (ROOT / "tracker").rglob("*.py"):
        text = path.read_text()
        if path.name != "finite_json.py" and (
            "from django.http import" in text
            and "JsonResponse" in text.split("from django.http import")[1].split("\n")[0]
        ):
            strays.append(str(path.relative_to(ROOT)))
    for path in (ROOT / "templates").rglob("*.html"):
        if "|json_script" in path.read_text():
            strays.append(str(path.relative_to(ROOT)))
    assert strays == []


def test_every_file_the_code_and_the_readme_point_at_exists():
    """The docs' own links are checked by `mkdocs build --strict` (tests/test_docs.py)."""
    import re

    cited = set()
    for folder in ("tracker", "trainer", "trainwatch", "bench", "static/js", "tests"):
        for path in (ROOT / folder).rglob("*.*"):
            if path.suffix in (".py", ".js"):
                cited.update(re.findall(r"\b(docs/[\w./-]+\.(?:md|png))", path.read_text()))
    readme = (ROOT / "README.md").read_text()
    cited.update(
        target.split("#")[0]
        for target in re.findall(r"\]\(([^)\s]+)\)", readme)
        if not target.startswith(("http://", "https://", "#", "mailto:"))
    )
    assert cited and [target for target in sorted(cited) if not (ROOT / target).exists()] == []


def test_ruff_finds_nothing_and_the_code_is_formatted():
    lint = run_tool("ruff", "check", "--no-cache", ".")
    assert lint.returncode == 0, lint.stdout[-4000:]
    formatted = run_tool("ruff", "format", "--check", "--no-cache", ".")
    assert formatted.returncode == 0, formatted.stdout[-4000:]


def test_mypy_finds_no_type_error():
    running = background_mypy.get("run")  # started once the tests were collected (tests/conftest.py)
    if running is None:
        result = run_tool(*MYPY_COMMAND)
        returncode, output = result.returncode, result.stdout
    else:
        output, _ = running.communicate(timeout=600)
        returncode = running.returncode
    assert returncode == 0, output[-6000:]


WEB_PROCESS = textwrap.dedent("""
    import json, os, sys
    os.environ["DJANGO_SETTINGS_MODULE"] = "tracker.settings"
    import django
    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    urls, posts = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    client = Client(HTTP_HOST="localhost")
    client.force_login(get_user_model().objects.get(username="root"))
    statuses = {url: client.get(url).status_code for url in urls}
    statuses.update({url: client.post(url, body, content_type="application/json").status_code
                     for url, body in posts.items()})
    print(json.dumps({"statuses": statuses, "torch": "torch" in sys.modules}))
""")


@pytest.mark.django_db(transaction=True)
def test_a_web_process_serves_every_page_without_importing_torch(staff):
    from django.db import connection

    from tracker.core.runs import create_run
    from tracker.core.storage import ChunkWriter, write_histograms, write_images
    from tracker.core.studies import create_study
    from tracker.models import Run

    run = create_run("web", {"epochs": 1}, "measured", staff)
    Run.objects.filter(pk=run.pk).update(status="succeeded", steps_per_epoch=10)
    ChunkWriter(run.pk).write(
        {"loss": (np.arange(10), np.linspace(2, 1, 10)), "update_ratio/fc1.weight": (np.arange(10), np.full(10, 1e-3))}
    )
    write_histograms(run.pk, [HistogramRecord("weight/fc1.weight", 0, -1.0, 1.0, np.ones(30, np.int64), 0.0, 0.5)])
    write_images(run.pk, [ImageRecord("first_layer", 0, np.zeros((8, 8), np.uint8))])
    study = create_study("web", "lr", user=staff, preset="random-lr")
    other = study.runs.first()
    pages = [
        "/",
        "/runs/",
        f"/runs/{run.pk}/",
        f"/runs/{run.pk}/tensorboard/",
        "/tokens/",
        "/projects/",
        f"/projects/{run.project_id}/alerts/",
        f"/compare/?runs={run.pk},{other.pk}",
        "/studies/",
        f"/studies/{study.pk}/",
        f"/studies/{study.pk}/report/",
        f"/studies/{study.pk}/report/?format=md",
        f"/studies/{study.pk}/report/?format=csv",
    ]
    api = [
        "/api/runs/",
        f"/api/runs/{run.pk}/",
        f"/api/runs/{run.pk}/series/?series=loss,update_ratio/fc1.weight",
        f"/api/runs/{run.pk}/histograms/",
        f"/api/runs/{run.pk}/histograms/?key=weight/fc1.weight",
        f"/api/runs/{run.pk}/histograms/?key=weight/fc1.weight&step=0",
        f"/api/runs/{run.pk}/images/",
        f"/api/runs/{run.pk}/layers/",
        f"/api/compare/?runs={run.pk},{other.pk}&group=optimizer.lr&lr=1",
        "/api/dashboard/",
        "/api/studies/",
        f"/api/studies/{study.pk}/",
    ]
    admin = [
        "/admin/",
        "/admin/tracker/run/",
        f"/admin/tracker/run/{run.pk}/change/",
        f"/admin/tracker/run/{run.pk}/clone/",
        "/admin/tracker/worker/",
        "/admin/tracker/study/",
        "/admin/tracker/study/add/",
        "/admin/tracker/project/",
        f"/admin/tracker/project/{run.project_id}/change/",
        "/admin/tracker/alert/",
        "/admin/tracker/apitoken/",
    ]
    from django.utils import timezone

    from tracker.models import Worker
    from trainer.entry import describe_registered

    now = timezone.now()
    Worker.objects.create(
        name="cpu0@web", hostname="web", queues=["cpu"], entry_points=describe_registered(), started_at=now, seen_at=now
    )
    posts = {
        "/api/runs/": {"project": "web", "config": {"epochs": 1}},
        # a function that validates its params by code: checked in a child process
        "/api/runs/?checked": {
            "project": "web",
            "config": {"job": "entry", "entry": "testjobs-checked", "params": {"width": 4}},
        },
    }
    environment = {**os.environ, "DATABASE_URL": database_url_for(connection.settings_dict["NAME"])}
    result = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS, json.dumps(pages + api + admin), json.dumps(posts)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert {url: status for url, status in answer["statuses"].items() if status not in (200, 201)} == {}
    assert answer["torch"] is False
