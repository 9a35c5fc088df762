"""Triton kernels for the InfoMax terms: one pass over the codes forward, one backward.

Legend: B batch, K components, m probes, r = 2m. a (B, K) codes (float32 or bfloat16, read
as float32). Imported only when Triton is (`implicit_em.kernels.triton_available`); with
TRITON_INTERPRET=1 set before the import, the same kernels run on the CPU in Triton's
interpreter (the tests), with one configuration each instead of the GPU's autotuned set.

`stats_partials`: (optionally reading pre-activations z and writing a = ReLU(z) as it goes)
each program owns a strip of BLOCK_K columns and STATS["rows"] rows, walked in (BM, BLOCK_K)
tiles; per tile it writes each row's max and sum of exp(-a - max) over the strip's columns,
and it merges the tiles' column means and centred sums of squares in registers (Chan, Golub
and LeVeque's pairwise update; or, with STATS["shift"], sums of a - c and (a - c)^2 for c the
mean of the chunk's first tile, reduced once), writing one (mean, M2) per column and row
chunk. `implicit_em.kernels.infomax.combine_stats` merges those across strips and chunks.
Partials, not atomics: the result is deterministic and a column of equal values has zero sum
of squares within each tile.

`grad` writes, in one pass over a,
    da_ij = g_i exp(-a_ij - lse_i) + alpha_j + beta_j (a_ij - mean_j) + (L H^T)_ij
with L (B, r), H (K, r) the sketched penalty's rank-2m term, formed per tile on the tensor
cores (tl.dot, inner dimension r padded to a power of two >= 16), in a's dtype (float32 codes:
three TF32 products by default, about float32 accuracy; see `dot_precision`). With relu=True
the codes are a = ReLU(z) and the kernel writes dL/dz = [a > 0] da instead (ReLU's backward
folded in: no separate pass over (B, K)).
One tile per program (`_grad_kernel`, the default) or, with GRAD["rows"], strips of rows
walked in tiles (`_grad_loop_kernel`); both share the tile body `_grad_tile`.

The bias fold: given z0 and b with z = z0 + b (the encoder's pre-activations without their
bias), the statistics pass adds b as it reads z0, and the gradient pass writes each program's
column sums of dL/dz (the bias gradient) as partials, so the encoder's backward needs no
separate pass over (B, K) for dL/db.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import wrap_triton

from implicit_em.kernels import interpreted

BLOCK_K = 128  # columns per stats strip (fixes the partials' shapes)
# The statistics pass: "rows" per program (fixes the column partials' shapes; 64 = one tile
# per program) and "shift": merge the tiles' column sums by Chan's update in the loop (False)
# or accumulate sums of (a - c) and (a - c)^2 elementwise, c the mean of the chunk's first
# tile, reduced once at the end (True).
# 512 rows, shifted sums: the default since issue 19's round 6b (docs/benchmarks.md), by its
# rule fixed before the call: in the whole step on the H200 it measured 0.915 ms against
# 1.182-1.193 for 256 rows with Chan merges (round 6, with the bias fold: 0.977 against
# 1.124-1.135; the noisy third round: 1.788 against 1.766). The same 256-row step measured
# 0.936 ms in round 6 and 1.182 in 6b: between-run spread is large, so this rests on one
# run; see docs/benchmarks.md. Round 7 (four processes of one call) did not show it faster or
# slower than 256 rows beyond the spread across processes (S = 0.325 ms; 256 rows minus 512
# per process +0.081, -0.212, +0.254, -0.124): undecided, so it still rests on round 6b.
# Round 8 (interleaved windows, 256 rows minus 512 in the same cycle): per process median
# +0.065, +0.071, +0.015, +0.031 ms, one of four "slower" by its rule: undecided; it leans
# the way round 6b decided.
STATS = {"rows": 512, "shift": True}


# Tile configurations, autotuned on the GPU per shape (triton.autotune); the first is the
# only one under the interpreter (nothing to time) or with IMPLICIT_EM_AUTOTUNE=0.
STATS_CONFIGS = [{"BM": 32, "num_warps": 4}, {"BM": 64, "num_warps": 8},
                 {"BM": 16, "num_warps": 4}, {"BM": 32, "num_warps": 8}]  # fmt: skip
# The gradient pass: "rows" per program, 0 = one (BM, BK) tile each (`_grad_kernel`), else
# a strip of that many rows walked in tiles (`_grad_loop_kernel`). In the whole step on the
# H200 (docs/benchmarks.md, issue 19 third round) strips of 256 rows did not win at
# K = 16384, so the default stays one tile per program.
GRAD = {"rows": 0}
GRAD_LOOP_CONFIGS = [{"BM": 32, "BK": 128, "num_warps": 4}, {"BM": 64, "BK": 128, "num_warps": 4},
                     {"BM": 64, "BK": 128, "num_warps": 8}, {"BM": 32, "BK": 256, "num_warps": 8},
                     {"BM": 64, "BK": 64, "num_warps": 4}]  # fmt: skip
GRAD_CONFIGS = [{"BM": 64, "BK": 128, "num_warps": 4}, {"BM": 128, "BK": 128, "num_warps": 8},
                {"BM": 64, "BK": 256, "num_warps": 8}, {"BM": 32, "BK": 128, "num_warps": 4},
                {"BM": 128, "BK": 64, "num_warps": 4}, {"BM": 64, "BK": 64, "num_warps": 4},
                {"BM": 32, "BK": 256, "num_warps": 8}, {"BM": 128, "BK": 128, "num_warps": 4}]  # fmt: skip

# tl.dot's input_precision on float32 operands for float32 codes (the gradient pass's rank-2m
# term, `skinny`'s products): "tf32x3" (three TF32 tensor-core products, about float32
# accuracy) or "ieee" (float32 FMA, no tensor cores: the precision before round 9, kept for a
# comparison). See `dot_precision`.
DOT = {"float32": "tf32x3"}


def dot_precision(dtype: torch.dtype) -> str:
    """tl.dot's input_precision for codes of this dtype: DOT["float32"] for float32, "tf32"
    otherwise (bf16 codes: the gradient pass's operands are bf16, where Triton ignores it, and
    `skinny` reads a's bf16 values, which TF32 holds exactly).

    Why not "ieee" for float32: on the H200 (torch 2.11, Triton 3.6) `_grad_kernel` took
    about 14 ms per call on float32 codes (B = 4096, K = 16384, r = 64) with "ieee", whose
    products run as float32 FMA off the tensor cores; `losses.infomax_terms` forward and
    backward took 18.4 ms fused against 5.0 ms for the plain formulas, and 4.06 ms fused on
    bf16 codes (docs/benchmarks.md, round 9). Under the interpreter the precision does not
    matter: Triton's interpreter accepts all three and multiplies in float32 (numpy) alike.
    """
    return DOT["float32"] if dtype == torch.float32 else "tf32"


def _fit_rows(configs, named_args, **kwargs):
    """Keep the tile heights that fit the program's rows (BM <= ROWS)."""
    rows = kwargs.get("ROWS", named_args.get("ROWS", 1 << 30))
    return [c for c in configs if c.kwargs["BM"] <= rows] or configs[:1]


def _kept(dicts: list[dict]) -> list[dict]:
    """The configurations the autotuner holds: the first only under the interpreter or with
    IMPLICIT_EM_AUTOTUNE=0, else all."""
    one = interpreted() or os.environ.get("IMPLICIT_EM_AUTOTUNE", "1") == "0"
    return dicts[:1] if one else dicts


def _configs(dicts: list[dict]) -> list[triton.Config]:
    return [triton.Config({k: v for k, v in d.items() if k != "num_warps"},
                          num_warps=d["num_warps"]) for d in _kept(dicts)]  # fmt: skip


def rows_problem(rows: int, grad: bool = False) -> str | None:
    """Why STATS["rows"] = rows (or GRAD["rows"] with grad) would give wrong results; None
    when it would not. A program of R rows walks tiles of height BM from its first row
    (`_stats_kernel`, `_stats_shift_kernel`, `_grad_loop_kernel`: range(0, R, BM)) and masks
    only rows >= B, so unless R is a multiple of BM its last tile reaches into the next
    program's rows: their column sums are counted twice (the statistics; the gradient's
    column sums under the bias fold). BM is any height of the configs at or below R (the
    autotuner's after `_fit_rows`, or one passed as config=), or the first config's when none
    fits. So R must be a positive multiple of each: with the configs above, the statistics
    take 16 (autotuned only), 32 or a multiple of 64, the gradient 0 (one tile per program,
    `_grad_kernel`), 32 or a multiple of 64. One line names the heights."""
    if grad and rows == 0:
        return None
    dicts, kept = (GRAD_LOOP_CONFIGS, _kept(GRAD_LOOP_CONFIGS)) if grad else (
        STATS_CONFIGS, _kept(STATS_CONFIGS))  # fmt: skip
    heights = {c["BM"] for c in dicts if c["BM"] <= rows}
    heights |= {c["BM"] for c in kept if c["BM"] <= rows} or {kept[0]["BM"]}
    if rows > 0 and all(rows % h == 0 for h in heights):
        return None
    what = "gradient strip rows" if grad else "statistics rows"
    zero = " or 0 (one tile per program)" if grad else ""
    tiles = ", ".join(str(h) for h in sorted({c["BM"] for c in dicts}))
    return (f"{what} {rows} must be a positive multiple of each tile height at or below it "
            f"(tile heights {tiles}){zero}")  # fmt: skip


@triton.jit
def _round_to(x, dt: tl.constexpr):
    """float32 x rounded to dtype dt and back, to nearest even as torch rounds: for bfloat16
    by integer arithmetic on the bits (Triton's interpreter truncates in its own cast), else
    by Triton's cast (float32: x itself)."""
    if dt == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.to(tl.float32, bitcast=True)
    return x.to(dt).to(tl.float32)


@triton.jit
def _load_tile(a_ptr, codes_ptr, bias_ptr, rows, cols, mask, K, stride_ab, stride_ak,
               RELU: tl.constexpr, STORE: tl.constexpr, BIAS: tl.constexpr):  # fmt: skip
    """A (BM, BK) tile of a as float32 (0 outside mask); RELU: a_ptr holds z, the tile is
    ReLU(z), written to codes_ptr (row-major (B, K)) when STORE. BIAS: a_ptr holds z0 and
    z = z0 + b with b (K,) float32 at bias_ptr, rounded as torch rounds z0 + b.to(z0.dtype)
    (b to z0's dtype, the sum computed in float32 and rounded to z0's dtype)."""
    x = tl.load(a_ptr + rows[:, None] * stride_ab + cols[None, :] * stride_ak, mask=mask,
                other=0.0).to(tl.float32)  # fmt: skip
    if BIAS:
        b = _round_to(tl.load(bias_ptr + cols, mask=cols < K, other=0.0), a_ptr.dtype.element_ty)
        x = tl.where(mask, _round_to(x + b[None, :], a_ptr.dtype.element_ty), 0.0)
    if RELU:
        x = tl.maximum(x, 0.0)
        if STORE:
            tl.store(codes_ptr + rows[:, None] * K + cols[None, :],
                     x.to(codes_ptr.dtype.element_ty), mask=mask)  # fmt: skip
    return x


@triton.jit
def _store_row_partials(x, mask, rmask, rows, pid_k, B, rmax_ptr, rsum_ptr):
    """Each row's max of -a and sum of exp(-a - max) over this strip's columns, stored at
    strip pid_k of the (nK, B) row partials."""
    neg = tl.where(mask, -x, float("-inf"))
    rmax = tl.where(rmask, tl.max(neg, axis=1), 0.0)  # (BM,)
    rsum = tl.sum(tl.where(mask, tl.exp(neg - rmax[:, None]), 0.0), axis=1)  # (BM,)
    tl.store(rmax_ptr + pid_k * B + rows, rmax, mask=rmask)
    tl.store(rsum_ptr + pid_k * B + rows, rsum, mask=rmask)


@triton.autotune(configs=_configs(STATS_CONFIGS), key=["B", "K", "RELU", "ROWS", "BIAS"],
                 prune_configs_by={"early_config_prune": _fit_rows})  # fmt: skip
@triton.jit
def _stats_kernel(
    a_ptr, codes_ptr, bias_ptr, rmax_ptr, rsum_ptr, cmean_ptr, cm2_ptr,
    B, K, stride_ab, stride_ak,
    BM: tl.constexpr, BK: tl.constexpr, ROWS: tl.constexpr, RELU: tl.constexpr,
    BIAS: tl.constexpr,
):  # fmt: skip
    pid_c = tl.program_id(0)  # row chunk
    pid_k = tl.program_id(1)  # column strip
    cols = pid_k * BK + tl.arange(0, BK)
    cmask = cols < K
    cnt = 0.0
    mean = tl.zeros((BK,), dtype=tl.float32)
    m2 = tl.zeros((BK,), dtype=tl.float32)
    for r0 in range(0, ROWS, BM):
        start = pid_c * ROWS + r0
        rows = start + tl.arange(0, BM)
        rmask = rows < B
        mask = rmask[:, None] & cmask[None, :]
        # a_ptr holds z under RELU: the codes a = ReLU(z) are written and used
        x = _load_tile(a_ptr, codes_ptr, bias_ptr, rows, cols, mask, K, stride_ab, stride_ak,
                       RELU, True, BIAS)  # fmt: skip
        _store_row_partials(x, mask, rmask, rows, pid_k, B, rmax_ptr, rsum_ptr)
        # columns: this tile's mean and centred sum of squares, merged into the running ones
        n_t = tl.maximum(tl.minimum(B - start, BM), 0).to(tl.float32)
        t_mean = tl.sum(x, axis=0) / tl.maximum(n_t, 1.0)  # (BK,)
        d = tl.where(mask, x - t_mean[None, :], 0.0)
        t_m2 = tl.sum(d * d, axis=0)
        tot = cnt + n_t
        w = n_t / tl.maximum(tot, 1.0)
        delta = t_mean - mean
        mean += delta * w
        m2 += t_m2 + delta * delta * (cnt * w)
        cnt = tot
    tl.store(cmean_ptr + pid_c * K + cols, mean, mask=cmask)
    tl.store(cm2_ptr + pid_c * K + cols, m2, mask=cmask)


@triton.jit
def _grad_tile(
    a_ptr, out_ptr, lse_ptr, g_ptr, low_ptr, rows, cols, cmask, alpha, beta, mean, high,
    B, R, stride_ab, stride_ak, stride_ob, stride_ok,
    RP: tl.constexpr, HAS_LOW: tl.constexpr, RELU: tl.constexpr, PRECISION: tl.constexpr,
    DOT_F32: tl.constexpr, G_SCALAR: tl.constexpr,
):  # fmt: skip
    """Write out[rows, cols] (see `grad`); alpha, beta, mean (BK,) and high (BK, RP) of the
    tile's columns are loaded by the caller. Returns the tile's column sums of out as written
    (rounded to out's dtype), float32 (BK,)."""
    rmask = rows < B
    mask = rmask[:, None] & cmask[None, :]
    x = tl.load(a_ptr + rows[:, None] * stride_ab + cols[None, :] * stride_ak, mask=mask,
                other=0.0).to(tl.float32)  # fmt: skip
    lse = tl.load(lse_ptr + rows, mask=rmask, other=0.0)
    if G_SCALAR:  # one g for every row (the sketched terms' summed LSE)
        g = tl.zeros_like(lse) + tl.load(g_ptr)
    else:
        g = tl.load(g_ptr + rows, mask=rmask, other=0.0)
    out = g[:, None] * tl.exp(-x - lse[:, None]) + alpha[None, :]
    out += beta[None, :] * (x - mean[None, :])
    if HAS_LOW:  # (L H^T) on this tile: L rows (BM, RP), H cols (BK, RP), both row-major
        rr = tl.arange(0, RP)
        low = tl.load(low_ptr + rows[:, None] * R + rr[None, :],
                      mask=rmask[:, None] & (rr[None, :] < R), other=0.0)  # fmt: skip
        if DOT_F32:  # the interpreter (Triton 3.9) gets bf16 tl.dot wrong: exact upcast
            low = low.to(tl.float32)
        out += tl.dot(low, tl.trans(high), input_precision=PRECISION)
    if RELU:  # dL/dz of a = ReLU(z): zero where a = 0
        out = tl.where(x > 0.0, out, 0.0)
    out = out.to(out_ptr.dtype.element_ty)
    tl.store(out_ptr + rows[:, None] * stride_ob + cols[None, :] * stride_ok, out, mask=mask)
    return tl.sum(tl.where(mask, out.to(tl.float32), 0.0), axis=0)


@triton.jit
def _grad_columns(alpha_ptr, beta_ptr, mean_ptr, high_ptr, cols, cmask, R,
                  RP: tl.constexpr, DOT_F32: tl.constexpr):  # fmt: skip
    """alpha, beta, mean (BK,) float32 and high (BK, RP) of the columns (high: 0 without the
    rank-2m term)."""
    alpha = tl.load(alpha_ptr + cols, mask=cmask, other=0.0)
    beta = tl.load(beta_ptr + cols, mask=cmask, other=0.0)
    mean = tl.load(mean_ptr + cols, mask=cmask, other=0.0)
    rr = tl.arange(0, RP)  # without the term R = 0: nothing is read
    high = tl.load(high_ptr + cols[:, None] * R + rr[None, :],
                   mask=cmask[:, None] & (rr[None, :] < R), other=0.0)  # fmt: skip
    if DOT_F32:
        high = high.to(tl.float32)
    return alpha, beta, mean, high


@triton.autotune(configs=_configs(GRAD_CONFIGS),
                 key=["B", "K", "R", "HAS_LOW", "RELU", "COLSUM"])  # fmt: skip
@triton.jit
def _grad_kernel(
    a_ptr, out_ptr, lse_ptr, g_ptr, alpha_ptr, beta_ptr, mean_ptr, low_ptr, high_ptr, part_ptr,
    B, K, R, stride_ab, stride_ak, stride_ob, stride_ok,
    BM: tl.constexpr, BK: tl.constexpr, RP: tl.constexpr, HAS_LOW: tl.constexpr,
    RELU: tl.constexpr, PRECISION: tl.constexpr, DOT_F32: tl.constexpr, COLSUM: tl.constexpr,
    G_SCALAR: tl.constexpr, PART_H: tl.constexpr,
):  # fmt: skip
    """One (BM, BK) tile per program; COLSUM: its column sums of out in the (nP, K) partials,
    one row per PART_H rows of out (PART_H divides BM): at the first of the program's
    BM / PART_H rows, zeros in the others, so every tile height writes every row (no stale
    rows from the autotuner's trial runs, no zero fill)."""
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    cols = tl.program_id(1) * BK + tl.arange(0, BK)
    cmask = cols < K
    alpha, beta, mean, high = _grad_columns(alpha_ptr, beta_ptr, mean_ptr, high_ptr, cols,
                                            cmask, R, RP, DOT_F32)  # fmt: skip
    csum = _grad_tile(a_ptr, out_ptr, lse_ptr, g_ptr, low_ptr, rows, cols, cmask, alpha, beta,
                      mean, high, B, R, stride_ab, stride_ak, stride_ob, stride_ok, RP, HAS_LOW,
                      RELU, PRECISION, DOT_F32, G_SCALAR)  # fmt: skip
    if COLSUM:
        base = tl.program_id(0) * (BM // PART_H)
        n_part = tl.cdiv(B, PART_H)
        tl.store(part_ptr + base * K + cols, csum, mask=cmask)
        for i in tl.static_range(1, BM // PART_H):
            live = cmask & ((cols * 0 + base + i) < n_part)  # (BK,): a block, not a scalar
            tl.store(part_ptr + (base + i) * K + cols, tl.zeros_like(csum), mask=live)


@triton.autotune(configs=_configs(GRAD_LOOP_CONFIGS),
                 key=["B", "K", "R", "HAS_LOW", "RELU", "ROWS", "COLSUM"],
                 prune_configs_by={"early_config_prune": _fit_rows})  # fmt: skip
@triton.jit
def _grad_loop_kernel(
    a_ptr, out_ptr, lse_ptr, g_ptr, alpha_ptr, beta_ptr, mean_ptr, low_ptr, high_ptr, part_ptr,
    B, K, R, stride_ab, stride_ak, stride_ob, stride_ok,
    BM: tl.constexpr, BK: tl.constexpr, ROWS: tl.constexpr, RP: tl.constexpr,
    HAS_LOW: tl.constexpr, RELU: tl.constexpr, PRECISION: tl.constexpr, DOT_F32: tl.constexpr,
    COLSUM: tl.constexpr, G_SCALAR: tl.constexpr,
):  # fmt: skip
    """ROWS rows of a BK-column strip per program, walked in (BM, BK) tiles: the columns'
    coefficients and high are loaded once, and the loop lets the compiler prefetch the next
    tile while this one computes."""
    cols = tl.program_id(1) * BK + tl.arange(0, BK)
    cmask = cols < K
    alpha, beta, mean, high = _grad_columns(alpha_ptr, beta_ptr, mean_ptr, high_ptr, cols,
                                            cmask, R, RP, DOT_F32)  # fmt: skip
    csum = tl.zeros((BK,), dtype=tl.float32)
    for r0 in range(0, ROWS, BM):
        rows = tl.program_id(0) * ROWS + r0 + tl.arange(0, BM)
        csum += _grad_tile(a_ptr, out_ptr, lse_ptr, g_ptr, low_ptr, rows, cols, cmask, alpha,
                           beta, mean, high, B, R, stride_ab, stride_ak, stride_ob, stride_ok,
                           RP, HAS_LOW, RELU, PRECISION, DOT_F32, G_SCALAR)  # fmt: skip
    if COLSUM:  # the strip's column sums at row program_id(0) of the partials
        tl.store(part_ptr + tl.program_id(0) * K + cols, csum, mask=cmask)


@triton.autotune(configs=_configs(STATS_CONFIGS), key=["B", "K", "RELU", "ROWS", "BIAS"],
                 prune_configs_by={"early_config_prune": _fit_rows})  # fmt: skip
@triton.jit
def _stats_shift_kernel(
    a_ptr, codes_ptr, bias_ptr, rmax_ptr, rsum_ptr, cmean_ptr, cm2_ptr,
    B, K, stride_ab, stride_ak,
    BM: tl.constexpr, BK: tl.constexpr, ROWS: tl.constexpr, RELU: tl.constexpr,
    BIAS: tl.constexpr,
):  # fmt: skip
    pid_c = tl.program_id(0)  # row chunk
    pid_k = tl.program_id(1)  # column strip
    cols = pid_k * BK + tl.arange(0, BK)
    cmask = cols < K
    # the shift c: each column's mean over the chunk's first tile (within about one standard
    # deviation of the chunk's mean, so the final s2 - s1^2 / n does not cancel)
    rows = pid_c * ROWS + tl.arange(0, BM)
    mask = (rows < B)[:, None] & cmask[None, :]
    x = _load_tile(a_ptr, codes_ptr, bias_ptr, rows, cols, mask, K, stride_ab, stride_ak, RELU,
                   False, BIAS)  # fmt: skip
    first = tl.sum(x, axis=0) / tl.minimum(B - pid_c * ROWS, BM).to(tl.float32)  # (BK,)
    acc1 = tl.zeros((BM, BK), dtype=tl.float32)
    acc2 = tl.zeros((BM, BK), dtype=tl.float32)
    for r0 in range(0, ROWS, BM):
        rows = pid_c * ROWS + r0 + tl.arange(0, BM)
        rmask = rows < B
        mask = rmask[:, None] & cmask[None, :]
        x = _load_tile(a_ptr, codes_ptr, bias_ptr, rows, cols, mask, K, stride_ab, stride_ak,
                       RELU, True, BIAS)  # fmt: skip
        _store_row_partials(x, mask, rmask, rows, pid_k, B, rmax_ptr, rsum_ptr)
        d = tl.where(mask, x - first[None, :], 0.0)
        acc1 += d
        acc2 += d * d
    n = tl.minimum(B - pid_c * ROWS, ROWS).to(tl.float32)
    s1 = tl.sum(acc1, axis=0)  # (BK,)
    s2 = tl.sum(acc2, axis=0)
    tl.store(cmean_ptr + pid_c * K + cols, first + s1 / n, mask=cmask)
    tl.store(cm2_ptr + pid_c * K + cols, tl.maximum(s2 - s1 * (s1 / n), 0.0), mask=cmask)


def empty_partials(row_shape: tuple[int, int], col_shape: tuple[int, int],
                   device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """Uninitialised float32 (rmax, rsum) of row_shape and (cmean, cm2) of col_shape: the
    buffers a statistics pass writes (`stats_partials`, `triton_matmul_stats.mm_stats`, and
    their fake implementations)."""
    f32 = {"device": device, "dtype": torch.float32}
    return (torch.empty(row_shape, **f32), torch.empty(row_shape, **f32),
            torch.empty(col_shape, **f32), torch.empty(col_shape, **f32))  # fmt: skip


def partial_shapes(b: int, k: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Shapes of `stats_partials`' row partials (nK, B) and column partials (nC, K)."""
    return (triton.cdiv(k, BLOCK_K), b), (triton.cdiv(b, STATS["rows"]), k)


def stats_partials(a: Tensor, relu: bool = False, config: dict | None = None,
                   bias: Tensor | None = None, traced: bool = False) -> tuple[Tensor, ...]:  # fmt: skip
    """Partials of a (B, K), all float32: row max and row sum of exp(-a - max) per column
    strip (nK, B), nK = ceil(K / BLOCK_K); column mean and centred sum of squares per row
    chunk (nC, K), nC = ceil(B / R) for R = STATS["rows"], the last chunk holding
    B - (nC - 1) R rows.
    relu: a holds pre-activations z; the partials are those of ReLU(z), returned first
    (B, K), contiguous, z's dtype, written in the same pass. config: one of STATS_CONFIGS
    instead of the autotuned choice (the tests run each). bias: with relu, b (K,) float32 and
    a holding z0: the codes are ReLU(z0 + b), b rounded to z0's dtype first and the sum
    rounded to it (as torch computes z0 + b.to(z0.dtype)). traced: launch through
    torch.library.wrap_triton, for the body of a torch.library.triton_op
    (`kernels.triton_ops`); see `_stand_in`."""
    if bias is not None and not relu:
        raise ValueError("stats_partials: bias is folded only with relu=True (a holds z0)")
    b, k = a.shape
    row_shape, col_shape = partial_shapes(b, k)
    rmax, rsum, cmean, cm2 = empty_partials(row_shape, col_shape, a.device)
    codes = torch.empty(b, k, device=a.device, dtype=a.dtype) if relu else None
    grid = (col_shape[0], row_shape[0])
    tuned = _stats_shift_kernel if STATS["shift"] else _stats_kernel
    rows = STATS["rows"]
    if config is not None and config["BM"] > rows:
        return stats_partials(a, relu, {**config, "BM": rows}, bias, traced)
    kernel = tuned if config is None else tuned.fn
    if traced:
        kernel = wrap_triton(kernel)
    bias = None if bias is None else bias.float().contiguous()
    kernel[grid](a, _stand_in(codes, rmax, a.dtype, traced),
                 _stand_in(bias, rmax, torch.float32, traced), rmax, rsum, cmean, cm2, b, k,
                 a.stride(0), a.stride(1), BK=BLOCK_K, ROWS=rows, RELU=relu,
                 BIAS=bias is not None, **(config or {}))  # fmt: skip
    return (codes, rmax, rsum, cmean, cm2) if relu else (rmax, rsum, cmean, cm2)


def _stand_in(t: Tensor | None, other: Tensor, dtype: torch.dtype, traced: bool) -> Tensor:
    """t, or for a pointer argument the kernel does not touch (its constexpr switch off) a
    stand-in: `other`, a tensor the launch passes anyway; traced, a one-element tensor of
    its own of `dtype` instead, so that no tensor is passed twice to a launch that
    torch.compile functionalizes (it copies each argument the kernel may write, and a
    tensor passed as two arguments would be replaced by either copy)."""
    if t is not None:
        return t
    return other.new_empty(1, dtype=dtype) if traced else other


def grad(
    a: Tensor, row_lse: Tensor, g: Tensor, alpha: Tensor, beta: Tensor, mean: Tensor,
    low: Tensor | None = None, high: Tensor | None = None, relu: bool = False,
    config: dict | None = None, colsum: bool = False, traced: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:  # fmt: skip
    """(B, K) in a's dtype: g_i exp(-a_ij - row_lse_i) + alpha_j + beta_j (a_ij - mean_j)
    + (low high^T)_ij, times [a_ij > 0] with relu. row_lse (B,); g (B,), or 0-dim for one g
    for every row (read by the kernel, not expanded); alpha, beta, mean (K,)
    float32; low (B, r) and high (K, r) contiguous in a's dtype, or both None. config: one of
    GRAD_CONFIGS instead of the autotuned choice. colsum: also return the output's column
    sums (K,) float32 (of the values as written, in a's dtype: the bias gradient of
    z = z0 + b), from per-program partials the kernel writes, summed here. traced: launch
    through torch.library.wrap_triton, as in `stats_partials`."""
    b, k = a.shape
    out = torch.empty_like(a, memory_format=torch.contiguous_format)
    r = 0 if low is None else low.shape[1]
    rp = max(16, triton.next_power_of_2(max(r, 1)))

    rows = GRAD["rows"]
    if config is not None and rows and config["BM"] > rows:
        config = {**config, "BM": rows}

    def grid(meta):
        return triton.cdiv(b, rows or meta["BM"]), triton.cdiv(k, meta["BK"])

    tuned = _grad_loop_kernel if rows else _grad_kernel
    kernel = tuned if config is None else tuned.fn
    if traced:
        kernel = wrap_triton(kernel)
    kernel = kernel[grid] if config is None else kernel[grid(config)]
    part, height = None, rows or min(c["BM"] for c in ([config] if config else GRAD_CONFIGS))
    extra = {"ROWS": rows} if rows else {"PART_H": height}
    if colsum:  # one row of partials per `height` rows of out, every row written by the pass
        part = torch.empty(triton.cdiv(b, height), k, device=a.device, dtype=torch.float32)
    kernel(a, out, row_lse, g, alpha, beta, mean, _stand_in(low, out, a.dtype, traced),
           _stand_in(high, out, a.dtype, traced), _stand_in(part, out, torch.float32, traced),
           b, k, r, a.stride(0), a.stride(1), out.stride(0), out.stride(1),
           RP=rp, HAS_LOW=low is not None, RELU=relu,
           PRECISION=dot_precision(a.dtype),
           DOT_F32=interpreted(), COLSUM=colsum, G_SCALAR=g.dim() == 0, **extra,
           **(config or {}))  # fmt: skip
    return (out, part.sum(dim=0)) if colsum else out


@triton.jit
def _skinny_kernel(
    a_ptr, w_ptr, out_ptr, B, K, M, stride_ab, stride_ak, CHUNK: tl.constexpr,
    BM: tl.constexpr, BK: tl.constexpr, BN: tl.constexpr, TRANS: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """One chunk's partial product. TRANS=False: out[c] (B, M) = a[:, chunk c] @ w[chunk c]
    with w (K, M); TRANS=True: out[c] (K, M) = a[chunk c, :]^T @ w[chunk c] with w (B, M)."""
    pid = tl.program_id(0)
    c = tl.program_id(1)
    n_out = K if TRANS else B
    n_red = B if TRANS else K
    outs = pid * BM + tl.arange(0, BM)
    omask = outs < n_out
    nn = tl.arange(0, BN)
    nmask = nn < M
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for r0 in range(0, CHUNK, BK):  # CHUNK is a multiple of BK
        red = c * CHUNK + r0 + tl.arange(0, BK)
        rmask = red < n_red
        if TRANS:  # tile of a^T: (BM outputs = columns of a, BK rows of a)
            at = tl.load(a_ptr + red[None, :] * stride_ab + outs[:, None] * stride_ak,
                         mask=omask[:, None] & rmask[None, :], other=0.0)  # fmt: skip
        else:
            at = tl.load(a_ptr + outs[:, None] * stride_ab + red[None, :] * stride_ak,
                         mask=omask[:, None] & rmask[None, :], other=0.0)  # fmt: skip
        w = tl.load(w_ptr + red[:, None] * M + nn[None, :], mask=rmask[:, None] & nmask[None, :],
                    other=0.0)  # fmt: skip
        acc += tl.dot(at.to(tl.float32), w, input_precision=PRECISION)
    tl.store(out_ptr + c * n_out * M + outs[:, None] * M + nn[None, :], acc,
             mask=omask[:, None] & nmask[None, :])  # fmt: skip


def skinny(a: Tensor, w: Tensor, trans: bool = False, chunk: int = 1024) -> Tensor:
    """a (B, K) @ w (K, m), or a^T @ w for w (B, m) with trans=True, float32 out, m <= 128:
    split over the long reduction in chunks (many programs for a product only m wide),
    partials summed after. Float32 products (TF32 for bf16 a, whose values TF32 holds exactly;
    `dot_precision` for float32 a: three TF32 products) and accumulation."""
    b, k = a.shape
    n_out, n_red = (k, b) if trans else (b, k)
    m = w.shape[1]
    n_chunks = triton.cdiv(n_red, chunk)
    part = torch.empty(n_chunks, n_out, m, device=a.device, dtype=torch.float32)
    bm = 128 if trans else 64
    grid = (triton.cdiv(n_out, bm), n_chunks)
    _skinny_kernel[grid](a, w.contiguous(), part, b, k, m, a.stride(0), a.stride(1), CHUNK=chunk,
                         BM=bm, BK=64, BN=max(16, triton.next_power_of_2(m)), TRANS=trans,
                         PRECISION=dot_precision(a.dtype))  # fmt: skip
    return part.sum(dim=0)
