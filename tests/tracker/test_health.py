"""/healthz answers without a login: 200 while the database answers, 503 when it does not."""

import pytest
from django.db import DatabaseError

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_a_login_and_is_never_cached(client):
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok", "database": "ok"}
    assert "no-cache" in answer["Cache-Control"]
    assert client.post("/healthz").status_code == 405


def test_healthz_says_unavailable_without_the_reason_when_the_database_fails(client, monkeypatch):
    from django.db.backends.utils import CursorWrapper

    def refuse(self, sql, params=None):
        raise DatabaseError("could not connect to server at 10.0.0.7")

    monkeypatch.setattr(CursorWrapper, "execute", refuse)
    answer = client.get("/healthz")
    assert answer.status_code == 503 and answer.json() == {"status": "unavailable", "database": "not answering"}
    assert "10.0.0.7" not in answer.content.decode()
