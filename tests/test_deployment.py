"""The deployment: docker-compose.yml validates with Compose and has what a team needs to run it
(web, a CPU and a GPU worker, the upkeep worker, exactly one beat, the servers, a health check each); the web image
installs a lock file that holds no torch; each lock file holds what its group asks for."""

import os
import re
import shutil
import subprocess
import tomllib

import pytest
import yaml
from django.conf import settings

from tests.conftest import ROOT

COMPOSE = yaml.load((ROOT / "docker-compose.yml").read_text(), Loader=yaml.SafeLoader)
TORCH_STACK = re.compile(r"^(torch|torchvision|triton|nvidia-(?!ml-py).*|cuda-.*)$")


def compose_command() -> list[str]:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("neither Docker's compose plugin nor docker-compose is installed (make system-tools installs it)")


def compose(*arguments: str, **environment: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "SECRET_KEY"} | environment
    return subprocess.run(
        [*compose_command(), "-f", "docker-compose.yml", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_compose_validates_the_file_and_the_gpu_profile():
    checked = compose("config", "-q", SECRET_KEY="x" * 50)
    assert checked.returncode == 0, checked.stderr
    with_gpu = compose("--profile", "gpu", "config", "--services", SECRET_KEY="x" * 50)
    assert sorted(with_gpu.stdout.split()) == ["beat", "postgres", "redis", "upkeep", "web", "worker", "worker-gpu"]
    unset = compose("config", "-q")
    assert unset.returncode != 0 and "SECRET_KEY" in unset.stderr


def test_every_service_has_a_health_check_and_there_is_exactly_one_beat():
    services = COMPOSE["services"]
    assert [name for name, service in services.items() if "healthcheck" not in service] == []
    beats = [
        name
        for name, service in services.items()
        if re.search(r"\bcelery\b.*\bbeat\b", str(service.get("command", "")))
    ]
    assert beats == ["beat"] and services["beat"]["deploy"]["replicas"] == 1
    assert services["web"]["build"]["target"] == "web"
    assert {services[name]["image"] for name in ("worker", "worker-gpu", "upkeep", "beat")} == {"trainwatch-worker"}
    assert services["worker-gpu"]["profiles"] == ["gpu"]
    # the upkeep queue has a worker of its own, which takes no training job
    queues = {name: re.findall(r"-Q (\S+)", str(service.get("command", ""))) for name, service in services.items()}
    assert queues["upkeep"] == [settings.TRAINWATCH_UPKEEP_QUEUE]
    assert all(settings.TRAINWATCH_UPKEEP_QUEUE not in found for name, found in queues.items() if name != "upkeep")
    assert "/healthz" in str(services["web"]["healthcheck"]["test"])


def locked(group: str) -> set[str]:
    names = set()
    for line in (ROOT / "requirements" / f"{group}.txt").read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==", line):
            names.add(normalised(match.group(1)))
    return names


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(group: str, groups: dict) -> set[str]:
    names = set()
    for entry in groups[group]:
        if isinstance(entry, dict):
            names |= requirement_names(entry["include-group"], groups)
        else:
            names.add(normalised(re.split(r"[\[<>=!~; ]", entry, maxsplit=1)[0]))
    return names


def test_the_web_image_installs_no_torch():
    web = locked("web")
    assert "django" in web and "celery" in web
    assert sorted(name for name in web if TORCH_STACK.match(name)) == []
    dockerfile = (ROOT / "Dockerfile").read_text()
    web_stage = dockerfile[dockerfile.index("AS web") : dockerfile.index("AS worker")]
    assert "requirements/web.txt" in web_stage and "torch" not in web_stage
    assert re.search(r"pip install --no-deps", web_stage)


def test_each_lock_file_holds_its_group_and_torch_comes_from_its_own_pair():
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]
    for group in ("web", "worker", "dev"):
        missing = requirement_names(group, groups) - locked(group)
        assert missing == set(), f"requirements/{group}.txt lacks {sorted(missing)}: run make lock"
        if group != "web":
            assert sorted(name for name in locked(group) if TORCH_STACK.match(name)) == []
    pair = (ROOT / "requirements" / "torch.txt").read_text()
    assert re.search(r"^torch==\S+$", pair, re.M) and re.search(r"^torchvision==\S+$", pair, re.M)
    assert "-r requirements/torch.txt" in (ROOT / "Makefile").read_text()
