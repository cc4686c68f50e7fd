"""The artifact store beside the database: files by their SHA-256, written in chunks that an
interrupted upload resumes from, checked against their digest before they count, and read back
as a stream (never a whole file in memory). The local filesystem by default
(TRAINWATCH_ARTIFACTS_DIR); any S3-compatible object store when TRAINWATCH_ARTIFACTS_S3_BUCKET
is set (boto3: a multipart upload per file, one part per chunk, so that an upload cut mid-way
goes on from its last whole chunk). The database holds only the index (tracker.models.Blob)."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from django.conf import settings

DIGEST = re.compile(r"^[0-9a-f]{64}$")
# an upload's chunks: each this size but the last (S3's parts must be at least 5 MiB)
CHUNK_BYTES = 8 * 1024 * 1024
READ_BYTES = 1024 * 1024


class Readable(Protocol):
    """What a chunk is read from: a request's body, a file."""

    def read(self, size: int = -1, /) -> bytes: ...


class BlobError(Exception):
    """An upload that cannot be taken as it is: its message says what is wrong."""


class OffsetMismatch(BlobError):
    """A chunk that does not start where the stored part of the upload ends."""

    def __init__(self, received: int):
        super().__init__(f"the upload goes on at byte {received}")
        self.received = received


def expected_chunk(offset: int, size: int) -> int:
    """The length of the chunk that starts at `offset` of a file of `size` bytes."""
    return min(CHUNK_BYTES, size - offset)


