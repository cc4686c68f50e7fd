"""An entry point whose module cannot be imported on the worker."""

import trainwatch_testjobs_missing_dependency  # noqa: F401  (not installed anywhere)


def train(run):  # pragma: no cover - never imported
    raise AssertionError
