"""A run of someone's own training script, tracked by Trainwatch.

    run = trainwatch.init(project="vision", name="resnet18 lr=0.1", config={...})
    run.watch(model, optimizer)
    for step, (x, y) in enumerate(loader):
        ...
        run.log({"loss": loss, "train_acc": acc}, step=step)   # tensors stay on the device
        if run.should_stop:                                     # a cancel from the web page
            break
    run.finish()

`log` appends to an on-device buffer (trainer.instrument.DeviceRecorder, the worker's own)
under a lock and returns; a background thread takes the buffer about once a second, copies
it to the host in one transfer per device, and sends it (trainwatch.transport).
"""

from __future__ import annotations

import atexit
import datetime
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch

from trainer import checkpoint as checkpoint_format
from trainer.config import InstrumentConfig
from trainer.console import Line
from trainer.environment import describe_environment
from trainer.instrument import DeviceRecorder, tile_grid
from trainer.payloads import CheckResults
from trainer.sink import ImageRecord, ScalarBatch
from trainer.system import SYSTEM_SECONDS, SystemSampler
from trainer.wire import SERIES_KEY, Payload
from trainwatch import artifacts
from trainwatch import console as console_capture
from trainwatch.transport import Connection, Outbox, Refused, Sender, Spool, Unreachable, Uploader, log
from trainwatch.watch import Watcher

MODES = ("online", "offline")
FINISH_TIMEOUT = 10.0
# console output sent in one hand-off at most (a burst waits for the next ones)
CONSOLE_BYTES = 512 * 1024
# what run.checkpoint writes, and what a worker's job writes too
CHECKPOINT_FORMAT = "trainwatch-entry-1"
# an empty payload at least this often says that the script is alive (a silent run ends lost)
HEARTBEAT_SECONDS = 5.0


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], capture_output=True, text=True, timeout=2, cwd=os.getcwd())
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def describe_source() -> dict[str, Any]:
    """Where the script runs: host, Python, torch, CUDA, and its git commit when it runs in a repository."""
    commit = _git("rev-parse", "HEAD")
    source: dict[str, Any] = {
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "script": Path(sys.argv[0]).name or "python",
        "pid": os.getpid(),
    }
    if torch.version.cuda and torch.cuda.is_available():
        source["cuda"] = torch.version.cuda
    if commit:
        source.update(
            git_commit=commit,
            git_branch=_git("rev-parse", "--abbrev-ref", "HEAD") or "",
            git_dirty=bool(_git("status", "--porcelain", "--untracked-files=no")),
        )
    return source