class BlobStore(Protocol):
    def has(self, digest: str) -> bool: ...

    def received(self, digest: str) -> int:
        """Bytes of an unfinished upload kept so far (0 when there is none)."""
        ...

    def write(self, digest: str, size: int, offset: int, stream: Readable, length: int) -> int:
        """Store a chunk at `offset` (where the kept part ends); the bytes kept after it."""
        ...

    def complete(self, digest: str, size: int) -> None:
        """The whole file is there: checked against its size and digest, then stored under it
        (raises BlobError and drops the upload when it does not match)."""
        ...

    def read(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The stored file's bytes [start, end), in pieces."""
        ...

    def signed_url(self, digest: str, filename: str) -> str | None:
        """A short-lived URL the client downloads from directly, where the store has them."""
        ...

    def delete(self, digest: str) -> None: ...

    def drop_upload(self, digest: str) -> None:
        """Forget what an unfinished upload of the file kept."""
        ...


def _hash_pieces(pieces: Iterator[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for piece in pieces:
        digest.update(piece)
        size += len(piece)
    return digest.hexdigest(), size


def _copy(stream: Readable, length: int, out: IO[bytes]) -> int:
    copied = 0
    while copied < length:
        piece = stream.read(min(READ_BYTES, length - copied))
        if not piece:
            break
        out.write(piece)
        copied += len(piece)
    return copied


class FileStore:
    """<root>/blobs/<ab>/<digest>, uploads under <root>/uploads/<digest>.part."""

    def __init__(self, root: Path):
        self.root = root

    def _path(self, digest: str) -> Path:
        return self.root / "blobs" / digest[:2] / digest

    def _part(self, digest: str) -> Path:
        return self.root / "uploads" / f"{digest}.part"

    def has(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def received(self, digest: str) -> int:
        part = self._part(digest)
        return part.stat().st_size if part.exists() else 0

    def write(self, digest: str, size: int, offset: int, stream: Readable, length: int) -> int:
        part = self._part(digest)
        part.parent.mkdir(parents=True, exist_ok=True)
        with open(part, "ab") as out:
            fcntl.flock(out, fcntl.LOCK_EX)  # one writer per upload: two clients sending the same file
            kept = out.seek(0, os.SEEK_END)
            if kept != offset:
                raise OffsetMismatch(kept)
            written = _copy(stream, length, out)
            out.flush()
            os.fsync(out.fileno())
            return kept + written

    def complete(self, digest: str, size: int) -> None:
        part = self._part(digest)
        with open(part, "rb") as kept:
            found, found_size = _hash_pieces(iter(functools.partial(kept.read, READ_BYTES), b""))
        if (found, found_size) != (digest, size):
            part.unlink(missing_ok=True)
            raise BlobError(f"the file sent has SHA-256 {found} and {found_size} bytes, not {digest} and {size}")
        path = self._path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, path)

    def read(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        with open(self._path(digest), "rb") as stored:
            stored.seek(start)
            left = (end if end is not None else os.fstat(stored.fileno()).st_size) - start
            while left > 0:
                piece = stored.read(min(READ_BYTES, left))
                if not piece:
                    return
                left -= len(piece)
                yield piece

    def signed_url(self, digest: str, filename: str) -> str | None:
        return None  # the server streams the file itself

    def delete(self, digest: str) -> None:
        self._path(digest).unlink(missing_ok=True)

    def drop_upload(self, digest: str) -> None:
        self._part(digest).unlink(missing_ok=True)


class S3Store:
    """<prefix>blobs/<digest> in a bucket; an unfinished upload is S3's multipart upload of that
    key, one part per chunk, found again by listing the bucket's uploads."""

    def __init__(self, bucket: str, prefix: str, client: Any):
        self.bucket = bucket
        self.prefix = prefix
        self.client = client

    def _key(self, digest: str) -> str:
        return f"{self.prefix}blobs/{digest}"

    def _upload_id(self, digest: str, create: bool) -> str | None:
        key = self._key(digest)
        found = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key).get("Uploads", [])
        for upload in found:
            if upload["Key"] == key:
                return str(upload["UploadId"])
        if not create:
            return None
        return str(self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"])

    def _parts(self, digest: str, upload_id: str) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        marker = 0
        while True:
            page = self.client.list_parts(
                Bucket=self.bucket, Key=self._key(digest), UploadId=upload_id, PartNumberMarker=marker
            )
            parts += page.get("Parts", [])
            if not page.get("IsTruncated"):
                return sorted(parts, key=lambda part: part["PartNumber"])
            marker = page["NextPartNumberMarker"]

    def has(self, digest: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(digest))
        except self.client.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def received(self, digest: str) -> int:
        upload_id = self._upload_id(digest, create=False)
        if upload_id is None:
            return 0
        # the whole parts in order from the first: a part missing in between ends what counts
        kept = 0
        for number, part in enumerate(self._parts(digest, upload_id), start=1):
            if part["PartNumber"] != number:
                break
            kept += int(part["Size"])
        return kept

    def write(self, digest: str, size: int, offset: int, stream: Readable, length: int) -> int:
        kept = self.received(digest)
        if kept != offset:
            raise OffsetMismatch(kept)
        upload_id = self._upload_id(digest, create=True)
        if length == 0:
            return offset  # an empty file: complete() stores it without a part
        body = stream.read(length)  # one chunk (CHUNK_BYTES at most): S3 needs a part's length up front
        if len(body) != length:
            raise BlobError(f"the chunk ended after {len(body)} of its {length} bytes")
        self.client.upload_part(
            Bucket=self.bucket,
            Key=self._key(digest),
            UploadId=upload_id,
            PartNumber=offset // CHUNK_BYTES + 1,
            Body=body,
        )
        return offset + length

    def complete(self, digest: str, size: int) -> None:
        key = self._key(digest)
        upload_id = self._upload_id(digest, create=False)
        if upload_id is None:
            raise BlobError("no upload of this file is under way")
        parts = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in self._parts(digest, upload_id)]
        if not parts:  # an empty file: a multipart upload needs a part
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            self.client.put_object(Bucket=self.bucket, Key=key, Body=b"")
        else:
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        found, found_size = _hash_pieces(self.read(digest))
        if (found, found_size) != (digest, size):
            self.client.delete_object(Bucket=self.bucket, Key=key)
            raise BlobError(f"the file sent has SHA-256 {found} and {found_size} bytes, not {digest} and {size}")

    def delete(self, digest: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(digest))

    def drop_upload(self, digest: str) -> None:
        upload_id = self._upload_id(digest, create=False)
        if upload_id is not None:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self._key(digest), UploadId=upload_id)

    def read(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        options: dict[str, Any] = {}
        if start or end is not None:
            options["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(digest), **options)["Body"]
        try:
            yield from body.iter_chunks(READ_BYTES)
        finally:
            body.close()

    def signed_url(self, digest: str, filename: str) -> str | None:
        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self._key(digest),
                    "ResponseContentDisposition": f'attachment; filename="{filename}"',
                },
                ExpiresIn=settings.TRAINWATCH_ARTIFACTS_URL_SECONDS,
            )
        )


def put_bytes(data: bytes) -> str:
    """Bytes made on the server's side (a worker's checkpoint) into the store, chunk by chunk as
    an upload would come, unless the store has them; their digest."""
    import io  # noqa: PLC0415

    digest = hashlib.sha256(data).hexdigest()
    target = store()
    if target.has(digest):
        return digest
    offset = target.received(digest)
    if offset % CHUNK_BYTES or offset > len(data):
        offset = 0  # not where a chunk of these bytes ends: a part file of another try, written over
        target.drop_upload(digest)
    while True:
        length = expected_chunk(offset, len(data))
        offset = target.write(digest, len(data), offset, io.BytesIO(data[offset : offset + length]), length)
        if offset >= len(data):
            break
    target.complete(digest, len(data))
    return digest


@functools.cache
def _store(root: str, bucket: str, prefix: str, endpoint: str) -> BlobStore:
    if not bucket:
        return FileStore(Path(root))
    import boto3  # noqa: PLC0415 - only where an object store is configured (it takes 0.3 s to import)

    client = boto3.client("s3", endpoint_url=endpoint or None)
    return S3Store(bucket, prefix, client)


def store() -> BlobStore:
    """The store the settings name (one per process and configuration)."""
    return _store(
        str(settings.TRAINWATCH_ARTIFACTS_DIR),
        settings.TRAINWATCH_ARTIFACTS_S3_BUCKET,
        settings.TRAINWATCH_ARTIFACTS_S3_PREFIX,
        settings.TRAINWATCH_ARTIFACTS_S3_ENDPOINT,
    )
