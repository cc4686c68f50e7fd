"""How a run's measurements reach the server, off the training thread.

Every payload (trainer.wire) is written to the run's spool folder first, then sent in seq
order by a background thread; a file is deleted once the server has it. So a slow or dead
server never blocks a step, nothing is lost while it is away (the folder fills, and empties
when it is back), a retried payload is stored once (the server answers it again), and a run
recorded offline is the same folder, sent later by `trainwatch sync`.

    <TRAINWATCH_DIR>/runs/<client id>/run.json        what start asked for; the server's run once known
                                     /payloads/<seq>.twb
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import requests

from trainer.wire import Payload, encode

log = logging.getLogger("trainwatch")
USER_AGENT = "trainwatch-client/1"
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0
# the client splits a hand-off into payloads of at most this size (or the server's limit)
PAYLOAD_BYTES = 4 * 1024 * 1024


def home() -> Path:
    return Path(os.environ.get("TRAINWATCH_DIR") or Path.home() / ".trainwatch").expanduser()


class Unreachable(Exception):
    """The server did not answer (down, network, timeout, 5xx): try again later."""


class Refused(Exception):
    """The server answered no to the run (401, 403, 404, or its start refused): trying again
    will not help. A payload refused for what it holds (400) is set aside, not this."""


class OffsetMismatch(Exception):
    """The server kept another part of an upload than the client thought: go on from `received`."""

    def __init__(self, received: int):
        super().__init__(f"the upload goes on at byte {received}")
        self.received = received


@dataclass
class Started:
    run_id: int
    url: str
    next_seq: int
    max_bytes: int


class Channel(Protocol):
    """The server's two calls for a run: over HTTP (Connection), or a test's stand-in."""

    def start(self, request: dict[str, Any]) -> Started: ...

    def send(self, run_id: int, data: bytes) -> dict[str, Any]: ...


class Connection:
    """The two calls of the client API, over one keep-alive HTTP session."""

    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT})

    def _post(self, path: str, **kwargs: Any) -> requests.Response:
        return self._request("POST", path, **kwargs)

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, self.url + path, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), **kwargs)
        except requests.RequestException as error:
            raise Unreachable(f"{self.url}: {error.__class__.__name__}: {error}") from None
        if response.status_code >= 500:
            raise Unreachable(f"{self.url}{path}: HTTP {response.status_code}")
        return response

    def _json(self, response: requests.Response, *ok: int) -> dict[str, Any]:
        if response.status_code not in ok:
            raise self._refusal(response)
        body: dict[str, Any] = response.json()
        return body

    # --- artifacts (trainwatch.artifacts.ArtifactChannel) ---------------------------

    def upload_state(self, digest: str) -> dict[str, Any]:
        return self._json(self._request("GET", f"/api/blobs/{digest}/upload/"), 200)

    def put_chunk(self, digest: str, size: int, offset: int, data: bytes) -> dict[str, Any]:
        response = self._request(
            "PUT",
            f"/api/blobs/{digest}/upload/",
            params={"size": size, "offset": offset},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if response.status_code == 409 and "received" in response.json():
            raise OffsetMismatch(int(response.json()["received"]))
        return self._json(response, 200)

    def log_version(self, run_id: int, body: dict[str, Any]) -> dict[str, Any]:
        return self._json(self._request("POST", f"/api/runs/{run_id}/artifacts/", json=body), 200, 201)

    def use(self, run_id: int, ref: str) -> dict[str, Any]:
        version: dict[str, Any] = self._json(
            self._request("POST", f"/api/runs/{run_id}/artifacts/used/", json={"ref": ref}), 200
        )["version"]
        return version

    def checkpoints(self, run_id: int, record: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The run's kept checkpoints, newest first (after recording one, when given)."""
        if record is None:
            response = self._request("GET", f"/api/runs/{run_id}/checkpoints/")
        else:
            response = self._request("POST", f"/api/runs/{run_id}/checkpoints/", json=record)
        found: list[dict[str, Any]] = self._json(response, 200)["checkpoints"]
        return found

    def download(self, digest: str, start: int) -> Iterator[bytes]:
        headers = {"Range": f"bytes={start}-"} if start else {}
        response = self._request("GET", f"/api/blobs/{digest}/", headers=headers, stream=True)
        if response.status_code == 416:
            return
        if response.status_code not in (200, 206):
            raise self._refusal(response)
        if start and response.status_code == 200:
            raise Refused("the server sent the whole file where its rest was asked for")
        try:
            yield from response.iter_content(1024 * 1024)
        except requests.RequestException as error:
            raise Unreachable(f"{self.url}: {error.__class__.__name__}: {error}") from None

    @staticmethod
    def _refusal(response: requests.Response) -> Refused:
        try:
            errors = response.json().get("errors", {})
            detail = "; ".join(f"{field}: {message}" for field, message in errors.items())
        except ValueError:
            detail = response.text[:300]
        return Refused(f"HTTP {response.status_code}: {detail}")

    def start(self, request: dict[str, Any]) -> Started:
        response = self._post("/api/runs/start/", json=request)
        if response.status_code not in (200, 201):
            raise self._refusal(response)
        body = response.json()
        ingest = body["ingest"]
        return Started(body["run"]["id"], body["url"], ingest["next_seq"], ingest["max_bytes"])

    def send(self, run_id: int, data: bytes) -> dict[str, Any]:
        """The server's answer: {"seq", "stop", "status"}, or {"expected": n} when it wants
        payload n first (one it never got)."""
        response = self._post(
            f"/api/runs/{run_id}/ingest/", data=data, headers={"Content-Type": "application/octet-stream"}
        )
        body: dict[str, Any] = (
            response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
        )
        if response.status_code == 409 and "expected" in body:
            return {"expected": int(body["expected"])}
        if response.status_code == 409:
            return {"ended": body.get("status", "ended")}
        if response.status_code == 400:
            # this payload, for what it holds: sending it again will not change the answer, and
            # the server has let it take its place in the run's order
            return {"rejected": str(self._refusal(response))}
        if response.status_code != 200:
            raise self._refusal(response)
        return body