class Run:
    def __init__(
        self,
        outbox: Outbox,
        config: dict[str, Any],
        flush_seconds: float = 1.0,
        total_steps: int | None = None,
        steps_per_epoch: int | None = None,
        console: bool = False,
    ):
        self.config = config
        self._lock = threading.Lock()
        self._recorder = DeviceRecorder()
        self._images: list[tuple[int, torch.Tensor]] = []
        self._pending_describe: dict[str, Any] | None = None
        self._checks: CheckResults | None = None
        self._pending_checks = False
        self._finish: dict[str, Any] | None = None
        self._keys: set[str] = set()
        self._last_step = -1
        self._epoch: int | None = None
        self._total_steps, self._steps_per_epoch = total_steps, steps_per_epoch
        self._started = time.monotonic()
        self._last_payload = time.monotonic()
        self._system: SystemSampler | None = None
        self._last_system = -SYSTEM_SECONDS
        self._watchers: list[Watcher] = []
        self._resume_from: int | None = None
        self._console: list[Line] = []
        self.finished = False
        # (step, value) of the first non-finite loss the background thread saw: the run diverged
        self._diverged: tuple[int, float] | None = None
        self._outbox = outbox
        self._sender = Sender(outbox, self._collect, flush_seconds)
        if console:
            console_capture.listen(self._printed)
        if self._collects_in_background():
            self._sender.start()
        _live.add(self)

    # --- the script's side --------------------------------------------------

    @property
    def spool(self) -> Spool:
        """The folder that keeps what the server does not have yet."""
        assert isinstance(self._outbox, Uploader), "a job's run on a worker has no spool"
        return self._outbox.spool

    @property
    def id(self) -> int | None:
        """The server's id of the run; None until it is known (offline, or the server is away)."""
        run_id: int | None = self.spool.state()["run_id"]
        return run_id

    @property
    def url(self) -> str | None:
        url: str | None = self.spool.state()["url"]
        return url

    @property
    def status(self) -> str:
        """running until finish(); then how the run ended (diverged when its loss became
        inf or NaN, however the script ended it)."""
        return self._finish["status"] if self._finish else "running"

    @property
    def should_stop(self) -> bool:
        """True once someone asked, on the web page or in the admin, for the run to stop."""
        return self._outbox.stop_requested

    @property
    def step(self) -> int:
        """The last step logged."""
        return self._last_step

    @property
    def device(self) -> torch.device:
        """Where to train: the config's `device` when it names one, else the GPU when there is one.
        A queued job's run says which device its worker gave it."""
        wanted = str(self.config.get("device", "auto"))
        if wanted in ("cpu", "cuda") or wanted.startswith("cuda:"):
            return torch.device(wanted)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def plan(self, total_steps: int | None = None, steps_per_epoch: int | None = None) -> None:
        """The run's length, once the script knows it (after building its data loader): the
        pages then show its progress and the diagnosis how far into the run a finding came."""
        with self._lock:
            if total_steps is not None:
                self._total_steps = int(total_steps)
            if steps_per_epoch is not None:
                self._steps_per_epoch = int(steps_per_epoch)

    def flush(self, timeout: float = FINISH_TIMEOUT) -> bool:
        """Send everything logged so far now, waiting at most `timeout` seconds; True when the
        server has it (False offline or while the server is away: it stays in the spool)."""
        return self._sender.flush(timeout)

    def checkpoint(self, state: Any) -> bool:
        """Keep `state` (a dict of tensors, state_dicts, numbers, text) with the server, after
        every step logged so far, so that a run can go on from here: `trainwatch.init(resume=
        <this run's id>)` in a new script, or a queued job requeued after its worker is lost.
        The run's retention keeps the latest few and the best. True once stored (False offline
        or while the server is away: nothing is kept then)."""
        checked_state(state)
        channel, run_id = self._artifact_channel()
        if channel is None or run_id is None:
            log.warning("trainwatch: run.checkpoint: the server is not reachable; this checkpoint is not kept")
            return False
        with tempfile.TemporaryDirectory(prefix="trainwatch-checkpoint-") as folder:
            path = Path(folder) / "checkpoint.pt"
            torch.save({"format": CHECKPOINT_FORMAT, "state": state}, path)
            digest, size = artifacts.sha256_of(path)
            deadline = time.monotonic() + artifacts.timeout()
            try:
                artifacts.send_file(channel, path, digest, size, deadline)
                record = {"step": self._last_step + 1, "epoch": self._epoch or 0, "digest": digest, "size": size}
                artifacts.patient("run.checkpoint", lambda: channel.checkpoints(run_id, record), deadline)
            except (Unreachable, Refused) as error:
                log.warning("trainwatch: run.checkpoint: not kept (%s)", error)
                return False
        return True

    def restore(self) -> Any:
        """The state of the latest checkpoint of the run this one resumes (`trainwatch.init(resume=
        run id)`), on the run's device; None when there is none."""
        if self._resume_from is None:
            return None
        channel, _ = self._artifact_channel()
        if channel is None:
            raise RuntimeError("restore: the server is not reachable, and the checkpoint is kept there")
        deadline = time.monotonic() + artifacts.timeout()
        kept = artifacts.patient("restore", lambda: channel.checkpoints(self._resume_from), deadline)
        if not kept:
            return None
        latest = max(kept, key=lambda checkpoint: checkpoint["step"])
        path = artifacts.fetch(channel, latest["digest"], latest["size"], deadline)
        # data only (checkpoint() refused anything else): a file swapped on the server cannot run code
        saved = torch.load(path, map_location=self.device, weights_only=True)
        return saved["state"]

    def log_artifact(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        type: str = "file",
        aliases: tuple[str, ...] | list[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> artifacts.LoggedArtifact | None:
        """Keep a file, or a folder's files, with the run as a version of the project's artifact
        `name` (by default the file's or folder's name): a new version when the content changed,
        else the version that has it. `type` is model, dataset, checkpoint or file; `aliases`
        (e.g. ["best"]) move to this version. The server gets each file once, in chunks, resumed
        after an interruption. Returns the version; None when the run is offline or the server
        away: it is sent with the rest of the run (at finish, or by `trainwatch sync`)."""
        artifacts.check_type(type)
        entry: dict[str, Any] = {
            "name": name or Path(path).resolve().name,
            "type": type,
            "files": artifacts.describe(path),
            "aliases": list(aliases),
            "metadata": _jsonable(dict(metadata)) if metadata is not None else None,
        }
        channel, run_id = self._artifact_channel()
        if channel is None or run_id is None:
            self.spool.write_artifacts([*self.spool.artifacts(), entry])
            log.info("trainwatch: artifact %s kept for later: the server is not reachable now", entry["name"])
            return None
        return artifacts.send_version(channel, run_id, **entry)

    def use_artifact(self, ref: str, root: str | os.PathLike[str] | None = None) -> Path:
        """The folder that holds the files of artifact `ref` of the run's project (`name`,
        `name:vN` or `name:alias`), downloaded into TRAINWATCH_DIR's cache once; the run is
        recorded as using that version (its page and the artifact's show it)."""
        channel, run_id = self._artifact_channel()
        if channel is None or run_id is None:
            raise RuntimeError("use_artifact: the server is not reachable (or the run is offline)")
        deadline = time.monotonic() + artifacts.timeout()
        manifest = artifacts.patient(f"reading {ref}", lambda: channel.use(run_id, ref), deadline)
        return artifacts.lay_out(manifest, channel, Path(root) if root is not None else None)

    def _artifact_channel(self) -> tuple[artifacts.ArtifactChannel | None, int | None]:
        """Where artifacts go, once the server has the run (None while it is away or offline)."""
        if not self._outbox.online or not self.flush(FINISH_TIMEOUT):
            return None, None
        return self.spool_connection, self.id

    @property
    def spool_connection(self) -> Connection | None:
        assert isinstance(self._outbox, Uploader)
        return self._outbox.connection if isinstance(self._outbox.connection, Connection) else None

    def _send_kept_artifacts(self) -> bool:
        """The artifacts logged while the server was away; True when none is left."""
        kept = self.spool.artifacts()
        channel, run_id = self.spool_connection, self.id
        if not kept or channel is None or run_id is None:
            return not kept
        return send_kept_artifacts(self.spool, channel, run_id)

    def log(self, values: Mapping[str, Any], step: int | None = None) -> None:
        """Numbers at a step (the next one when none is given): Python numbers, or one-element
        tensors, which stay on their device until the background thread copies them."""
        if step is None:
            step = self._last_step + 1
        with self._lock:
            for key, value in values.items():
                if key not in self._keys:
                    self._check_key(key)
                if isinstance(value, torch.Tensor):
                    if value.dim():
                        if value.numel() != 1:
                            raise ValueError(
                                f"log: {key!r} is a tensor of {value.numel()} values; log one number "
                                "per key (use .mean() or split it into keys)"
                            )
                        value = value.reshape(())
                    self._recorder.add(key, step, value.detach() if value.requires_grad else value)
                else:
                    self._recorder.add_host(key, step, float(value))
            if step > self._last_step:
                self._last_step = step
            if "epoch" in values:
                self._epoch = int(float(values["epoch"]))
                # seconds of training at each epoch end, as the worker logs them: the wall-time axis
                self._recorder.add_host("wall_time", step, time.monotonic() - self._started)

    def _check_key(self, key: str) -> None:
        if not isinstance(key, str) or not SERIES_KEY.match(key):
            raise ValueError(f"log: {key!r} is not a key Trainwatch can store: 1 to 200 letters, digits, _ . / -")
        self._keys.add(key)

    def watch(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        ratio_every: int = InstrumentConfig.ratio_every,
        histogram_every: int = InstrumentConfig.histogram_every,
        bins: int = InstrumentConfig.histogram_bins,
        image_every: int | None = None,
        image_shape: tuple[int, int, int] | None = None,
        loss: str | None = None,
        classes: int | None = None,
        before: str = "step",
        dense_steps: int = InstrumentConfig.dense_steps,
    ) -> Watcher:
        """Measure the model at its optimizer's steps: the update-to-weight ratio, gradient and
        weight norm of every parameter tensor every `ratio_every` steps; histograms of
        weights, gradients and activation outputs (dead and saturated fractions) every
        `histogram_every`; the first layer's weights as an image every `image_every` (by default
        ten over the planned run, or every 1000 steps when its length is unknown).
        `loss` ("cross_entropy" or "svm") and `classes` let the diagnosis check the initial loss."""
        watcher = Watcher(
            self,
            model,
            optimizer,
            ratio_every=ratio_every,
            histogram_every=histogram_every,
            bins=bins,
            image_every=image_every,
            image_shape=image_shape,
            before=before,
            dense_steps=dense_steps,
        )
        context = {**watcher.facts(), "loss": loss, "classes": classes}
        with self._lock:
            self._watchers.append(watcher)
            self._pending_describe = {
                "tensors": list(watcher.every_name),
                "kinds": list(watcher.kinds),
                "frozen": list(watcher.frozen),
                "context": {k: v for k, v in context.items() if v is not None},
                "device": str(next(model.parameters()).device),
            }
        return watcher

    def attach_checks(self, sanity: list[Any] | None = None, gradient: list[Any] | None = None) -> None:
        """Results of trainwatch.sanity_checks / gradient_check, shown on the run's page."""
        with self._lock:
            current = self._checks or CheckResults(sanity=[], gradient=[], passed=True)
            merged = CheckResults(
                sanity=sanity if sanity is not None else current["sanity"],
                gradient=gradient if gradient is not None else current["gradient"],
                passed=True,
            )
            merged["passed"] = all(c["passed"] for c in merged["sanity"]) and all(
                part["verdict"] in ("good", "ok") for part in merged["gradient"]
            )
            self._checks, self._pending_checks = merged, True

    def finish(
        self, status: str | None = None, message: str = "", error: str = "", timeout: float | None = None
    ) -> None:
        """End the run: `succeeded` (or `cancelled` when a stop was asked for), `failed` with the
        traceback, or `cancelled`. Waits until the server has everything, at most `timeout` s
        (TRAINWATCH_FINISH_TIMEOUT, 10); what is left stays in the spool for `trainwatch sync`."""
        if self.finished:
            return
        self.finished = True
        for watcher in self._watchers:
            watcher.close()
        console_capture.stop_listening(self._printed)
        status = status or ("cancelled" if self.should_stop else "succeeded")
        steps = f"{self._last_step + 1} steps" if self._last_step >= 0 else "no step"
        with self._lock:
            self._finish = {
                "status": status,
                "message": message or f"{status} after {steps}",
                "error": error,
                "seconds": time.monotonic() - self._started,
            }
        if timeout is None:
            timeout = float(os.environ.get("TRAINWATCH_FINISH_TIMEOUT", FINISH_TIMEOUT))
        delivered = self._sender.close(timeout) and self._send_kept_artifacts()
        _live.discard(self)
        if delivered:
            self.spool.remove()
        elif not self._outbox.online:
            log.warning(
                "trainwatch: run recorded offline in %s; upload it with: trainwatch sync %s",
                self.spool.folder,
                self.spool.folder,
            )
        else:
            why = self._sender.refused or "the server is unreachable"
            log.warning(
                "trainwatch: %s; the rest of the run is in %s; upload it later with: trainwatch sync %s",
                why,
                self.spool.folder,
                self.spool.folder,
            )

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.finish()
        elif issubclass(kind, KeyboardInterrupt):
            self.finish("cancelled", "interrupted (Ctrl-C)")
        else:
            self.finish("failed", f"{kind.__name__}: {error}", "".join(traceback.format_exception(kind, error, trace)))

    # --- the watchers' side (training thread) ---------------------------------

    def _measured_step(self, optimizer_steps: int) -> int:
        """The step a measurement at an optimizer step belongs to: the one after the last logged
        (log(..., step) comes after optimizer.step() in a loop), or the optimizer's count."""
        return self._last_step + 1 if self._last_step >= 0 else optimizer_steps

    def _add_image(self, step: int, tiles: torch.Tensor) -> None:
        with self._lock:
            self._images.append((step, tiles))

    # --- the background thread -------------------------------------------------

    def _collect(self, closing: bool) -> None:
        """Take what the training thread buffered, copy it to the host (one transfer per device),
        and spool it as payloads."""
        with self._lock:
            recorder, self._recorder = self._recorder, DeviceRecorder()
            images, self._images = self._images, []
            describe, self._pending_describe = self._pending_describe, None
            checks = self._checks if self._pending_checks else None
            self._pending_checks = False
            finish = self._finish if closing else None
            console = self._take_console(closing)
        batch, histograms = recorder.drain()
        if self._diverged is None and "loss" in batch:
            steps, losses = batch["loss"]
            bad = ~np.isfinite(losses)
            if bad.any():
                first = int(np.argmax(bad))
                self._diverged = (int(steps[first]), float(losses[first]))
        if finish is not None and self._diverged is not None and finish["status"] == "succeeded":
            step, value = self._diverged
            finish = {**finish, "status": "diverged", "message": f"the loss became {value} at step {step}"}
            with self._lock:
                self._finish = finish
        self._sample_system(batch)
        records = [ImageRecord("first_layer", step, tile_grid(tiles.cpu().numpy())) for step, tiles in images]
        heartbeat_due = time.monotonic() - self._last_payload >= HEARTBEAT_SECONDS
        if not (batch or histograms or records or describe or checks or finish or console or heartbeat_due):
            return
        self._outbox.put(
            Payload(
                0,
                batch,
                histograms,
                records,
                self._progress(),
                describe,
                dict(checks) if checks else None,
                finish,
                console,
            )
        )
        self._last_payload = time.monotonic()

    def _collects_in_background(self) -> bool:
        """Whether this run needs its background thread (a worker's own trainer writes for itself)."""
        return True

    def _printed(self, lines: list[Line]) -> None:
        with self._lock:
            self._console.extend(lines)

    def _take_console(self, closing: bool) -> list[Line]:
        """The lines printed since the last hand-off (the caller holds the lock); at most
        CONSOLE_BYTES a hand-off, the rest with the next, all of it at the end."""
        taken, size = 0, 0
        for _, _, text in self._console:
            size += len(text) + 1
            if size > CONSOLE_BYTES and taken and not closing:
                break
            taken += 1
        lines, self._console = self._console[:taken], self._console[taken:]
        return lines

    def _samples_system(self) -> bool:
        """Whether this run's process is sampled here (a worker's own sink samples for itself)."""
        return True

    def _sample_system(self, batch: ScalarBatch) -> None:
        """CPU and memory of this process (and its GPU's) every SYSTEM_SECONDS, at the latest
        step, as a worker samples its runs: the run page's system panel."""
        now = time.monotonic()
        if not self._samples_system() or self._last_step < 0 or now - self._last_system < SYSTEM_SECONDS:
            return
        self._last_system = now
        try:
            if self._system is None:
                self._system = SystemSampler(str(self.device))
            values = self._system.sample()
        except Exception as error:  # never the training's problem: the panel stays empty
            log.info("trainwatch: no system metrics (%s)", error)
            self._last_system = math.inf
            return
        step = np.array([self._last_step], dtype=np.int64)
        for key, value in values.items():
            batch.setdefault(key, (step, np.array([value], dtype=np.float64)))

    def _progress(self) -> dict[str, int | None]:
        steps_done = self._last_step + 1
        per_epoch = self._steps_per_epoch
        if per_epoch is None and self._epoch:
            per_epoch = max(1, round(steps_done / self._epoch))
        return {
            "step": steps_done,
            "epoch": self._epoch or 0,
            "total_steps": self._total_steps,
            "steps_per_epoch": per_epoch,
        }


def checked_state(state: Any) -> None:
    """A checkpoint's state is data: refused, with where, when it holds anything else."""
    problem = checkpoint_format.not_plain(state)
    if problem:
        raise TypeError(
            f"run.checkpoint: {problem}; a checkpoint holds tensors, numbers, text and dicts, lists and "
            "tuples of them (state_dict() gives those), so that a resume reads it back as data, never code"
        )


def send_kept_artifacts(spool: Spool, channel: artifacts.ArtifactChannel, run_id: int) -> bool:
    """Send a spool's artifacts to the run's server; True when all went (those sent leave the spool)."""
    kept = spool.artifacts()
    while kept:
        try:
            artifacts.send_version(channel, run_id, **kept[0])
        except (Unreachable, Refused, OSError) as error:
            log.warning("trainwatch: artifact %s not sent (%s); it stays in %s", kept[0]["name"], error, spool.folder)
            return False
        kept = kept[1:]
        spool.write_artifacts(kept)
    return True


_live: weakref.WeakSet[Run] = weakref.WeakSet()
_previous_excepthook = sys.excepthook


def _excepthook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
    """A script that dies of an exception ends its runs failed, with the traceback (Ctrl-C: cancelled)."""
    for run in list(_live):
        if issubclass(kind, KeyboardInterrupt):
            run.finish("cancelled", "interrupted (Ctrl-C)")
        else:
            run.finish("failed", f"{kind.__name__}: {error}", "".join(traceback.format_exception(kind, error, trace)))
    _previous_excepthook(kind, error, trace)


@atexit.register
def _finish_at_exit() -> None:
    """A script that simply ends has succeeded with the runs it did not finish."""
    for run in list(_live):
        run.finish()


def init(
    project: str = "default",
    name: str = "",
    config: Mapping[str, Any] | None = None,
    tags: list[str] | None = None,
    *,
    url: str | None = None,
    token: str | None = None,
    mode: str | None = None,
    total_steps: int | None = None,
    steps_per_epoch: int | None = None,
    flush_seconds: float = 1.0,
    resume: int | None = None,
    console: bool = True,
) -> Run:
    """Start a run. The server and the token come from the arguments or TRAINWATCH_URL and
    TRAINWATCH_TOKEN; `mode` (or TRAINWATCH_MODE) "offline" records it in the spool folder
    only, for `trainwatch sync` later. A server that cannot be reached now is tried again in the
    background while the script trains. What the script prints goes to the run's page too
    (`console=False`: not). `resume`: the id of a run whose latest checkpoint `run.restore()`
    returns."""
    mode = mode or os.environ.get("TRAINWATCH_MODE", "online")
    if mode not in MODES:
        raise ValueError(f"mode: must be one of {', '.join(MODES)}, got {mode!r}")
    config = dict(config or {})
    connection = None
    if mode == "online":
        url = url or os.environ.get("TRAINWATCH_URL")
        token = token or os.environ.get("TRAINWATCH_TOKEN")
        if not url or not token:
            raise ValueError(
                "trainwatch.init: give url and token, or set TRAINWATCH_URL and TRAINWATCH_TOKEN "
                "(a token comes from the Tokens page); or TRAINWATCH_MODE=offline"
            )
        connection = Connection(url, token)
    client_id = uuid.uuid4().hex
    request = {
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(),
        "project": project,
        "name": name,
        "config": _jsonable(config),
        "tags": tags or [],
        "source": describe_source(),
        "environment": describe_environment(torch),
        "client_id": client_id,
    }
    spool = Spool.create(client_id, request)
    if sys.excepthook is not _excepthook:
        globals()["_previous_excepthook"] = sys.excepthook
        sys.excepthook = _excepthook
    if resume is not None and (isinstance(resume, bool) or not isinstance(resume, int) or resume < 1):
        raise ValueError(f"trainwatch.init: resume must be the id of a run (a whole number), got {resume!r}")
    run = Run(Uploader(spool, connection), config, flush_seconds, total_steps, steps_per_epoch, console)
    run._resume_from = resume
    return run


def _jsonable(value: Any) -> Any:
    """A config as JSON: tensors and NumPy numbers as numbers, anything else as its text."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
