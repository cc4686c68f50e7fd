"""Alert webhooks reach public addresses only (tracker.lib.outbound): every internal form of
an address is refused, an allowed host passes, redirects are not followed, and one deadline
covers a whole delivery."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tracker.lib.outbound import Refused, check_url, is_public, post_json

INTERNAL = [
    "http://127.0.0.1/hook",
    "http://127.1.2.3:8080/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:7f00:1]/hook",
    "http://0.0.0.0/hook",
    "http://localhost:8000/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.8/hook",
    "http://172.16.3.4/hook",
    "http://192.168.1.1/hook",
    "http://100.64.0.1/hook",
    "http://[fd00::1]/hook",
    "http://[fe80::1]/hook",
    "http://224.0.0.1/hook",
    "http://[64:ff9b::7f00:1]/hook",  # NAT64 of 127.0.0.1
    "http://[2002:7f00:1::1]/hook",  # 6to4 of 127.0.0.1
    "http://2130706433/hook",  # 127.0.0.1 as one number
    "http://0x7f.1/hook",
]


@pytest.mark.parametrize("url", INTERNAL)
def test_every_internal_form_of_an_address_is_refused(url):
    with pytest.raises(Refused) as refused:
        check_url(url)
    assert "is not a public address" in str(refused.value) and "TRAINWATCH_WEBHOOK_ALLOW" in str(refused.value)


def test_public_addresses_pass_and_urls_with_credentials_or_other_schemes_do_not():
    assert check_url("https://93.184.216.34/hooks/abc?x=1").path == "/hooks/abc?x=1"
    assert is_public(__import__("ipaddress").ip_address("2606:4700::1111"))
    for url in ("ftp://93.184.216.34/x", "http:///nohost", "https://user:pw@93.184.216.34/x"):
        with pytest.raises(Refused):
            check_url(url)


def test_a_name_that_does_not_resolve_is_kept_by_a_form_and_refused_at_delivery():
    assert check_url("https://chat.invalid/hook", resolve=False) is None
    assert post_json("https://chat.invalid/hook", {}) == "refused: its host 'chat.invalid' does not resolve"


def test_an_operator_allows_an_internal_host_by_name_address_or_network(settings):
    settings.TRAINWATCH_WEBHOOK_ALLOW = ["localhost"]
    assert check_url("http://localhost:9/x").port == 9
    settings.TRAINWATCH_WEBHOOK_ALLOW = ["10.20.0.0/16", "::1"]
    assert check_url("http://10.20.3.4/x").address == "10.20.3.4"
    assert check_url("http://[::1]/x").address == "::1"
    with pytest.raises(Refused):
        check_url("http://10.21.0.1/x")


class Target:
    """A local server whose handler the test chooses."""

    def __init__(self, handler) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                handler(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def allowed_loopback(settings):
    settings.TRAINWATCH_WEBHOOK_ALLOW = ["127.0.0.1"]


def test_a_redirect_is_not_followed(allowed_loopback, settings):
    reached = []

    def inside(handler):
        reached.append(handler.path)
        handler.send_response(200)
        handler.end_headers()

    internal = Target(inside)

    def redirect(handler):
        handler.send_response(307)
        handler.send_header("Location", internal.url)
        handler.end_headers()

    outside = Target(redirect)
    try:
        assert post_json(outside.url, {"text": "x"}) == (
            "answered HTTP 307 (a redirect, which is not followed: give the final URL)"
        )
        assert reached == []
    finally:
        outside.close()
        internal.close()


def test_a_target_that_drips_its_answer_is_cut_at_the_deadline(allowed_loopback):
    def drip(handler):
        try:
            for byte in b"HTTP/1.1 200 OK\r\n":
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(0.3)
        except OSError:
            pass

    target = Target(drip)
    try:
        # one read timeout per byte would let 17 bytes take 5 s: the deadline is for all of it
        outcome = post_json(target.url, {"text": "x"}, deadline=1.0)
    finally:
        target.close()
    assert outcome == "no complete answer within 1 s"


def test_a_silent_target_is_cut_at_the_deadline(allowed_loopback):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the connection, never answers
        port = listener.getsockname()[1]
        outcome = post_json(f"http://127.0.0.1:{port}/hook", {"text": "x"}, deadline=0.5)
    assert outcome == "no complete answer within 0.5 s"


def test_an_error_answer_and_a_closed_port_say_what_happened_without_the_raw_error(allowed_loopback):
    def fail(handler):
        handler.send_response(500)
        handler.end_headers()

    target = Target(fail)
    try:
        assert post_json(target.url, {}) == "answered HTTP 500 Internal Server Error"
    finally:
        target.close()
    assert post_json("http://127.0.0.1:9/x", {}) == "could not connect (refused, unreachable or no answer)"
