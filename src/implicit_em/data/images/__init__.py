"""Image data sets: the IDX reader, MNIST and Fashion-MNIST from verified sources, and
scikit-learn's embedded 8x8 digits. Each loader returns x (N, D) float32 in [0, 1] and
y (N,) int64 class labels."""

from implicit_em.data.images.digits import load_digits
from implicit_em.data.images.idx import parse_idx, read_idx
from implicit_em.data.images.mnist import get_mnist, load_fashion_mnist, load_mnist
from implicit_em.data.images.sources import DATASETS, cache_root, fetch

__all__ = [
    "DATASETS", "cache_root", "fetch", "get_mnist", "load_digits", "load_fashion_mnist",
    "load_mnist", "parse_idx", "read_idx",
]  # fmt: skip
