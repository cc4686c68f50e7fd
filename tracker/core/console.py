"""A run's console output (trainer.console lines), stored in chunks in order, capped per run
(TRAINWATCH_CONSOLE_MAX_BYTES) with a mark where it was cut, and read back by the run page:
the tail, what came after a chunk it has, a search, the whole as a text file."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.db.models import F, Max

from tracker.models import ConsoleChunk, Run
from trainer.console import Line

# the stream of the mark where the output was cut
CUT = "cut"
MAX_ANSWER_LINES = 5000


def append(run_id: int, lines: Iterable[Line]) -> None:
    """Store lines of the run's output after those it has (in the caller's transaction): a
    chunk per run of consecutive lines of one stream. Past the cap, a mark once, then nothing
    but the count of bytes not kept."""
    lines = list(lines)
    if not lines:
        return
    counters = Run.objects.values("console_bytes", "console_dropped").get(pk=run_id)
    room = settings.TRAINWATCH_CONSOLE_MAX_BYTES - counters["console_bytes"]
    kept: list[Line] = []
    dropped = 0
    for line in lines:
        size = len(line[2].encode()) + 1
        if not dropped and not counters["console_dropped"] and size <= room:
            kept.append(line)
            room -= size
        else:
            dropped += size
    seq = (ConsoleChunk.objects.filter(run_id=run_id).aggregate(top=Max("seq"))["top"] or 0) + 1
    chunks = []
    for stream, group in itertools.groupby(kept, key=lambda line: line[1]):
        entries = list(group)
        chunks.append(
            ConsoleChunk(
                run_id=run_id,
                seq=seq,
                stream=stream,
                times=[at for at, _, _ in entries],
                text="\n".join(text for _, _, text in entries),
            )
        )
        seq += 1
    if dropped and not counters["console_dropped"]:
        limit = settings.TRAINWATCH_CONSOLE_MAX_BYTES
        mark = f"[output cut here: the run printed more than {limit:,} bytes (TRAINWATCH_CONSOLE_MAX_BYTES)]"
        chunks.append(ConsoleChunk(run_id=run_id, seq=seq, stream=CUT, times=[lines[-1][0]], text=mark))
    ConsoleChunk.objects.bulk_create(chunks)
    kept_bytes = sum(len(text.encode()) + 1 for _, _, text in kept)
    Run.objects.filter(pk=run_id).update(
        console_bytes=F("console_bytes") + kept_bytes, console_dropped=F("console_dropped") + dropped
    )


def _lines(chunks: Iterable[ConsoleChunk]) -> Iterator[list[Any]]:
    for chunk in chunks:
        for at, text in zip(chunk.times, chunk.text.split("\n")):
            yield [chunk.seq, at, chunk.stream, text]


def read(run: Run, after: int | None = None, tail: int = 1000, query: str = "") -> dict[str, Any]:
    """The page's answer: lines [seq, time, stream, text] (the last `tail`, or all those after
    chunk `after`; with `query`, only the lines that hold it, case-insensitive), the last chunk
    it holds, and the run's counters."""
    chunks = ConsoleChunk.objects.filter(run=run)
    if query:
        chunks = chunks.filter(text__icontains=query)
    last = chunks.aggregate(top=Max("seq"))["top"] or 0
    if after is not None:
        found = list(_lines(chunks.filter(seq__gt=after).order_by("seq")[:MAX_ANSWER_LINES]))
    else:
        newest, count = [], 0
        for chunk in chunks.order_by("-seq").iterator(chunk_size=100):
            newest.append(chunk)
            count += len(chunk.times)
            if count >= tail:
                break
        found = list(_lines(reversed(newest)))
    if query:
        folded = query.casefold()
        found = [line for line in found if folded in line[3].casefold()]
    else:
        found = found[-tail:] if after is None else found
    return {
        "lines": found[-MAX_ANSWER_LINES:],
        "last": last,
        "bytes": run.console_bytes,
        "dropped": run.console_dropped,
        "live": not run.is_finished,
    }


def as_text(run: Run) -> Iterator[str]:
    """The whole output kept, a line each: its time (UTC), its stream, its text."""
    for chunk in ConsoleChunk.objects.filter(run=run).order_by("seq").iterator(chunk_size=200):
        for at, text in zip(chunk.times, chunk.text.split("\n")):
            stamp = dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            yield f"{stamp} {chunk.stream:<6} {text}\n"
    if run.console_dropped:
        yield f"[{run.console_dropped:,} bytes of output past the cap were not kept]\n"


def last_lines(run: Run, count: int = 30) -> list[list[Any]]:
    """A failed run's last lines, shown beside its traceback."""
    lines: list[list[Any]] = read(run, tail=count)["lines"]
    return lines
