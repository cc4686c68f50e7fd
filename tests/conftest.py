"""Shared fixtures. The suite runs against real PostgreSQL and Redis: the
launcher (`make test`) starts embedded ones or uses DATABASE_URL / REDIS_URL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

ROOT = Path(__file__).resolve().parent.parent
# the data folder (TRAINWATCH_DATA_DIRS) of the suite's gunicorn servers and workers: a member's
# jobs read only inside it
TEST_DATA_DIR = ROOT / ".trainwatch" / "test-data"


# mypy reads the whole code base for most of a minute on its own: when the suite includes its
# test, it starts as soon as the tests are collected and runs beside them; the test reads its answer
MYPY_TEST = "test_mypy_finds_no_type_error"
MYPY_COMMAND = ("mypy", "tracker", "trainer", "trainwatch", "bench")
background_mypy: dict[str, subprocess.Popen[str]] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(item.name == MYPY_TEST for item in session.items):
        background_mypy["run"] = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), MYPY_COMMAND[0]), *MYPY_COMMAND[1:]],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "DEBUG": "1"},
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    running = background_mypy.pop("run", None)
    if running is not None and running.poll() is None:
        running.kill()


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


def ended(run_id: int, timeout: float = 30):
    """The run once its end is written: a client's run's end is written by the upkeep worker
    a moment after its last payload is stored and answered."""
    from tracker.models import Run

    return wait_until(lambda: (run := Run.objects.get(pk=run_id)).is_finished and run, timeout, f"run {run_id} to end")


@pytest.fixture
def upkeep_here(django_capture_on_commit_callbacks):
    """For unit tests of the ingest (whose transaction never commits): `with upkeep_here():`
    runs the upkeep tasks sent by the requests inside it in this process once it is over, as the
    upkeep worker would (the integration tests have the real one)."""
    import contextlib

    from tracker.celery import app
    from tracker.worker import tasks  # noqa: F401 - registers the tasks

    @contextlib.contextmanager
    def here():
        sent = []
        real = app.send_task
        app.send_task = lambda name, args, **options: sent.append((name, args))
        try:
            with django_capture_on_commit_callbacks(execute=True):
                yield sent
        finally:
            app.send_task = real
        for name, args in sent:
            app.tasks[name].run(*args)

    return here


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """No test sees what an earlier one cached (e.g. the workers that answered a ping then)."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def user(django_user_model):
    """A plain (not staff) user. A user sees only the projects they are a member of: a test
    makes alice a member where it means to (member_of, or by creating the project as her)."""
    return django_user_model.objects.create_user("alice", password="correct horse battery")


def member_of(user, name: str):
    """The project of that name, with the user as a member."""
    from tracker.models import Project

    project, _ = Project.objects.get_or_create(name=name)
    project.members.add(user)
    return project


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser("root", password="correct horse battery")


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


