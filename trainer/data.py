"""Data sets, read from local sources only (never downloaded).

digits   scikit-learn's bundled 8x8 digits (1,797 images, 10 classes)
spiral   the classic K-class spiral in 2-D (not linearly separable)
moons    two interleaving half circles (scikit-learn's make_moons)
blobs    Gaussian clusters (scikit-learn's make_blobs)
npz      a NumPy .npz file with X (N, D), (N, H, W) or (N, C, H, W) and integer labels y (N,)
mnist    a folder with MNIST's original IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, .gz allowed)
cifar10  a folder with CIFAR-10's python batches (data_batch_1 ... data_batch_5)

A missing or malformed file raises DataError with the path and what is wrong.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainer.config import DataConfig
from trainer.files import DataError, existing, read_bytes, read_cifar10

__all__ = ["DataError", "Dataset", "load_dataset"]


@dataclass
class Dataset:
    x_train: torch.Tensor  # (N, D) float32: images are flattened, see image_shape
    y_train: torch.Tensor  # (N,) int64
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    image_shape: tuple[int, int, int] | None  # (C, H, W) when a row is a flattened image

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])

    def to(self, device: torch.device) -> Dataset:
        """Small data sets live on the device for the whole run: no per-batch copies."""
        return Dataset(
            self.x_train.to(device),
            self.y_train.to(device),
            self.x_val.to(device),
            self.y_val.to(device),
            self.num_classes,
            self.image_shape,
        )


Arrays = tuple[np.ndarray, np.ndarray, tuple[int, int, int] | None]


def _digits(config: DataConfig, seed: int) -> Arrays:
    # here, not above: scikit-learn takes a second to import, and only three data sets need it
    from sklearn.datasets import load_digits  # noqa: PLC0415

    bunch = load_digits()
    return bunch.data.astype(np.float32), bunch.target.astype(np.int64), (1, 8, 8)


def _spiral(config: DataConfig, seed: int) -> Arrays:
    rng = np.random.default_rng(seed)
    per_class = max(1, config.samples // config.classes)
    xs, ys = [], []
    for label in range(config.classes):
        radius = np.linspace(0.0, 1.0, per_class)
        theta = np.linspace(label * 4.0, (label + 1) * 4.0, per_class) + rng.standard_normal(per_class) * config.noise
        xs.append(np.c_[radius * np.sin(theta), radius * np.cos(theta)])
        ys.append(np.full(per_class, label))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64), None


def _moons(config: DataConfig, seed: int) -> Arrays:
    # here, not above: scikit-learn takes a second to import, and only three data sets need it
    from sklearn.datasets import make_moons  # noqa: PLC0415

    x, y = make_moons(n_samples=config.samples, noise=config.noise, random_state=seed)
    return x.astype(np.float32), y.astype(np.int64), None


def _blobs(config: DataConfig, seed: int) -> Arrays:
    # here, not above: scikit-learn takes a second to import, and only three data sets need it
    from sklearn.datasets import make_blobs  # noqa: PLC0415

    x, y = make_blobs(
        n_samples=config.samples,
        centers=config.classes,
        n_features=config.features,
        cluster_std=config.spread,
        random_state=seed,
    )
    return x.astype(np.float32), y.astype(np.int64), None


def _images_and_labels(x: np.ndarray, y: np.ndarray, source: str) -> Arrays:
    """Check shapes and labels; flatten images, remembering their (C, H, W)."""
    if y.ndim != 1 or len(y) != len(x) or len(x) == 0:
        raise DataError(f"{source}: need X with N rows and y of shape (N,), got X {x.shape} and y {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise DataError(f"{source}: labels y must be integers >= 0, got dtype {y.dtype} (min {y.min()})")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{source}: X must be numeric, got dtype {x.dtype}")
    image_shape = None
    if x.ndim == 3:
        image_shape = (1, x.shape[1], x.shape[2])
    elif x.ndim == 4:
        image_shape = (x.shape[1], x.shape[2], x.shape[3])
    elif x.ndim != 2:
        raise DataError(f"{source}: X must have shape (N, D), (N, H, W) or (N, C, H, W), got {x.shape}")
    x = x.reshape(len(x), -1).astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{source}: X contains NaN or infinite values")
    return x, y.astype(np.int64), image_shape


def _npz(config: DataConfig, seed: int) -> Arrays:
    path = existing(config.path, "an .npz file with arrays X and y")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = {"X", "y"} - set(archive.files)
            if missing:
                raise DataError(
                    f"data.path: {path} has no array {', '.join(sorted(missing))} "
                    f"(it has {', '.join(archive.files) or 'none'})"
                )
            x, y = archive["X"], archive["y"]
    except (OSError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"data.path: {path} is not a readable .npz file: {error}") from None
    return _images_and_labels(x, y, f"data.path {path}")


def _read_maybe_gzip(path: Path) -> bytes:
    data = read_bytes(path, "data.path")
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _idx(path: Path, magic: int, dims: int) -> np.ndarray:
    """An IDX file (MNIST's format): big-endian magic, dimension sizes, then uint8 data."""
    data = _read_maybe_gzip(path)
    header = 4 + 4 * dims
    if len(data) < header or struct.unpack(">I", data[:4])[0] != magic:
        raise DataError(f"data.path: {path} is not an IDX file of {dims} dimension(s) (magic {magic:#010x})")
    shape = struct.unpack(f">{dims}I", data[4:header])
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise DataError(f"data.path: {path} should hold {expected} values for shape {shape}, has {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        if (folder / name).exists():
            return folder / name
    raise DataError(f"data.path: {folder} has no {stem} (or {stem}.gz)")


def _mnist(config: DataConfig, seed: int) -> Arrays:
    folder = existing(config.path, "a folder with MNIST's IDX files")
    images = _idx(_find(folder, "train-images-idx3-ubyte"), 0x00000803, 3)
    labels = _idx(_find(folder, "train-labels-idx1-ubyte"), 0x00000801, 1)
    return _images_and_labels(images.astype(np.float32) / 255.0, labels.astype(np.int64), f"MNIST in {folder}")


def _cifar10(config: DataConfig, seed: int) -> Arrays:
    images, labels, _, _ = read_cifar10(config.path)
    return _images_and_labels(images.astype(np.float32) / 255.0, labels, f"CIFAR-10 in {config.path}")


LOADERS = {
    "digits": _digits,
    "spiral": _spiral,
    "moons": _moons,
    "blobs": _blobs,
    "npz": _npz,
    "mnist": _mnist,
    "cifar10": _cifar10,
}


def load_dataset(config: DataConfig, seed: int) -> Dataset:
    x, y, image_shape = LOADERS[config.name](config, seed)
    if len(x) < 2:
        raise DataError(f"data: {config.name} has {len(x)} example(s); at least 2 are needed to split off validation")
    # The split depends only on the seed, so runs that differ in optimizer see the same data.
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = min(len(x) - 1, max(1, int(round(len(x) * config.val_fraction))))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if config.train_limit is not None:
        train_idx = train_idx[: config.train_limit]  # e.g. overfitting a tiny subset
    x_train, x_val = x[train_idx], x[val_idx]
    y_train = y[train_idx]
    if config.shuffle_labels:
        # the randomisation test: labels that no longer match their inputs, so nothing learnt carries over
        y_train = np.random.default_rng(seed + 1).permutation(y_train)
    if config.standardize:
        # statistics from the training part only, so that validation stays held out
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std[std == 0] = 1.0
        x_train = (x_train - mean) / std
        x_val = (x_val - mean) / std
    return Dataset(
        torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32)),
        torch.from_numpy(y_train),
        torch.from_numpy(np.ascontiguousarray(x_val, dtype=np.float32)),
        torch.from_numpy(y[val_idx]),
        int(y.max()) + 1,
        image_shape,
    )
