"""The default instrumentation's cost in instructions, counted by valgrind's callgrind: the same
count for the same code and inputs whatever else the machine is doing, where bench/overhead.py's
step times move by several per cent from one run to the next on a shared machine. For telling
whether a change to the instrumentation made it cheaper; the budget is bench/overhead.py's.

It counts the windows bench/overhead.py times (from the first step to the end of the last epoch)
of the same digits-MLP runs on the CPU, one thread, each after a warm-up run in the same process:
the plain loop, the default instrumentation and the one without the dense start. Dispatch-bound
code (the instrumentation's) runs fewer instructions a second than the training's matrix
products, so the ratio of instructions is lower than the ratio of times.

    python bench/instructions.py [--epochs 30]
Needs valgrind (with its headers, Debian's valgrind package) and a C compiler; about five
minutes. Ends with one line: plain_instructions_per_step=<N>
instrumented_instructions_per_step=<N> instruction_ratio=<R> steady_instruction_ratio=<R>
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# callgrind's client requests, which only C can make: start counting, and write what was
# counted since the last dump under a name
CLIENT_REQUESTS = r"""
#include <valgrind/callgrind.h>
void window_open(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_ZERO_STATS; }
void window_close(const char *name) { CALLGRIND_DUMP_STATS_AT(name); CALLGRIND_STOP_INSTRUMENTATION; }
"""
VARIANTS = ("plain", "default", "steady")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--library", help=argparse.SUPPRESS)  # set when run under valgrind
    args = parser.parse_args()
    if args.library:
        count_windows(args.library, args.epochs)
        return
    with tempfile.TemporaryDirectory() as folder:
        library = Path(folder) / "windows.so"
        source = Path(folder) / "windows.c"
        source.write_text(CLIENT_REQUESTS)
        subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(library), str(source)], check=True)
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",  # the imports and set-up run uninstrumented: minutes faster
            f"--callgrind-out-file={folder}/counts",
            sys.executable,
            __file__,
            f"--epochs={args.epochs}",
            f"--library={library}",
        ]
        child = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        if child.returncode != 0:
            sys.exit(f"valgrind failed ({child.returncode}):\n{child.stderr[-3000:]}")
        counts = read_dumps(Path(folder))
        steps = int(child.stdout.split("steps=")[1].split()[0])
    missing = [name for name in VARIANTS if name not in counts]
    if missing:
        sys.exit(f"no count for {', '.join(missing)}")
    plain, default, steady = (counts[name] / steps for name in VARIANTS)
    print(f"digits MLP (64 hidden, batch 64) on cpu (1 thread), {args.epochs} epochs, {steps} steps, callgrind")
    print(f"plain loop:              {plain:12,.0f} instructions/step")
    print(f"default instrumentation: {default:12,.0f} instructions/step (+{default - plain:,.0f})")
    print(f"without the dense start: {steady:12,.0f} instructions/step (+{steady - plain:,.0f})")
    print(
        f"plain_instructions_per_step={plain:.0f} instrumented_instructions_per_step={default:.0f}"
        f" instruction_ratio={default / plain:.4f} steady_instruction_ratio={steady / plain:.4f}"
    )


def read_dumps(folder: Path) -> dict[str, int]:
    """Each named dump's instruction count, from callgrind's files' headers."""
    counts = {}
    for path in folder.glob("counts.*"):
        header = path.read_text(errors="replace")[:4000]
        name = re.search(r"^desc: Trigger: Client Request: (\S+)$", header, re.MULTILINE)
        total = re.search(r"^summary: (\d+)$", header, re.MULTILINE)
        if name and total:
            counts[name.group(1)] = int(total.group(1))
    return counts


def count_windows(library: str, epochs: int) -> None:
    """Under valgrind: each variant once to warm up, then once counted."""
    import torch

    from bench.overhead import TimingSink, bench_config, plain_step_seconds
    from trainer.config import RunConfig
    from trainer.loop import train
    from trainer.sink import Progress

    torch.set_num_threads(1)  # one thread's instructions: no spinning of idle workers counted
    calls = ctypes.CDLL(library)

    class Window:
        def __init__(self, name: str) -> None:
            self.name = name.encode()

        def open(self) -> None:
            calls.window_open()

        def close(self) -> None:
            calls.window_close(self.name)

    class WindowSink(TimingSink):
        """Opens at the start, closes at the last epoch's progress report, where overhead.py's
        TimingSink takes its last time."""

        def __init__(self, window: Window | None) -> None:
            super().__init__()
            self.window = window

        def start(self, info) -> None:
            super().start(info)
            if self.window is not None:
                self.window.open()

        def progress(self, progress: Progress) -> None:
            super().progress(progress)
            if self.window is not None and self.info is not None and progress.epoch == self.info.epochs:
                self.window.close()

    with tempfile.TemporaryDirectory() as folder:
        config = bench_config("mlp", "cpu", "fp32", epochs, Path(folder))
    as_dict = config.to_dict()
    steady = RunConfig.from_dict({**as_dict, "instrument": {**as_dict["instrument"], "dense_steps": 0}})
    steps = 0
    for name in VARIANTS:
        for window in (None, Window(name)):
            if name == "plain":
                plain_step_seconds(config, window)
                continue
            sink = WindowSink(window)
            # hand-offs as in bench/overhead.py's runs, which end before the first half second
            result = train(config if name == "default" else steady, sink, handoff_seconds=3600.0)
            assert result.status == "succeeded", result.message
            steps = result.steps
    print(f"steps={steps}")


if __name__ == "__main__":
    main()
