import json

import pytest
from django.core.management import call_command
from django.test import Client

from tracker.models import ApiToken, Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(user):
    _, clear = ApiToken.issue(user, "script")
    return clear


def test_a_script_creates_a_run_with_a_token_and_no_session_or_csrf(token):
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/api/runs/",
        data=json.dumps({"project": "p", "config": {"epochs": 1}}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 201
    run = Run.objects.get()
    assert run.created_by.username == "alice"
    assert ApiToken.objects.get().last_used_at is not None
    assert client.get(f"/api/runs/{run.pk}/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


def test_a_wrong_token_is_a_401_and_only_the_digest_is_stored(token):
    response = Client().get("/api/runs/", HTTP_AUTHORIZATION="Bearer tw_not-a-token")
    assert response.status_code == 401 and "not valid" in response.json()["errors"]["auth"]
    assert token not in str(list(ApiToken.objects.values_list("digest", flat=True)))


def test_a_session_post_to_the_api_still_needs_its_csrf_token(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/api/runs/", data=json.dumps({"config": {}}), content_type="application/json")
    assert response.status_code == 403 and "csrf" in response.json()["errors"]
    assert Run.objects.count() == 0


def test_create_token_prints_a_token_once(user, capsys):
    call_command("create_token", "--user", "alice", "--name", "nightly")
    printed = capsys.readouterr().out.split()[0]
    assert printed.startswith("tw_") and ApiToken.objects.get(name="nightly").digest == ApiToken.hash(printed)
