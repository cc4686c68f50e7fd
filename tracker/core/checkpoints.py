"""A run's checkpoints, out of PostgreSQL: each one's bytes in the artifact store
(tracker.core.blobs, content-addressed), a row per checkpoint in the database (a few hundred
bytes, whatever the model's size). The run's retention (trainer.config.RetentionConfig) keeps
the latest few, the best by a metric and one every K steps, and deletes the others, their
bytes too once nothing else holds them."""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

from django.db.models import Q

from tracker.core import blobs
from tracker.core.artifacts import store_bytes
from tracker.models import ArtifactFile, Blob, Checkpoint, Run, Series
from trainer.config import RetentionConfig, retention_of

log = logging.getLogger(__name__)
# a file nothing refers to is deleted once it is this old (it may belong to a version being made)
SWEEP_AFTER = dt.timedelta(days=1)


def save(run_id: int, step: int, epoch: int, data: bytes, now: dt.datetime) -> Checkpoint:
    """The run's checkpoint after `step` steps, made on the server's side (a worker's)."""
    return record(run_id, step, epoch, store_bytes(data), now)


def record(run_id: int, step: int, epoch: int, blob: Blob, now: dt.datetime) -> Checkpoint:
    """The run's checkpoint after `step` steps, its file stored (the same step again replaces
    it), with the retention metric's latest value; then the retention applied."""
    policy = retention_of(Run.objects.values_list("config", flat=True).get(pk=run_id))
    metric = None
    if policy.best_metric:
        value = (
            Series.objects.filter(run_id=run_id, key=policy.best_metric).values_list("last_value", flat=True).first()
        )
        metric = float(value) if value is not None and math.isfinite(value) else None
    checkpoint, _ = Checkpoint.objects.update_or_create(
        run_id=run_id,
        step=step,
        defaults={"epoch": epoch, "blob": blob, "size": blob.size, "metric": metric, "created_at": now},
    )
    retain(run_id, policy)
    return checkpoint


def kept(checkpoints: list[Checkpoint], policy: RetentionConfig) -> dict[int, list[str]]:
    """Why each kept checkpoint is kept, by its id: latest, best, every."""
    reasons: dict[int, list[str]] = {}
    newest = sorted(checkpoints, key=lambda c: c.step, reverse=True)
    for checkpoint in newest[: policy.keep_latest]:
        reasons.setdefault(checkpoint.pk, []).append("latest")
    scored = [c for c in checkpoints if c.metric is not None]
    if policy.best_metric and scored:
        pick = max if policy.best_mode == "max" else min
        best = pick(scored, key=lambda c: (c.metric, c.step) if policy.best_mode == "max" else (c.metric, -c.step))
        reasons.setdefault(best.pk, []).append("best")
    if policy.keep_every:
        for checkpoint in checkpoints:
            if checkpoint.step % policy.keep_every == 0:
                reasons.setdefault(checkpoint.pk, []).append("every")
    return reasons


def retain(run_id: int, policy: RetentionConfig | None = None) -> int:
    """Delete the checkpoints the retention does not keep; how many were deleted."""
    policy = policy or retention_of(Run.objects.values_list("config", flat=True).get(pk=run_id))
    checkpoints = list(Checkpoint.objects.filter(run_id=run_id))
    keep = kept(checkpoints, policy)
    doomed = [c for c in checkpoints if c.pk not in keep]
    if doomed:
        Checkpoint.objects.filter(pk__in=[c.pk for c in doomed]).delete()
        forget({c.blob_id for c in doomed})
    return len(doomed)


def rows(run: Run) -> list[dict[str, Any]]:
    """The run's kept checkpoints as the API and the run page show them, newest first."""
    found = list(run.checkpoints.order_by("-step"))
    why = kept(found, retention_of(run.config))
    return [
        {
            "step": c.step,
            "epoch": c.epoch,
            "size": c.size,
            "metric": c.metric,
            "digest": c.blob_id,
            "kept_as": why.get(c.pk, []),
            "created_at": c.created_at.isoformat(),
        }
        for c in found
    ]


def latest(run_id: int) -> Checkpoint | None:
    return Checkpoint.objects.filter(run_id=run_id).order_by("-step").first()


def best(run_id: int) -> Checkpoint | None:
    """The checkpoint the retention keeps as the best (else the latest)."""
    checkpoints = list(Checkpoint.objects.filter(run_id=run_id))
    policy = retention_of(Run.objects.values_list("config", flat=True).get(pk=run_id))
    for checkpoint in checkpoints:
        if "best" in kept(checkpoints, policy).get(checkpoint.pk, []):
            return checkpoint
    return latest(run_id)


def read(checkpoint: Checkpoint) -> bytes:
    return b"".join(blobs.store().read(checkpoint.blob_id))


def read_latest(run_id: int) -> bytes:
    found = latest(run_id)
    if found is None:
        raise LookupError(f"run {run_id} has no checkpoint")
    return read(found)


def delete_all(run_id: int) -> None:
    """A run that starts again from scratch: its checkpoints go."""
    digests = set(Checkpoint.objects.filter(run_id=run_id).values_list("blob_id", flat=True))
    Checkpoint.objects.filter(run_id=run_id).delete()
    forget(digests)


def forget(digests: set[str], older_than: dt.datetime | None = None) -> int:
    """Delete the stored files that no checkpoint and no artifact holds any more."""
    held = Q(pk__in=Checkpoint.objects.values("blob_id")) | Q(pk__in=ArtifactFile.objects.values("blob_id"))
    orphans = Blob.objects.filter(pk__in=digests).exclude(held)
    if older_than is not None:
        orphans = orphans.filter(created_at__lt=older_than)
    store = blobs.store()
    gone = 0
    for digest in list(orphans.values_list("pk", flat=True)):
        try:
            store.delete(digest)
        except Exception:
            log.exception("could not delete stored file %s; it is kept in the index", digest)
            continue
        Blob.objects.filter(pk=digest).delete()
        gone += 1
    return gone


def sweep(now: dt.datetime) -> int:
    """Periodic: files that nothing holds (a deleted run's checkpoints, an upload never made a
    version), once they are SWEEP_AFTER old."""
    return forget(set(Blob.objects.values_list("pk", flat=True)), older_than=now - SWEEP_AFTER)
