"""Extra terms for the theory-guided variants of the ground-truth harness (issue 18).

Legend: B batch, D input dim, K latents. x (B, D) inputs, z (B, K) pre-activations W x + b,
a (B, K) codes, W (K, D) encoder rows, b_dec (D,) a data offset.

Pure functions, tensor in, tensor out; the harness (`eval.synthetic`) weights and adds them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from implicit_em.losses import summed_squared_error
from implicit_em.models import topk_codes

MATCH_FORMS = ("softplus", "relu")


def tied_reconstruction_loss(x: Tensor, a: Tensor, W: Tensor, b_dec: Tensor) -> Tensor:
    """Squared error of x rebuilt through the encoder's own rows: x_hat = a W + b_dec.

    x (B, D), a (B, K), W (K, D), b_dec (D,) -> scalar: the per-sample sum over D of
    (x - x_hat)^2, averaged over B. Tied weights (decoder = encoder transpose, no decoder
    parameters) as in tied autoencoders (Vincent et al. 2010, JMLR 11, "Stacked denoising
    autoencoders"). The term needs every feature that carries variance to be spanned by rows.
    """
    return summed_squared_error(x, a @ W + b_dec)  # (B, K) @ (K, D) -> (B, D)


def decoder_norm_l1(a: Tensor, W_dec: Tensor) -> Tensor:
    """L1 of the codes weighted by their decoder columns' norms, per sample, over the batch.

    a (B, K) codes, W_dec (D, K) decoder (column j decodes latent j) -> scalar
    mean_i sum_j |a_ij| ||W_dec[:, j]|| / D. This is sae-lens's StandardTrainingSAE sparsity
    loss (`feature_acts * W_dec.norm(dim=1)`, its L1 norm over latents, mean over the batch;
    the "Standard L1" SAE of SynthSAEBench, Chanin et al. 2026, arXiv 2602.14687), divided by
    D because our MSE is a mean over D where sae-lens sums over D: weight w here is sae-lens's
    l1_coefficient w. The decoder norm keeps the penalty from being dodged by shrinking the
    codes and growing the decoder.
    """
    return (a.abs() * W_dec.norm(dim=0)).sum(dim=1).mean() / W_dec.shape[0]


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


# ---------------------------------------------------------------------------------------
# Higher-order (sparsity) terms, decoder-free (docs/eval/synthetic/why.md). Each is summed
# over the batch, as the library's LSE term (paper Eq. 3) is, so weight 1 puts a term on the
# same per-sample footing as the LSE.
# ---------------------------------------------------------------------------------------

PRIORS = ("l1", "logcosh")


def sparse_prior(t: Tensor, rho: str = "l1") -> Tensor:
    """Factorial sparse prior sum_i sum_j rho(t_ij): the -log p(s) of an ICA source model.

    t (B, K): codes a (rho = l1: |a|, a Laplace prior; on ReLU codes it is sum a) or
    pre-activations z (rho = logcosh: log cosh z, the super-Gaussian contrast of Hyvarinen &
    Oja 2000, "Independent component analysis: algorithms and applications", Neural Networks
    13, Eq. 40, the -log density of a 1/cosh source). -> scalar. Summed over units, so it
    charges every active unit of a sample: the higher-order (non-Gaussian) information that
    second-order terms (variance, decorrelation) do not carry. log cosh is computed as
    softplus(2t) - t - log 2 (stable for large |t|). ValueError on an unknown rho.
    """
    if rho == "l1":
        return t.abs().sum()
    if rho == "logcosh":
        return (F.softplus(2 * t) - t - math.log(2.0)).sum()
    raise ValueError(f"unknown prior {rho!r}: choose one of {PRIORS}")


def claimant_penalty(a: Tensor, eps: float = 1e-12) -> Tensor:
    """Charge for every extra claimant of a sample: sum_i log((sum_j a_ij)^2 / sum_j a_ij^2).

    a (B, K), a >= 0 -> scalar. With shares p_ij = a_ij / sum_j a_ij (the sample's activation
    split over its active units), (sum_j a_ij)^2 / sum_j a_ij^2 = 1 / sum_j p_ij^2 is the
    effective number of active units (participation ratio, the exponential of the Renyi-2
    entropy of p), so the term is the Renyi-2 entropy H_2(p_i) summed over samples: 0 when one
    unit claims the sample, log n for n equal claimants, and each additional claimant raises
    it. It is invariant to the scale of a_i (the L1/L2 ratio of Hoyer 2004, JMLR 5, squared,
    in logs), so the variance barrier cannot pay for it by growing W. A sample with no active
    unit counts 0 (the eps makes the ratio 1 there).
    """
    s1 = a.sum(dim=1)  # (B,)
    s2 = a.square().sum(dim=1)  # (B,)
    return torch.log((s1.square() + eps) / (s2 + eps)).sum()


def sparse_filtering_loss(z: Tensor, eps: float = 1e-8) -> Tensor:
    """Sparse filtering (Ngiam et al. 2011, NeurIPS, "Sparse filtering", Sec. 3): an existing
    decoder-free objective with no hyperparameter.

    z (B, K) linear features W x -> scalar. f = sqrt(z^2 + eps) (soft absolute value); each
    feature (column) is divided by its L2 norm over the batch, then each sample (row) by its
    L2 norm; the loss is the sum of the entries (the L1 norm of every normalised sample,
    summed over the batch). Column normalisation gives every feature equal activity (no
    dead units); row normalisation makes features compete for each sample.
    """
    f = torch.sqrt(z.square() + eps)  # (B, K)
    f = f / f.norm(dim=0, keepdim=True)  # every feature equally active
    f = f / f.norm(dim=1, keepdim=True)  # every sample on the unit sphere
    return f.sum()


def factorial_em_loss(a: Tensor, c: float = 0.0) -> Tensor:
    """Per-unit (factorial) implicit EM: every unit a two-state mixture, summed over units.

    a (B, K) energies (the library's: lower = better match) -> scalar
    sum_i sum_j -log(exp(-a_ij) + exp(-c)).

    Derivation. The paper's LSE, -log sum_j exp(-a_j), is the negative log-likelihood of a
    *mixture*: one of K components explains the sample, and dL/da_j = r_j = softmax(-a)_j
    (Eq. 4), responsibilities that compete across units and sum to 1. Superposed data are
    *factorial*: about L0 causes at once. Give every unit its own two-state mixture instead,
    "claims the sample" with energy a_j or "does not" with a fixed energy c, and take the
    product over units (independent units): p(x) ~ prod_j (exp(-a_j) + exp(-c)). Its negative
    log is the sum above, and dL/da_ij = exp(-a_ij) / (exp(-a_ij) + exp(-c)) = sigmoid(c - a_ij)
    = r_ij, the unit's own responsibility for the "claims" state, in (0, 1) for each unit
    separately: the per-unit analogue of Eq. 4, with no sum-to-one across units. Read as a
    penalty on a >= 0 (ReLU energies, c = 0) it is -log(1 + exp(-a)) + 0, rising from -log 2 at
    a = 0 to 0 as a grows: a concave, saturating sparsity cost (a smooth count of the units
    with a >> 1, i.e. a soft L0). As for the mixture, the volume control (variance barrier and
    decorrelation) is what keeps it from a trivial minimum.
    """
    return -torch.logaddexp(-a, torch.full_like(a, -c)).sum()


# name -> (function of (z, a) -> scalar, on which codes); the harness adds w * term.
TERMS = {
    "l1": lambda z, a: sparse_prior(a, "l1"),
    "logcosh": lambda z, a: sparse_prior(z, "logcosh"),
    "claimants": lambda z, a: claimant_penalty(a),
    "sparse_filtering": lambda z, a: sparse_filtering_loss(z),
    "factorial": lambda z, a: factorial_em_loss(a),
}


def extra_term(name: str, z: Tensor, a: Tensor) -> Tensor:
    """The named term of TERMS on pre-activations z (B, K) and codes a (B, K). ValueError on
    an unknown name."""
    if name not in TERMS:
        raise ValueError(f"unknown extra term {name!r}: choose one of {sorted(TERMS)}")
    return TERMS[name](z, a)


__all__ = [
    "MATCH_FORMS",
    "PRIORS",
    "TERMS",
    "claimant_penalty",
    "decoder_norm_l1",
    "extra_term",
    "factorial_em_loss",
    "match_energy",
    "sparse_filtering_loss",
    "sparse_prior",
    "tied_reconstruction_loss",
    "topk_codes",
]
