"""A job's console output on a worker: its process's file descriptors 1 and 2 (Python's
prints, a C extension's printf, a subprocess it starts) go to pipes while the job runs; a
thread per pipe cuts what comes into lines (trainer.console) for the run's DatabaseSink, which
stores them with its next flush. The worker's own output goes back where it went after."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from types import TracebackType

from trainer.console import Line, LineCutter

READ_BYTES = 64 * 1024


class ConsoleCapture:
    def __init__(self) -> None:
        self._lines: list[Line] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._saved: list[tuple[int, int]] = []
        self._streams: tuple[object, object] | None = None

    def drain(self) -> list[Line]:
        """The lines captured since the last call, in order."""
        with self._lock:
            lines, self._lines = self._lines, []
        return lines

    def __enter__(self) -> ConsoleCapture:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(AttributeError, ValueError):
                stream.flush()
        self._streams = (sys.stdout, sys.stderr)
        for fd, name in ((1, "stdout"), (2, "stderr")):
            read_end, write_end = os.pipe()
            self._saved.append((fd, os.dup(fd)))
            os.dup2(write_end, fd)
            os.close(write_end)
            thread = threading.Thread(target=self._read, args=(read_end, name), name=f"console {name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        # Python's own streams write to the descriptors (a Celery worker replaces them with a
        # logger), line by line, so that prints and a C extension's output keep their order
        sys.stdout = io.TextIOWrapper(os.fdopen(os.dup(1), "wb", buffering=0), line_buffering=True, write_through=True)
        sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(2), "wb", buffering=0), line_buffering=True, write_through=True)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
                stream.close()
            except (OSError, ValueError):
                pass
        if self._streams is not None:
            sys.stdout, sys.stderr = self._streams
        for fd, saved in self._saved:
            os.dup2(saved, fd)  # the pipe's last writer closes: its thread reads to the end
            os.close(saved)
        for thread in self._threads:
            thread.join(30)

    def _read(self, fd: int, name: str) -> None:
        cutter = LineCutter(name)
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while data := pipe.read(READ_BYTES):
                lines = cutter.feed(data)
                if lines:
                    with self._lock:
                        self._lines.extend(lines)
        with self._lock:
            self._lines.extend(cutter.close())
