"""Data: real image sets, embedded digits, synthetic mixtures and device-resident batches."""

from implicit_em.data.batches import TensorBatches, batch_slices, epoch_permutation
from implicit_em.data.digits import load_digits
from implicit_em.data.errors import DataError
from implicit_em.data.idx import read_idx
from implicit_em.data.mnist import get_mnist, load_fashion_mnist, load_mnist
from implicit_em.data.sources import cache_root, fetch
from implicit_em.data.synthetic import get_synthetic

__all__ = [
    "DataError",
    "TensorBatches",
    "batch_slices",
    "cache_root",
    "epoch_permutation",
    "fetch",
    "get_mnist",
    "get_synthetic",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
]
