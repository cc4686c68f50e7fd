"""The probe's findings in the forms and answers, reproduced against gunicorn: a YAML alias
bomb, repeated wrong passwords, a study's CSV report read by a spreadsheet, newlines in names."""

from __future__ import annotations

import csv
import io
import time

import pytest
import requests

from tests.conftest import member_of
from tests.security.conftest import api, csrf_of, log_in, server_password
from tracker.core.studies import create_study
from tracker.models import Run, Study

pytestmark = pytest.mark.django_db(transaction=True)

# nine levels of nine aliases: under 500 bytes that would expand to 9**9 values (about 390 million)
BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]\n" for level in range(1, 9)
)


def test_a_yaml_alias_bomb_in_the_study_form_is_refused_unexpanded(site, user):
    member_of(user, "secure")
    server_password(user)
    session = log_in(site, "alice")
    form = session.get(f"{site.url}/studies/", timeout=10).text
    started = time.monotonic()
    answer = session.post(
        f"{site.url}/studies/",
        data={"project": "secure", "name": "bomb", "spec": BOMB, "csrfmiddlewaretoken": csrf_of(session, form)},
        timeout=30,
    )
    took = time.monotonic() - started
    print(f"alias bomb of {len(BOMB)} bytes refused in {took * 1000:.0f} ms, answer {len(answer.content)} bytes")
    assert answer.status_code == 400 and "aliases (*name) are not accepted" in answer.text
    assert len(answer.content) < 100_000  # the page, not the expansion (18 MiB at 7 levels)
    assert Study.objects.count() == 0


def test_the_eleventh_wrong_password_locks_the_name_out_and_the_right_one_too(site, user):
    server_password(user)
    for attempt in range(10):
        assert log_in(site, "alice", "wrong password").login_status == 200, attempt  # the form again
    assert log_in(site, "alice", "wrong password").login_status == 429  # the 11th
    assert log_in(site, "alice").login_status == 429  # the right password, until the lock ends
    admin = requests.Session()
    page = admin.get(f"{site.url}/admin/login/", timeout=10).text
    locked = admin.post(
        f"{site.url}/admin/login/",
        data={"username": "alice", "password": "correct horse battery", "csrfmiddlewaretoken": csrf_of(admin, page)},
        timeout=10,
    )
    assert locked.status_code == 429


def test_the_study_csv_escapes_cells_a_spreadsheet_would_run(site, member):
    member_of(member["user"], "secure")
    study = create_study("secure", '=HYPERLINK("http://evil.example","x")', user=member["user"], preset="random-lr")
    Run.objects.filter(study=study).update(name="@SUM(A1)", status="succeeded", best_val_accuracy=0.5)
    server_password(member["user"])
    answer = log_in(site, "alice").get(f"{site.url}/studies/{study.pk}/report/?format=csv", timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/csv")
    cells = [cell for row in csv.reader(io.StringIO(answer.text)) for cell in row]
    assert "'@SUM(A1)" in cells
    assert not any(cell.startswith(("=", "+", "@")) for cell in cells)
    assert not any(cell.startswith("-") and not cell.lstrip("-").replace(".", "").isdigit() for cell in cells)


@pytest.mark.parametrize("name", ["two\nlines", "carriage\rreturn", "line\u2028separator", "tab\there"])
def test_a_newline_in_a_run_or_project_name_is_refused(site, member, name):
    member_of(member["user"], "secure")
    run = api(site, member["token"], "POST", "/api/runs/", json={"project": "secure", "name": name, "config": {}})
    assert run.status_code == 400 and "printable characters" in run.json()["errors"]["name"]
    project = api(site, member["token"], "POST", "/api/runs/", json={"project": name, "config": {}})
    assert project.status_code == 400 and "printable characters" in project.json()["errors"]["project"]
    assert Run.objects.count() == 0
