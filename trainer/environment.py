"""Where a run trains, as a team needs it to reproduce the run or to see why two runs differ:
the command line, Python, torch and CUDA, the GPUs and their driver, the installed packages,
and, in a git repository, the commit and the uncommitted changes (capped). Taken by a script's
client and by a worker for its jobs; the server checks its shape (tracker.core.environment)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from typing import Any

MAX_DIFF_BYTES = 200_000
MAX_PACKAGES = 3000
MAX_TEXT = 4000


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=os.getcwd())
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def packages() -> dict[str, str]:
    found: dict[str, str] = {}
    for distribution in importlib.metadata.distributions():
        name = distribution.metadata["Name"]
        if name and len(found) < MAX_PACKAGES:
            found[str(name).lower()[:200]] = str(distribution.version)[:200]
    return dict(sorted(found.items()))


def torch_facts(torch: Any) -> dict[str, Any]:
    """torch's version, its CUDA and the GPUs it sees, from the caller's torch (this module is
    read by the web server too, which never imports torch)."""
    names: list[str] = []
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(index)[:200] for index in range(torch.cuda.device_count())]
    return {"torch": torch.__version__, "cuda": torch.version.cuda or "", "gpus": names}


def driver() -> str:
    """The NVIDIA driver's version when NVML answers, else ""."""
    found = ""
    try:
        import pynvml  # noqa: PLC0415 - nvidia-ml-py, where it is installed

        pynvml.nvmlInit()
        raw = pynvml.nvmlSystemGetDriverVersion()
        found = raw.decode() if isinstance(raw, bytes) else str(raw)
    except Exception:  # no NVIDIA driver, no NVML: the field stays empty
        found = ""
    return found[:200]


def describe_environment(torch: Any, command: list[str] | None = None, git: bool = True) -> dict[str, Any]:
    """This process's environment, `torch` the caller's (the git part from the working
    directory's repository)."""
    environment: dict[str, Any] = {
        "command": " ".join(command if command is not None else [sys.executable, *sys.argv])[:MAX_TEXT],
        "python": platform.python_version(),
        "platform": platform.platform()[:200],
        **torch_facts(torch),
        "driver": driver(),
        "packages": packages(),
    }
    if git:
        diff = _git("diff", "HEAD")
        if diff is not None:
            data = diff.encode()
            environment["git_diff"] = data[:MAX_DIFF_BYTES].decode(errors="ignore")
            environment["git_diff_truncated"] = len(data) > MAX_DIFF_BYTES
    return environment
