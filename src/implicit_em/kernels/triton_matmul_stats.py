"""The encoder's matmul with the InfoMax statistics in its epilogue (issue 19, round 14).

Legend: B batch, D input dim, K components. x (B, D) inputs (centred as the encoder centres
them), W (K, D), b (K,) float32, z = x W^T + b, a = ReLU(z) (B, K) codes.

The default sketched step's forward is two passes over (B, K): cuBLAS writes z, then the
statistics pass (`triton_infomax.stats_partials`) reads it back and writes a. Here one Triton
GEMM does both (`kernels.infomax.FOLD["matmul"] = "triton"`; off by default, and slower on
the H200: issue 19's round 14). Each program owns a (BM, BN) tile of z and accumulates it over
D on the tensor cores (tl.dot). Its epilogue rounds the tile as the unfused step's
F.linear(x, W, b.to(dtype)) does (the bias added to the float32 sum, one rounding), applies
ReLU, writes the tile of a, each row's max of -a and sum of exp(-a - max) over the tile's BN
columns, and each column's mean and centred sum of squares over the tile's BM rows (exact in
registers). No (B, K) tensor but a itself is written, none is read.
`kernels.infomax.merge_partials` merges the partials as it merges the statistics pass's (Chan,
Golub and LeVeque's update over row chunks of BM).

The tile shape fixes the partials' shapes, so it is not autotuned: `MM` holds the one in use,
`MM_CONFIGS[i]` for the environment variable IMPLICIT_EM_MM_CONFIG=i (default 0); the tests
run each tile, and benchmarks/bench_matmul_fold.py times each on the GPU. Programs run in
groups of GROUP row tiles per column strip (the grouped order of Triton's matmul tutorial), so
that a strip of W is read from L2 by the group.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import wrap_triton

from implicit_em.kernels import interpreted
from implicit_em.kernels.triton_infomax import (
    _round_to,
    _store_row_partials,
    dot_precision,
    empty_partials,
)

# The tile of z each program computes, its D step, and the launch's warps and pipeline stages.
MM_CONFIGS = [
    {"BM": 128, "BN": 128, "BD": 64, "GROUP": 8, "num_warps": 8, "num_stages": 3},
    {"BM": 128, "BN": 256, "BD": 64, "GROUP": 8, "num_warps": 8, "num_stages": 3},
    {"BM": 64, "BN": 128, "BD": 64, "GROUP": 8, "num_warps": 4, "num_stages": 4},
    {"BM": 128, "BN": 128, "BD": 32, "GROUP": 8, "num_warps": 4, "num_stages": 4},
    {"BM": 256, "BN": 128, "BD": 64, "GROUP": 8, "num_warps": 8, "num_stages": 3},
]


def _config_from_env() -> dict:
    """MM_CONFIGS[i] for IMPLICIT_EM_MM_CONFIG=i (default 0). Raises ValueError naming the
    valid indices otherwise."""
    raw = os.environ.get("IMPLICIT_EM_MM_CONFIG", "0")
    if not (raw.isdigit() and int(raw) < len(MM_CONFIGS)):
        raise ValueError(f"IMPLICIT_EM_MM_CONFIG={raw!r}: give an index of "
                         f"triton_matmul_stats.MM_CONFIGS, 0 to {len(MM_CONFIGS) - 1}")  # fmt: skip
    return dict(MM_CONFIGS[int(raw)])


MM = _config_from_env()


def mm_partial_shapes(b: int, k: int, config: dict | None = None) -> tuple[tuple, tuple]:
    """Shapes of `mm_stats`' row partials (nN, B), nN = ceil(K / BN), and column partials
    (nM, K), nM = ceil(B / BM), for the tile of `config` (default `MM`)."""
    c = config or MM
    return (triton.cdiv(k, c["BN"]), b), (triton.cdiv(b, c["BM"]), k)


@triton.jit
def _mm_stats_kernel(
    x_ptr, w_ptr, bias_ptr, codes_ptr, rmax_ptr, rsum_ptr, cmean_ptr, cm2_ptr,
    B, K, D, stride_xb, stride_xd, stride_wk, stride_wd,
    BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, GROUP: tl.constexpr,
    PRECISION: tl.constexpr, DOT_F32: tl.constexpr, WT: tl.constexpr, EPILOGUE: tl.constexpr,
):  # fmt: skip
    """WT: load W's (BN, BD) tile as stored and transpose it in registers (else load the
    (BD, BN) tile of W^T directly). EPILOGUE False: write z = x W^T + b only (no ReLU, no
    partials): the matmul alone, for benchmarks/bench_matmul_fold.py's diagnosis."""
    pid = tl.program_id(0)
    n_m = tl.cdiv(B, BM)
    n_n = tl.cdiv(K, BN)
    per_group = GROUP * n_n  # GROUP row tiles walk the column strips together
    first_m = (pid // per_group) * GROUP
    size = tl.minimum(n_m - first_m, GROUP)
    pid_m = first_m + (pid % per_group) % size
    pid_n = (pid % per_group) // size
    rows = pid_m * BM + tl.arange(0, BM)
    cols = pid_n * BN + tl.arange(0, BN)
    rmask = rows < B
    cmask = cols < K
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for d0 in range(0, D, BD):
        dd = d0 + tl.arange(0, BD)
        dmask = dd < D
        # (BM, BD) of x and (BD, BN) of W^T
        xt = tl.load(x_ptr + rows[:, None] * stride_xb + dd[None, :] * stride_xd,
                     mask=rmask[:, None] & dmask[None, :], other=0.0)  # fmt: skip
        if WT:
            wt = tl.trans(tl.load(w_ptr + cols[:, None] * stride_wk + dd[None, :] * stride_wd,
                                  mask=cmask[:, None] & dmask[None, :], other=0.0))  # fmt: skip
        else:
            wt = tl.load(w_ptr + cols[None, :] * stride_wk + dd[:, None] * stride_wd,
                         mask=dmask[:, None] & cmask[None, :], other=0.0)  # fmt: skip
        if DOT_F32:  # the interpreter (Triton 3.9) gets bf16 tl.dot wrong: exact upcast
            xt, wt = xt.to(tl.float32), wt.to(tl.float32)
        acc = tl.dot(xt, wt, acc, input_precision=PRECISION)  # (BM, BN)
    # round as F.linear(x, W, b.to(dtype)) rounds (cuBLAS adds the bias to the float32 sum
    # and rounds once), then ReLU
    dt = codes_ptr.dtype.element_ty
    mask = rmask[:, None] & cmask[None, :]
    b = _round_to(tl.load(bias_ptr + cols, mask=cmask, other=0.0), dt)
    z = _round_to(acc + b[None, :], dt)
    if not EPILOGUE:
        tl.store(codes_ptr + rows[:, None] * K + cols[None, :], z.to(dt), mask=mask)
        return
    a = tl.where(mask, tl.maximum(z, 0.0), 0.0)  # (BM, BN) float32, exact in dt
    tl.store(codes_ptr + rows[:, None] * K + cols[None, :], a.to(dt), mask=mask)
    _store_row_partials(a, mask, rmask, rows, pid_n, B, rmax_ptr, rsum_ptr)
    n_t = tl.maximum(tl.minimum(B - pid_m * BM, BM), 1).to(tl.float32)
    t_mean = tl.sum(a, axis=0) / n_t  # (BN,)
    dev = tl.where(mask, a - t_mean[None, :], 0.0)
    tl.store(cmean_ptr + pid_m * K + cols, t_mean, mask=cmask)
    tl.store(cm2_ptr + pid_m * K + cols, tl.sum(dev * dev, axis=0), mask=cmask)


def check_operands(x: Tensor, w: Tensor, bias: Tensor) -> None:
    """Raise ValueError unless x (B, D) and w (K, D) share a dtype and bias is (K,)."""
    if x.dim() != 2 or w.dim() != 2 or x.shape[1] != w.shape[1] or x.dtype != w.dtype:
        raise ValueError(f"the matmul fold: x {tuple(x.shape)} {x.dtype} and W "
                         f"{tuple(w.shape)} {w.dtype} must be (B, D) and (K, D) of one dtype")  # fmt: skip
    if tuple(bias.shape) != (w.shape[0],):
        raise ValueError(f"the matmul fold: bias {tuple(bias.shape)} must be (K,) = "
                         f"({w.shape[0]},)")  # fmt: skip


def mm_stats(x: Tensor, w: Tensor, bias: Tensor, config: dict | None = None,
             traced: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """(a, rmax, rsum, cmean, cm2) for a = ReLU(x W^T + b): a (B, K) contiguous in x's dtype;
    float32 row partials (nN, B): each row's max of -a and sum of exp(-a - max) per strip of
    BN columns; float32 column partials (nM, K): each column's mean and centred sum of squares
    per chunk of BM rows (the last chunk B - (nM - 1) BM rows). Shapes: `mm_partial_shapes`.

    x (B, D) and w (K, D) of one dtype (float32 and bfloat16 are tested), bias (K,) (read as
    float32, rounded to x's dtype). z = x W^T + b is accumulated in float32 and rounded once to
    x's dtype, as `F.linear(x, W, b.to(dtype))` rounds it (cuBLAS's bias epilogue).
    config: a tile of `MM_CONFIGS` instead of `MM` (optional keys "WT" and "EPILOGUE", see the
    kernel; with "EPILOGUE" False the first output is z itself, not ReLU(z), and the four
    partials are left unwritten: for benchmarks only). traced: launch through
    torch.library.wrap_triton (the body of a torch.library.triton_op, `kernels.triton_ops`).
    Raises ValueError on mismatched
    shapes or dtypes."""
    check_operands(x, w, bias)
    c = dict(config or MM)
    b, k, d = x.shape[0], w.shape[0], x.shape[1]
    row_shape, col_shape = mm_partial_shapes(b, k, c)
    rmax, rsum, cmean, cm2 = empty_partials(row_shape, col_shape, x.device)
    codes = torch.empty(b, k, device=x.device, dtype=x.dtype)  # (B, K)
    kernel = wrap_triton(_mm_stats_kernel) if traced else _mm_stats_kernel
    grid = (col_shape[0] * row_shape[0],)
    # float32 operands: half the D step (the largest tiles' pipelined float32 buffers exceed
    # the H200's 227 KiB of shared memory at BD = 64: round 14's check)
    bd = c["BD"] if x.element_size() <= 2 else min(c["BD"], 32)
    kernel[grid](x, w, bias.float().contiguous(), codes, rmax, rsum, cmean, cm2, b, k, d,
                 x.stride(0), x.stride(1), w.stride(0), w.stride(1),
                 BM=c["BM"], BN=c["BN"], BD=bd, GROUP=c["GROUP"],
                 PRECISION=dot_precision(x.dtype), DOT_F32=interpreted(),
                 WT=c.get("WT", False), EPILOGUE=c.get("EPILOGUE", True),
                 num_warps=c["num_warps"], num_stages=c["num_stages"])  # fmt: skip
    return codes, rmax, rsum, cmean, cm2
