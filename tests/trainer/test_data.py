"""Each data set from local sources; the file formats are written here in miniature."""

import gzip
import pickle
import struct

import numpy as np
import pytest

from trainer.config import RunConfig
from trainer.data import DataError, load_dataset


def load(data: dict, seed: int = 0):
    return load_dataset(RunConfig.from_dict({"data": data}).data, seed)


def test_digits_are_8x8_images_in_10_classes_split_by_the_seed():
    data = load({"name": "digits", "val_fraction": 0.25})
    assert data.image_shape == (1, 8, 8) and data.num_classes == 10
    assert len(data.y_val) == 449 and len(data.y_train) == 1348
    again, other = (
        load({"name": "digits", "val_fraction": 0.25}),
        load({"name": "digits", "val_fraction": 0.25}, seed=1),
    )
    assert (again.y_val == data.y_val).all() and not (other.y_val == data.y_val).all()


def test_standardisation_uses_the_training_part_only():
    data = load({"name": "blobs", "samples": 400, "features": 3})
    assert np.allclose(data.x_train.mean(0).numpy(), 0, atol=1e-5)
    assert not np.allclose(data.x_val.mean(0).numpy(), 0, atol=1e-5)


@pytest.mark.parametrize("name, classes", [("spiral", 3), ("moons", 2), ("blobs", 3)])
def test_synthetic_sets(name, classes):
    data = load({"name": name, "samples": 300})
    assert data.num_features == 2 and data.num_classes == classes and data.image_shape is None
    assert len(data.y_train) + len(data.y_val) == 300


def test_train_limit_keeps_a_tiny_subset():
    assert len(load({"name": "digits", "train_limit": 20}).y_train) == 20


def test_npz_with_images(tmp_path):
    path = tmp_path / "set.npz"
    np.savez(path, X=np.random.rand(50, 5, 6).astype(np.float32), y=np.arange(50) % 4)
    data = load({"name": "npz", "path": str(path)})
    assert data.image_shape == (1, 5, 6) and data.num_features == 30 and data.num_classes == 4


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"X": np.zeros((5, 2))}, "has no array y"),
        ({"X": np.zeros((5, 2)), "y": np.zeros(4, dtype=int)}, "need X with N rows"),
        ({"X": np.zeros((5, 2)), "y": np.full(5, 0.5)}, "labels y must be integers"),
        ({"X": np.full((5, 2), np.nan), "y": np.zeros(5, dtype=int)}, "NaN"),
    ],
)
def test_malformed_npz_files_are_refused_with_a_reason(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        load({"name": "npz", "path": str(path)})


def test_a_missing_or_non_npz_file_is_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load({"name": "npz", "path": str(tmp_path / "none.npz")})
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        load({"name": "npz", "path": str(tmp_path / "text.npz")})


def write_idx(path, array: np.ndarray, magic: int, compress: bool = False):
    payload = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_from_its_idx_files(tmp_path, compress):
    suffix = ".gz" if compress else ""
    images = np.random.randint(0, 256, (30, 28, 28))
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, 0x803, compress)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", np.arange(30) % 10, 0x801, compress)
    data = load({"name": "mnist", "path": str(tmp_path), "standardize": False})
    assert data.image_shape == (1, 28, 28) and data.num_classes == 10
    assert float(data.x_train.max()) <= 1.0


def test_a_truncated_or_foreign_idx_file_is_refused(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 4, 4)), 0x803)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, 10) + b"\x00" * 3)
    with pytest.raises(DataError, match="should hold 10 values"):
        load({"name": "mnist", "path": str(tmp_path)})
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"not idx at all")
    with pytest.raises(DataError, match="not an IDX file"):
        load({"name": "mnist", "path": str(tmp_path)})


def test_cifar10_from_its_python_batches(tmp_path):
    for index in (1, 2):
        batch = {b"data": np.random.randint(0, 256, (10, 3072), dtype=np.uint8), b"labels": list(range(10))}
        (tmp_path / f"data_batch_{index}").write_bytes(pickle.dumps(batch, protocol=2))
    data = load({"name": "cifar10", "path": str(tmp_path)})
    assert data.image_shape == (3, 32, 32) and len(data.y_train) + len(data.y_val) == 20


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_cifar_batch_that_would_run_code_is_refused(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": Payload(), b"labels": [0]}))
    with pytest.raises(DataError, match=r"refusing to load builtins\.print"):
        load({"name": "cifar10", "path": str(tmp_path)})


def test_a_cifar_folder_without_batches_is_named(tmp_path):
    with pytest.raises(DataError, match="has no data_batch_1"):
        load({"name": "cifar10", "path": str(tmp_path)})
