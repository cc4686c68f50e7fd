"""What `make demo` and `make test` run.

    python -m tracker.dev.launcher demo [--reset] [--port 8000]
    python -m tracker.dev.launcher test [-- pytest arguments]
    python -m tracker.dev.launcher run -- COMMAND ...

Each starts the embedded PostgreSQL / Redis unless DATABASE_URL / REDIS_URL are
set, exports both to its children, and on exit stops only the servers it
started itself (a `make test` beside a running demo leaves the demo's alone).
Children run in their own process groups, so a Ctrl-C reaches this launcher
only, which then stops them in order: web, worker (which asks its runs to
stop), and the servers last.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit

from tracker.dev import services

ROOT = services.PROJECT_ROOT
PYTHON = sys.executable


def _secret_key() -> str:
    """A key kept under .trainwatch/ so that demo sessions survive a restart."""
    path = services.home() / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


def _with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


# The suite's tasks go to their own Redis database, so a demo worker on the same
# server never takes a test's task (and the reverse).
TEST_REDIS_DB = 15


def _environment() -> tuple[dict[str, str], list[str]]:
    result = services.ensure_started()
    env = dict(os.environ)
    env["DATABASE_URL"] = result.database_url
    env["REDIS_URL"] = result.redis_url
    env.setdefault("SECRET_KEY", _secret_key())
    env.setdefault("DJANGO_SETTINGS_MODULE", "tracker.settings")
    env.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
    env["PYTHONUNBUFFERED"] = "1"
    return env, result.started


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([PYTHON, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, check=True)


class Children:
    """Long-running child processes, each in its own session, stopped in reverse order."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def first_exited(self) -> tuple[str, int] | None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                return name, proc.returncode
        return None

    def stop_all(self, grace: float = 30.0) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                print(f"stopping {name} ...", flush=True)
                # the main process only: a Celery worker then asks its runs to stop and waits for
                # its pool; signalling the whole group would kill the pool mid-run
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    print(f"{name} did not stop within {grace:.0f} s; killing it", flush=True)
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def web_server_command(port: int) -> list[str]:
    """The web server of the demo and of bench/query.py: gunicorn on a loopback port."""
    return [
        PYTHON,
        "-m",
        "gunicorn",
        "tracker.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        "--threads",
        "4",
    ]


def worker_command(name: str, queues: str, concurrency: int, *extra: str) -> list[str]:
    """A Celery worker of the project: the demo's, the upkeep queue's, the suite's."""
    return [
        PYTHON, "-m", "celery", "-A", "tracker", "worker", "-Q", queues,
        "--concurrency", str(concurrency), "-n", name, "--loglevel", "INFO", *extra,
    ]  # fmt: skip


def upkeep_worker_command(name: str, queue: str) -> list[str]:
    """The worker of the upkeep queue (a client run's roll-up, live diagnosis and end): threads,
    since its tasks wait on the database, apart from the training workers so that neither
    waits behind the other."""
    return worker_command(name, queue, 4, "--pool", "threads")


def _free_web_port(preferred: int) -> int:
    if services.port_is_free(preferred):
        return preferred
    port = services.free_port()
    print(f"port {preferred} is taken; serving on {port} instead", flush=True)
    return port


def demo(args: argparse.Namespace) -> int:
    if args.reset:
        stopped = services.stop()
        if stopped:
            print(f"stopped {', '.join(stopped)} for the reset", flush=True)
        shutil.rmtree(services.home() / "pgdata", ignore_errors=True)
        shutil.rmtree(services.home() / "redis", ignore_errors=True)
        print("demo data removed (--reset)", flush=True)
    env, started = _environment()
    children = Children()
    interrupted = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal interrupted
        interrupted = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        _manage(env, "migrate", "--no-input", "-v", "0")
        _manage(env, "demo_setup", *(["--pathologies"] if args.pathologies else []))
        port = _free_web_port(args.port)
        # the alerts' run links point at this demo, unless the environment says otherwise
        env.setdefault("TRAINWATCH_PUBLIC_URL", f"http://localhost:{port}")
        concurrency = str(args.concurrency)
        worker_env = dict(env, TRAINWATCH_WORKER_CONCURRENCY=concurrency)
        queues = "cpu,gpu" if _has_cuda() else "cpu"
        # -B: Celery beat inside the demo's one worker, for the reaper of lost runs
        children.start(
            "worker",
            worker_command(
                "demo@%h", queues, args.concurrency, "-B", "--schedule", str(services.home() / "celerybeat-schedule")
            ),
            worker_env,
        )
        upkeep_queue = env.get("TRAINWATCH_UPKEEP_QUEUE", "upkeep")
        children.start("upkeep", upkeep_worker_command("upkeep@%h", upkeep_queue), env)
        children.start("web", [*web_server_command(port), "--access-logfile", "-"], env)
        print(
            f"\n  Trainwatch is running: open http://127.0.0.1:{port}/  (log in as demo / {DEMO_PASSWORD})"
            f"\n  The optimizer comparison (7 optimizers x 3 seeds): http://127.0.0.1:{port}/studies/"
            f"\n  Ctrl-C stops the web server, the workers and the embedded servers.\n",
            flush=True,
        )
        while not interrupted:
            exited = children.first_exited()
            if exited:
                print(f"{exited[0]} exited with code {exited[1]}; shutting down", flush=True)
                break
            time.sleep(0.5)
        return 0
    except subprocess.CalledProcessError as error:
        print(f"error: {' '.join(map(str, error.cmd))} failed with code {error.returncode}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abort the clean-up
        children.stop_all()
        stopped = services.stop(started)
        if stopped:
            print(f"stopped {', '.join(stopped)}", flush=True)


DEMO_PASSWORD = "trainwatch-demo"


def _has_cuda() -> bool:
    try:
        # here, not above: torch takes seconds to import, and only the demo asks
        import torch  # noqa: PLC0415

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def run_command(command: list[str], redis_db: int | None = None, suite: bool = False) -> int:
    if not command:
        print("nothing to run: give a command after --", file=sys.stderr)
        return 2
    env, started = _environment()
    if redis_db is not None:
        env["REDIS_URL"] = _with_redis_db(env["REDIS_URL"], redis_db)
    if suite:  # the suite's artifacts never mix with the demo's
        env["TRAINWATCH_ARTIFACTS_DIR"] = str(services.home() / "test-artifacts")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the child handles Ctrl-C; we clean up after it
    try:
        return subprocess.run(command, env=env, cwd=ROOT).returncode
    finally:
        services.stop(started)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tracker.dev.launcher")
    sub = parser.add_subparsers(dest="command", required=True)
    demo_parser = sub.add_parser("demo", help="web server + worker + demo study, until Ctrl-C")
    demo_parser.add_argument("--reset", action="store_true", help="delete the embedded database and queue first")
    demo_parser.add_argument("--port", type=int, default=int(os.environ.get("TRAINWATCH_PORT", "8000")))
    demo_parser.add_argument("--concurrency", type=int, default=2, help="runs trained at once by the demo worker")
    demo_parser.add_argument(
        "--pathologies", action="store_true", help="also queue one run per pathology the diagnosis knows"
    )
    sub.add_parser("test", help="the whole test suite (arguments after -- go to pytest)")
    sub.add_parser("run", help="any command, with the services started and DATABASE_URL / REDIS_URL set")
    own, rest = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    args = parser.parse_args(own)
    try:
        if args.command == "demo":
            return demo(args)
        if args.command == "test":
            return run_command([PYTHON, "-m", "pytest", *rest], redis_db=TEST_REDIS_DB, suite=True)
        return run_command(rest)
    except services.ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
