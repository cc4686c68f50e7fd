"""Requests the server makes on a member's behalf (alert webhooks): only to public addresses.

A project member names the URL, so the server must not become their way into its own network:
the host is resolved, and every address it resolves to must be public (not loopback, private,
link-local, shared, multicast or reserved, in IPv4, IPv6, or IPv4 carried inside IPv6), unless
an operator allows it (TRAINWATCH_WEBHOOK_ALLOW: host names, addresses and networks, for a
team's internal chat server). The connection goes to the address that was checked (a name
that resolves differently a moment later changes nothing), redirects are not followed, and a
delivery has one deadline for all of it: connecting, sending and reading the answer. What
went wrong is said in words that tell nothing of the network behind the server."""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
MAX_ANSWER_BYTES = 64 * 1024  # what is read of an answer: its status is what matters


class Refused(Exception):
    """A URL the server will not send to; the message says why, in words for the member."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    address: str  # the checked address the connection goes to


def allow_list() -> tuple[set[str], list[Network]]:
    """TRAINWATCH_WEBHOOK_ALLOW split into host names and networks."""
    names: set[str] = set()
    networks: list[Network] = []
    for item in settings.TRAINWATCH_WEBHOOK_ALLOW:
        try:
            networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
        except ValueError:
            names.add(item.lower().rstrip("."))
    return names, networks


def carried_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64, Teredo), which is where it leads."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in network for network in NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: Address) -> bool:
    carried = carried_ipv4(address)
    if carried is not None and not is_public(carried):
        return False
    return address.is_global and not address.is_multicast


def check_url(url: str, resolve: bool = True) -> Target | None:
    """The target of an http(s) URL whose host is public or allowed; raises Refused. Without
    `resolve`, a name that does not resolve now passes (a form saves it; each delivery
    resolves again) and the result is None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("is not an http(s) URL with a host")
    if parts.username or parts.password:
        raise Refused("must not carry a user name or password (put a secret in the path or query)")
    host = parts.hostname.lower().rstrip(".")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused("has a port that is not a number from 1 to 65535") from None
    names, networks = allow_list()
    try:
        addresses = {str(info[4][0]).split("%")[0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError):
        if not resolve:
            return None
        raise Refused(f"its host {host!r} does not resolve") from None
    checked = sorted(ipaddress.ip_address(address) for address in addresses)  # IPv4 first
    if host not in names:
        for address in checked:
            if not is_public(address) and not any(address in network for network in networks):
                raise Refused(
                    f"its host {host!r} is not a public address; the server sends only to public ones "
                    "unless an operator allows a host in TRAINWATCH_WEBHOOK_ALLOW"
                )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port, path, str(checked[0]))


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the checked address; the Host header names the host."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.target = target

    def connect(self) -> None:
        self.sock = socket.create_connection((self.target.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """Connects to the checked address; TLS verifies the certificate against the host's name."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        self.target = target

    def connect(self) -> None:
        raw = socket.create_connection((self.target.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.target.host)  # type: ignore[attr-defined]


def post_json(url: str, payload: dict[str, Any], deadline: float | None = None) -> str:
    """POST the payload; '' when the target answered 2xx, else what went wrong, in words. All of
    it within `deadline` seconds (TRAINWATCH_WEBHOOK_DEADLINE_SECONDS): a target that answers a
    byte at a time is cut there."""
    limit = settings.TRAINWATCH_WEBHOOK_DEADLINE_SECONDS if deadline is None else deadline
    started = time.monotonic()
    try:
        target = check_url(url)
    except Refused as refused:
        return f"refused: {refused}"
    assert target is not None
    connection_class = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
    connection = connection_class(target, timeout=limit)
    cut = threading.Event()

    def cut_off() -> None:
        cut.set()
        sock = connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a read that waits on the target

    watchdog = threading.Timer(max(0.0, limit - (time.monotonic() - started)), cut_off)
    watchdog.daemon = True
    watchdog.start()
    body = json.dumps(payload).encode()
    try:
        try:
            connection.connect()
        except (OSError, ssl.SSLError):
            return "could not connect (refused, unreachable or no answer)" if not cut.is_set() else _late(limit)
        try:
            connection.request(
                "POST",
                target.path,
                body=body,
                headers={"Content-Type": "application/json", "User-Agent": "Trainwatch alerts"},
            )
            response = connection.getresponse()
            response.read(MAX_ANSWER_BYTES)
        except (OSError, http.client.HTTPException):
            return _late(limit) if cut.is_set() else "the connection broke before an answer came"
        if cut.is_set():
            return _late(limit)
        if 300 <= response.status < 400:
            return f"answered HTTP {response.status} (a redirect, which is not followed: give the final URL)"
        if not 200 <= response.status < 300:
            return f"answered HTTP {response.status} {response.reason}"[:200]
        return ""
    finally:
        watchdog.cancel()
        connection.close()


def _late(limit: float) -> str:
    return f"no complete answer within {limit:g} s"


def validate_webhook_url(value: str) -> None:
    """A model field's validator: an http(s) URL whose host is public or allowed (one that does
    not resolve now is kept; each delivery checks again)."""
    from django.core.exceptions import ValidationError  # noqa: PLC0415

    try:
        check_url(value, resolve=False)
    except Refused as refused:
        raise ValidationError(str(refused)) from None
