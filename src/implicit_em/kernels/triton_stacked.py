"""One Triton kernel for a block of the stacked encoder's closed-form terms, forward and backward.

Legend: S_b data seeds of a block, G models per seed, B batch, K components; N_b = S_b G.
z (S_b, B, G K) the block's pre-activations as the stacked trainer's batched matmul writes
them (`train.stacked.StackedTrainer._encoder_step`); model (s, g) owns columns g K:(g + 1) K of
seed s, and its codes are a = ReLU(z) (B, K). Imported only when Triton is
(`implicit_em.kernels.triton_available`); with TRITON_INTERPRET=1 set before the import it runs
on the CPU in Triton's interpreter (the tests).

`block_terms_grad` computes, per model, what `train.stacked.encoder_terms_grad` computes (the
reference, whose formulas it follows; tests/test_stacked_kernel.py compares them) and ReLU's
backward on top: the terms lse, var, tc (paper Eqs. 4, 7 and the decorrelation penalty) and
dL/dz of w_lse lse + w_var var + w_tc tc. One program per model holds its whole (B, K) tile, so
the block's ~55 small kernels (softmax, column statistics, two K x K products, the centring of
the gradient) become one launch. The tile must fit one program: `fits`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from implicit_em.colstats import constant_tolerance

MAX_TILE = 128 * 128
"""Largest padded B x K tile one program holds (registers); larger blocks take the reference."""
TERMS = ("lse", "var", "tc")


def _pad(n: int) -> int:
    return max(16, triton.next_power_of_2(n))  # tl.dot needs every dimension >= 16


def fits(b: int, k: int, dtype: torch.dtype) -> bool:
    """Whether a block of batch b and K = k runs in this kernel (float32 codes, B >= 2)."""
    return dtype == torch.float32 and b >= 2 and _pad(b) * _pad(k) <= MAX_TILE


@triton.jit
def _block_kernel(
    z_ptr, dz_ptr, w_ptr, terms_ptr, N, B, G, K, stride_zs, stride_zb, eps, tol,
    BB: tl.constexpr, BK: tl.constexpr,
):  # fmt: skip
    """Model pid = s G + g: terms[t, pid] and dz of its columns (see the module doc)."""
    pid = tl.program_id(0)
    base = (pid // G) * stride_zs + (pid % G) * K
    rows = tl.arange(0, BB)
    cols = tl.arange(0, BK)
    rmask = rows < B
    cmask = cols < K
    mask = rmask[:, None] & cmask[None, :]
    offs = base + rows[:, None] * stride_zb + cols[None, :]
    z = tl.load(z_ptr + offs, mask=mask, other=0.0)
    a = tl.maximum(z, 0.0)  # (BB, BK) codes
    w_lse = tl.load(w_ptr + pid)
    w_var = tl.load(w_ptr + N + pid)
    w_tc = tl.load(w_ptr + 2 * N + pid)
    # lse: each row's log sum_j exp(-a_j); its gradient is the softmax r (paper Eq. 4)
    neg = tl.where(mask, -a, float("-inf"))
    mx = tl.where(rmask, tl.max(neg, axis=1), 0.0)  # (BB,)
    e = tl.where(mask, tl.exp(neg - mx[:, None]), 0.0)
    se = tl.where(rmask, tl.sum(e, axis=1), 1.0)
    lse = -tl.sum(tl.where(rmask, mx + tl.log(se), 0.0), axis=0)
    grad = e / se[:, None] * w_lse
    # column statistics (colstats.centred_columns): constant columns centre to exact zeros
    mean = tl.sum(a, axis=0) / B  # (BK,)
    c = tl.where(mask, a - mean[None, :], 0.0)
    ss = tl.sum(c * c, axis=0)
    live = (ss > B * (tol * mean) * (tol * mean)) & cmask
    c = tl.where(live[None, :], c, 0.0)
    ss = tl.where(live, ss, 0.0)
    # var: -sum_j log(Var_j + eps), unbiased; dL/dc = -2 c / ((B - 1) (Var + eps))
    var_eps = ss / (B - 1) + eps
    var = -tl.sum(tl.where(cmask, tl.log(var_eps), 0.0), axis=0)
    grad += c * (w_var * (-2.0 / (B - 1)) / var_eps)[None, :]
    # tc: U = c s (unit columns), M = U^T U off its diagonal, tc = ||M||^2, dL/dU = 4 U M
    s = tl.where(ss > 0, 1.0 / tl.sqrt(tl.where(ss > 0, ss, 1.0)), 0.0)  # (BK,)
    u = c * s[None, :]
    corr = tl.dot(tl.trans(u), u, input_precision="ieee")  # (BK, BK)
    m = tl.where(cols[:, None] != cols[None, :], corr, 0.0)
    tc = tl.sum(tl.sum(m * m, axis=1), axis=0)
    du = tl.dot(u, m, input_precision="ieee") * (4.0 * w_tc)  # (BB, BK)
    dc = (du - u * tl.sum(u * du, axis=0)[None, :]) * s[None, :]
    dc = tl.where(mask, dc, 0.0)
    grad += dc - (tl.sum(dc, axis=0) / B)[None, :]  # centred over the batch
    dz = tl.where(z > 0.0, grad, 0.0)  # ReLU's backward
    tl.store(dz_ptr + offs, dz, mask=mask)
    tl.store(terms_ptr + pid, lse)
    tl.store(terms_ptr + N + pid, var)
    tl.store(terms_ptr + 2 * N + pid, tc)


def block_terms_grad(
    z: Tensor, groups: int, k: int, variance_eps: float, weights: Tensor, num_warps: int = 0
) -> tuple[dict[str, Tensor], Tensor]:
    """The closed-form terms of a block and dL/dz in one kernel launch.

    z: (S_b, B, G K) float32 pre-activations, last dimension contiguous; groups: G; k: K;
    weights: (3, S_b G) float32, the rows w_lse, w_var, w_tc of each model (s-major);
    num_warps: warps per program (0: 4 for tiles up to 4,096 entries, else 8;
    benchmarks/bench_stacked_kernel.py times the choices).
    Returns ({"lse", "var", "tc"}: (S_b, G) each, dz (S_b, B, G K)): the terms of
    `train.stacked.encoder_terms_grad` on a = ReLU(z), and dL/dz = [z > 0] dL/da.
    Raises ValueError when the block does not `fits`.
    """
    s_b, b, gk = z.shape
    if not fits(b, k, z.dtype) or gk != groups * k or z.stride(2) != 1:
        raise ValueError(f"a block of z {tuple(z.shape)} ({z.dtype}), G = {groups}, K = {k} does "
                         "not fit the fused kernel: use train.stacked.encoder_terms_grad")  # fmt: skip
    n = s_b * groups
    terms = torch.empty(3, n, dtype=torch.float32, device=z.device)
    dz = torch.empty_like(z)
    bb, bk = _pad(b), _pad(k)
    _block_kernel[(n,)](
        z, dz, weights, terms, n, b, groups, k, z.stride(0), z.stride(1), variance_eps,
        constant_tolerance(torch.float32), BB=bb, BK=bk,
        num_warps=num_warps or (4 if bb * bk <= 4096 else 8),
    )  # fmt: skip
    return {t: terms[i].view(s_b, groups) for i, t in enumerate(TERMS)}, dz
