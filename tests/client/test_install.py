"""The client installs on a training machine alone: a fresh virtual environment (no Django,
Celery, psycopg2, Redis or scikit-learn), `pip install` of this project with its base
dependencies only (torch, numpy, requests), then a run recorded with it."""

import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.install

USE = textwrap.dedent("""
    import importlib.util, sys
    import torch
    import trainwatch
    server_side = [name for name in ("django", "celery", "psycopg2", "redis", "sklearn", "yaml")
                   if importlib.util.find_spec(name) is not None]
    assert not server_side, server_side
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with trainwatch.init(project="fresh", mode="offline") as run:
        run.watch(model, optimizer, ratio_every=1)
        for step in range(5):
            loss = torch.nn.functional.cross_entropy(model(torch.randn(8, 4)), torch.randint(0, 2, (8,)))
            optimizer.zero_grad(); loss.backward(); optimizer.step()
            run.log({"loss": loss}, step=step)
    print("payloads:", len(run.spool.pending()), "modules:", sorted(m for m in sys.modules if m.startswith("tracker")))
""")


def test_the_client_installs_and_runs_in_a_venv_without_the_server(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("trainwatch", "trainer", "tracker"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)  # the interpreter under this suite's own venv
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # torch first, as docs/client.md says, so that pip takes this machine's build rather than a CUDA one
    subprocess.run([*pip, "torch==2.13.0"], check=True, capture_output=True, timeout=600)
    installed = subprocess.run([*pip, str(source)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    used = subprocess.run(
        [str(venv / "bin" / "python"), "-c", USE],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TRAINWATCH_DIR": str(tmp_path)},
    )
    assert used.returncode == 0, used.stderr[-3000:]
    assert "payloads: 1 modules: []" in used.stdout  # one payload of the 5 steps; no server module imported
    command = subprocess.run([str(venv / "bin" / "trainwatch"), "sync", "--help"], capture_output=True, text=True)
    assert command.returncode == 0 and "Upload runs recorded offline" in command.stdout
