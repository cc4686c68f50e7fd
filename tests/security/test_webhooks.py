"""Alert webhooks reach public addresses only: a member cannot point the server at its own
network (the form refuses every internal form of an address, and each delivery checks again),
redirects are not followed, a slow target is cut at the deadline, and the test button answers
at once and reports later."""

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import member_of, wait_until
from tests.security.conftest import ALLOWED_INTERNAL, WEBHOOK_DEADLINE, csrf_of, log_in, server_password
from tracker.models import Project

pytestmark = pytest.mark.django_db(transaction=True)

INTERNAL = [
    "http://127.0.0.1:8000/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0/hook",
    "http://localhost/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.1.2.3/hook",
    "http://[fd00::1]/hook",
]


@pytest.fixture
def alice(site, user):
    project = member_of(user, "vision")
    server_password(user)
    session = log_in(site, "alice")
    assert session.login_status == 302
    return session, project


def save_webhooks(site, session, project, lines: str):
    page = session.get(f"{site.url}/projects/{project.pk}/alerts/", timeout=10).text
    return session.post(
        f"{site.url}/projects/{project.pk}/alerts/",
        data={"alert_emails": "", "alert_webhooks": lines, "csrfmiddlewaretoken": csrf_of(session, page)},
        allow_redirects=False,
        timeout=10,
    )


def press_test(site, session, project):
    page = session.get(f"{site.url}/projects/{project.pk}/alerts/", timeout=10).text
    return session.post(
        f"{site.url}/projects/{project.pk}/alerts/test/",
        data={"csrfmiddlewaretoken": csrf_of(session, page)},
        timeout=10,
    )


def latest_test(project):
    return wait_until(
        lambda: (
            Project.objects.filter(pk=project.pk, alert_test__done=True).values_list("alert_test", flat=True).first()
        ),
        30,
        "the test's outcomes",
    )


def test_the_form_refuses_every_internal_form_of_an_address_and_saves_nothing(site, alice):
    session, project = alice
    answer = save_webhooks(site, session, project, "\n".join(INTERNAL))
    assert answer.status_code == 400
    for number, url in enumerate(INTERNAL, 1):
        assert f"line {number}: &#x27;{url}&#x27; is not an http(s) URL" in answer.text, url
    assert answer.text.count("is not a public address") == len(INTERNAL)
    project.refresh_from_db()
    assert project.alert_webhooks == []


def test_an_allowed_internal_host_is_saved(site, alice):
    session, project = alice
    answer = save_webhooks(site, session, project, f"http://{ALLOWED_INTERNAL}:8065/hooks/team")
    assert answer.status_code == 302, answer.text[-2000:]
    project.refresh_from_db()
    assert project.alert_webhooks == [f"http://{ALLOWED_INTERNAL}:8065/hooks/team"]


class Listener:
    """A target on the allowed internal address: silent (accepts, never answers), or one that
    redirects to loopback, where a receiver records whatever reaches it."""

    def __init__(self) -> None:
        self.reached: list[str] = []
        listener = self

        class Inside(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                listener.reached.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.inside = ThreadingHTTPServer(("127.0.0.1", 0), Inside)
        inside_url = f"http://127.0.0.1:{self.inside.server_address[1]}/internal"

        class Redirect(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.send_response(302)
                self.send_header("Location", inside_url)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.redirect = ThreadingHTTPServer((ALLOWED_INTERNAL, 0), Redirect)
        self.silent = socket.socket()
        self.silent.bind((ALLOWED_INTERNAL, 0))
        self.silent.listen(8)
        for server in (self.inside, self.redirect):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self.silent_url = f"http://{ALLOWED_INTERNAL}:{self.silent.getsockname()[1]}/hook"
        self.redirect_url = f"http://{ALLOWED_INTERNAL}:{self.redirect.server_address[1]}/hook"

    def close(self) -> None:
        for server in (self.inside, self.redirect):
            server.shutdown()
            server.server_close()
        self.silent.close()


@pytest.fixture
def targets():
    listener = Listener()
    yield listener
    listener.close()


def test_the_test_button_answers_at_once_and_reports_each_target_later(site, alice, targets):
    session, project = alice
    stored = [targets.silent_url, targets.redirect_url, "http://127.0.0.1:9/hook"]
    Project.objects.filter(pk=project.pk).update(alert_webhooks=stored)  # as if saved before the rule
    answer = press_test(site, session, project)
    assert answer.status_code == 200 and "Sending a test alert to 3 targets" in answer.text
    # answered while the silent target still holds its connection: the page is still sending
    assert 'data-state="sending"' in answer.text and 'http-equiv="refresh"' in answer.text
    outcomes = latest_test(project)["outcomes"]
    assert outcomes == {
        targets.silent_url: f"no complete answer within {WEBHOOK_DEADLINE} s",
        targets.redirect_url: "answered HTTP 302 (a redirect, which is not followed: give the final URL)",
        "http://127.0.0.1:9/hook": (
            "refused: its host '127.0.0.1' is not a public address; the server sends only to public ones "
            "unless an operator allows a host in TRAINWATCH_WEBHOOK_ALLOW"
        ),
    }
    assert targets.reached == []  # the redirect to loopback was not followed
    page = session.get(f"{site.url}/projects/{project.pk}/alerts/", timeout=10).text
    assert page.count('data-state="failed"') == 3 and "http-equiv" not in page