class Spool:
    """One run's folder: its start request, the server's run id once it has one, and the
    payloads the server does not have yet."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.payloads = folder / "payloads"
        # the state as it was when the folder was removed: a delivered run's id and url stay readable
        self._removed_state: dict[str, Any] | None = None

    @classmethod
    def create(cls, client_id: str, start_request: dict[str, Any]) -> Spool:
        spool = cls(home() / "runs" / client_id)
        spool.payloads.mkdir(parents=True, exist_ok=True)
        spool.write_state({"start": start_request, "run_id": None, "url": None, "next_seq": 0})
        return spool

    def state(self) -> dict[str, Any]:
        if self._removed_state is not None:
            return dict(self._removed_state)
        state: dict[str, Any] = json.loads((self.folder / "run.json").read_text())
        return state

    def write_state(self, state: dict[str, Any]) -> None:
        # atomically, so that a crash never leaves half a file
        temporary = self.folder / "run.json.tmp"
        temporary.write_text(json.dumps(state, indent=1))
        temporary.replace(self.folder / "run.json")

    def put(self, seq: int, data: bytes) -> None:
        temporary = self.payloads / f"{seq:012d}.tmp"
        temporary.write_bytes(data)
        temporary.replace(self.payloads / f"{seq:012d}.twb")

    def pending(self) -> list[Path]:
        return sorted(self.payloads.glob("*.twb"))

    def reject(self, path: Path, reason: str) -> Path:
        """Keep a payload the server refused, with why, out of the way of the run's delivery:
        TRAINWATCH_DIR/rejected/<client id>/, which outlives the spool."""
        kept = home() / "rejected" / self.folder.name
        kept.mkdir(parents=True, exist_ok=True)
        path.replace(kept / path.name)
        (kept / f"{path.stem}.txt").write_text(reason + "\n")
        return kept

    @property
    def _artifacts(self) -> Path:
        return self.folder / "artifacts.json"

    def artifacts(self) -> list[dict[str, Any]]:
        """The artifacts logged while the server was away, to send with the rest of the run."""
        found: list[dict[str, Any]] = json.loads(self._artifacts.read_text()) if self._artifacts.exists() else []
        return found

    def write_artifacts(self, entries: list[dict[str, Any]]) -> None:
        temporary = self.folder / "artifacts.json.tmp"
        temporary.write_text(json.dumps(entries, indent=1))
        temporary.replace(self._artifacts)

    def remove(self) -> None:
        self._removed_state = self.state()
        for path in self.payloads.iterdir():
            path.unlink()
        self.payloads.rmdir()
        self._artifacts.unlink(missing_ok=True)
        (self.folder / "run.json").unlink()
        self.folder.rmdir()


class Outbox(Protocol):
    """Where a live run's background thread (Sender) puts each payload it collects, and what
    delivers them: a script's spool and the server over HTTP (Uploader), or, for a job on a
    worker, the server's own database writer in the worker's process (no encoding, no files)."""

    @property
    def stop_requested(self) -> bool: ...

    @property
    def online(self) -> bool: ...

    @property
    def where(self) -> str: ...

    def put(self, payload: Payload) -> None: ...

    def upload(self) -> bool:
        """Deliver what can be delivered now; True when nothing is left. Raises Unreachable
        (tried again later) or Refused (never tried again)."""
        ...

    def pending(self) -> bool: ...

    def thread_done(self) -> None: ...


class Uploader:
    """A spool's payloads, sent in order, creating the server's run first if it has none yet.
    Used by the background thread of a live run and by `trainwatch sync`."""

    def __init__(self, spool: Spool, connection: Channel | None):
        self.spool = spool
        self.connection = connection
        self.stop_requested = False
        self.ended: str | None = None  # the server's status once the run has ended there
        self.rejected = 0  # payloads the server refused for what they held
        self.max_bytes: int | None = None

    @property
    def online(self) -> bool:
        return self.connection is not None

    @property
    def where(self) -> str:
        return str(self.spool.folder)

    def put(self, payload: Payload) -> None:
        """Into the spool, as payloads of at most the server's limit, numbered in order."""
        state = self.spool.state()
        seq = state["next_seq"]
        for piece in split(payload, min(self.max_bytes or PAYLOAD_BYTES, PAYLOAD_BYTES)):
            piece.seq = seq
            self.spool.put(seq, encode(piece))
            seq += 1
        state["next_seq"] = seq
        self.spool.write_state(state)

    def pending(self) -> bool:
        return bool(self.spool.pending())

    def thread_done(self) -> None:
        pass

    def upload(self) -> bool:
        """Send what can be sent now; True when nothing is left. Raises Unreachable or Refused."""
        if self.connection is None:
            return False
        state = self.spool.state()
        if state["run_id"] is None:
            started = self.connection.start(state["start"])
            state.update(run_id=started.run_id, url=started.url)
            self.spool.write_state(state)
            self.max_bytes = started.max_bytes
            log.info("trainwatch: run %s at %s", started.run_id, started.url)
        for path in self.spool.pending():
            answer = self.connection.send(state["run_id"], path.read_bytes())
            if "expected" in answer:
                # the server never got an earlier payload: it was sent already (a file deleted
                # after a lost answer is impossible), so it is one the server stored before the
                # answer got lost; anything before `expected` is stored
                for stale in self.spool.pending():
                    if int(stale.stem) < answer["expected"]:
                        stale.unlink()
                return False
            if "ended" in answer:
                self.ended = answer["ended"]
                return True
            if "rejected" in answer:
                kept = self.spool.reject(path, answer["rejected"])
                self.rejected += 1
                log.error(
                    "trainwatch: the server refused payload %s of run %s (%s); it is kept in %s and the run goes on",
                    int(path.stem),
                    state["run_id"],
                    answer["rejected"],
                    kept,
                )
                continue
            self.stop_requested = self.stop_requested or bool(answer.get("stop"))
            path.unlink()
            if answer.get("status") not in (None, "running"):
                self.ended = answer["status"]
        return True


