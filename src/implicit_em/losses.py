"""Losses: pure functions, tensors in, scalar tensor out.

Legend: B batch, D input dim, K components. a (B, K) energies (lower = better match),
r (B, K) responsibilities, W (K, D). Each public loss validates its input unless called
with validate=False (the trainer's hot loop, which must not sync with the host).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Protocol

import torch
from torch import Tensor

from implicit_em.colstats import (  # noqa: F401 (re-exported: every penalty is built on them)
    _offdiag_sq_gram,
    _offdiag_sq_kk,
    centred_columns,
    column_scale,
    constant_columns,
    unit_scale,
    variance_from_stats,
)

# Kept for the weight rows' normalization in weight_redundancy_loss (a zero row stays finite).
_CORR_EPS = 1e-12


def check_batch(a: Tensor, name: str = "a", min_batch: int = 1) -> None:
    """Raise ValueError unless a is a finite (B, K) tensor with B >= min_batch."""
    if not isinstance(a, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(a).__name__}")
    if a.ndim != 2:
        raise ValueError(
            f"expected {name} of shape (B, K), got {tuple(a.shape)}: "
            "flatten to (batch, features) first"
        )
    if a.shape[0] < min_batch:
        raise ValueError(
            f"{name} has batch size {a.shape[0]}, but batch statistics need at least "
            f"{min_batch} rows: use a larger batch"
        )
    if not torch.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or Inf: check the inputs and the learning rate")


def lse_loss(a: Tensor, reduction: str = "sum", validate: bool = True) -> tuple[Tensor, Tensor]:
    """-log sum_j exp(-a_ij), summed (or averaged) over the batch (paper Eq. 3).

    a: (B, K). Returns (scalar loss, r (B, K) = softmax(-a)). By Eq. 4, dL/da_ij = r_ij
    (for reduction="sum"). Stable for |a| up to 1e4 and beyond: logsumexp shifts by the max.
    """
    if validate:
        check_batch(a)
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    per_sample = -torch.logsumexp(-a, dim=1)  # (B,)
    loss = per_sample.sum() if reduction == "sum" else per_sample.mean()
    return loss, torch.softmax(-a, dim=1).detach()


def variance_loss(a: Tensor, eps: float = 1e-6, validate: bool = True) -> Tensor:
    """-sum_j log(Var_batch(a_j) + eps): the diagonal of the log-determinant (paper Eq. 7).

    a: (B, K), B >= 2. Returns a scalar. Var is the unbiased batch variance. A unit that is
    constant (relative to its own scale, `constant_columns`) counts as variance 0: it costs
    exactly -log eps (13.8 at eps = 1e-6), the barrier's ceiling, with zero gradient, instead
    of a value and a gradient made of its mean's round-off.
    """
    if validate:
        check_batch(a, min_batch=2)
    _, _, ss = centred_columns(a)
    return variance_from_stats(ss, a.shape[0], eps)


def _unit_columns(a: Tensor) -> Tensor:
    """Centre each column and scale it to unit norm, so U^T U = Corr(a). Returns (B, K).
    Constant columns (`constant_columns`) are zero."""
    centred, _, ss = centred_columns(a)  # (B, K), (K,)
    return centred * unit_scale(ss)


def correlation_loss(a: Tensor, validate: bool = True) -> Tensor:
    """||Corr_batch(a) - I||_F^2 off the diagonal: sum_{i != j} Corr_ij^2 (paper Eq. 7).

    a: (B, K), B >= 2. Returns a scalar. Uses the B x B Gram matrix when B < K (memory
    O(B^2 + BK)), else the K x K correlation matrix. A constant column (relative to its own
    scale, `constant_columns`) contributes zero and receives exactly zero gradient.
    """
    if validate:
        check_batch(a, min_batch=2)
    u = _unit_columns(a)
    return _offdiag_sq_gram(u) if a.shape[0] < a.shape[1] else _offdiag_sq_kk(u)


def correlation_probes(
    k: int, m: int, like: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """m Gaussian probe vectors for `sketched_correlation_loss`: (K, m), N(0, 1) entries, on
    the device and dtype of `like`. Drawn fresh each step, they make the sketch unbiased."""
    if m < 1:
        raise ValueError(f"need at least one probe, got m={m}: set loss.tc_probes >= 1")
    return torch.randn(k, m, generator=generator, device=like.device, dtype=like.dtype)


def column_stats(a: Tensor) -> tuple[Tensor, Tensor]:
    """(mean, centred sum of squares) of each column of a (B, K): two (K,) tensors; ss is
    exactly 0 for constant columns (see `centred_columns`)."""
    _, mean, ss = centred_columns(a)
    return mean, ss


def sketch_cross(a: Tensor, mean: Tensor, ss: Tensor, probes: Tensor) -> tuple[Tensor, Tensor]:
    """U^T U V and diag(U^T U) for the unit columns U of a, without forming U.

    a (B, K), mean and ss (K,) from `column_stats` (global ones under data parallelism, where
    this returns the rank's part of sums over rows), probes V (K, m). With s = ss^-1/2 (0 for
    constant columns, whose ss is 0: they drop out, gradient included), U = (a - mean) s, so U V = a (s V) - mean^T (s V) and U^T P = s (a^T P - mean 1^T P):
    two (B, K) x (K, m) matmuls on a itself. Returns ((K, m), (K,)).
    """
    s = unit_scale(ss)  # (K,)
    sv = s[:, None] * probes  # (K, m)
    p = a @ sv - mean @ sv  # (B, m) = U V
    cross = s[:, None] * (a.mT @ p - mean[:, None] * p.sum(dim=0))  # (K, m) = U^T U V
    return cross, ss * s.square()


def check_probes(a: Tensor, probes: Tensor) -> None:
    """Raise ValueError unless probes is (K, m) for codes a (B, K)."""
    if probes.ndim != 2 or probes.shape[0] != a.shape[1]:
        raise ValueError(
            f"probes {tuple(probes.shape)} must be (K, m) with K={a.shape[1]}: "
            "draw them with correlation_probes(K, m, a)"
        )


def sketch_penalty(cross: Tensor, diag: Tensor, probes: Tensor) -> Tensor:
    """||(C - diag C) V||_F^2 / m from cross = C V and diag = diag(C); see the caller."""
    return (cross - diag[:, None] * probes).square().sum() / probes.shape[-1]


def sketched_correlation_loss(a: Tensor, probes: Tensor, validate: bool = True) -> Tensor:
    """An unbiased estimate of `correlation_loss(a)` from m random probes (Hutchinson).

    With C = Corr(a) and M = C - diag(C) (the off-diagonal part), ||M||_F^2 = E ||M v||^2 for
    any random v with E[v v^T] = I, so ||M V||_F^2 / m with V (K, m) of N(0, 1) entries is
    unbiased, and so is its gradient (V does not depend on the parameters). Cost: O(B K m)
    instead of the exact path's O(B^2 K) (B < K) or O(B K^2): at B = 4096, K = 16384, m = 32
    about 30 times less matrix work than the Gram path. probes V = sqrt(K) I (m = K) gives
    the exact value. a: (B, K), probes: (K, m). Returns a scalar.
    """
    if validate:
        check_batch(a, min_batch=2)
        check_probes(a, probes)
    mean, ss = column_stats(a)
    return sketch_penalty(*sketch_cross(a, mean, ss, probes), probes)


def weight_redundancy_loss(W: Tensor, validate: bool = True) -> Tensor:
    """||W_n W_n^T - I||_F^2 with W_n the unit-normalized rows of W (paper Eq. 8).

    W: (K, D). Returns a scalar. Computed through the smaller of the K x K and D x D Grams:
    for K > D, ||G - I||^2 = ||G||^2 - 2 tr(G) + K with ||W_n W_n^T||_F = ||W_n^T W_n||_F.
    For K <= D it is formed directly: near-orthogonal rows would cancel in that expansion.
    """
    if validate:
        check_batch(W, name="W")
    wn = W * torch.rsqrt(W.square().sum(dim=1, keepdim=True) + _CORR_EPS)  # (K, D)
    k, d = wn.shape
    if k <= d:
        gram = wn @ wn.t()  # (K, K)
        return (gram - torch.eye(k, dtype=gram.dtype, device=gram.device)).square().sum()
    gram = wn.t() @ wn  # (D, D)
    return gram.square().sum() - 2 * wn.square().sum() + k


def infomax_reference(
    a: Tensor, probes: Tensor | None = None, variance_eps: float = 1e-6
) -> tuple[Tensor, Tensor, Tensor]:
    """Unweighted (lse, var, tc) of codes a (B, K) by the plain formulas (paper Eqs. 3, 7):
    the LSE summed over the batch, `variance_loss`, and `correlation_loss` (probes None) or
    the sketched penalty with probes (K, m). The reference of `implicit_em.kernels`."""
    lse = -torch.logsumexp(-a, dim=1).sum()  # lse_loss without the responsibilities
    if probes is None:
        return lse, variance_loss(a, variance_eps, validate=False), correlation_loss(a, False)
    mean, ss = column_stats(a)  # one pass of column statistics serves both penalties
    var = variance_from_stats(ss, a.shape[0], variance_eps)
    return lse, var, sketch_penalty(*sketch_cross(a, mean, ss, probes), probes)


class LossWeights(Protocol):
    lambda_lse: float
    lambda_var: float
    lambda_tc: float
    lambda_wr: float
    variance_eps: float
    reference_k: int | None


def infomax_terms(
    a: Tensor, probes: Tensor | None = None, variance_eps: float = 1e-6,
    fused: bool | None = None, preact: Tensor | None = None, bias: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Unweighted (lse, var, tc) of codes a (B, K), B >= 2: -sum_i logsumexp_j(-a_ij) (paper
    Eq. 3), the variance barrier and the decorrelation penalty (Eq. 7; sketched with probes
    V (K, m), exact when probes is None). Scalars, float32. The fused Triton kernels
    (`implicit_em.kernels`) on CUDA, else `infomax_reference`; fused forces a path (None: the
    mode of `kernels.set_fused_mode`). a may be float32 or bfloat16 on the fused path (read as
    float32); dL/da has a's dtype. preact: optionally z (B, K) with a = relu(z), same dtype;
    the fused sketched path then sends the gradient to z itself (ReLU's backward folded into
    its kernel); every other path ignores it. bias: optionally b (K,) with preact = z0 and
    a = relu(z0 + b.to(z0.dtype)): the fused sketched path adds b in its statistics pass and
    returns dL/db from its gradient pass (the bias fold); every other path ignores it (a
    carries the gradient to z0 and b). Same values and gradients either way.
    """
    from implicit_em.kernels import fused_active

    if fused_active(a, fused):
        from implicit_em.kernels.infomax import fused_terms

        return fused_terms(a, probes, variance_eps, preact, bias)
    return infomax_reference(a.float() if a.dtype == torch.bfloat16 else a, probes, variance_eps)


