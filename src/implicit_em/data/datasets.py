"""One entry point for the image data sets a run config names: `load_dataset(DataConfig)`.

It returns the train and test splits with their labels and the input size D, so that the
model's `input_dim` follows the data (`--set data.dataset=digits` needs nothing else).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from implicit_em.config import ConfigError, DataConfig, RunConfig

DIGITS_TRAIN = 1400
"""scikit-learn's 1,797 digits: the first 1,400 train, the remaining 397 test."""


def _mnist_like(name: str) -> Callable:
    def load(root: str | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        from implicit_em.data.images import mnist

        fn = mnist.load_mnist if name == "mnist" else mnist.load_fashion_mnist
        (xtr, ytr), (xte, yte) = fn("train", root=root), fn("test", root=root)
        return xtr, ytr, xte, yte

    return load


def _digits(root: str | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from implicit_em.data.images.digits import load_digits

    x, y = load_digits()  # (1797, 64), (1797,)
    return x[:DIGITS_TRAIN], y[:DIGITS_TRAIN], x[DIGITS_TRAIN:], y[DIGITS_TRAIN:]


# name -> (input size D, loader(root) -> x_train, y_train, x_test, y_test)
IMAGE_DATASETS: dict[str, tuple[int, Callable]] = {
    "mnist": (784, _mnist_like("mnist")),
    "fashion-mnist": (784, _mnist_like("fashion-mnist")),
    "digits": (64, _digits),
}


@dataclass
class Dataset:
    """Train and test splits: x (N, D) float32 in [0, 1], y (N,) int64 labels."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor

    @property
    def input_dim(self) -> int:
        """D, the number of input features."""
        return int(self.x_train.shape[1])


_CACHE: dict = {}


def input_dim_of(dataset: str) -> int:
    """D of a named data set, known without loading it (784 for MNIST, 64 for digits)."""
    if dataset not in IMAGE_DATASETS:
        raise ConfigError(
            f"unknown data set {dataset!r}: choose one of {', '.join(sorted(IMAGE_DATASETS))}"
        )
    return IMAGE_DATASETS[dataset][0]


def load_dataset(cfg: DataConfig, device: str = "cpu") -> Dataset:
    """The data set `cfg` names, with its subsets, on `device` (cached per process).

    Raises ConfigError for an unknown name and DataError when files are missing.
    """
    key = (cfg.dataset, cfg.root, cfg.train_subset, cfg.test_subset, str(device))
    if key not in _CACHE:
        input_dim_of(cfg.dataset)
        xtr, ytr, xte, yte = IMAGE_DATASETS[cfg.dataset][1](cfg.root)
        if cfg.train_subset:
            xtr, ytr = xtr[: cfg.train_subset], ytr[: cfg.train_subset]
        if cfg.test_subset:
            xte, yte = xte[: cfg.test_subset], yte[: cfg.test_subset]
        _CACHE[key] = Dataset(*(t.to(device) for t in (xtr, ytr, xte, yte)))
    return _CACHE[key]


def resolve_input_dim(cfg: RunConfig) -> RunConfig:
    """`cfg` with model.input_dim taken from its data set when it is None.

    A model.input_dim that is set and differs from the data set's raises ConfigError naming
    both, since a model of the wrong width cannot read the data.
    """
    d = input_dim_of(cfg.data.dataset)
    if cfg.model.input_dim is None:
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, input_dim=d))
    if cfg.model.input_dim != d:
        raise ConfigError(
            f"model.input_dim={cfg.model.input_dim} but data.dataset={cfg.data.dataset} has "
            f"{d} features: leave model.input_dim unset (it follows the data) or set it to {d}"
        )
    return cfg