class Sender(threading.Thread):
    """The background thread of a live run: every `flush_seconds` it asks `collect` for a
    payload (put in the outbox) and delivers what is pending. While the server is unreachable
    it keeps collecting into the outbox and retries with a growing pause."""

    def __init__(self, outbox: Outbox, collect: Callable[[bool], None], flush_seconds: float = 1.0):
        super().__init__(name="trainwatch-sender", daemon=True)
        self.outbox = outbox
        self.collect = collect
        self.flush_seconds = flush_seconds
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._done = threading.Event()
        self._flushed = threading.Condition()
        self._flush_asked = 0
        self._flush_done = 0
        self._retry_at = 0.0
        self._pause = 1.0
        self.offline_since: float | None = None
        self.refused: str | None = None

    def run(self) -> None:
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            closing = self._closing.is_set()
            asked = self._flush_asked
            try:
                self.collect(closing)
            except Exception:  # never take the training script down with us
                log.exception("trainwatch: could not collect the measurements")
            try:
                self._send()
            except Exception as error:  # nor this thread, which finish() and flush() wait for
                log.exception("trainwatch: could not send the measurements")
                self.refused = f"{type(error).__name__}: {error}"
            with self._flushed:
                self._flush_done = asked
                self._flushed.notify_all()
            if closing:
                break
        self.outbox.thread_done()  # e.g. a worker's database connection, opened by this thread
        with self._flushed:
            self._done.set()
            self._flushed.notify_all()

    def flush(self, timeout: float) -> bool:
        """Collect and send now, from the training thread, waiting at most `timeout` seconds;
        True when the server has everything logged before the call."""
        if self.ident is None:  # never started: nothing was collected
            return self.refused is None and self.outbox.online and not self.outbox.pending()
        with self._flushed:
            self._flush_asked += 1
            asked = self._flush_asked
            self._wake.set()
            self._flushed.wait_for(lambda: self._flush_done >= asked or self._done.is_set(), timeout)
        return self.refused is None and self.outbox.online and not self.outbox.pending()

    def _send(self) -> bool:
        if self.refused is not None or time.monotonic() < self._retry_at:
            return False
        try:
            empty = self.outbox.upload()
        except Unreachable as error:
            if self.offline_since is None:
                self.offline_since = time.monotonic()
                log.warning(
                    "trainwatch: the server is unreachable (%s); keeping the measurements in %s and training on",
                    error,
                    self.outbox.where,
                )
            self._retry_at = time.monotonic() + self._pause
            self._pause = min(self._pause * 2, 10.0)
            return False
        except Refused as error:
            self.refused = str(error)
            log.error(
                "trainwatch: the server refused the run's measurements (%s); they stay in %s", error, self.outbox.where
            )
            return False
        if self.offline_since is not None:
            log.warning("trainwatch: the server is back after %.0f s", time.monotonic() - self.offline_since)
            self.offline_since = None
        self._pause = 1.0
        return empty

    def close(self, timeout: float) -> bool:
        """Collect the last payload and send everything, for at most `timeout` seconds; True
        when the server has it all."""
        if self.ident is None:  # never started: nothing was collected
            return self.flush(timeout)
        self._closing.set()
        self._wake.set()
        self._done.wait(timeout)
        deadline = time.monotonic() + timeout
        while self.refused is None and self.outbox.online:
            self._retry_at = 0.0
            if self._send() and not self.outbox.pending():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(min(self._pause, max(0.0, deadline - time.monotonic())))
        return False


def split(payload: Payload, limit: int) -> list[Payload]:
    """Payloads of at most about `limit` bytes: the scalars cut into step ranges, histograms and
    images apart; describe, checks and console output go with the first, the end with the last."""
    point_budget = max(1, (limit - 64 * 1024) // 16)
    pieces: list[Payload] = []
    current = Payload(0)
    room = point_budget
    for key, (steps, values) in payload.scalars.items():
        start = 0
        while start < len(steps):
            if room == 0:
                pieces.append(current)
                current, room = Payload(0), point_budget
            take = min(room, len(steps) - start)
            current.scalars[key] = (steps[start : start + take], values[start : start + take])
            start += take
            room -= take
    pieces.append(current)
    bytes_left = limit
    for histogram in payload.histograms:
        size = 8 * len(histogram.counts) + 200
        if size > bytes_left:
            pieces.append(Payload(0))
            bytes_left = limit
        pieces[-1].histograms.append(histogram)
        bytes_left -= size
    for image in payload.images:
        pieces.append(Payload(0, images=[image]))
    pieces[0].describe, pieces[0].checks, pieces[0].console = payload.describe, payload.checks, payload.console
    pieces[-1].finish = payload.finish
    for piece in pieces:
        piece.progress = payload.progress
    return pieces
