"""The `run` object a worker hands to a job's function: the client's own (trainwatch.Run), whose
payloads go through the server's ingest path inside the worker instead of over HTTP, plus what
only a queued job has: checkpoints stored with the run, the device the worker chose, a cancel
seen within a fraction of a second, and the study's early stopping."""

from __future__ import annotations

import io
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from tracker.core.external import PayloadRefused, RunEnded, SeqError, receive
from tracker.core.live import EarlyStopping, LiveUpkeep, store_checkpoint, worker_seen
from tracker.models import Run
from tracker.worker.sink import DatabaseSink
from trainer import checkpoint
from trainwatch import run as client
from trainwatch.transport import Spool, Started, Unreachable

log = logging.getLogger(__name__)
# how often should_stop asks the database: a cancel is seen within this, whatever the function logs
CANCEL_POLL_SECONDS = 0.2
# what a job's function may end its run as, with run.finish(status, message)
END_STATUSES = ("succeeded", "failed", "cancelled", "diverged", "stopped")
CHECKPOINT_FORMAT = "trainwatch-entry-1"


class WorkerConnection:
    """The client's calls, answered in the worker by tracker.core.external.ingest: a job's
    measurements are stored exactly as a script's are."""

    def __init__(self, run: Run, upkeep: LiveUpkeep):
        self.run = run
        self.upkeep = upkeep
        self.early_stopping = EarlyStopping(run)

    @property
    def stop_reason(self) -> str | None:
        return self.early_stopping.reason

    def start(self, request: dict[str, Any]) -> Started:
        raise AssertionError("a job's spool names its run from the start")

    def send(self, run_id: int, data: bytes) -> dict[str, Any]:
        try:
            payload, answer = receive(self.run, data, diagnose=False)
            stop = answer["stop"]
            self.early_stopping.judge(payload.scalars, stop)
            worker_seen(self.run, timezone.now())
        except SeqError as error:
            return {"expected": error.expected}
        except RunEnded:
            return {"ended": "ended"}
        except PayloadRefused as refused:
            return {"rejected": str(refused)}
        except (OperationalError, InterfaceError) as error:
            connection.close()  # a new connection at the next try, once the database is back
            raise Unreachable(f"the database: {str(error).strip() or type(error).__name__}") from None
        if payload.scalars:
            self.upkeep.request_when_due()
        return {"seq": answer["seq"], "stop": stop or self.stop_reason is not None, "status": answer["status"]}

    def thread_done(self) -> None:
        connection.close()  # the sender thread's own connection


class JobRun(client.Run):
    """A queued job's run: `config`, `device`, `watch`, `log`, `should_stop`, `checkpoint`,
    `restore`, `finish`, as in a script; the worker ends the run from what the function did."""

    def __init__(self, row: Run, config: dict[str, Any], device: torch.device, resume: bytes | None):
        self.row = row
        self._device = device
        self._resume = resume
        self._folder = Path(tempfile.mkdtemp(prefix=f"trainwatch-run{row.pk}-"))
        spool = Spool(self._folder)
        spool.payloads.mkdir()
        spool.write_state(
            {"start": {}, "run_id": row.pk, "url": row.get_absolute_url(), "next_seq": row.ingest_seq + 1}
        )
        self.upkeep = LiveUpkeep(row.pk)
        self.connection = WorkerConnection(row, self.upkeep)
        self.outcome: dict[str, Any] = {}  # status, message, error when the function said how it ended
        self.final: dict[str, Any] = {}  # more of the run's end (the built-in trainer's device, steps, loss)
        self._sink: DatabaseSink | None = None
        self._cancel_checked = 0.0
        self._cancelled = False
        super().__init__(spool, self.connection, config, flush_seconds=settings.TRAINWATCH_FLUSH_SECONDS)
        if row.resumed_from_step is not None and resume is not None:
            self._last_step = row.resumed_from_step - 1
            self._epoch = row.epoch

    @property
    def device(self) -> torch.device:
        return self._device

    def _samples_system(self) -> bool:
        # Trainwatch's own trainer writes through the worker's sink, which samples for itself
        return self._sink is None

    @property
    def sink(self) -> DatabaseSink:
        """Trainwatch's own trainer writes through the worker's sink directly (its instrumentation
        is its own); the client's channel then stays quiet."""
        if self._sink is None:
            self._sink = DatabaseSink(self.row)
        return self._sink

    @property
    def resume_blob(self) -> bytes | None:
        return self._resume

    @property
    def stop_reason(self) -> str | None:
        """Why the study stopped the run early, if it did."""
        return self.connection.stop_reason

    @property
    def should_stop(self) -> bool:
        if self._uploader.stop_requested or self.connection.stop_reason is not None or self._cancelled:
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
        problem = checkpoint.not_plain(state)
        if problem:
            raise TypeError(
                f"run.checkpoint: {problem}; a checkpoint holds tensors, numbers, text and dicts, lists and "
                "tuples of them (state_dict() gives those), so that a resume reads it back as data, never code"
            )
        if not self.flush(settings.TRAINWATCH_DB_OUTAGE_SECONDS):
            log.warning("run %s: the measurements could not be stored; checkpoint skipped", self.row.pk)
            return False
        buffer = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, "state": state}, buffer)
        blob = buffer.getvalue()
        try:
            store_checkpoint(self.row.pk, self._last_step + 1, self._epoch or 0, blob, timezone.now())
        except (OperationalError, InterfaceError):
            connection.close()
            log.warning("run %s: the database is unreachable; checkpoint skipped", self.row.pk)
            return False
        return True

    def restore(self) -> Any:
        if self._resume is None:
            return None
        # data only (checkpoint() refused anything else): bytes swapped in the database cannot run code
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
        self.upkeep.stop()
        client._live.discard(self)
        shutil.rmtree(self._folder, ignore_errors=True)
        if not delivered:
            raise RuntimeError("the run's last measurements could not be stored (the database stayed unreachable)")

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
        if self._sink is None:
            super()._collect(closing)

    def close_sink(self) -> None:
        if self._sink is not None:
            self._sink.close()


def pick_device(wanted: str) -> torch.device:
    if wanted == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but this worker has no CUDA GPU")
    if wanted == "cpu":
        return torch.device("cpu")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