def as_loss_weights(cfg: LossWeights | Mapping) -> LossWeights:
    """cfg itself, or a plain mapping of lambdas and epsilons made into a `LossConfig`.

    A mapping takes LossConfig's field names (lambda_lse, lambda_var, lambda_tc, lambda_wr,
    variance_eps, reference_k, ...); missing keys keep LossConfig's defaults (reference_k=64:
    pass reference_k=None for the paper's unscaled sums). Unknown keys raise ValueError.
    """
    if not isinstance(cfg, Mapping):
        return cfg
    from implicit_em.config import LossConfig

    known = {f.name for f in dataclasses.fields(LossConfig)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"unknown loss weights {unknown}: valid keys are {sorted(known)}")
    return LossConfig(**cfg)


def term_scales(reference_k: int | None, k: int) -> tuple[float, float]:
    """(var scale, tc scale) at K = k components: (R / K, R (R - 1) / (K (K - 1))) for
    reference_k = R, (1, 1) for None. var sums over K units and tc over K (K - 1) pairs; the
    scales keep their size next to the LSE term as K grows (see LossConfig.reference_k)."""
    if reference_k is None:
        return 1.0, 1.0
    r = reference_k
    return r / k, (r * (r - 1) / (k * (k - 1)) if k > 1 else 1.0)