def database_url_for(name: str) -> str:
    from django.conf import settings

    parts = urlsplit(settings.DATABASE_URL)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def start_worker(
    name: str, queues: str, log_path: Path, concurrency: int = 1, command: list[str] | None = None, **env: str
) -> subprocess.Popen:
    """A real `celery worker` process on the real broker, writing to the test database;
    returns once it answers a ping. `command` replaces the training worker's."""
    from django.db import connection

    from tracker.celery import app
    from tracker.dev.launcher import worker_command

    environment = dict(
        os.environ,
        DATABASE_URL=database_url_for(connection.settings_dict["NAME"]),
        TRAINWATCH_WORKER_CONCURRENCY=str(concurrency),
        TRAINWATCH_DIAGNOSE_SECONDS="1",
        TRAINWATCH_DATA_DIRS=str(TEST_DATA_DIR),
        PYTHONUNBUFFERED="1",
        **env,
    )
    TEST_DATA_DIR.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")  # noqa: SIM115 - stays open while the worker runs; stop_worker closes it
    proc = subprocess.Popen(
        [*(command or worker_command(name, queues, concurrency)), "--without-gossip", "--without-mingle"],
        env=environment,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc.log = log  # type: ignore[attr-defined]

    def answers() -> bool:
        # a connection of its own each time: the pool's may be one that a Redis restart
        # (tests/integration/test_faults.py) closed, which a broadcast does not reopen
        with app.connection_for_write() as broker:
            try:
                return bool(app.control.ping(destination=[name], timeout=0.5, connection=broker))
            except (RedisConnectionError, KombuOperationalError):
                return False

    try:
        wait_until(lambda: proc.poll() is not None or answers(), 60, f"celery worker {name} to answer a ping")
    except BaseException:
        stop_worker(proc)  # not left running past the test
        raise
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


@pytest.fixture(scope="session")
def upkeep_worker(django_db_setup, django_db_blocker) -> Iterator[str]:
    """The worker of the upkeep queue, as `make demo` starts it: it writes the end of a client's
    run and its live diagnosis. Session-scoped."""
    from django.conf import settings

    from tracker.dev.launcher import upkeep_worker_command

    name = f"upkeep-{uuid.uuid4().hex[:8]}@localhost"
    command = upkeep_worker_command(name, settings.TRAINWATCH_UPKEEP_QUEUE)
    proc = start_worker(
        name, settings.TRAINWATCH_UPKEEP_QUEUE, ROOT / ".trainwatch" / "test-upkeep.log", command=command
    )
    try:
        yield name
    finally:
        stop_worker(proc)


@pytest.fixture(autouse=True)
def _upkeep_for_committed_runs(request):
    """A test whose writes are committed (a live server, a transactional database) gets the
    upkeep worker, so that a client's run ends as it does in production."""
    if {"live_server", "transactional_db", "django_db_serialized_rollback"} & set(request.fixturenames) or any(
        marker.kwargs.get("transaction") for marker in request.node.iter_markers("django_db")
    ):
        request.getfixturevalue("upkeep_worker")


CHROMIUM = os.environ.get("TRAINWATCH_CHROMIUM", "/usr/bin/chromium")
# Without these, Chromium tries to reach Google's hosts at start (no network here)
# and refuses to run as root without --no-sandbox.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture
def reported_worker(celery_worker_process) -> str:
    """The suite's worker, whose row (emptied between transactional tests) says what it
    reported at start: its entry points, which the API validates queued jobs against."""
    from django.utils import timezone

    from tracker.models import Worker
    from trainer.entry import describe_registered

    now = timezone.now()
    Worker.objects.update_or_create(
        name=celery_worker_process,
        defaults={
            "hostname": "test",
            "queues": ["cpu", "gpu"],
            "device": "CPU",
            "entry_points": describe_registered(),
            "started_at": now,
            "seen_at": now,
        },
    )
    return celery_worker_process


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        raise AssertionError(
            f"Chromium not found at {CHROMIUM}: `make test` installs Debian's chromium package "
            f"(as root); or set TRAINWATCH_CHROMIUM to a Chromium binary"
        )
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls made by
    # the tests in between are still plain synchronous code.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def logged_in_page(browser, live_server, username: str, login_path: str, landing: str, enforce_csp: bool = False):
    """A browser page logged in through the real login form; collects console errors and
    every response that failed (4xx, 5xx). Playwright's wait_for_function evaluates its
    predicate as a string, which the pages' Content-Security-Policy forbids, so a test's page
    sets the policy aside unless it asks for it (tests/security/test_csp_browser.py does)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, bypass_csp=not enforce_csp)
    page = context.new_page()
    page.console_errors = []
    page.failed_responses = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    page.on(
        "response",
        lambda response: response.status >= 400 and page.failed_responses.append(f"{response.status} {response.url}"),
    )
    page.goto(f"{live_server.url}{login_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "correct horse battery")
    page.click("[type=submit]")
    page.wait_for_url(f"{live_server.url}{landing}")
    return context, page


@pytest.fixture
def page_as_user(browser, live_server, user):
    context, page = logged_in_page(browser, live_server, "alice", "/accounts/login/", "/")  # lands on the dashboard
    yield page
    errors = list(page.console_errors)
    context.close()
    assert errors == [], f"console errors on the pages this test opened: {errors}"


@pytest.fixture
def page_as_staff(browser, live_server, staff):
    context, page = logged_in_page(browser, live_server, "root", "/admin/login/?next=/admin/", "/admin/")
    yield page
    errors = list(page.console_errors)
    context.close()
    assert errors == [], f"console errors on the pages this test opened: {errors}"


class WebServer:
    """gunicorn serving the test database, stopped and started again at will, on one port."""

    def __init__(self) -> None:
        from django.db import connection

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.environment = {
            **os.environ,
            "DATABASE_URL": database_url_for(connection.settings_dict["NAME"]),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "TRAINWATCH_DIAGNOSE_SECONDS": "1",
            "TRAINWATCH_DATA_DIRS": str(TEST_DATA_DIR),
        }
        TEST_DATA_DIR.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from tracker.dev.launcher import web_server_command

        self.process = subprocess.Popen(
            web_server_command(self.port),
            cwd=ROOT,
            env=self.environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        def answers() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_until(answers, 30, "gunicorn to listen")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)


@pytest.fixture
def server(django_db_setup):
    web = WebServer()
    web.start()
    yield web
    web.stop()


@pytest.fixture
def token(user):
    """An API token of alice's, as `manage.py create_token` or the Tokens page issue one."""
    from tracker.models import ApiToken

    return ApiToken.issue(user, "scripts")[1]


@pytest.fixture
def client_env(server, token, tmp_path, monkeypatch):
    """The trainwatch client of this process pointed at the test's gunicorn server."""
    monkeypatch.setenv("TRAINWATCH_URL", server.url)
    monkeypatch.setenv("TRAINWATCH_TOKEN", token)
    monkeypatch.setenv("TRAINWATCH_DIR", str(tmp_path))
    monkeypatch.delenv("TRAINWATCH_MODE", raising=False)


ARTIFACTS = ROOT / "artifacts"  # git-ignored: screenshots taken by the browser tests


class WebhookReceiver:
    """A local HTTP server that records each POST's JSON body and answers `status`."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        receiver = self
        self.posts: list[dict] = []
        self.status = 200

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.posts.append(
                    {"path": self.path, "content_type": self.headers.get("Content-Type"), "json": json.loads(body)}
                )
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_receiver(settings) -> Iterator[WebhookReceiver]:
    """A receiver on a loopback address, which this process's alerts may reach (the allow-list)."""
    settings.TRAINWATCH_WEBHOOK_ALLOW = ["127.0.0.1"]
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


def lr_finding(severity: str = "warning") -> dict:
    """A stored `lr_too_high` finding, as the diagnosis writes one (trainer.payloads.FindingDict)."""
    return {
        "rule": "lr_too_high",
        "severity": severity,
        "title": "learning rate too high",
        "evidence": "update ratio 3e-2 on fc1 since step 4",
        "advice": "lower it",
        "series": [],
        "step": 4,
        "numbers": {},
    }
