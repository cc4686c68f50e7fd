"""Files a run keeps with the server, and files it reads back: `run.log_artifact` and
`run.use_artifact`.

A file is known by its SHA-256. Sending one asks the server first: a file it has is not sent
again (the same checkpoint logged by two runs is stored once), and an upload cut off (the
network, a restarted server) goes on from the last chunk the server kept. Files are read and
sent in chunks, never whole in memory. Reading an artifact downloads each file once into
TRAINWATCH_DIR/cache (resumed likewise, checked against its digest) and lays the artifact's
files out in a folder of their own."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from trainwatch.transport import OffsetMismatch, Refused, Unreachable, home, log

READ_BYTES = 1024 * 1024
TYPES = ("model", "dataset", "checkpoint", "file")
# how long a transfer keeps trying while the server is unreachable (TRAINWATCH_ARTIFACT_TIMEOUT)
TRANSFER_TIMEOUT = 600.0


class ArtifactChannel(Protocol):
    """The server's artifact calls: over HTTP (trainwatch.transport.Connection), or inside a worker
    for a job's run (tracker.worker.jobs)."""

    def upload_state(self, digest: str) -> dict[str, Any]: ...

    def put_chunk(self, digest: str, size: int, offset: int, data: bytes) -> dict[str, Any]: ...

    def log_version(self, run_id: int, body: dict[str, Any]) -> dict[str, Any]: ...

    def use(self, run_id: int, ref: str) -> dict[str, Any]: ...

    def download(self, digest: str, start: int) -> Iterator[bytes]: ...

    def checkpoints(self, run_id: int, record: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class LoggedArtifact:
    """A version as the server keeps it: `name:vN`, its content's digest, whether it is new."""

    name: str
    version: int
    digest: str
    created: bool
    files: list[dict[str, Any]]
    sent: int  # bytes sent: 0 when the server had every file already

    @property
    def ref(self) -> str:
        return f"{self.name}:v{self.version}"


def timeout() -> float:
    return float(os.environ.get("TRAINWATCH_ARTIFACT_TIMEOUT", TRANSFER_TIMEOUT))


def sha256_of(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as source:
        while piece := source.read(READ_BYTES):
            digest.update(piece)
            size += len(piece)
    return digest.hexdigest(), size


def files_of(path: Path) -> list[tuple[str, Path]]:
    """(path inside the artifact, file) for a file, or for every file under a folder."""
    if path.is_file():
        return [(path.name, path)]
    if not path.is_dir():
        raise FileNotFoundError(f"log_artifact: {path} is neither a file nor a folder")
    found = sorted((file.relative_to(path).as_posix(), file) for file in path.rglob("*") if file.is_file())
    if not found:
        raise ValueError(f"log_artifact: the folder {path} holds no file")
    return found


def patient(what: str, call: Any, deadline: float) -> Any:
    """`call()`, tried again while the server is unreachable, until the deadline."""
    pause = 1.0
    while True:
        try:
            return call()
        except Unreachable as error:
            if time.monotonic() + pause > deadline:
                raise Unreachable(f"{what}: {error}") from None
            log.warning("trainwatch: %s: the server is unreachable (%s); trying again in %.0f s", what, error, pause)
            time.sleep(pause)
            pause = min(pause * 2, 10.0)


def send_file(channel: ArtifactChannel, path: Path, digest: str, size: int, deadline: float) -> int:
    """Upload the file unless the server has it, going on from what the server kept after an
    interruption; returns the bytes sent."""
    what = f"sending {path.name}"
    state = patient(what, lambda: channel.upload_state(digest), deadline)
    sent = 0
    with open(path, "rb") as source:
        while not state["stored"]:
            offset = int(state["received"])
            source.seek(offset)
            data = source.read(min(int(state["chunk_bytes"]), size - offset))
            try:
                answer = channel.put_chunk(digest, size, offset, data)
            except OffsetMismatch as mismatch:
                state["received"] = mismatch.received
                continue
            except Unreachable as error:
                if time.monotonic() > deadline:
                    raise Unreachable(f"{what}: {error}") from None
                log.warning("trainwatch: %s: %s; going on from what the server kept", what, error)
                time.sleep(1.0)
                state = patient(what, lambda: channel.upload_state(digest), deadline)
                continue
            sent += len(data)
            state.update(answer)
    return sent


def check_type(type: str) -> None:
    if type not in TYPES:
        raise ValueError(f"log_artifact: type must be one of {', '.join(TYPES)}, got {type!r}")


def describe(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Each file's path inside the artifact, its digest, size, and where it lies now."""
    return [
        {"path": inside, "digest": digest, "size": size, "source": str(file)}
        for inside, file in files_of(Path(path).resolve())  # a later sync may run from elsewhere
        for digest, size in [sha256_of(file)]
    ]


def send_version(
    channel: ArtifactChannel,
    run_id: int,
    name: str,
    type: str,
    files: list[dict[str, Any]],
    aliases: list[str],
    metadata: dict[str, Any] | None,
) -> LoggedArtifact:
    """Send the files the server lacks, then make the version (raises Refused naming what the
    server refused, Unreachable once the server stayed away past TRAINWATCH_ARTIFACT_TIMEOUT)."""
    deadline = time.monotonic() + timeout()
    sent = 0
    for entry in files:
        source = Path(entry["source"])
        if sha256_of(source)[0] != entry["digest"]:
            raise Refused(f"{source} changed after it was logged; log it again")
        sent += send_file(channel, source, entry["digest"], entry["size"], deadline)
    body = {
        "name": name,
        "type": type,
        "files": [{key: entry[key] for key in ("path", "digest", "size")} for entry in files],
        "aliases": list(aliases),
        "metadata": metadata,
    }
    answer = patient(f"logging {name}", lambda: channel.log_version(run_id, body), deadline)
    version = answer["version"]
    return LoggedArtifact(name, version["version"], version["digest"], answer["created"], version["files"], sent)


def cache() -> Path:
    return home() / "cache"


def fetch(channel: ArtifactChannel, digest: str, size: int, deadline: float) -> Path:
    """The file of that digest in the cache, downloaded (resumed from what an earlier try got) and checked."""
    target = cache() / "blobs" / digest[:2] / digest
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_suffix(".part")
    while True:
        have = part.stat().st_size if part.exists() else 0
        try:
            with open(part, "ab") as out:
                for piece in channel.download(digest, have):
                    out.write(piece)
            break
        except Unreachable as error:
            if time.monotonic() > deadline:
                raise
            log.warning("trainwatch: downloading %s: %s; going on from where it stopped", digest[:12], error)
            time.sleep(1.0)
    found, found_size = sha256_of(part)
    if (found, found_size) != (digest, size):
        part.unlink()
        raise Refused(f"the file downloaded has SHA-256 {found} and {found_size} bytes, not {digest} and {size}")
    os.replace(part, target)
    return target


def lay_out(manifest: dict[str, Any], channel: ArtifactChannel, root: Path | None = None) -> Path:
    """The version's files under `root` (default TRAINWATCH_DIR/artifacts/<project>/<name>/vN),
    each hard-linked (else copied) from the cache; a path that would leave the folder is refused."""
    folder = (
        root or home() / "artifacts" / manifest["project"] / manifest["artifact"] / f"v{manifest['version']}"
    ).resolve()
    deadline = time.monotonic() + timeout()
    for entry in manifest["files"]:
        inside = PurePosixPath(entry["path"])
        if inside.is_absolute() or any(part in ("", ".", "..") for part in inside.parts):
            raise Refused(f"the artifact names a file outside its folder: {entry['path']!r}")
        destination = folder.joinpath(*inside.parts)
        if not destination.resolve().is_relative_to(folder):
            raise Refused(f"the artifact names a file outside its folder: {entry['path']!r}")
        if destination.exists() and destination.stat().st_size == entry["size"]:
            continue
        blob = fetch(channel, entry["digest"], entry["size"], deadline)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.unlink(missing_ok=True)
        try:
            os.link(blob, destination)
        except OSError:
            shutil.copyfile(blob, destination)
    return folder
