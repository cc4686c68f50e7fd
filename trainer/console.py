"""A training process's console output as lines: (seconds since the epoch, "stdout" or
"stderr", the line's text without its newline). A worker captures its job's file descriptors
(tracker.worker.console), a script's client its Python streams (trainwatch.console); both cut
the text they get into lines here, and the server stores and shows them (tracker.core.console)."""

from __future__ import annotations

import codecs
import time

STREAMS = ("stdout", "stderr")
# a longer line is cut into lines of this many characters
MAX_LINE = 10_000
Line = tuple[float, str, str]


class LineCutter:
    """Text (or bytes, decoded as UTF-8 whatever their cut) as it comes, into whole lines with
    the time each was ended; a line without its end waits for the rest."""

    def __init__(self, stream: str):
        self.stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    def feed(self, data: bytes | str, now: float | None = None) -> list[Line]:
        text = self._decoder.decode(data) if isinstance(data, bytes) else data
        if not text:
            return []
        at = time.time() if now is None else now
        pieces = (self._partial + text).split("\n")
        self._partial = pieces.pop()
        lines: list[Line] = []
        for piece in pieces:
            lines.extend(self._cut(piece.removesuffix("\r"), at))
        while len(self._partial) >= MAX_LINE:
            lines.append((at, self.stream, self._partial[:MAX_LINE]))
            self._partial = self._partial[MAX_LINE:]
        return lines

    def close(self, now: float | None = None) -> list[Line]:
        """The last line, when the output ended without a newline."""
        rest = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        return self._cut(rest, time.time() if now is None else now) if rest else []

    def _cut(self, text: str, at: float) -> list[Line]:
        if len(text) <= MAX_LINE:
            return [(at, self.stream, text)]
        return [(at, self.stream, text[i : i + MAX_LINE]) for i in range(0, len(text), MAX_LINE)]
