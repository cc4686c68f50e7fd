"""Shared fixtures. The suite runs against real PostgreSQL and Redis: the
launcher (`make test`) starts embedded ones or uses DATABASE_URL / REDIS_URL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    """Poll until condition() is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def user(django_user_model):
    """A plain (not staff) user, member of every project the test creates: the tests of what
    a member sees use it; tests/tracker/test_access.py tests what a non-member does not see."""
    from django.db.models.signals import post_save

    from tracker.models import Project

    alice = django_user_model.objects.create_user("alice", password="correct horse battery")

    def join(sender, instance, created, **_):
        if created:
            instance.members.add(alice)

    post_save.connect(join, sender=Project, dispatch_uid="alice-joins-every-project")
    yield alice
    post_save.disconnect(sender=Project, dispatch_uid="alice-joins-every-project")


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser("root", password="correct horse battery")


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


def _database_url_for(name: str) -> str:
    from django.conf import settings

    parts = urlsplit(settings.DATABASE_URL)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def start_worker(name: str, queues: str, log_path: Path, concurrency: int = 1, **env: str) -> subprocess.Popen:
    """A real `celery worker` process on the real broker, writing to the test database;
    returns once it answers a ping."""
    from django.db import connection

    from tracker.celery import app

    environment = dict(os.environ, DATABASE_URL=_database_url_for(connection.settings_dict["NAME"]),
                       TRAINWATCH_WORKER_CONCURRENCY=str(concurrency), TRAINWATCH_DIAGNOSE_SECONDS="1",
                       PYTHONUNBUFFERED="1", **env)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tracker", "worker", "-Q", queues, "--concurrency", str(concurrency),
         "-n", name, "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
        env=environment, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    proc.log = log  # type: ignore[attr-defined]
    wait_until(lambda: proc.poll() is not None or app.control.ping(destination=[name], timeout=0.5),
               60, f"celery worker {name} to answer a ping")
    if proc.poll() is not None:
        raise AssertionError(f"celery worker exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
    return proc


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    proc.log.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker) -> Iterator[str]:
    """The suite's worker, on the cpu and gpu queues. Session-scoped: starting one costs ~3 s."""
    name = f"test-{uuid.uuid4().hex[:8]}@localhost"
    proc = start_worker(name, "cpu,gpu", ROOT / ".trainwatch" / "test-worker.log")
    try:
        yield name
    finally:
        stop_worker(proc)


CHROMIUM = os.environ.get("TRAINWATCH_CHROMIUM", "/usr/bin/chromium")
# Without these, Chromium tries to reach Google's hosts at start (no network here)
# and refuses to run as root without --no-sandbox.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        raise AssertionError(f"Chromium not found at {CHROMIUM}: `make test` installs Debian's chromium package "
                             f"(as root); or set TRAINWATCH_CHROMIUM to a Chromium binary")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls made by
    # the tests in between are still plain synchronous code.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page_as_user(browser, live_server, user):
    """A browser page logged in through the real login form; collects console errors."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "correct horse battery")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")  # the dashboard
    yield page
    context.close()


ARTIFACTS = ROOT / "artifacts"  # git-ignored: screenshots taken by the browser tests
