"""The gradient-responsibility identity (paper Eq. 4): dL_LSE/da_j = softmax(-a)_j, exactly."""

from __future__ import annotations

import torch

from implicit_em.losses import lse_loss


def verify_lse_identity(
    n_samples: int = 64, n_components: int = 128, dtype: torch.dtype = torch.float32, seed: int = 0
) -> dict:
    """One forward/backward pass on random energies a ~ N(0, 1) of shape (n_samples, n_components).

    Returns dict with `grad` and `r` (flattened numpy arrays), `max_abs_error`,
    `mean_abs_error` and `correlation` between them.
    """
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n_samples, n_components, generator=gen, dtype=dtype).requires_grad_(True)
    loss, r = lse_loss(a, reduction="sum")
    (grad,) = torch.autograd.grad(loss, a)
    err = (grad - r).abs()
    g, rr = grad.flatten().double(), r.flatten().double()
    corr = torch.corrcoef(torch.stack([g, rr]))[0, 1]
    return {
        "grad": g.numpy(),
        "r": rr.numpy(),
        "max_abs_error": float(err.max()),
        "mean_abs_error": float(err.mean()),
        "correlation": float(corr),
        "dtype": str(dtype).removeprefix("torch."),
        "shape": [n_samples, n_components],
    }
