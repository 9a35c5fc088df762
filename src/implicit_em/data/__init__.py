"""Data by domain: images (`data.images`), language-model activations (`data.lm`), synthetic
mixtures (`data.synthetic`), device-resident batches, and one `load_dataset(DataConfig)` that
also gives the model its input size."""

from implicit_em.data.batches import TensorBatches, batch_slices, epoch_permutation
from implicit_em.data.datasets import Dataset, input_dim_of, load_dataset, resolve_input_dim
from implicit_em.data.errors import DataError
from implicit_em.data.images.digits import load_digits
from implicit_em.data.images.idx import read_idx
from implicit_em.data.images.mnist import get_mnist, load_fashion_mnist, load_mnist
from implicit_em.data.images.sources import cache_root, fetch
from implicit_em.data.synthetic import get_synthetic

__all__ = [
    "DataError", "Dataset", "TensorBatches", "batch_slices", "cache_root", "epoch_permutation", "fetch",
    "get_mnist", "get_synthetic", "input_dim_of", "load_dataset", "load_digits",
    "load_fashion_mnist", "load_mnist", "read_idx", "resolve_input_dim",
]  # fmt: skip
