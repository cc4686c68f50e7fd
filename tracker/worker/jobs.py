"""The `run` object a worker hands to a job's function: the client's own (trainwatch.Run), whose
hand-offs go to the worker's DatabaseSink as they are instead of over HTTP, plus what only a
queued job has: checkpoints stored with the run, the device the worker chose, a cancel seen
within a fraction of a second, and the study's early stopping."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from typing import Any

import torch
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.utils import timezone

from tracker.core import artifacts, blobs, checkpoints
from tracker.models import Blob, Run
from tracker.worker.sink import DatabaseSink
from trainer.config import ConfigError
from trainer.wire import Payload
from trainwatch import run as client
from trainwatch.transport import OffsetMismatch, Refused

log = logging.getLogger(__name__)
# how often should_stop asks the database: a cancel is seen within this, whatever the function logs
CANCEL_POLL_SECONDS = 0.2
# what a job's function may end its run as, with run.finish(status, message)
END_STATUSES = ("succeeded", "failed", "cancelled", "diverged", "stopped")


class SinkOutbox:
    """Where a job's client puts its hand-offs: the worker's DatabaseSink, as they are (no
    encoding, no spool file). The sink keeps them through a database outage, the one place a
    worker does, and fails the run once the outage outlasts TRAINWATCH_DB_OUTAGE_SECONDS."""

    online = True
    where = "the worker's memory"

    def __init__(self, job: JobRun):
        self.job = job

    @property
    def stop_requested(self) -> bool:
        return self.job.database_sink.should_stop()

    def put(self, payload: Payload) -> None:
        self.job.database_sink.handoff(payload)

    def upload(self) -> bool:
        if self.job.writes_directly:
            return True  # Trainwatch's own trainer flushes the sink from its own thread
        try:
            self.job.database_sink.flush()
        except (OperationalError, InterfaceError) as error:
            raise Refused(f"the database stayed unreachable ({str(error).strip() or type(error).__name__})") from None
        except DatabaseError as error:  # e.g. the run was deleted while it trained: nothing more can be stored
            raise Refused(f"the database refused the run's points ({str(error).strip().splitlines()[0]})") from None
        return not self.pending()

    def pending(self) -> bool:
        return not self.job.writes_directly and self.job.database_sink.pending

    def thread_done(self) -> None:
        connection.close()  # the sender thread's own connection


class LocalArtifacts:
    """The artifact calls of a job's run (trainwatch.artifacts.ArtifactChannel), answered inside
    the worker by tracker.core.artifacts, as the person who queued the job."""

    def __init__(self, row: Run):
        self.row = row
        self.user = row.created_by

    def upload_state(self, digest: str) -> dict[str, Any]:
        return artifacts.upload_state(digest, self.user).as_json()

    def put_chunk(self, digest: str, size: int, offset: int, data: bytes) -> dict[str, Any]:
        try:
            state = artifacts.receive_chunk(digest, size, offset, io.BytesIO(data), len(data), self.user)
        except blobs.OffsetMismatch as mismatch:
            raise OffsetMismatch(mismatch.received) from None
        except ConfigError as error:
            raise Refused("; ".join(f"{field}: {message}" for field, message in error.errors.items())) from None
        return state.as_json()

    def log_version(self, run_id: int, body: dict[str, Any]) -> dict[str, Any]:
        try:
            version, created = artifacts.log_version(self.row, user=self.user, **body)
        except ConfigError as error:
            raise Refused("; ".join(f"{field}: {message}" for field, message in error.errors.items())) from None
        return {"version": artifacts.manifest(version), "created": created}

    def use(self, run_id: int, ref: str) -> dict[str, Any]:
        try:
            version = artifacts.resolve(self.row.project, ref)
        except ConfigError as error:
            raise Refused(error.errors["ref"]) from None
        artifacts.record_use(self.row, version)
        return artifacts.manifest(version)

    def download(self, digest: str, start: int) -> Iterator[bytes]:
        yield from blobs.store().read(digest, start)

    def checkpoints(self, run_id: int, record: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        run = Run.objects.get(pk=run_id)
        if record is not None:
            blob = Blob.objects.get(digest=record["digest"])
            checkpoints.record(run_id, record["step"], record["epoch"], blob, timezone.now())
        return checkpoints.rows(run)


class JobRun(client.Run):
    """A queued job's run: `config`, `device`, `watch`, `log`, `should_stop`, `checkpoint`,
    `restore`, `finish`, as in a script; the worker ends the run from what the function did.
    What it measures goes to the worker's DatabaseSink, like Trainwatch's own trainer's."""

    def __init__(
        self, row: Run, config: dict[str, Any], device: torch.device, resume: bytes | None, direct: bool = False
    ):
        """`direct`: Trainwatch's own trainer, which writes to the sink itself (`sink`); the
        client's background thread is then never started."""
        self.row = row
        self._device = device
        self._resume = resume
        self.outcome: dict[str, Any] = {}  # status, message, error when the function said how it ended
        self.final: dict[str, Any] = {}  # more of the run's end (the built-in trainer's device, steps, loss)
        self.database_sink = DatabaseSink(row, device=str(device))
        self.writes_directly = direct
        self._cancel_checked = 0.0
        self._cancelled = False
        super().__init__(SinkOutbox(self), config, flush_seconds=settings.TRAINWATCH_FLUSH_SECONDS)
        if row.resumed_from_step is not None and resume is not None:
            self._last_step = row.resumed_from_step - 1
            self._epoch = row.epoch

    @property
    def id(self) -> int:
        return int(self.row.pk)

    @property
    def url(self) -> str:
        return self.row.get_absolute_url()

    @property
    def device(self) -> torch.device:
        return self._device

    def _samples_system(self) -> bool:
        return False  # the worker's sink samples the process

    def _collects_in_background(self) -> bool:
        return not self.writes_directly

    def _artifact_channel(self) -> tuple[LocalArtifacts, int]:
        return LocalArtifacts(self.row), self.id

    @property
    def sink(self) -> DatabaseSink:
        """Trainwatch's own trainer writes to the worker's sink itself, from its own thread (its
        instrumentation is its own); the client's side then stays quiet."""
        self.writes_directly = True
        return self.database_sink

    @property
    def resume_blob(self) -> bytes | None:
        return self._resume

    @property
    def stop_reason(self) -> str | None:
        """Why the study stopped the run early, if it did."""
        return self.database_sink.stop_reason()

    @property
    def should_stop(self) -> bool:
        if self._outbox.stop_requested or self.stop_reason is not None or self._cancelled:
            return True
        now = time.monotonic()
        if now - self._cancel_checked >= CANCEL_POLL_SECONDS:
            self._cancel_checked = now
            try:
                self._cancelled = Run.objects.filter(pk=self.row.pk, cancel_requested=True).exists()
            except (OperationalError, InterfaceError):
                connection.close()  # the next flush sees the cancel once the database is back
        return self._cancelled

    def checkpoint(self, state: Any) -> bool:
        """Store `state` beside every step logged so far (they are sent first): a requeued run
        resumes from it with the steps after it removed, so that no step is stored twice."""
        client.checked_state(state)
        if not self.flush(settings.TRAINWATCH_DB_OUTAGE_SECONDS):
            log.warning("run %s: the measurements could not be stored; checkpoint skipped", self.row.pk)
            return False
        buffer = io.BytesIO()
        torch.save({"format": client.CHECKPOINT_FORMAT, "state": state}, buffer)
        blob = buffer.getvalue()
        try:
            checkpoints.save(self.row.pk, self._last_step + 1, self._epoch or 0, blob, timezone.now())
        except (OperationalError, InterfaceError):
            connection.close()
            log.warning("run %s: the database is unreachable; checkpoint skipped", self.row.pk)
            return False
        return True

    def restore(self) -> Any:
        if self._resume is None:
            return None
        # data only (checkpoint() refused anything else): a file swapped in the store cannot run code
        saved = torch.load(io.BytesIO(self._resume), map_location=self._device, weights_only=True)
        return saved["state"]

    def finish(
        self, status: str | None = None, message: str = "", error: str = "", timeout: float | None = None
    ) -> None:
        """Deliver everything; the worker writes the run's end (with `status` and `message` when
        the function gives them: e.g. run.finish("diverged", "loss is NaN at step 300"))."""
        if status is not None and status not in END_STATUSES:
            raise ValueError(f"finish: status must be one of {', '.join(END_STATUSES)}, got {status!r}")
        if self.finished:
            return
        self.finished = True
        if status is not None:
            self.outcome = {"status": status, "message": message, "error": error}
        for watcher in self._watchers:
            watcher.close()
        delivered = self._sender.close(settings.TRAINWATCH_DB_OUTAGE_SECONDS if timeout is None else timeout)
        if self.writes_directly:
            try:
                self.database_sink.drain()  # the console's last lines, after the trainer's own last flush
            except DatabaseError:
                delivered = False
        self.database_sink.close()
        client._live.discard(self)
        if not delivered:
            raise RuntimeError(
                f"the run's last measurements could not be stored: {self._sender.refused or 'the database is away'}"
            )

    def end(self) -> dict[str, Any]:
        """The fields of the run's end: what the function said, else succeeded, or cancelled or
        stopped early when that was asked for."""
        steps = self.final.get("steps_done", self._last_step + 1)
        if self.outcome:
            final = dict(self.outcome)
            final["message"] = final["message"] or f"{final['status']} after {steps} steps"
        elif self.stop_reason is not None:
            final = {"status": Run.Status.STOPPED, "message": self.stop_reason}
        elif self.should_stop:
            final = {"status": Run.Status.CANCELLED, "message": f"cancel requested; stopped at step {steps}"}
        else:
            final = {"status": Run.Status.SUCCEEDED, "message": f"succeeded after {steps} steps"}
        return {**final, **self.final}

    def _collect(self, closing: bool) -> None:
        if not self.writes_directly:
            super()._collect(closing)

    def close_sink(self) -> None:
        self.database_sink.close()


def pick_device(wanted: str) -> torch.device:
    if wanted == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but this worker has no CUDA GPU")
    if wanted == "cpu":
        return torch.device("cpu")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
