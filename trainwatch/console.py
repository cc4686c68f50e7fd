"""A script's console output for its runs: sys.stdout and sys.stderr are wrapped while a run
that keeps its console is live, so that what the script prints still appears where it did and
also goes, line by line (trainer.console), to each such run, which sends it with its
measurements. Output written below Python (a C extension's printf) is not seen here; a queued
job's is (tracker.worker.console)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from trainer.console import Line, LineCutter

_lock = threading.Lock()
_listeners: list[Callable[[list[Line]], None]] = []
_originals: dict[str, TextIO] = {}


class Tee:
    """A text stream that writes through to the original and hands complete lines on."""

    def __init__(self, original: TextIO, name: str):
        self._original = original
        self._cutter = LineCutter(name)
        self._cut_lock = threading.Lock()

    def write(self, text: str) -> int:
        written = self._original.write(text)
        with self._cut_lock:
            lines = self._cutter.feed(text)
        if lines:
            with _lock:
                listeners = list(_listeners)
            for listener in listeners:
                listener(lines)
        return written

    def flush(self) -> None:
        self._original.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno, ...: the original's
        return getattr(self._original, name)


def listen(listener: Callable[[list[Line]], None]) -> None:
    """Hand the lines printed from now on to `listener` too."""
    with _lock:
        if not _listeners:
            for name in ("stdout", "stderr"):
                original = getattr(sys, name)
                if original is not None:
                    _originals[name] = original
                    setattr(sys, name, Tee(original, name))
        _listeners.append(listener)


def stop_listening(listener: Callable[[list[Line]], None]) -> None:
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)
        if not _listeners:
            for name, original in _originals.items():
                if isinstance(getattr(sys, name), Tee):
                    setattr(sys, name, original)
            _originals.clear()
