"""Reading data files (no scikit-learn, so that the client's jobs can use it too): the
errors that name the file and why, and CIFAR-10's python batches, unpickled safely."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """The data named by the config cannot be read; the message says which file and why."""


def existing(path_text: str, kind: str, field: str = "data.path") -> Path:
    path = Path(path_text).expanduser()
    if not path.exists():
        raise DataError(f"{field}: {path} does not exist (expected {kind})")
    return path


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


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _ArraysOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except DataError:
        raise
    except Exception as error:
        raise DataError(f"data.path: {path} is not a CIFAR-10 python batch: {error}") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"data.path: {path} is not a CIFAR-10 batch (needs the keys data and labels)")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"data.path: {path}: data must have shape (N, 3072), got {data.shape}")
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
    parts = [_cifar_batch(path) for path in paths]
    test = _cifar_batch(folder / "test_batch") if (folder / "test_batch").is_file() else (None, None)
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]), test[0], test[1]
