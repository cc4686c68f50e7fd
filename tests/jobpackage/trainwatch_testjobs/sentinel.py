"""Importable, but registered as no entry point: a worker must never import it. Importing it
leaves a file behind (TRAINWATCH_TEST_SENTINEL, or one in the temporary folder), which the tests
look for."""

import os
import tempfile
from pathlib import Path

MARKER = Path(os.environ.get("TRAINWATCH_TEST_SENTINEL", Path(tempfile.gettempdir()) / "trainwatch-sentinel-imported"))
MARKER.write_text("imported")


def train(run):
    raise AssertionError("a module that is not a registered entry point was run")
