"""The security suite runs against what a deployment runs: gunicorn with DEBUG off on the
suite's PostgreSQL (and the suite's Celery worker where a job must run), reached over HTTP as a
member would, with a session from the login form or an API token."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from tests.conftest import WebServer
from tracker.models import ApiToken

PASSWORD = "correct horse battery"
ALLOWED_INTERNAL = "127.0.0.2"
WEBHOOK_DEADLINE = 2


@pytest.fixture(scope="session")
def site(django_db_setup) -> Iterator[WebServer]:
    """One gunicorn for the whole security suite (its tests empty the database between them)."""
    web = WebServer()
    web.environment.update(
        # a team's internal chat server, the one internal address its webhooks may reach
        TRAINWATCH_WEBHOOK_ALLOW=ALLOWED_INTERNAL,
        TRAINWATCH_WEBHOOK_DEADLINE_SECONDS=str(WEBHOOK_DEADLINE),
    )
    web.start()
    try:
        yield web
    finally:
        web.stop()


def server_password(user, password: str = PASSWORD) -> None:
    """The suite hashes passwords with MD5 for speed; gunicorn checks them with its own
    (production) hashers."""
    user.password = PBKDF2PasswordHasher().encode(password, PBKDF2PasswordHasher().salt())
    user.save(update_fields=["password"])


def log_in(site: WebServer, username: str, password: str = PASSWORD) -> requests.Session:
    """A browser's session: the login form, with its CSRF token."""
    session = requests.Session()
    form = session.get(f"{site.url}/accounts/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token, form.text[:500]
    answer = session.post(
        f"{site.url}/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token.group(1)},
        allow_redirects=False,
        timeout=10,
    )
    session.login_status = answer.status_code  # type: ignore[attr-defined]
    return session


def csrf_of(session: requests.Session, page: str) -> str:
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token, page[:500]
    return token.group(1)


@pytest.fixture
def member(user) -> dict:
    """alice, an ordinary member, with an API token."""
    return {"user": user, "token": ApiToken.issue(user, "security")[1]}


def api(site: WebServer, token: str, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(
        method, f"{site.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30, **kwargs
    )
