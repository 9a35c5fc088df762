"""The stacked encoder block's closed-form terms and dL/dz in one Triton launch (kernel v2).

Legend: S_b data seeds of a block, G models per seed, B batch, K components, N_b = S_b G
models. z (S_b, B, G K) the block's pre-activations as the stacked trainer's batched matmul
writes them (`train.stacked.StackedTrainer._encoder_step`); model (s, g) owns columns
g K:(g + 1) K of seed s, and its codes are a = ReLU(z) (B, K). Imported only when Triton is
(`implicit_em.kernels.triton_available`); with TRITON_INTERPRET=1 set before the import it runs
on the CPU in Triton's interpreter (the tests).

`block_terms_grad_v2` computes, per model, what `train.stacked.encoder_terms_grad` computes
(the reference, whose formulas it follows; tests/test_stacked_kernel.py compares them) and
ReLU's backward on top: the terms lse, var, tc (paper Eqs. 4, 7 and the decorrelation penalty)
and dL/dz of w_lse lse + w_var var + w_tc tc. It is the only block kernel of the opt-in fused
step (`train.stacked.FUSED_STEP_ENV`).

Why column strips: the first design (v1, removed after round 4) ran one program per model
holding the whole (B, K) = (128, 64) tile and two 64 x 128 x 64 products; on an H200 a block
launched 8-15 such programs on 132 SMs and took 37-359 us by warp count, against 17-22 us for
this one (docs/benchmarks.md, "Round 4"). v2 launches one program per (model,
column strip of width P): N_b ceil(K / P) programs (32-60 for the MNIST blocks at P = 16),
each holding (B, P) tiles. Everything but the row softmax and the K x K product is local to a
column, so a program needs the other columns only through

  M[:, strip] = U^T U[:, strip] (off the diagonal) and du[:, strip] = U M[:, strip]
              = sum over strips q of U[:, q] (U[:, q]^T U[:, strip]),

and each row's log-sum-exp. The program loops over the model's strips q, recomputes U[:, q]
from z (column statistics are per column, so every program gets the same U bit for bit),
accumulates du[:, strip] and the row's running max / sum of exp (online log-sum-exp), and adds
its ||M[:, strip]||^2 to tc. No scratch buffer and one launch; the price is each program
recomputing the column statistics of all K columns (elementwise work on (B, P) tiles) and
reading the model's z K / P times (from L2). The dot products are not repeated: the strips'
K x P slices of M partition M. The scalar terms are written per strip, (3, N_b, ceil(K / P)),
and summed by torch: deterministic, no atomics (strip 0 writes the lse, the others 0).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from implicit_em.colstats import constant_tolerance

TERMS = ("lse", "var", "tc")
MAX_TILE = 128 * 128
"""Largest padded B x P strip tile one program holds; larger blocks take the reference."""
STRIPS = (16, 32, 64)
"""Strip widths P (tl.dot needs every dimension >= 16)."""


def _pad(n: int) -> int:
    return max(16, triton.next_power_of_2(n))  # tl.dot needs every dimension >= 16


def fits(b: int, k: int, dtype: torch.dtype, strip: int = 16) -> bool:
    """Whether a block of batch b and K = k runs in this kernel (float32 codes, B >= 2)."""
    return dtype == torch.float32 and b >= 2 and k >= 1 and _pad(b) * strip <= MAX_TILE


@triton.jit
def _strip_stats(z_ptr, base, rows, cols, rmask, B, K, stride_zb, tol):
    """Codes a, centred c (constant columns zero), ss and 1/sqrt(ss) of the columns `cols`."""
    cmask = cols < K
    mask = rmask[:, None] & cmask[None, :]
    offs = base + rows[:, None] * stride_zb + cols[None, :]
    z = tl.load(z_ptr + offs, mask=mask, other=0.0)
    a = tl.maximum(z, 0.0)
    mean = tl.sum(a, axis=0) / B
    c = tl.where(mask, a - mean[None, :], 0.0)
    ss = tl.sum(c * c, axis=0)
    live = (ss > B * (tol * mean) * (tol * mean)) & cmask  # colstats.centred_columns
    c = tl.where(live[None, :], c, 0.0)
    ss = tl.where(live, ss, 0.0)
    s = tl.where(ss > 0, 1.0 / tl.sqrt(tl.where(ss > 0, ss, 1.0)), 0.0)
    return z, a, c, ss, s, mask, offs


@triton.jit
def _strip_kernel(
    z_ptr, dz_ptr, w_ptr, part_ptr, N, B, G, K, NP, stride_zs, stride_zb, eps, tol,
    BB: tl.constexpr, P: tl.constexpr,
):  # fmt: skip
    """Model pid = s G + g, strip j: dz of its columns j P:(j + 1) P, part[t, pid, j]."""
    pid = tl.program_id(0)
    j = tl.program_id(1)
    base = (pid // G) * stride_zs + (pid % G) * K
    rows = tl.arange(0, BB)
    rmask = rows < B
    own = j * P + tl.arange(0, P)  # this program's columns
    z, a, c, ss, s, mask, offs = _strip_stats(z_ptr, base, rows, own, rmask, B, K, stride_zb, tol)
    u = c * s[None, :]  # (BB, P) unit columns
    mx = tl.full((BB,), -1.0e30, tl.float32)  # running row max of -a (finite: padded rows)
    se = tl.zeros((BB,), tl.float32)  # running sum of exp(-a - mx)
    du = tl.zeros((BB, P), tl.float32)
    tc = tl.sum(tl.zeros((P,), tl.float32), axis=0)  # a float32 scalar, loop-carried
    for q in range(0, NP):
        cols = q * P + tl.arange(0, P)
        _, aq, cq, _, sq, _, _ = _strip_stats(z_ptr, base, rows, cols, rmask, B, K, stride_zb, tol)
        uq = cq * sq[None, :]
        neg = tl.where((cols < K)[None, :], -aq, float("-inf"))
        mx_new = tl.maximum(mx, tl.max(neg, axis=1))
        se = se * tl.exp(mx - mx_new) + tl.sum(tl.exp(neg - mx_new[:, None]), axis=1)
        mx = mx_new
        m = tl.dot(tl.trans(uq), u, input_precision="ieee")  # (P, P): M[q strip, own strip]
        m = tl.where(cols[:, None] != own[None, :], m, 0.0)
        tc += tl.sum(tl.sum(m * m, axis=1), axis=0)
        du += tl.dot(uq, m, input_precision="ieee")
    w_lse = tl.load(w_ptr + pid)
    w_var = tl.load(w_ptr + N + pid)
    w_tc = tl.load(w_ptr + 2 * N + pid)
    # lse: each row's log sum_j exp(-a_j); its gradient is the softmax r (paper Eq. 4)
    lse_rows = mx + tl.log(se)
    lse = -tl.sum(tl.where(rmask, lse_rows, 0.0), axis=0)
    grad = tl.exp(-a - lse_rows[:, None]) * w_lse
    # var: -sum_j log(Var_j + eps), unbiased; dL/dc = -2 c / ((B - 1) (Var + eps))
    cmask = own < K
    var_eps = ss / (B - 1) + eps
    var = -tl.sum(tl.where(cmask, tl.log(var_eps), 0.0), axis=0)
    grad += c * (w_var * (-2.0 / (B - 1)) / var_eps)[None, :]
    # tc: dL/dU = 4 U M, dL/dc = s (dL/dU - U sum_B(U dL/dU)), centred over the batch
    du = du * (4.0 * w_tc)
    dc = (du - u * tl.sum(u * du, axis=0)[None, :]) * s[None, :]
    dc = tl.where(mask, dc, 0.0)
    grad += dc - (tl.sum(dc, axis=0) / B)[None, :]
    dz = tl.where(z > 0.0, grad, 0.0)  # ReLU's backward
    tl.store(dz_ptr + offs, dz, mask=mask)
    out = part_ptr + pid * NP + j
    tl.store(out, tl.where(j == 0, lse, 0.0))
    tl.store(out + N * NP, var)
    tl.store(out + 2 * N * NP, tc)


def block_terms_grad_v2(
    z: Tensor, groups: int, k: int, variance_eps: float, weights: Tensor, num_warps: int = 0,
    strip: int = 16,
) -> tuple[dict[str, Tensor], Tensor]:  # fmt: skip
    """The closed-form terms of a block and dL/dz, one launch of N_b ceil(K / strip) programs.

    z: (S_b, B, G K) float32 pre-activations, last dimension contiguous; groups: G; k: K;
    weights: (3, S_b G) float32, the rows w_lse, w_var, w_tc of each model (s-major);
    num_warps: warps per program (0: 8; at B = 128 and strip 16, ptxas for sm_90a gives 8
    warps 146 registers a thread and 4 warps 255, neither spilling, 2 warps spills:
    benchmarks/ptxas_stacked_kernel.py); strip: columns per program, one of STRIPS
    (benchmarks/bench_stacked_kernel.py times the choices).
    Returns ({"lse", "var", "tc"}: (S_b, G) each, dz (S_b, B, G K)): the terms of
    `train.stacked.encoder_terms_grad` on a = ReLU(z), and dL/dz = [z > 0] dL/da, to float32
    rounding (tests/test_stacked_kernel.py: 1e-5 relative).
    Raises ValueError when the block does not `fits` or strip is not in STRIPS.
    """
    if strip not in STRIPS:
        raise ValueError(f"strip {strip} is not a strip width of kernel v2: use one of {STRIPS}")
    s_b, b, gk = z.shape
    if not fits(b, k, z.dtype, strip) or gk != groups * k or z.stride(2) != 1:
        raise ValueError(f"a block of z {tuple(z.shape)} ({z.dtype}), G = {groups}, K = {k} does "
                         "not fit the fused kernel v2: use train.stacked.encoder_terms_grad")  # fmt: skip
    n, n_strips = s_b * groups, triton.cdiv(k, strip)
    part = torch.empty(3, n, n_strips, dtype=torch.float32, device=z.device)
    dz = torch.empty_like(z)
    _strip_kernel[(n, n_strips)](
        z, dz, weights, part, n, b, groups, k, n_strips, z.stride(0), z.stride(1),
        variance_eps, constant_tolerance(torch.float32), BB=_pad(b), P=strip,
        num_warps=num_warps or 8,
    )  # fmt: skip
    terms = part.sum(dim=2)  # (3, N_b): the strips' partial sums, in a fixed order
    return {t: terms[i].view(s_b, groups) for i, t in enumerate(TERMS)}, dz