def loss_weights(cfg: LossWeights | Mapping, k: int) -> dict[str, float]:
    """The weight of each term of the decoder-free objective at K = k components.

    The one place the lambdas become weights: `combined_loss`, `train`, the stacked and
    distributed trainers and the estimator all read them here. Returns lse, var, tc, wr.
    An object without a reference_k attribute gets no rescaling (the paper's plain sums).
    """
    cfg = as_loss_weights(cfg)
    var_scale, tc_scale = term_scales(getattr(cfg, "reference_k", None), k)
    return {
        "lse": cfg.lambda_lse,
        "var": cfg.lambda_var * var_scale,
        "tc": cfg.lambda_tc * tc_scale,
        "wr": cfg.lambda_wr,
    }


def combined_loss(
    a: Tensor,
    W: Tensor,
    cfg: LossWeights | Mapping,
    validate: bool = True,
    probes: Tensor | None = None,
    responsibilities: bool = True,
    preact: Tensor | None = None,
    with_wr: bool = True,
    bias: Tensor | None = None,
    infomax: tuple[Tensor, Tensor, Tensor] | None = None,
) -> dict:
    """L = w_lse L_LSE + w_var L_var + w_tc L_tc + w_wr L_wr (paper Eqs. 7 and 8).

    a: (B, K) with B >= 2 (ValueError otherwise, even with validate=False), W: (K, D).
    cfg: a LossConfig (or any object with its lambda fields) or a plain mapping of them
    (`as_loss_weights`). The weights w are `loss_weights(cfg, K)`: the lambdas, with lambda_var
    and lambda_tc rescaled from cfg.reference_k to K, the same objective `train` minimizes.
    Returns a dict of scalar tensors `total`, `lse`, `var`, `tc`, `wr` (unweighted) and
    `responsibilities` (B, K) (left out when responsibilities=False, which saves a pass over
    a in the training loop). Terms whose lambda is zero are still reported (wr computed
    without gradient). probes (K, m): estimate tc with `sketched_correlation_loss`.
    preact: z with a = relu(z), passed to `infomax_terms` (the fused kernels' ReLU fold);
    with bias b (K,), preact is z0 and a = relu(z0 + b) (the fused kernels' bias fold).
    with_wr=False leaves wr out of the dict when lambda_wr is zero (a metric of W alone, for
    callers that report it only now and then). infomax: the unweighted (lse, var, tc) of a,
    already computed (the encoder's matmul fold, `kernels.infomax.fused_encoder_terms`),
    used instead of `infomax_terms`.
    """
    cfg = as_loss_weights(cfg)
    if validate:
        check_batch(a, min_batch=2)
        check_batch(W, name="W")
        if W.shape[0] != a.shape[1]:
            raise ValueError(
                f"a {tuple(a.shape)} has K={a.shape[1]} components but W {tuple(W.shape)} has "
                f"{W.shape[0]} rows: pass the encoder weight W of shape (K, D)"
            )
    weights = loss_weights(cfg, a.shape[1])
    if validate and probes is not None:
        check_probes(a, probes)
    if infomax is None:
        infomax = infomax_terms(a, probes, cfg.variance_eps, preact=preact, bias=bias)
    lse, var, tc = infomax
    total = weights["lse"] * lse + weights["var"] * var + weights["tc"] * tc
    out = {"total": total, "lse": lse, "var": var, "tc": tc}
    if cfg.lambda_wr:
        out["wr"] = weight_redundancy_loss(W, validate=False)
        out["total"] = total + weights["wr"] * out["wr"]
    elif with_wr:
        with torch.no_grad():
            out["wr"] = weight_redundancy_loss(W, validate=False)
    if responsibilities:
        out["responsibilities"] = torch.softmax(-a, dim=1).detach()
    return out


