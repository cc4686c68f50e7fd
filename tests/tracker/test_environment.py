"""Where a run trained: checked when a client sends it, shown on the run page, and what differs
between runs on the compare page."""

import json

import pytest

from tracker.core.environment import check_environment, differences
from tracker.core.external import start_external_run
from tracker.models import Project, Run, RunEnvironment

pytestmark = pytest.mark.django_db

ENVIRONMENT = {
    "command": "python train.py --lr 0.1",
    "python": "3.11.7",
    "platform": "Linux",
    "torch": "2.5.0",
    "cuda": "12.4",
    "gpus": ["NVIDIA H100 80GB HBM3"],
    "driver": "550.54",
    "packages": {"torch": "2.5.0", "numpy": "2.1.0"},
    "git_diff": "diff --git a/train.py b/train.py\n+lr = 0.1\n",
    "git_diff_truncated": False,
}


def test_an_environment_is_checked_field_by_field():
    errors = {}
    clean = check_environment({**ENVIRONMENT, "gpus": "H100", "secret": 1, "packages": {"x": 1}}, errors)
    assert set(errors) == {"environment.gpus", "environment.secret", "environment.packages"}
    assert clean["command"] == ENVIRONMENT["command"] and "gpus" not in clean


def test_a_scripts_environment_is_kept_and_shown_and_compared(client, user):
    first, _ = start_external_run("envs", "a", {}, [], {}, "client-env-1", user, environment=ENVIRONMENT)
    changed = {**ENVIRONMENT, "torch": "2.6.0", "packages": {"torch": "2.6.0", "numpy": "2.1.0", "timm": "1.0"}}
    second, _ = start_external_run("envs", "b", {}, [], {}, "client-env-2", user, environment=changed)
    assert RunEnvironment.objects.get(run=first).data == ENVIRONMENT
    client.force_login(user)
    page = client.get(f"/runs/{first.pk}/").content.decode()
    assert "python train.py --lr 0.1" in page and "+lr = 0.1" in page and "numpy==2.1.0" in page
    compared = client.get(f"/compare/?runs={first.pk},{second.pk}").content.decode()
    table = compared[compared.index('id="environment-table"') :]
    assert "package timm" in table and "package torch" in table and "package numpy" not in table
    rows = differences({first.pk: ENVIRONMENT, second.pk: changed})
    assert [row["what"] for row in rows] == ["torch", "package timm", "package torch"]


def test_a_bad_environment_is_refused_by_name_and_nothing_is_created(client, user):
    from tracker.models import ApiToken

    token = ApiToken.issue(user, "t")[1]
    answer = client.post(
        "/api/runs/start/",
        json.dumps({"project": "envs", "client_id": "client-env-3", "environment": {"gpus": [1, 2]}}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert answer.status_code == 400 and "environment.gpus" in answer.json()["errors"]
    assert not Run.objects.exists() and not Project.objects.filter(name="envs").exists()
