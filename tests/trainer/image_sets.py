"""Image data sets in MNIST's and CIFAR-10's own file formats, written by the tests: ten classes,
each a smooth random pattern (strokes on black for MNIST, colour fields for CIFAR), drawn with
a random shift, contrast, smooth distortion and pixel noise. Real images are spatially
smooth in the same way, which is what the first layer's filters pick up when they learn."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur over the last two axes (separable, numpy only)."""
    radius = int(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    out = np.apply_along_axis(lambda row: np.convolve(row, kernel, mode="same"), -1, images)
    return np.apply_along_axis(lambda column: np.convolve(column, kernel, mode="same"), -2, out)


def patterns(rng: np.random.Generator, channels: int, size: int, sigma: float) -> np.ndarray:
    fields = blur(rng.normal(size=(10, channels, size, size)), sigma)
    low = fields.min(axis=(1, 2, 3), keepdims=True)
    high = fields.max(axis=(1, 2, 3), keepdims=True)
    return (fields - low) / (high - low)


def draw(rng: np.random.Generator, templates: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, len(templates), n)
    shifts = rng.integers(-2, 3, size=(n, 2))
    images = np.stack([np.roll(templates[c], tuple(s), axis=(1, 2)) for c, s in zip(labels, shifts)])
    images = images * rng.uniform(0.7, 1.3, size=(n, 1, 1, 1))
    images += blur(rng.normal(size=images.shape), 1.5) * 0.3 + rng.normal(size=images.shape) * 0.05
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8), labels


def write_mnist(folder: Path, n: int = 6000, seed: int = 0) -> Path:
    """train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz, 28 x 28 grey."""
    rng = np.random.default_rng(seed)
    strokes = np.clip((patterns(rng, 1, 28, 3.0) - 0.55) * 3, 0, 1)  # the brightest ridges, on black
    images, labels = draw(rng, strokes, n)
    folder.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">IIII", 0x00000803, n, 28, 28)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + images[:, 0].tobytes()))
    labels_header = struct.pack(">II", 0x00000801, n)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(labels_header + labels.astype(np.uint8).tobytes())
    )
    return folder


def write_cifar10(folder: Path, n: int = 5000, seed: int = 1) -> Path:
    """data_batch_1, CIFAR-10's python pickle of 32 x 32 RGB rows."""
    rng = np.random.default_rng(seed)
    images, labels = draw(rng, patterns(rng, 3, 32, 4.0), n)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "data_batch_1", "wb") as batch:
        pickle.dump({b"data": images.reshape(n, -1), b"labels": labels.tolist()}, batch)
    return folder
