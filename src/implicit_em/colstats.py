"""Column statistics of codes: the one place batch statistics are taken and a column is
judged constant (issue 13), and the off-diagonal sums of squares of their correlation
matrix, shared by the reference losses (`implicit_em.losses`) and the fused
kernels (`implicit_em.kernels`).

Legend: B batch, K components. a (B, K); mean and ss (K,) each column's mean and centred sum
of squares over its rows.
"""

from __future__ import annotations

import torch
from torch import Tensor

# A column is constant when its spread is within this many units of round-off (machine eps of
# its dtype) of its mean. The float mean of B equal numbers c is c (1 + delta) with |delta| up
# to about log2(B) eps for the pairwise / tree sums torch uses (12 eps at B = 4096), and then
# every centred value is exactly -c delta, so such a column's root-mean-square spread is
# |mean| |delta|. In float32, 32 eps is a relative spread of 3.8e-6, about 64 ulps.
_ROUNDOFF_ULPS = 32


def constant_tolerance(dtype: torch.dtype) -> float:
    """The relative spread under which `constant_columns` calls a column constant, for codes
    of `dtype` (_ROUNDOFF_ULPS units of its round-off); for kernels that judge in-kernel."""
    return _ROUNDOFF_ULPS * torch.finfo(dtype).eps


def constant_columns(mean: Tensor, ss: Tensor, n_rows: int) -> Tensor:
    """Which columns are constant, relative to their own scale: bool, the shape of `mean`.

    mean, ss: each column's mean and centred sum of squares over n_rows rows. A column is
    constant when its root-mean-square spread sqrt(ss / n_rows) is within _ROUNDOFF_ULPS
    units of round-off of |mean| (see the constant above): an exactly constant float32 column
    of 1.81 over 1448 rows leaves ss = 1.9e-10 from its mean's rounding alone, far above any
    absolute epsilon one could pick for columns of other scales. All-zero columns (dead ReLU
    units) are constant. The comparison carries no gradient.
    """
    tol = constant_tolerance(ss.dtype)
    return ss <= n_rows * (tol * mean.detach()).square()


def centred_columns(a: Tensor, dim: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Centre a over its batch dimension `dim`; the one place batch statistics are taken.

    Returns (centred, mean, ss): centred like a, mean and ss (a's shape without `dim`) the
    columns' means and centred sums of squares. Columns that are constant by
    `constant_columns` are centred to exact zeros and get ss = 0, so that every penalty built
    on these statistics (variance barrier, correlation: exact, Gram, sketched, stacked,
    distributed) sees them as constant and passes them exactly zero gradient.
    Raises ValueError for fewer than 2 rows: batch statistics of one row are 0 / 0.
    """
    n = a.shape[dim]
    if n < 2:
        raise ValueError(
            f"batch statistics need at least 2 rows, got {n}: merge a one-row batch into "
            "its neighbour (implicit_em.data.batches.batch_slices does so)"
        )
    mean = a.mean(dim=dim)
    centred = a - mean.unsqueeze(dim)
    ss = centred.square().sum(dim=dim)
    live = ~constant_columns(mean, ss, n)
    return centred * live.unsqueeze(dim), mean, ss * live


def unit_scale(ss: Tensor) -> Tensor:
    """1 / sqrt(ss) where ss > 0, else exactly 0 (and zero gradient): scales centred columns
    to unit norm, leaving constant ones (ss = 0 from `centred_columns`) at zero."""
    live = ss > 0
    return torch.where(live, torch.rsqrt(torch.where(live, ss, torch.ones_like(ss))), 0.0)


def column_scale(mean: Tensor, ss: Tensor, n_rows: int) -> tuple[Tensor, Tensor]:
    """(live, s) of columns with means and raw centred sums of squares ss over n_rows rows.

    The one place that decides how the penalties normalise each column, read by the fused
    kernels (`implicit_em.kernels.infomax`), which return raw sums of squares: live (K,) is 1.0
    for a column the penalties count and 0.0 for one that is constant relative to its own
    scale (`constant_columns`; its ss counts as 0), s (K,) = `unit_scale` of ss * live. Its
    derivative in ss is -s^3 / 2 on live columns and 0 on constant ones, as the kernels'
    hand-written gradient assumes. No gradient flows through live.
    """
    live = (~constant_columns(mean, ss, n_rows)).to(ss.dtype)
    return live, unit_scale(ss * live)


def variance_from_stats(ss: Tensor, n_rows: int, eps: float) -> Tensor:
    """`variance_loss` from the columns' centred sums of squares ss (K,) over n_rows rows."""
    if n_rows < 2:
        raise ValueError(f"the variance needs at least 2 rows, got {n_rows}: use a larger batch")
    return -torch.log(ss / (n_rows - 1) + eps).sum()


def _offdiag_sq_kk(u: Tensor) -> Tensor:
    """sum_{i != j} (U^T U)_ij^2 through the K x K matrix.

    The diagonal is zeroed before squaring rather than subtracted after: when B >> K the
    off-diagonal sum (about K^2 / B) is far below the diagonal's K and would cancel in float32.
    """
    corr = u.t() @ u  # (K, K)
    off = ~torch.eye(corr.shape[-1], dtype=torch.bool, device=corr.device)  # vmap-friendly mask
    return (corr * off).square().sum()


class _GramSquareSum(torch.autograd.Function):
    """||U U^T||_F^2 with the gradient 4 (U U^T) U in one (B, B) @ (B, K) matmul.

    Autograd of (u @ u.t()).square().sum() runs two such matmuls (one per factor); at
    B = 4096, K = 16384 this term dominates the training step, so the symmetric form saves a
    third of its matrix work.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(u: Tensor) -> tuple[Tensor, Tensor]:
        gram = u @ u.mT  # (B, B)
        return gram.square().sum(dim=(-2, -1)), gram

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[0], output[1])
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx, grad: Tensor, _grad_gram: Tensor | None) -> Tensor:
        u, gram = ctx.saved_tensors
        return (4 * grad)[..., None, None] * (gram @ u)  # (B, B) @ (B, K) -> (B, K)


def _offdiag_sq_gram(u: Tensor) -> Tensor:
    """Same as _offdiag_sq_kk through the B x B Gram matrix: ||U^T U||_F = ||U U^T||_F,
    and the diagonal of U^T U is the squared column norms. Never forms a K x K matrix."""
    sq, _ = _GramSquareSum.apply(u)  # ||U U^T||_F^2
    return sq - u.square().sum(dim=0).square().sum()
