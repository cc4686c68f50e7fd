"""A job that prints: Python's print, then a C library's printf, in bursts."""

from __future__ import annotations

import ctypes
import time
from typing import Any

import trainwatch


@trainwatch.job(
    params={
        "lines": {"type": "int", "min": 1, "max": 1_000_000, "default": 100_000},
        "bursts": {"type": "int", "min": 1, "max": 1000, "default": 10},
        "pause": {"type": "float", "min": 0.0, "max": 10.0, "default": 0.3},
    },
    epochs=1,
)
def train(run: Any) -> None:
    """Half the lines with print, half with the C library's printf (numbered, in order)."""
    config = run.config
    libc = ctypes.CDLL(None)
    total, bursts = config["lines"], config["bursts"]
    per_burst = max(1, total // bursts)
    for burst in range(bursts):
        first, end = burst * per_burst, min(total, (burst + 1) * per_burst)
        half = first + (end - first) // 2
        for number in range(first, half):
            print(f"line {number} from python")
        for number in range(half, end):
            libc.printf(b"line %d from c\n", number)
        libc.fflush(None)
        run.log({"loss": 1.0 / (burst + 1)}, step=burst)
        time.sleep(config["pause"])
