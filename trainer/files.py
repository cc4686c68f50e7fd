"""Reading data files (no scikit-learn, so that the client's jobs can use it too): the
errors that name the file and why, CIFAR-10's python batches, unpickled safely, and the one
rule for the paths a job reads: inside the folders it may read (`read_roots`), checked on the
real path right before each file is opened."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path

import numpy as np

# the folders a job may read in this context, as real paths; None: anywhere (an operator's job)
_READ_ROOTS: ContextVar[tuple[str, ...] | None] = ContextVar("trainwatch_read_roots", default=None)


class DataError(ValueError):
    """The data named by the config cannot be read; the message says which file and why."""


def real_roots(folders: Sequence[str]) -> tuple[str, ...]:
    return tuple(os.path.realpath(os.path.expanduser(folder)) for folder in folders)


def outside(path_text: str, roots: Sequence[str]) -> bool:
    """Whether a path leads out of every root once resolved: neither `..` nor a symbolic link
    (however deep, and whenever it was made) leads out of one."""
    path = os.path.realpath(os.path.expanduser(path_text))
    return not any(os.path.commonpath([root, path]) == root for root in roots)


def outside_message(path_text: str, roots: Sequence[str]) -> str:
    """Says where paths may lead, never whether anything lies where this one does."""
    allowed = ", ".join(roots) if roots else "none is configured"
    return f"must be inside one of the data directories (TRAINWATCH_DATA_DIRS: {allowed}); got {path_text!r}"


@contextlib.contextmanager
def read_roots(roots: Sequence[str] | None) -> Iterator[None]:
    """Within this block (on this thread), every file read through this module must lie inside
    one of these folders (real paths); None lifts the rule."""
    token = _READ_ROOTS.set(None if roots is None else tuple(roots))
    try:
        yield
    finally:
        _READ_ROOTS.reset(token)


def current_roots() -> tuple[str, ...] | None:
    """The folders in force, for a reader that runs elsewhere (a DataLoader's processes)."""
    return _READ_ROOTS.get()


def resolve_within(path_text: str | Path, roots: Sequence[str] | None, field: str) -> Path:
    """The path resolved, once the roots allow it (else DataError naming the field); what a job
    opens is this resolved path, so nothing moves between the check and the read."""
    given = str(path_text)
    if roots is not None and outside(given, roots):
        raise DataError(f"{field}: {outside_message(given, roots)}")
    return Path(os.path.realpath(os.path.expanduser(given)))


def allowed(path_text: str | Path, field: str) -> Path:
    """resolve_within the folders in force here."""
    return resolve_within(path_text, _READ_ROOTS.get(), field)


def existing(path_text: str, kind: str, field: str = "data.path") -> Path:
    path = allowed(path_text, field)
    if not path.exists():
        raise DataError(f"{field}: {path_text} does not exist (expected {kind})")
    return path


def read_bytes(path: Path, field: str) -> bytes:
    """A file inside a folder a job named (a CIFAR-10 batch, an IDX file), checked again: a link
    inside an allowed folder may point anywhere."""
    return allowed(path, field).read_bytes()


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """CIFAR-10's batches are pickles; unpickling a file may run code, so only what
    NumPy arrays are rebuilt from is allowed."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise DataError(f"refusing to load {module}.{name} from a CIFAR-10 batch: only arrays are expected")
        return super().find_class(module, name)


def _cifar_batch(path: Path, field: str) -> tuple[np.ndarray, np.ndarray]:
    raw = read_bytes(path, field)
    try:
        batch = _ArraysOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except DataError:
        raise
    except Exception as error:
        raise DataError(f"{field}: {path} is not a CIFAR-10 python batch: {error}") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{field}: {path} is not a CIFAR-10 batch (needs the keys data and labels)")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{field}: {path}: data must have shape (N, 3072), got {data.shape}")
    return data.reshape(-1, 3, 32, 32), np.asarray(batch[b"labels"], dtype=np.int64)


def read_cifar10(
    path: str, field: str = "data.path"
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """CIFAR-10's python batches in a folder: training images (N, 3, 32, 32) uint8 and labels,
    and its test batch when the folder has one (else None, None)."""
    folder = existing(path, "a folder with CIFAR-10's data_batch_1 ... data_batch_5", field)
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    paths = sorted(folder.glob("data_batch_[1-5]"))
    if not paths:
        raise DataError(f"{field}: {folder} has no data_batch_1 ... data_batch_5")
    parts = [_cifar_batch(path, field) for path in paths]
    test = _cifar_batch(folder / "test_batch", field) if (folder / "test_batch").is_file() else (None, None)
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]), test[0], test[1]
