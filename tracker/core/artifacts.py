"""What a run produces and reads: named artifacts of a project (a model, a dataset, a checkpoint,
files), each content a version (v1, v2, ...; a new one only when the files changed), its files
content-addressed in the artifact store (tracker.core.blobs), aliases set by people or runs,
and the lineage both ways: the run that logged a version, the runs that used it. The client
over HTTP (tracker.views.artifacts) and a job on a worker (tracker.worker.jobs) both come here."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from tracker.core import blobs
from tracker.core.access import sees_everything, visible_projects
from tracker.core.runs import acting_user
from tracker.models import (
    Artifact,
    ArtifactAlias,
    ArtifactAliasEvent,
    ArtifactFile,
    ArtifactUse,
    ArtifactVersion,
    Blob,
    Checkpoint,
    Project,
    Run,
)
from trainer import safe_json
from trainer.config import ConfigError

if TYPE_CHECKING:
    from tracker.core.runs import AnyUser

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
# the alias the newest version of an artifact always has
LATEST = "latest"
MAX_METADATA_BYTES = 64 * 1024
MAX_PATH = 1000


def check_artifact_name(value: Any, field: str, errors: dict[str, str]) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        errors[field] = f"must be 1 to 200 letters, digits, _ . or -, starting with a letter or digit; got {value!r}"
        return ""
    return value


def check_path(value: Any, field: str, errors: dict[str, str]) -> str:
    """A file's path inside its artifact: relative, with / between its parts, none of them . or
    .. (it cannot leave the artifact's folder when downloaded)."""
    parts = value.split("/") if isinstance(value, str) else []
    if (
        not parts
        or len(value) > MAX_PATH
        or any(part in ("", ".", "..") for part in parts)
        or any(ord(c) < 32 or c in "\\:" for c in value)
    ):
        errors[field] = (
            f"must be a relative path of at most {MAX_PATH} characters, parts separated by /, none of them "
            f"empty, . or .., without \\, : or control characters; got {value!r}"
        )
        return ""
    return str(value)


def check_digest(value: Any, field: str, errors: dict[str, str]) -> str:
    if not isinstance(value, str) or not blobs.DIGEST.match(value):
        errors[field] = f"must be a SHA-256 in 64 lowercase hex digits; got {value!r}"
        return ""
    return value


def check_size(value: Any, field: str, errors: dict[str, str]) -> int:
    limit = settings.TRAINWATCH_ARTIFACT_MAX_FILE_BYTES
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        errors[field] = f"must be a whole number of bytes from 0 to {limit} (TRAINWATCH_ARTIFACT_MAX_FILE_BYTES)"
        return 0
    return value


def check_alias(value: Any, field: str, errors: dict[str, str]) -> str:
    if not isinstance(value, str) or not ALIAS.match(value):
        errors[field] = f"must be 1 to 64 letters, digits, _ . or -, starting with a letter; got {value!r}"
        return ""
    return value


# --- files ----------------------------------------------------------------------


def blob_visible(digest: str, user: AnyUser | None) -> bool:
    """Whether `user` may read (and so name in a version of theirs) the stored file: it is in a
    version or a checkpoint of one of their projects, or they sent it whole themselves."""
    acting = acting_user(user)
    if acting is None or sees_everything(acting):
        return Blob.objects.filter(digest=digest).exists()
    projects = visible_projects(acting)
    return (
        ArtifactFile.objects.filter(blob_id=digest, version__artifact__project__in=projects).exists()
        or Checkpoint.objects.filter(blob_id=digest, run__project__in=projects).exists()
        or Blob.objects.filter(digest=digest, senders=acting).exists()
    )


@dataclass
class UploadState:
    stored: bool  # the server has the file: nothing to send
    received: int  # else the bytes of it kept so far: the upload goes on from there

    def as_json(self) -> dict[str, Any]:
        return {"stored": self.stored, "received": self.received, "chunk_bytes": blobs.CHUNK_BYTES}


def upload_state(digest: str, user: AnyUser | None) -> UploadState:
    if blob_visible(digest, user):
        return UploadState(True, 0)
    return UploadState(False, blobs.store().received(digest))


def receive_chunk(
    digest: Any, size: Any, offset: Any, stream: blobs.Readable, length: int, user: AnyUser | None
) -> UploadState:
    """One chunk of a file's upload, at `offset`, the next one after what is kept; the last
    completes it (checked against its digest). Raises ConfigError naming what is wrong, or
    blobs.OffsetMismatch with where the upload goes on."""
    errors: dict[str, str] = {}
    digest = check_digest(digest, "digest", errors)
    size = check_size(size, "size", errors)
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= max(0, size - 1):
        errors.setdefault("offset", f"must be a byte of the file, from 0 to {max(0, size - 1)}; got {offset!r}")
    elif length != blobs.expected_chunk(offset, size):
        errors["body"] = (
            f"a chunk is {blobs.CHUNK_BYTES} bytes, the last one what is left; at byte {offset} of {size} "
            f"that is {blobs.expected_chunk(offset, size)}, got {length}"
        )
    if errors:
        raise ConfigError(errors)
    store = blobs.store()
    if size and offset == 0 and store.received(digest) == 0 and store.has(digest) and blob_visible(digest, user):
        return UploadState(True, 0)
    received = store.write(digest, size, offset, stream, length)
    if received < size:
        return UploadState(False, received)
    try:
        store.complete(digest, size)
    except blobs.BlobError as error:
        raise ConfigError({"body": str(error)}) from None
    blob, _ = Blob.objects.get_or_create(digest=digest, defaults={"size": size})
    sender = acting_user(user)
    if sender is not None:
        blob.senders.add(sender)
    return UploadState(True, 0)


def store_bytes(data: bytes) -> Blob:
    """Bytes made on the server's side (a worker's checkpoint) as a stored file, once."""
    digest = blobs.put_bytes(data)
    blob, _ = Blob.objects.get_or_create(digest=digest, defaults={"size": len(data)})
    return blob


# --- versions ---------------------------------------------------------------------


def manifest_digest(files: Iterable[tuple[str, str, int]]) -> str:
    lines = "".join(f"{path}\0{digest}\0{size}\n" for path, digest, size in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def _check_files(value: Any, user: AnyUser | None, errors: dict[str, str]) -> list[tuple[str, str, int]]:
    if not isinstance(value, list) or not 1 <= len(value) <= settings.TRAINWATCH_ARTIFACT_MAX_FILES:
        errors["files"] = (
            f"must be a list of 1 to {settings.TRAINWATCH_ARTIFACT_MAX_FILES} files "
            '({"path", "digest", "size"}; TRAINWATCH_ARTIFACT_MAX_FILES)'
        )
        return []
    files, seen = [], set()
    for index, entry in enumerate(value):
        where = f"files[{index}]"
        if not isinstance(entry, dict) or set(entry) != {"path", "digest", "size"}:
            errors[where] = 'must be {"path", "digest", "size"}'
            continue
        path = check_path(entry["path"], f"{where}.path", errors)
        digest = check_digest(entry["digest"], f"{where}.digest", errors)
        size = check_size(entry["size"], f"{where}.size", errors)
        if path in seen:
            errors[f"{where}.path"] = f"{path!r} is listed twice"
        seen.add(path)
        if digest and not blob_visible(digest, user):
            errors[f"{where}.digest"] = "no file with this digest has been uploaded (send it first)"
        elif digest and Blob.objects.filter(digest=digest).exclude(size=size).exists():
            errors[f"{where}.size"] = f"the file with this digest has {Blob.objects.get(digest=digest).size} bytes"
        files.append((path, digest, size))
    return files


def _check_metadata(value: Any, errors: dict[str, str]) -> dict[str, Any]:
    if value is None:
        return {}
    problem = "must be a JSON object" if not isinstance(value, dict) else safe_json.unclean(value, "metadata")
    if not problem and len(json.dumps(value)) > MAX_METADATA_BYTES:
        problem = f"must be at most {MAX_METADATA_BYTES} bytes as JSON"
    if problem:
        errors["metadata"] = problem.removeprefix("metadata: ")
        return {}
    return dict(value)


def log_version(
    run: Run, name: Any, type: Any, files: Any, aliases: Any = (), metadata: Any = None, user: AnyUser | None = None
) -> tuple[ArtifactVersion, bool]:
    """A version of the run's project's artifact `name` with these files (already stored), made
    by `run`: a new one when the content differs from every earlier version, else that version
    (created False). Its aliases move to it, `latest` too when it is new. Raises ConfigError
    naming each bad field; nothing is created then."""
    errors: dict[str, str] = {}
    clean_name = check_artifact_name(name, "name", errors)
    if type not in Artifact.Type.values:
        errors["type"] = f"must be one of {', '.join(Artifact.Type.values)}; got {type!r}"
    clean_files = _check_files(files, user, errors)
    clean_metadata = _check_metadata(metadata, errors)
    clean_aliases: list[str] = []
    if not isinstance(aliases, (list, tuple)):
        errors["aliases"] = "must be a list of names"
    else:
        clean_aliases = [check_alias(alias, f"aliases[{i}]", errors) for i, alias in enumerate(aliases)]
    existing = Artifact.objects.filter(project=run.project, name=clean_name).first() if clean_name else None
    if existing is not None and existing.type != type and "type" not in errors:
        errors["type"] = f"{clean_name!r} is a {existing.type} artifact of project {run.project.name!r}; got {type!r}"
    if errors:
        raise ConfigError(errors)
    digest = manifest_digest(clean_files)
    for attempt in range(3):  # two runs logging the same artifact at once: one takes each number
        try:
            with transaction.atomic():
                artifact, _ = Artifact.objects.get_or_create(
                    project=run.project, name=clean_name, defaults={"type": type}
                )
                artifact = Artifact.objects.select_for_update().get(pk=artifact.pk)
                version = ArtifactVersion.objects.filter(artifact=artifact, digest=digest).first()
                created = version is None
                if version is None:
                    number = (artifact.versions.aggregate(top=Max("version"))["top"] or 0) + 1
                    version = ArtifactVersion.objects.create(
                        artifact=artifact,
                        version=number,
                        digest=digest,
                        size=sum(size for _, _, size in clean_files),
                        file_count=len(clean_files),
                        metadata=clean_metadata,
                        run=run,
                        created_by=acting_user(user),
                    )
                    ArtifactFile.objects.bulk_create(
                        ArtifactFile(version=version, path=path, blob_id=blob, size=size)
                        for path, blob, size in clean_files
                    )
                    clean_aliases.append(LATEST)
                for alias in dict.fromkeys(clean_aliases):
                    set_alias(version, alias, user)
                return version, created
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def set_alias(version: ArtifactVersion, name: str, user: AnyUser | None) -> None:
    """Point the alias at `version` (from wherever it pointed), kept in the alias's history."""
    current = ArtifactAlias.objects.filter(artifact_id=version.artifact_id, name=name).first()
    if current is not None and current.version_id == version.pk:
        return
    ArtifactAlias.objects.update_or_create(
        artifact_id=version.artifact_id,
        name=name,
        defaults={"version": version, "set_by": acting_user(user), "set_at": timezone.now()},
    )
    ArtifactAliasEvent.objects.create(artifact_id=version.artifact_id, name=name, version=version, by=acting_user(user))


def remove_alias(artifact: Artifact, name: str, user: AnyUser | None) -> bool:
    deleted, _ = ArtifactAlias.objects.filter(artifact=artifact, name=name).delete()
    if deleted:
        ArtifactAliasEvent.objects.create(artifact=artifact, name=name, version=None, by=acting_user(user))
    return bool(deleted)


def visible_artifacts(user: AnyUser) -> QuerySet[Artifact]:
    return Artifact.objects.filter(project__in=visible_projects(user))


def resolve(project: Project, ref: Any) -> ArtifactVersion:
    """`name`, `name:vN` or `name:alias` of the project (raises ConfigError naming `ref`)."""
    errors: dict[str, str] = {}
    name, _, which = (ref if isinstance(ref, str) else "").partition(":")
    check_artifact_name(name, "ref", errors)
    if errors:
        raise ConfigError({"ref": f"must be name, name:vN or name:alias; got {ref!r}"})
    which = which or LATEST
    versions = ArtifactVersion.objects.filter(artifact__project=project, artifact__name=name)
    number = re.fullmatch(r"v(\d+)", which)
    found = (
        versions.filter(version=int(number.group(1))).first()
        if number
        else versions.filter(aliases__name=which).first()
    )
    if found is None:
        raise ConfigError({"ref": f"project {project.name!r} has no artifact version {name}:{which}"})
    return found


def record_use(run: Run, version: ArtifactVersion) -> None:
    ArtifactUse.objects.get_or_create(run=run, version=version)


def manifest(version: ArtifactVersion) -> dict[str, Any]:
    """A version as the API and the client read it."""
    return {
        "id": version.pk,
        "artifact": version.artifact.name,
        "artifact_id": version.artifact_id,
        "project": version.artifact.project.name,
        "type": version.artifact.type,
        "version": version.version,
        "label": version.label,
        "digest": version.digest,
        "size": version.size,
        "metadata": version.metadata,
        "aliases": sorted(version.aliases.values_list("name", flat=True)),
        "run": version.run_id,
        "created_at": version.created_at.isoformat(),
        "files": [{"path": f.path, "digest": f.blob_id, "size": f.size} for f in version.files.all().order_by("path")],
    }


def versions_of_run(run: Run) -> dict[str, QuerySet[ArtifactVersion]]:
    """The run page's artifacts: what it logged, what it used."""
    related = ArtifactVersion.objects.select_related("artifact").prefetch_related("aliases")
    return {
        "produced": related.filter(run=run).order_by("artifact__name", "version"),
        "used": related.filter(uses__run=run).order_by("artifact__name", "version"),
    }


def file_of(user: AnyUser, version_id: int, path: str) -> ArtifactFile | None:
    """A file of a version the user may see (None: not found, whether or not it exists)."""
    return (
        ArtifactFile.objects.select_related("version__artifact")
        .filter(Q(version_id=version_id, path=path), version__artifact__in=visible_artifacts(user))
        .first()
    )
