"""Mixtures with known prototypes, to check that a model recovers the components it should.

Legend: N samples, D features, K components; W (K, D) the true prototypes.
"""

from __future__ import annotations

import torch
from torch import Tensor


def get_synthetic(
    n_samples: int,
    n_features: int,
    n_components: int,
    noise_std: float = 0.1,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Samples x_i = W[k_i] + noise_std * e_i with k_i uniform over K and e_i ~ N(0, I).

    Returns data (N, D) float32 and true_components W (K, D) float32 with unit-norm rows.
    The same arguments give the same tensors (a dedicated CPU generator seeded with `seed`).
    """
    for name, value in (("n_samples", n_samples), ("n_features", n_features)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    gen = torch.Generator().manual_seed(int(seed))
    W = torch.randn(n_components, n_features, generator=gen)  # (K, D)
    W = W / W.norm(dim=1, keepdim=True)
    k = torch.randint(n_components, (n_samples,), generator=gen)  # (N,)
    noise = torch.randn(n_samples, n_features, generator=gen)  # (N, D)
    data = W[k] + noise_std * noise  # (N, D)
    return data, W
