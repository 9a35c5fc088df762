"""Data by domain: images (`data.images`), language-model activations (`data.lm`), synthetic
mixtures (`data.synthetic`), device-resident batches, and one `load_dataset(DataConfig)` that
also gives the model its input size.

The names below load lazily (PEP 562), so that a command reading only its options from a
`data` module (`implicit-em data fetch --help`) does not import torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from implicit_em._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("TensorBatches", "batch_slices", "epoch_permutation"),
                    "implicit_em.data.batches"),
    **dict.fromkeys(("Dataset", "input_dim_of", "load_dataset", "resolve_input_dim"),
                    "implicit_em.data.datasets"),
    "DataError": "implicit_em.data.errors",
    "load_digits": "implicit_em.data.images.digits",
    "read_idx": "implicit_em.data.images.idx",
    **dict.fromkeys(("get_mnist", "load_fashion_mnist", "load_mnist"), "implicit_em.data.images.mnist"),
    **dict.fromkeys(("cache_root", "fetch"), "implicit_em.data.images.sources"),
    "get_synthetic": "implicit_em.data.synthetic",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)


if TYPE_CHECKING:  # static analysers see the names
    from implicit_em.data.batches import (  # noqa: F401
        TensorBatches,
        batch_slices,
        epoch_permutation,
    )
    from implicit_em.data.datasets import (  # noqa: F401
        Dataset,
        input_dim_of,
        load_dataset,
        resolve_input_dim,
    )
    from implicit_em.data.errors import DataError  # noqa: F401
    from implicit_em.data.images.digits import load_digits  # noqa: F401
    from implicit_em.data.images.idx import read_idx  # noqa: F401
    from implicit_em.data.images.mnist import get_mnist, load_fashion_mnist, load_mnist  # noqa: F401
    from implicit_em.data.images.sources import cache_root, fetch  # noqa: F401
    from implicit_em.data.synthetic import get_synthetic  # noqa: F401
