import json
import os
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import ROOT
from tracker.models import Run


@pytest.mark.django_db
def test_queue_run_refuses_an_invalid_file_naming_each_field_and_queues_nothing(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"optimizer": {"name": "sgd", "lr": -1}, "batch_size": 0}))
    with pytest.raises(CommandError) as caught:
        call_command("queue_run", "--config", str(path))
    message = str(caught.value)
    assert "config.optimizer.lr: must be > 0" in message and "config.batch_size" in message
    assert "nothing was queued" in message
    assert Run.objects.count() == 0


@pytest.mark.django_db
def test_queue_run_refuses_malformed_json_and_a_missing_file(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("{oops")
    with pytest.raises(CommandError, match="is not valid JSON"):
        call_command("queue_run", "--config", str(path))
    with pytest.raises(CommandError, match="no such file"):
        call_command("queue_run", "--config", str(tmp_path / "missing.json"))


def settings_error(**env: str) -> str:
    """Import the settings in a fresh interpreter with the given environment."""
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "ALLOWED_HOSTS")}
    result = subprocess.run(
        [sys.executable, "-c", "import tracker.settings"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
    )
    return result.stderr if result.returncode else ""


def test_with_debug_off_secret_key_and_allowed_hosts_are_required():
    assert "SECRET_KEY must be set when DEBUG is off" in settings_error(DEBUG="0")
    assert "ALLOWED_HOSTS must be set" in settings_error(DEBUG="0", SECRET_KEY="s" * 50)
    assert settings_error(DEBUG="0", SECRET_KEY="s" * 50, ALLOWED_HOSTS="example.com") == ""


def test_debug_accepts_only_true_or_false_words():
    assert "DEBUG='yes please'" in settings_error(DEBUG="yes please")


def test_manage_py_services_works_before_anything_is_configured():
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL")}
    result = subprocess.run(
        [sys.executable, "manage.py", "services", "status"], cwd=ROOT, env=clean, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("postgres") and "redis" in result.stdout


@pytest.mark.django_db
def test_queue_run_can_queue_a_check_job(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"model": {"activation": "tanh"}}))
    call_command("queue_run", "--config", str(path), "--check", "--project", "checks")
    run = Run.objects.get()
    assert run.config["job"] == "check" and run.name.startswith("check: sgd")


def test_the_settings_never_read_the_embedded_servers_state(tmp_path):
    """A production process takes its servers from the environment only (they used to come
    from .trainwatch/services.json whenever DATABASE_URL was unset)."""
    (tmp_path / "pgdata").mkdir()
    (tmp_path / "pgdata" / "postmaster.pid").write_text(f"{os.getpid()}\n")
    (tmp_path / "services.json").write_text(json.dumps({"postgres_port": 5999, "redis_port": 6999}))
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    code = "import tracker.settings as s; print(repr(s.DATABASE_URL), repr(s.REDIS_URL))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**clean, "TRAINWATCH_HOME": str(tmp_path)},
    )
    assert result.stdout.strip() == "'' ''", result.stderr


def test_manage_py_finds_running_embedded_servers_without_any_variable():
    from django.conf import settings

    from tracker.dev import services

    database_url, _ = services.recorded_urls()
    if database_url is None or database_url.rsplit("/", 1)[0] != settings.DATABASE_URL.rsplit("/", 1)[0]:
        pytest.skip("the suite runs against servers that are not the embedded ones")
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--database", "default"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
