"""The binary payload a client sends the tracker: a hand-off of sink records (scalars,
histograms, images, progress), encoded once on the training machine and decoded on the
server, with the same arrays the worker's sink writes. Not JSON per point: a header says
what the body holds, and the body is the packed little-endian arrays themselves.

    b"TWB1" | header length (uint32 LE) | header (JSON, UTF-8) | body

    header: {"seq": n,
             "scalars": [[key, count], ...],        body: count int64 steps, then count float64 values
             "histograms": [[key, step, low, high, bins, mean, std, zero_fraction, saturated_fraction,
                             nonfinite], ...],     body: bins int64 counts (zeros when nonfinite > 0,
                                                    and low ... zero_fraction NaN: no range)
             "images": [[key, step, height, width, channels], ...],
                                                    body: height * width * channels uint8
             "progress": {"step": n, "epoch": e, "total_steps": n|null, "steps_per_epoch": n|null} | null,
             "describe": {"tensors": [parameter names in model order], "kinds": [each one's kind],
                          "frozen": [the names of those that do not learn], "context": {...},
                          "device": text} | null,
             "checks": {"sanity": [...], "gradient": [...], "passed": bool} | null,
             "finish": {"status": "succeeded" | "failed" | "cancelled" | "diverged", "message": text, "error": text,
                        "seconds": seconds of training} | null,
             "console": [[seconds since the epoch, "stdout" | "stderr", line], ...]}   (optional)

in that order. Payloads go in `seq` order on one channel, so what `watch` learnt about the
model, the results of checks and the run's end arrive in order with the measurements,
online or from a spool uploaded later. `decode` trusts nothing: every announced size is checked against the body, and
its errors name the part that is wrong.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainer import safe_json
from trainer.console import MAX_LINE, STREAMS, Line
from trainer.sink import HistogramRecord, ImageRecord, ScalarBatch
from trainer.tensor_names import PARAMETER_KINDS

MAGIC = b"TWB1"
_LENGTH = struct.Struct("<I")
STEP = np.dtype("<i8")
VALUE = np.dtype("<f8")
PIXEL = np.dtype("u1")
MAX_HEADER_BYTES = 4 * 1024 * 1024
# a stored series key: what the series API and every page accept
SERIES_KEY = re.compile(r"^[A-Za-z0-9_./-]{1,200}$")
MAX_STEP = 2**62
MAX_BINS = 4096
MAX_IMAGE_SIDE = 8192
MAX_TENSORS = 10_000
MAX_TEXT = 100_000
FINISH_STATUSES = ("succeeded", "failed", "cancelled", "diverged")
CONTEXT_FIELDS = {"optimizer": str, "lr": float, "loss": str, "classes": int, "activation": str}


class WireError(ValueError):
    """The payload is malformed; the message says which part and how."""


@dataclass
class Payload:
    seq: int
    scalars: ScalarBatch = field(default_factory=dict)
    histograms: list[HistogramRecord] = field(default_factory=list)
    images: list[ImageRecord] = field(default_factory=list)
    progress: dict[str, int | None] | None = None
    describe: dict[str, Any] | None = None
    checks: dict[str, Any] | None = None
    finish: dict[str, Any] | None = None
    console: list[Line] = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(len(steps) for steps, _ in self.scalars.values())


def encode(payload: Payload) -> bytes:
    header: dict[str, Any] = {
        "seq": payload.seq,
        "scalars": [],
        "histograms": [],
        "images": [],
        "progress": payload.progress,
        "describe": payload.describe,
        "checks": payload.checks,
        "finish": payload.finish,
    }
    if payload.console:
        header["console"] = [list(line) for line in payload.console]
    body: list[bytes] = []
    for key, (steps, values) in payload.scalars.items():
        header["scalars"].append([key, len(steps)])
        body += [np.asarray(steps, dtype=STEP).tobytes(), np.asarray(values, dtype=VALUE).tobytes()]
    for h in payload.histograms:
        counts = np.asarray(h.counts, dtype=STEP)
        header["histograms"].append(
            [
                h.key,
                int(h.step),
                float(h.low),
                float(h.high),
                len(counts),
                float(h.mean),
                float(h.std),
                float(h.zero_fraction),
                float(h.saturated_fraction),
                int(h.nonfinite),
            ]
        )
        body.append(counts.tobytes())
    for image in payload.images:
        pixels = np.ascontiguousarray(image.pixels, dtype=PIXEL)
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        header["images"].append([image.key, int(image.step), pixels.shape[0], pixels.shape[1], channels])
        body.append(pixels.tobytes())
    encoded = json.dumps(header, allow_nan=True).encode()
    return b"".join([MAGIC, _LENGTH.pack(len(encoded)), encoded, *body])


class _Reader:
    def __init__(self, body: memoryview):
        self.body = body
        self.offset = 0

    def take(self, count: int, dtype: np.dtype, what: str) -> np.ndarray:
        size = count * dtype.itemsize
        if self.offset + size > len(self.body):
            raise WireError(
                f"{what}: {count} values announced, but the body ends {self.offset + size - len(self.body)} bytes short"
            )
        array = np.frombuffer(self.body, dtype=dtype, count=count, offset=self.offset)
        self.offset += size
        return array


def _key(value: Any, what: str) -> str:
    if not isinstance(value, str) or not SERIES_KEY.match(value):
        raise WireError(f"{what}: {value!r} is not a key (1 to 200 letters, digits, _ . / -)")
    return value


def _whole(value: Any, what: str, low: int = 0, high: int = MAX_STEP) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise WireError(f"{what}: must be a whole number from {low} to {high}, got {value!r}")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WireError(f"{what}: must be a number, got {value!r}")
    return float(value)


def _entries(header: dict[str, Any], name: str, size: int, largest: int | None = None) -> list[list[Any]]:
    entries = header.get(name, [])
    sizes = range(size, (largest or size) + 1)
    if not isinstance(entries, list) or any(not isinstance(e, list) or len(e) not in sizes for e in entries):
        fields = f"{size}" if largest is None else f"{size} or {largest}"
        raise WireError(f"{name}: must be a list of [{fields} fields] entries")
    return entries


def announced_seq(data: bytes) -> int | None:
    """The seq a payload's header announces, when it can be read at all: a payload refused for
    what it holds still takes its place in the run's order."""
    try:
        (length,) = _LENGTH.unpack_from(data, 4)
        if data[:4] != MAGIC or length > MAX_HEADER_BYTES:
            return None
        seq = safe_json.loads(data[8 : 8 + length]).get("seq")
    except (struct.error, ValueError, AttributeError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq <= MAX_STEP else None


def decode(data: bytes) -> Payload:
    if data[:4] != MAGIC:
        raise WireError("not a Trainwatch payload (it must start with TWB1); send it with the trainwatch client")
    if len(data) < 8:
        raise WireError("the payload ends before its header length")
    (length,) = _LENGTH.unpack_from(data, 4)
    if length > MAX_HEADER_BYTES or 8 + length > len(data):
        raise WireError(f"header: {length} bytes announced, {len(data) - 8} present (at most {MAX_HEADER_BYTES})")
    try:
        header = safe_json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WireError(f"header: not valid JSON: {error}") from None
    if not isinstance(header, dict):
        raise WireError("header: must be a JSON object")
    unknown = set(header) - {
        "seq",
        "scalars",
        "histograms",
        "images",
        "progress",
        "describe",
        "checks",
        "finish",
        "console",
    }
    if unknown:
        raise WireError(f"header: unknown fields {', '.join(sorted(unknown))}")
    payload = Payload(seq=_whole(header.get("seq"), "seq"))
    for part in ("progress", "describe", "checks", "finish"):
        problem = safe_json.unclean(header.get(part), part)
        if problem:
            raise WireError(problem)
    reader = _Reader(memoryview(data)[8 + length :])
    for index, (key, count) in enumerate(_entries(header, "scalars", 2)):
        what = f"scalars[{index}]"
        key = _key(key, what)
        if key in payload.scalars:
            raise WireError(f"{what}: {key!r} appears twice")
        count = _whole(count, f"{what} count", 0, 10**9)
        steps = reader.take(count, STEP, f"{what} ({key!r}) steps")
        values = reader.take(count, VALUE, f"{what} ({key!r}) values")
        if count and (steps.min() < 0 or steps.max() > MAX_STEP):
            raise WireError(f"{what} ({key!r}): steps must be from 0 to {MAX_STEP}")
        payload.scalars[key] = (steps.astype(np.int64), values.astype(np.float64))
    for index, entry in enumerate(_entries(header, "histograms", 9, 10)):
        what = f"histograms[{index}]"
        key, step = _key(entry[0], what), _whole(entry[1], f"{what} step")
        low, high, mean, std, zero, saturated = (_number(v, what) for v in (*entry[2:4], *entry[5:9]))
        bins = _whole(entry[4], f"{what} bins", 1, MAX_BINS)
        # NaN and infinite values (a run diverging); a client before this field sent none
        nonfinite = _whole(entry[9], f"{what} nonfinite") if len(entry) == 10 else 0
        counts = reader.take(bins, STEP, f"{what} ({key!r}) counts")
        if nonfinite:
            # no range to bin over: kept as what it is, a tensor with this many NaN or infinite values
            low = high = mean = std = zero = math.nan
            counts = np.zeros(bins, dtype=STEP)
        elif not (math.isfinite(low) and math.isfinite(high)):
            if len(entry) == 9:
                continue  # an older client's histogram of a diverged tensor: no range, no count
            raise WireError(f"{what} ({key!r}): a range of {low}, {high} needs a count of NaN and infinite values")
        elif high < low:
            raise WireError(f"{what} ({key!r}): needs low <= high, got {low}, {high}")
        payload.histograms.append(
            HistogramRecord(key, step, low, high, counts.astype(np.int64), mean, std, zero, saturated, nonfinite)
        )
    for index, entry in enumerate(_entries(header, "images", 5)):
        what = f"images[{index}]"
        key, step = _key(entry[0], what), _whole(entry[1], f"{what} step")
        height, width = (
            _whole(entry[2], f"{what} height", 1, MAX_IMAGE_SIDE),
            _whole(entry[3], f"{what} width", 1, MAX_IMAGE_SIDE),
        )
        channels = entry[4]
        if channels not in (1, 3):
            raise WireError(f"{what} channels: must be 1 (grey) or 3 (RGB), got {channels!r}")
        pixels = reader.take(height * width * channels, PIXEL, f"{what} ({key!r}) pixels")
        shape = (height, width) if channels == 1 else (height, width, 3)
        payload.images.append(ImageRecord(key, step, pixels.reshape(shape).copy()))
    if reader.offset != len(reader.body):
        raise WireError(f"the body has {len(reader.body) - reader.offset} bytes more than the header announces")
    progress = header.get("progress")
    if progress is not None:
        if not isinstance(progress, dict) or set(progress) - {"step", "epoch", "total_steps", "steps_per_epoch"}:
            raise WireError("progress: must be an object with step, epoch, total_steps, steps_per_epoch")
        payload.progress = {
            name: None if progress.get(name) is None else _whole(progress[name], f"progress.{name}")
            for name in ("step", "epoch", "total_steps", "steps_per_epoch")
        }
    payload.describe = _describe(header.get("describe"))
    payload.checks = _checks(header.get("checks"))
    payload.finish = _finish(header.get("finish"))
    payload.console = _console(header.get("console", []))
    return payload


def _console(entries: Any) -> list[Line]:
    if not isinstance(entries, list):
        raise WireError("console: must be a list of [time, stream, line] entries")
    lines: list[Line] = []
    for index, entry in enumerate(entries):
        what = f"console[{index}]"
        if not isinstance(entry, list) or len(entry) != 3:
            raise WireError(f"{what}: must be [time, stream, line]")
        at, stream, text = entry
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not 0 <= at < 1e11:
            raise WireError(f"{what}: the time must be seconds since the epoch, got {at!r}")
        if stream not in STREAMS:
            raise WireError(f"{what}: the stream must be one of {', '.join(STREAMS)}, got {stream!r}")
        if not isinstance(text, str) or len(text) > MAX_LINE or "\n" in text or "\x00" in text:
            raise WireError(f"{what}: the line must be text of at most {MAX_LINE} characters, without newline or NUL")
        lines.append((float(at), stream, text))
    return lines


def _describe(describe: Any) -> dict[str, Any] | None:
    if describe is None:
        return None
    if not isinstance(describe, dict) or set(describe) - {"tensors", "kinds", "frozen", "context", "device"}:
        raise WireError("describe: must be an object with tensors, kinds, frozen, context and device")
    device = describe.get("device", "")
    if not isinstance(device, str) or len(device) > 64:
        raise WireError("describe.device: must be text of at most 64 characters")
    tensors = describe.get("tensors", [])
    if not isinstance(tensors, list) or len(tensors) > MAX_TENSORS:
        raise WireError(f"describe.tensors: must be a list of at most {MAX_TENSORS} parameter names")
    for index, name in enumerate(tensors):
        _key(name, f"describe.tensors[{index}]")
    kinds = describe.get("kinds", [])
    if not isinstance(kinds, list) or (kinds and len(kinds) != len(tensors)):
        raise WireError("describe.kinds: must be a list with one kind per tensor of describe.tensors")
    for index, kind in enumerate(kinds):
        if kind not in PARAMETER_KINDS:
            raise WireError(f"describe.kinds[{index}]: must be one of {', '.join(PARAMETER_KINDS)}, got {kind!r}")
    frozen = describe.get("frozen", [])
    known = set(tensors)
    if not isinstance(frozen, list) or not all(isinstance(name, str) and name in known for name in frozen):
        raise WireError("describe.frozen: must be a list of names from describe.tensors")
    context = describe.get("context", {})
    if not isinstance(context, dict):
        raise WireError("describe.context: must be an object")
    clean: dict[str, Any] = {}
    for name, value in context.items():
        kind = CONTEXT_FIELDS.get(name)
        if kind is None:
            raise WireError(f"describe.context.{name}: unknown; allowed: {', '.join(CONTEXT_FIELDS)}")
        if value is None:
            clean[name] = None
        elif kind is int:
            clean[name] = _whole(value, f"describe.context.{name}", 1, 1_000_000)
        elif kind is float:
            clean[name] = _number(value, f"describe.context.{name}")
        elif not isinstance(value, str) or len(value) > 100:
            raise WireError(f"describe.context.{name}: must be text of at most 100 characters")
        else:
            clean[name] = value
    return {"tensors": tensors, "kinds": kinds, "frozen": frozen, "context": clean, "device": device}


def _checks(checks: Any) -> dict[str, Any] | None:
    if checks is None:
        return None
    if (
        not isinstance(checks, dict)
        or not isinstance(checks.get("sanity", []), list)
        or not isinstance(checks.get("gradient", []), list)
        or len(json.dumps(checks)) > MAX_TEXT
    ):
        raise WireError(f"checks: must be an object with sanity and gradient lists, at most {MAX_TEXT} bytes")
    return checks


def _finish(finish: Any) -> dict[str, Any] | None:
    if finish is None:
        return None
    if not isinstance(finish, dict) or finish.get("status") not in FINISH_STATUSES:
        raise WireError(f"finish.status: must be one of {', '.join(FINISH_STATUSES)}")
    texts = {name: finish.get(name, "") for name in ("message", "error")}
    for name, text in texts.items():
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            raise WireError(f"finish.{name}: must be text of at most {MAX_TEXT} characters")
    seconds = finish.get("seconds")
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < 10**9
    ):
        raise WireError(f"finish.seconds: must be a number of seconds >= 0, got {seconds!r}")
    return {"status": finish["status"], **texts, "seconds": seconds}