def summed_squared_error(x: Tensor, x_hat: Tensor) -> Tensor:
    """sum_d (x - x_hat)^2 per sample, averaged over the batch: x, x_hat (B, D) -> scalar.

    The reconstruction term of the tied-weight models (`eval.variants.tied_reconstruction_loss`,
    `families.tied_topk_sae`): a sum over D (a per-sample squared error), where the SAE
    baselines' `sae_loss` and `topk_loss` average over D as well. ValueError on a shape
    mismatch.
    """
    if x.shape != x_hat.shape:
        raise ValueError(f"x {tuple(x.shape)} and x_hat {tuple(x_hat.shape)} must match")
    return (x - x_hat).square().sum(dim=1).mean()


def sae_loss(x: Tensor, x_hat: Tensor, a: Tensor, l1_weight: float = 0.01) -> dict:
    """MSE (mean over all elements) + l1_weight * mean |a| (the paper's SAE baseline).

    x, x_hat: (B, D); a: (B, K). Returns dict(total, mse, l1) of scalars.
    """
    if x.shape != x_hat.shape:
        raise ValueError(f"x {tuple(x.shape)} and x_hat {tuple(x_hat.shape)} must match")
    mse = (x - x_hat).square().mean()
    l1 = a.abs().mean()
    return {"total": mse + l1_weight * l1, "mse": mse, "l1": l1}


def topk_loss(
    x: Tensor, x_hat: Tensor, aux_hat: Tensor | None = None, aux_coef: float = 1 / 32
) -> dict:
    """TopK SAE objective: MSE + aux_coef * AuxK MSE (Gao et al., 2024).

    The AuxK term asks the dead latents' reconstruction aux_hat (B, D) to explain the
    residual x - x_hat, detached, so dead latents receive gradient. Returns dict(total, mse, aux).
    """
    if x.shape != x_hat.shape:
        raise ValueError(f"x {tuple(x.shape)} and x_hat {tuple(x_hat.shape)} must match")
    if aux_hat is not None and aux_hat.shape != x.shape:
        raise ValueError(f"aux_hat {tuple(aux_hat.shape)} must match x {tuple(x.shape)}")
    mse = (x - x_hat).square().mean()
    if aux_hat is None:
        aux = torch.zeros((), device=x.device, dtype=x.dtype)
    else:
        aux = ((x - x_hat).detach() - aux_hat).square().mean()
    return {"total": mse + aux_coef * aux, "mse": mse, "aux": aux}
