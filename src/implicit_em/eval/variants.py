"""Extra terms for the theory-guided variants of the ground-truth harness (issue 18).

Legend: B batch, D input dim, K latents. x (B, D) inputs, z (B, K) pre-activations W x + b,
a (B, K) codes, W (K, D) encoder rows, b_dec (D,) a data offset.

Pure functions, tensor in, tensor out; the harness (`eval.synthetic`) weights and adds them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

MATCH_FORMS = ("softplus", "relu")


def tied_reconstruction_loss(x: Tensor, a: Tensor, W: Tensor, b_dec: Tensor) -> Tensor:
    """Squared error of x rebuilt through the encoder's own rows: x_hat = a W + b_dec.

    x (B, D), a (B, K), W (K, D), b_dec (D,) -> scalar: the per-sample sum over D of
    (x - x_hat)^2, averaged over B. Tied weights (decoder = encoder transpose, no decoder
    parameters) as in tied autoencoders (Vincent et al. 2010, JMLR 11, "Stacked denoising
    autoencoders"). The term needs every feature that carries variance to be spanned by rows.
    """
    x_hat = a @ W + b_dec  # (B, K) @ (K, D) -> (B, D)
    return (x - x_hat).square().sum(dim=1).mean()


def match_energy(z: Tensor, form: str = "softplus") -> Tensor:
    """Energies that are zero where a unit is *active*: E = softplus(-z) or ReLU(-z).

    z (B, K) -> E (B, K), E >= 0. With the library's ReLU energies a = ReLU(z), every inactive
    unit is a perfect match (a = 0) and the LSE -log sum_j exp(-a_j) is ~ -log K whatever the
    input; here a unit matches (E ~ 0) only when its projection is large, so the LSE rewards
    each sample being claimed by some unit and the InfoMax terms limit how many claim it.
    ValueError on an unknown form.
    """
    if form == "softplus":
        return F.softplus(-z)
    if form == "relu":
        return torch.relu(-z)
    raise ValueError(f"unknown match form {form!r}: choose one of {MATCH_FORMS}")


def topk_codes(a: Tensor, k: int) -> Tensor:
    """Keep the k largest entries of each row of a (B, K), zero the rest (Gao et al. 2024,
    "Scaling and evaluating sparse autoencoders", TopK activation). Gradient flows to the kept
    entries only."""
    vals, idx = a.topk(k, dim=-1)  # (B, k)
    return torch.zeros_like(a).scatter(-1, idx, vals)


__all__ = ["MATCH_FORMS", "match_energy", "tied_reconstruction_loss", "topk_codes"]
