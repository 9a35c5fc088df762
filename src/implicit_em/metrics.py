"""Metrics: pure functions for analysis. They never carry gradient.

Legend: B batch, D input dim, K components. x (B, D), a (B, K) energies/activations,
r (B, K) responsibilities, W (K, D).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from implicit_em.losses import _offdiag_sq_gram, _offdiag_sq_kk, _unit_columns, check_batch


@torch.no_grad()
def dead_units(a: Tensor, threshold: float = 0.01) -> int:
    """Number of units whose variance over the batch is below `threshold`."""
    check_batch(a, min_batch=2)
    return int((a.var(dim=0) < threshold).sum())


@torch.no_grad()
def redundancy_score(a: Tensor) -> float:
    """||Corr(a) - I||_F^2 off the diagonal (constant columns contribute zero)."""
    check_batch(a, min_batch=2)
    u = _unit_columns(a.double())
    return float(_offdiag_sq_gram(u) if a.shape[0] < a.shape[1] else _offdiag_sq_kk(u))


@torch.no_grad()
def weight_redundancy(W: Tensor) -> float:
    """||W_n W_n^T - I||_F^2 on unit-normalized rows of W (K, D)."""
    from implicit_em.losses import weight_redundancy_loss

    return float(weight_redundancy_loss(W.double()))


@torch.no_grad()
def effective_rank(W: Tensor) -> float:
    """exp(H(p)) with p the singular values of W normalized to sum to one (Roy & Vetterli).

    W: (K, D). A zero matrix (no singular value) has effective rank 0.
    """
    s = torch.linalg.svdvals(W.double())
    if not s.sum() > 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def responsibility_entropy(r: Tensor) -> float:
    """Mean over samples of H(r_i) = -sum_j r_ij log r_ij, in nats (max log K)."""
    check_batch(r, name="r")
    return float(-(torch.special.xlogy(r, r)).sum(dim=1).mean())


@torch.no_grad()
def usage_distribution(r: Tensor) -> np.ndarray:
    """E_x[r(x)]: average responsibility per component, shape (K,), sums to one."""
    check_batch(r, name="r")
    return r.double().mean(dim=0).cpu().numpy()


@torch.no_grad()
def reconstruction_mse(x: Tensor, a: Tensor, W: Tensor, normalize: bool = False) -> float:
    """Mean squared error of x_hat = a W, W^T acting as a pseudo-decoder (no decoder trained).

    x: (B, D), a: (B, K), W: (K, D). With normalize=True, codes are scaled to unit norm and
    each reconstruction is rescaled to its input's norm (the paper's scale-normalized variant);
    a sample whose codes (or reconstruction) are all zero is reconstructed as zero.
    """
    check_batch(x, name="x")
    check_batch(a)
    check_batch(W, name="W")
    if a.shape[1] != W.shape[0] or x.shape[1] != W.shape[1] or len(x) != len(a):
        raise ValueError(
            f"shapes do not match: x {tuple(x.shape)}, a {tuple(a.shape)}, W {tuple(W.shape)}"
        )
    if normalize:
        a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    x_hat = a @ W  # (B, K) @ (K, D) -> (B, D)
    if normalize:
        x_hat = x_hat * (
            x.norm(dim=1, keepdim=True) / x_hat.norm(dim=1, keepdim=True).clamp_min(1e-12)
        )
    return float((x - x_hat).square().mean())


def normalized_reconstruction_mse(x: Tensor, a: Tensor, W: Tensor) -> float:
    """`reconstruction_mse(x, a, W, normalize=True)`, under the authors' name."""
    return reconstruction_mse(x, a, W, normalize=True)


@torch.no_grad()
def feature_similarity_matrix(W: Tensor) -> np.ndarray:
    """Cosine similarity of every pair of rows of W (K, D): a (K, K) float64 numpy array.

    A zero row has similarity 0 with every row (itself included).
    """
    check_batch(W, name="W")
    wn = W.double() * torch.rsqrt(W.double().square().sum(dim=1, keepdim=True))  # (K, D)
    wn = torch.nan_to_num(wn, nan=0.0, posinf=0.0)
    return (wn @ wn.t()).cpu().numpy()  # (K, K)


@torch.no_grad()
def activation_correlation_matrix(a: Tensor) -> np.ndarray:
    """Pearson correlation of the columns of a (B, K), B >= 2: a (K, K) float64 numpy array.

    A constant column (relative to its own scale, `losses.constant_columns`) has correlation
    0 with every column, itself included (numpy's corrcoef gives NaN there); the others match
    np.corrcoef. `redundancy_score` is the sum of the squares off its diagonal.
    """
    check_batch(a, min_batch=2)
    u = _unit_columns(a.double())  # (B, K)
    return (u.t() @ u).cpu().numpy()  # (K, K)


def compute_all_metrics(a: Tensor, W: Tensor, x: Tensor, r: Tensor | None = None) -> dict:
    """Every scalar metric of codes a (B, K) from weights W (K, D) on inputs x (B, D).

    r: responsibilities (B, K), default softmax(-a) (paper Eq. 4). Returns floats: dead_units,
    redundancy, weight_redundancy, effective_rank, l0, density, resp_entropy, max_entropy,
    recon_mse, recon_mse_normalized.
    """
    r = torch.softmax(-a, dim=1) if r is None else r
    l0, density = sparsity_l0(a)
    return {
        "dead_units": dead_units(a),
        "redundancy": redundancy_score(a),
        "weight_redundancy": weight_redundancy(W),
        "effective_rank": effective_rank(W),
        "l0": l0,
        "density": density,
        "resp_entropy": responsibility_entropy(r),
        "max_entropy": max_entropy(a.shape[1]),
        "recon_mse": reconstruction_mse(x, a, W),
        "recon_mse_normalized": normalized_reconstruction_mse(x, a, W),
    }


@torch.no_grad()
def sparsity_l0(a: Tensor, threshold: float = 0.01) -> tuple[float, float]:
    """(mean number of units with a > threshold per sample, that number / K)."""
    check_batch(a)
    l0 = float((a > threshold).sum(dim=1).double().mean())
    return l0, l0 / a.shape[1]


def linear_probe_accuracy(
    train_feats,
    train_y,
    test_feats,
    test_y,
    max_iter: int = 5000,
    C: float = 1.0,
    tol: float = 1e-4,
) -> float:
    """Standardize, then multinomial logistic regression (lbfgs), as in the paper (scikit-learn).

    Features (N, K) and labels (N,) as arrays or tensors. tol: the solver's stopping
    tolerance (scikit-learn's default 1e-4). Returns test accuracy in [0, 1].
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def to_np(t):
        return t.detach().cpu().numpy() if isinstance(t, Tensor) else np.asarray(t)

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, C=C, tol=tol))
    clf.fit(to_np(train_feats), to_np(train_y))
    return float(clf.score(to_np(test_feats), to_np(test_y)))


def max_entropy(k: int) -> float:
    """log K: the responsibility entropy of a uniform assignment."""
    return math.log(k)
