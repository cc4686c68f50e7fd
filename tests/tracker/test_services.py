"""The embedded-servers module, on a second, private pair of servers."""

import os
import socket
import stat

import psycopg2
import pytest

from tracker.dev import services

pytestmark = pytest.mark.services


@pytest.fixture
def private_home(tmp_path, monkeypatch):
    home = tmp_path / "tw"
    home.mkdir()
    # as root, PostgreSQL runs as an unprivileged user that must reach the data folder
    os.chmod(tmp_path, os.stat(tmp_path).st_mode | stat.S_IXOTH | stat.S_IROTH)
    monkeypatch.setenv("TRAINWATCH_HOME", str(home))
    for variable in ("DATABASE_URL", "REDIS_URL", "TRAINWATCH_PG_PORT", "TRAINWATCH_REDIS_PORT"):
        monkeypatch.delenv(variable, raising=False)
    yield home
    services.stop()


def redis_ping(url: str) -> bytes:
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16)


def test_it_starts_reports_and_stops_both_servers(private_home):
    assert [s.running for s in services.status()] == [False, False]
    started = services.ensure_started()
    assert sorted(started.started) == ["postgres", "redis"]
    with psycopg2.connect(started.database_url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT current_database(), current_setting('server_version_num')::int")
        database, version = cursor.fetchone()
    assert database == "trainwatch" and version >= 160000
    assert redis_ping(started.redis_url).startswith(b"+PONG")
    assert [s.running for s in services.status()] == [True, True]

    again = services.ensure_started()  # idempotent: nothing new is started
    assert again.started == [] and again.database_url == started.database_url

    assert sorted(services.stop()) == ["postgres", "redis"]
    assert [s.running for s in services.status()] == [False, False]


def test_given_urls_start_nothing(private_home):
    given = services.ensure_started({"DATABASE_URL": "postgresql://x@db/x", "REDIS_URL": "redis://r:6379/0"})
    assert given.started == [] and given.database_url == "postgresql://x@db/x"
    assert [s.running for s in services.status()] == [False, False]


def test_a_stale_pid_file_is_reported_and_replaced(private_home, capsys):
    (private_home / "redis").mkdir()
    (private_home / "redis" / "redis.pid").write_text("999999\n")  # no such process
    services.ensure_started({"DATABASE_URL": "postgresql://given"})
    assert "removing stale pid file (pid 999999 is not running)" in capsys.readouterr().err


def test_a_taken_port_gives_a_message_naming_it(private_home, monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("TRAINWATCH_REDIS_PORT", str(port))
        with pytest.raises(services.ServiceError, match=f"port {port} .* is taken by another process"):
            services.ensure_started({"DATABASE_URL": "postgresql://given"})
