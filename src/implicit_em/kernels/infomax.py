"""The InfoMax terms (LSE, variance barrier, decorrelation penalty) with fused GPU kernels.

Legend: B batch, K components, m probes. a (B, K) codes, V (K, m) probes, U (B, K) the unit
columns of a (centred, scaled by s = `losses.column_scale`), P = U V (B, m), R (K, m) the
sketch residual (C - diag C) V with C = U^T U. The reference formulas are those of
`implicit_em.losses`; these functions compute the same values and gradients with the traffic
over a (B, K) cut to the minimum (see `implicit_em.kernels` for the passes).

Sketched-penalty gradient (tc = ||R||_F^2 / m, paper Eq. 7 estimated as in
`losses.sketched_correlation_loss`): with c = g_tc 2 / m, w_j = sum_k R_jk V_jk and Q = U R,
    dtc/dU = c (Q V^T + P R^T - 2 U diag(w)),
and through U = (a - mean) s: da_ij = s_j (dU_ij - colmean_i dU_ij) + 2 (a_ij - mean_j) g_ss_j,
where g_ss_j = tau_j ds_j/dss_j + g_var dvar/dss_j and tau_j = sum_i (a_ij - mean_j) dU_ij
needs one (K, B) x (B, m) product. The rank-2m part [Q, P] [V, R]^T is formed per tile
inside the backward kernel (tl.dot, inner dimension 2m), which writes dL/da, or dL/dz with
ReLU's mask when the caller passes the pre-activation z (`fused_terms`' preact).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from implicit_em.colstats import column_scale, variance_from_stats


def _kernels():
    from implicit_em.kernels import triton_infomax

    return triton_infomax


@torch.library.custom_op("implicit_em::infomax_stats", mutates_args=())
def infomax_stats(a: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One pass over a (B, K): partials, float32 (see `triton_infomax.stats_partials`): row max
    and row sum (nK, B) of exp(-a - max), column mean and centred sum of squares (nC, K)."""
    return _kernels().stats_partials(a)


@infomax_stats.register_fake
def _(a: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from implicit_em.kernels.triton_infomax import empty_partials, partial_shapes

    return empty_partials(*partial_shapes(*a.shape), a.device)


@torch.library.custom_op("implicit_em::infomax_relu_stats", mutates_args=())
def infomax_relu_stats(
    z: Tensor, bias: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """`infomax_stats` of a = ReLU(z), with a (B, K) itself (z's dtype) written in the pass;
    with bias (K,) float32, of a = ReLU(z + bias) (bias rounded to z's dtype, as autocast)."""
    return _kernels().stats_partials(z, relu=True, bias=bias)


@infomax_relu_stats.register_fake
def _(z: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    return (torch.empty_like(z, memory_format=torch.contiguous_format), *infomax_stats(z))


# Which operators the fused path calls (issue 19, round 12): "custom", the torch.library
# custom ops above (opaque to torch.compile: Inductor calls each as an extern fallback; every
# GPU round up to 11), or "triton", the same kernels as torch.library.triton_op
# (`kernels.triton_ops`: under torch.compile Inductor emits the kernel launches in its own
# code). Same values either way. Default from the environment variable IMPLICIT_EM_OPS.
OPS = {"kind": os.environ.get("IMPLICIT_EM_OPS", "custom")}
OPS_KINDS = ("custom", "triton")


def _op(name: str):
    """The operator `name` ("stats", "relu_stats", "grad" or "mm_stats") of the kind
    OPS["kind"] says. Raises ValueError for another kind. (`linear_relu_stats`, the cuBLAS
    fold's forward, is a custom op only: its statistics pass stays opaque to torch.compile
    under either kind.)"""
    kind = OPS["kind"]
    if kind == "custom":
        return {"stats": infomax_stats, "relu_stats": infomax_relu_stats,
                "grad": infomax_grad, "mm_stats": infomax_mm_stats}[name]  # fmt: skip
    if kind == "triton":
        from implicit_em.kernels import triton_ops

        return {"stats": triton_ops.infomax_stats, "relu_stats": triton_ops.infomax_relu_stats,
                "grad": triton_ops.infomax_grad,
                "mm_stats": triton_ops.infomax_mm_stats}[name]  # fmt: skip
    raise ValueError(f"kernel operators must be one of {OPS_KINDS}, got {kind!r}: set "
                     "IMPLICIT_EM_OPS (or kernels.infomax.OPS['kind']) to custom or triton")  # fmt: skip


def combine_stats(
    a: Tensor, relu: bool = False, bias: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(codes (B, K), row_lse (B,), mean (K,), ss (K,)) of a (B, K), float32, from one fused
    pass: row_lse_i = logsumexp_j(-a_ij); each column's mean and centred sum of squares
    (`merge_partials`). codes is a itself, or with relu (a holding z) ReLU(z), written by the
    pass; with relu and bias (K,), ReLU(a + bias) (a holding z0, the pre-activation without b)."""
    from implicit_em.kernels.triton_infomax import STATS

    if relu:
        a, rmax, rsum, cmean, cm2 = _op("relu_stats")(a, bias)
    else:
        rmax, rsum, cmean, cm2 = _op("stats")(a)  # (nK, B) x 2, (nC, K) x 2
    return (a, *merge_partials(rmax, rsum, cmean, cm2, a.shape[0], STATS["rows"]))


def merge_partials(
    rmax: Tensor, rsum: Tensor, cmean: Tensor, cm2: Tensor, b: int, rows: int
) -> tuple[Tensor, Tensor, Tensor]:
    """(row_lse (B,), mean (K,), ss (K,)), float32, from a pass's partials: row max of -a and
    row sum of exp(-a - max) per column strip (nK, B); column mean and centred sum of squares
    per chunk of `rows` rows (nC, K), the last chunk holding b - (nC - 1) rows. The chunks
    merge by Chan, Golub and LeVeque's update (their 1979 pairwise variance)."""
    top = rmax.amax(dim=0)  # (B,)
    row_lse = top + torch.log((rsum * torch.exp(rmax - top)).sum(dim=0))  # (B,)
    starts = torch.arange(cmean.shape[0], device=cmean.device, dtype=torch.float32) * rows
    counts = (b - starts).clamp(max=rows)[:, None]  # (nC, 1) rows per chunk
    mean = (counts * cmean).sum(dim=0) / b  # (K,)
    ss = cm2.sum(dim=0) + (counts * (cmean - mean).square()).sum(dim=0)  # (K,)
    return row_lse, mean, ss


@torch.library.custom_op("implicit_em::infomax_grad", mutates_args=())
def infomax_grad(
    a: Tensor, row_lse: Tensor, g: Tensor, alpha: Tensor, beta: Tensor, mean: Tensor,
    low: Tensor | None, high: Tensor | None, relu: bool, colsum: bool,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """(out (B, K) in a's dtype, its column sums (K,) float32 or an empty (0,) tensor without
    colsum): out = g_i softmax(-a)_ij + alpha_j + beta_j (a_ij - mean_j) + (low high^T)_ij,
    with low (B, r), high (K, r) in a's dtype (or both None), formed per tile in the kernel;
    with relu, times [a_ij > 0] (the gradient of z for a = ReLU(z)). The column sums (the
    bias gradient of the bias fold) come from per-program partials of the same pass."""
    out = _kernels().grad(a, row_lse, g, alpha, beta, mean, low, high, relu, colsum=colsum)
    return out if colsum else (out, row_lse.new_empty(0))


@infomax_grad.register_fake
def _(a, row_lse, g, alpha, beta, mean, low, high, relu, colsum) -> tuple[Tensor, Tensor]:
    sums = row_lse.new_empty(a.shape[1] if colsum else 0, dtype=torch.float32)
    return torch.empty_like(a, memory_format=torch.contiguous_format), sums


@torch.library.custom_op("implicit_em::skinny_mm", mutates_args=())
def skinny_mm(a: Tensor, w: Tensor, trans: bool) -> Tensor:
    """a (B, K) @ w (K, m), or a^T @ w (B, m) with trans, float32 out (`triton_infomax.skinny`)."""
    return _kernels().skinny(a, w, trans)


@skinny_mm.register_fake
def _(a: Tensor, w: Tensor, trans: bool) -> Tensor:
    return a.new_empty(a.shape[1] if trans else a.shape[0], w.shape[1], dtype=torch.float32)


# Who computes the sketch's products: "cublas" (torch.matmul) or "triton" (split over the long
# reduction, `triton_infomax.skinny`). On the H200 at B = 4096, K = 16384, m = 32, bf16:
# cuBLAS 0.038 / 0.035 ms (a V, a^T P), Triton 0.085 / 0.054 ms (benchmarks/bench_infomax_kernels.py).
SKINNY = {"backend": "cublas"}

# The exact penalty's Gram (B < K): "float32" keeps the unit columns U in float32 (TF32
# matmuls where allowed), as the reference; "bfloat16" casts U to bf16 first: about twice
# the matmul rate, at the error measured in docs/benchmarks.md (issue 19). "blocks": the
# forward forms only the Gram's upper block rows U_i U_{i:}^T of that many row blocks
# (`_GramBlocked`: (blocks + 1) / (2 blocks) of the full product's work; 1: the full Gram).
EXACT = {"gram": "float32", "blocks": 4}

# The encoder's bias fold on the fused sketched step (`families.encoder.bias_fold`): "bias"
# True adds b in the statistics pass and sums dL/db in the gradient pass; False keeps the
# bias in the encoder's matmul and its gradient to autograd (the step of issue 19's rounds
# 1-3; benchmarks/bench_scale.py's "/b0" rows). Off by default since round 6 on the H200
# measured the fold slower (0.19 ms a step within that run; one run: between runs the same
# step moved by 0.25 ms, docs/benchmarks.md, "Round 6"). Round 7 (four processes of one
# call, 512 rows): the fold minus the default per process -0.240, -0.346, -0.083, -0.153 ms,
# not all beyond the spread across processes (S = 0.325 ms): undecided, so it stays off.
# Round 8 (the rows timed in interleaved windows, fold minus default in the same cycle): per
# process median -0.012, +0.007, -0.027, -0.062 ms, no process "faster": undecided, stays off.
# "matmul" (issue 19, rounds 14-15): the encoder's matmul inside the fused terms
# (`fused_encoder_terms`, whose backward writes dL/dz and dL/db in the gradient pass and then
# dW = dz^T x), False for off, or which forward: "triton" (`triton_matmul_stats`: one Triton
# GEMM writes a = ReLU(x W^T + b) and the statistics' partials; round 14 measured it slower
# on the H200) or "cublas" (cuBLAS's ReLU epilogue writes a, `torch._addmm_activation`, then
# the statistics pass reads a and writes nothing: z is never written; round 15 measured it
# "undecided", at most 0.010 ms of a 0.822 ms step). Off (docs/benchmarks.md, "Round 14",
# "Round 15").
FOLD = {"bias": False, "matmul": False}
MATMUL_FOLDS = (False, "triton", "cublas")


def _mm(a: Tensor, w: Tensor) -> Tensor:
    """a (B, K) @ w (K, m) in a's dtype, float32 accumulation and result."""
    if SKINNY["backend"] == "triton":
        return skinny_mm(a, w.float().contiguous(), False)
    return (a @ w.to(a.dtype)).float()


def _mm_t(a: Tensor, p: Tensor) -> Tensor:
    """a^T (K, B) @ p (B, m) in a's dtype, float32 accumulation and result."""
    if SKINNY["backend"] == "triton":
        return skinny_mm(a, p.float().contiguous(), True)
    return (a.mT @ p.to(a.dtype)).float()


class _Stats(torch.autograd.Function):
    """a (B, K) -> (row_lse (B,), mean (K,), ss (K,)) with the one-pass backward
    da = -g_row softmax(-a) + g_mean / B + 2 g_ss (a - mean)."""

    @staticmethod
    def forward(ctx, a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        _, row_lse, mean, ss = combine_stats(a)
        ctx.save_for_backward(a, row_lse, mean)
        return row_lse, mean, ss

    @staticmethod
    def backward(ctx, g_row: Tensor, g_mean: Tensor, g_ss: Tensor) -> Tensor:
        a, row_lse, mean = ctx.saved_tensors
        da, _ = _op("grad")(a, row_lse, -g_row.float().contiguous(),
                            (g_mean / a.shape[0]).float().contiguous(),
                            (2 * g_ss).float().contiguous(), mean, None, None, False, False)  # fmt: skip
        return da


def _sketch_forward(a: Tensor, v: Tensor, row_lse: Tensor, mean: Tensor, ss: Tensor,
                    eps: float) -> tuple[tuple[Tensor, Tensor, Tensor], tuple[Tensor, ...]]:  # fmt: skip
    """((lse, var, tc), saved) of codes a (B, K) with probes v (K, m) float32, from their
    merged statistics; saved is what `_sketch_backward` reads (see the module doc)."""
    b, m = a.shape[0], v.shape[1]
    live, s = column_scale(mean, ss, b)  # (K,), (K,)
    ssu = ss * live
    var = variance_from_stats(ssu, b, eps)
    sv = s[:, None] * v  # (K, m)
    # mean^T (s V) as an elementwise product and sum, not a (1, K) @ (K, m) matmul: the
    # compiler fuses it with sv's own kernel (no separate gemv; exact float32, no TF32)
    p = _mm(a, sv) - (mean[:, None] * sv).sum(dim=0)  # (B, m) = U V
    xc = _mm_t(a, p) - mean[:, None] * p.sum(dim=0)  # (K, m) = (a - mean)^T U V
    r = s[:, None] * xc - (ssu * s.square())[:, None] * v  # (K, m) = (C - diag C) V
    tc = r.square().sum() / m
    return (-row_lse.sum(), var, tc), (a, v, row_lse, mean, ssu, live, s, p, xc, r)


def _sketch_backward(saved: tuple[Tensor, ...], eps: float, g_lse: Tensor, g_var: Tensor,
                     g_tc: Tensor, relu: bool, colsum: bool) -> tuple[Tensor, Tensor]:  # fmt: skip
    """(dL/da (B, K) in a's dtype, or dL/dz with relu; its column sums (K,) float32 with
    colsum, else an empty tensor) from `_sketch_forward`'s saved tensors."""
    a, v, row_lse, mean, ssu, live, s, p, xc, r = saved
    b, m = a.shape[0], v.shape[1]
    c = 2 * g_tc / m
    w = (r * v).sum(dim=1)  # (K,)
    sr = s[:, None] * r  # (K, m)
    q = _mm(a, sr) - (mean[:, None] * sr).sum(dim=0)  # (B, m) = U R (see forward)
    ctq = _mm_t(a, q) - mean[:, None] * q.sum(dim=0)  # (K, m) = (a - mean)^T U R
    tau = c * ((ctq * v).sum(dim=1) + (xc * r).sum(dim=1) - 2 * s * ssu * w)  # dL/ds
    # ds/dss = -s^3 / 2 for every rule of `column_scale`; live columns only carry var.
    g_ss = -0.5 * tau * s**3 - g_var * live / (ssu + (b - 1) * eps)
    # (K,) = 1^T dU; row sums over m, fused with w's and tau's (no (K, m) @ (m,) gemv)
    colsum_du = c * (v * q.sum(dim=0) + r * p.sum(dim=0)).sum(dim=1)
    alpha = -s * colsum_du / b
    beta = 2 * g_ss - 2 * c * s.square() * w
    low = torch.cat([q, p], dim=1).to(a.dtype)  # (B, 2m)
    high = (c * s[:, None] * torch.cat([v, r], dim=1)).to(a.dtype)  # (K, 2m)
    g_row = g_lse.float().reshape(())  # one g for every row: the kernel broadcasts it
    return _op("grad")(a, row_lse, g_row, alpha.contiguous(), beta.contiguous(), mean,
                       low.contiguous(), high.contiguous(), relu, colsum)  # fmt: skip


class _SketchTerms(torch.autograd.Function):
    """(x, V) -> (lse, var, tc) of the codes a as `losses.combined_loss` with probes V; the
    gradient goes to x: a = x (relu False) or x = z and a = ReLU(z) (relu True: the
    statistics pass writes a, the backward kernel applies the mask). With relu and a bias
    b (K,), x = z0 and a = ReLU(z0 + b): the gradient also goes to b, summed by the backward
    kernel (the bias fold). See the module doc."""

    @staticmethod
    def forward(
        ctx, x: Tensor, probes: Tensor, eps: float, relu: bool, bias: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        a, row_lse, mean, ss = combine_stats(x, relu, bias)  # (B, K), (B,), (K,), (K,)
        out, saved = _sketch_forward(a, probes.float(), row_lse, mean, ss, eps)
        ctx.save_for_backward(*saved)
        ctx.eps, ctx.relu = eps, relu
        ctx.bias = None if bias is None else (bias.dtype, bias.shape)
        return out

    @staticmethod
    def backward(ctx, g_lse: Tensor, g_var: Tensor, g_tc: Tensor):
        dx, db = _sketch_backward(ctx.saved_tensors, ctx.eps, g_lse, g_var, g_tc, ctx.relu,
                                  ctx.bias is not None)  # fmt: skip
        return dx, None, None, None, None if ctx.bias is None else db.to(ctx.bias[0])


@torch.library.custom_op("implicit_em::infomax_mm_stats", mutates_args=())
def infomax_mm_stats(
    x: Tensor, w: Tensor, bias: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(a (B, K), then the row partials (nN, B) x 2 and column partials (nM, K) x 2) of
    a = ReLU(x W^T + b) from the encoder's matmul with the statistics in its epilogue
    (`triton_matmul_stats.mm_stats`, the tile `MM`)."""
    from implicit_em.kernels import triton_matmul_stats

    return triton_matmul_stats.mm_stats(x, w, bias)


@infomax_mm_stats.register_fake
def _(x: Tensor, w: Tensor, bias: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    from implicit_em.kernels.triton_infomax import empty_partials
    from implicit_em.kernels.triton_matmul_stats import mm_partial_shapes

    partials = empty_partials(*mm_partial_shapes(x.shape[0], w.shape[0]), x.device)
    return (x.new_empty(x.shape[0], w.shape[0]), *partials)


@torch.library.custom_op("implicit_em::linear_relu_stats", mutates_args=())
def linear_relu_stats(
    x: Tensor, w: Tensor, bias: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(a (B, K), then `infomax_stats`' partials of a) for a = ReLU(x W^T + b): cuBLAS writes
    a with the bias and ReLU in its epilogue (`torch._addmm_activation`; on the CPU addmm then
    ReLU), and the statistics pass reads a without writing it again. b is rounded to x's
    dtype, as autocast's F.linear rounds it."""
    a = torch._addmm_activation(bias.to(x.dtype), x, w.mT)  # (B, K)
    return (a, *_kernels().stats_partials(a))


@linear_relu_stats.register_fake
def _(x: Tensor, w: Tensor, bias: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    a = x.new_empty(x.shape[0], w.shape[0])
    return (a, *infomax_stats(a))


def _matmul_forward(x: Tensor, w: Tensor, bias: Tensor, kind: str) -> tuple[Tensor, ...]:
    """(a, row_lse, mean, ss) of a = ReLU(x W^T + b) by the forward `kind` names: "cublas"
    or "triton" (see FOLD)."""
    if kind == "cublas":
        from implicit_em.kernels.triton_infomax import STATS

        a, *parts = linear_relu_stats(x, w, bias)
        rows = STATS["rows"]
    else:
        from implicit_em.kernels.triton_matmul_stats import MM

        a, *parts = _op("mm_stats")(x, w, bias)
        rows = MM["BM"]
    return (a, *merge_partials(*parts, x.shape[0], rows))


class _MatmulSketchTerms(torch.autograd.Function):
    """(x, W, b, V) -> (lse, var, tc, a) for a = ReLU(x W^T + b): the sketched terms of
    `_SketchTerms` with the encoder's matmul inside (the matmul fold, `_matmul_forward`:
    `triton_matmul_stats`' GEMM or cuBLAS's ReLU epilogue). Backward: dL/dz and dL/db from
    the gradient pass, then dW = dz^T x (K, D) and, when x needs it, dx = dz W (B, D) in
    cuBLAS. a is returned detached (no gradient flows back through it)."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, bias: Tensor, probes: Tensor, eps: float,
                kind: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
        a, row_lse, mean, ss = _matmul_forward(x, w, bias, kind)
        out, saved = _sketch_forward(a, probes.float(), row_lse, mean, ss, eps)
        ctx.save_for_backward(x, w, *saved)
        ctx.eps, ctx.bias_dtype = eps, bias.dtype
        ctx.mark_non_differentiable(a)
        return (*out, a)

    @staticmethod
    def backward(ctx, g_lse: Tensor, g_var: Tensor, g_tc: Tensor, _g_a: Tensor | None):
        x, w, *saved = ctx.saved_tensors
        dz, db = _sketch_backward(tuple(saved), ctx.eps, g_lse, g_var, g_tc, True, True)
        dw = dz.mT @ x if ctx.needs_input_grad[1] else None  # (K, D)
        dx = dz @ w if ctx.needs_input_grad[0] else None  # (B, D)
        return dx, dw, db.to(ctx.bias_dtype), None, None, None


def fused_encoder_terms(
    x: Tensor, w: Tensor, bias: Tensor, probes: Tensor, variance_eps: float,
    forward: str | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """(lse, var, tc, a) of the codes a = ReLU(x W^T + b) (B, K) with the sketched penalty
    (probes V (K, m)), the encoder's matmul computed with the statistics (the matmul
    fold, `FOLD["matmul"]`: the Triton GEMM's epilogue, or cuBLAS's ReLU epilogue followed by
    the statistics pass): the values and gradients (to x, W and b) of
    `fused_terms(a, probes, eps, preact=x W^T, bias=b)`, up to the order of the matmul's
    float32 sums. x (B, D) and w (K, D) of one dtype (bf16 under autocast: cast them first),
    bias (K,) float32. a comes back detached, in x's dtype. forward: "triton" or "cublas"
    (see FOLD); None: FOLD["matmul"], or "triton" when that is off. Raises ValueError on
    mismatched shapes or dtypes (`triton_matmul_stats.check_operands`) or another forward."""
    from implicit_em.kernels.triton_matmul_stats import check_operands

    kind = forward or FOLD["matmul"] or "triton"
    if kind not in MATMUL_FOLDS[1:]:
        raise ValueError(f"the matmul fold's forward must be one of {MATMUL_FOLDS[1:]}, got "
                         f"{kind!r}: set kernels.infomax.FOLD['matmul'] to one of them")  # fmt: skip
    check_operands(x, w, bias)
    return _MatmulSketchTerms.apply(x, w, bias, probes, variance_eps, kind)


def fused_terms(
    a: Tensor, probes: Tensor | None, variance_eps: float, preact: Tensor | None = None,
    bias: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """(lse, var, tc) of a (B, K) through the kernels; probes (K, m) or None (exact tc).

    preact: z (B, K) with a = ReLU(z), or None. With probes, the terms are then computed from
    z (the statistics pass writes ReLU(z), the backward kernel applies ReLU's mask and
    returns dL/dz), and a is not read, so under torch.compile the caller's own ReLU is dead
    code unless used elsewhere; the exact penalty ignores preact (its gradient flows
    through a). bias: b (K,) with preact = z0 and a = ReLU(z0 + b.to(z0.dtype)) (the bias
    fold: the statistics pass adds b, the backward kernel sums dL/dz over rows for dL/db, so
    z0 = x W^T needs no bias of its own); the exact penalty ignores it too. Raises ValueError
    when preact's shape or dtype differs from a's, or bias is not (K,) or comes without preact.

    Exact tc: LSE and column statistics from the fused pass, the unit columns and their
    Gram (B < K) or K x K penalty as in `losses.correlation_loss`.
    """
    if preact is not None and (preact.shape != a.shape or preact.dtype != a.dtype):
        raise ValueError(f"preact {tuple(preact.shape)} {preact.dtype} must match the codes "
                         f"{tuple(a.shape)} {a.dtype}: pass z with a = relu(z)")  # fmt: skip
    if bias is not None and (preact is None or tuple(bias.shape) != (a.shape[1],)):
        raise ValueError(f"bias {tuple(bias.shape)} must be (K,) = ({a.shape[1]},) and come with "
                         "preact z0, a = relu(z0 + bias): pass both or neither")  # fmt: skip
    if probes is not None:
        if preact is not None:  # a itself is not read: the pass recomputes it from z
            return _SketchTerms.apply(preact, probes, variance_eps, True, bias)
        return _SketchTerms.apply(a, probes, variance_eps, False, None)
    from implicit_em.colstats import _offdiag_sq_kk

    b, k = a.shape
    row_lse, mean, ss = _Stats.apply(a)
    live, s = column_scale(mean, ss, b)
    var = variance_from_stats(ss * live, b, variance_eps)
    u = (a - mean) * s  # (B, K) float32
    if b < k:
        u = u.to(torch.bfloat16) if EXACT["gram"] == "bfloat16" else u
        return -row_lse.sum(), var, _GramBlocked.apply(u, EXACT["blocks"])
    tc = _offdiag_sq_kk(u)
    return -row_lse.sum(), var, tc


class _GramBlocked(torch.autograd.Function):
    """sum_{j != k} (U^T U)_jk^2 = ||U U^T||_F^2 - sum_j d_j^2, d_j = ||U_:j||^2, for U (B, K)
    (float32, or bf16 with float32 accumulation, products rounded to bf16), B < K.

    Forward: the symmetric Gram G = U U^T (B, B) from its upper block rows only, G_i = U_i
    U_{i:}^T for `blocks` row blocks U_i, so ||G||^2 = sum_i ||G_ii||^2 + 2 ||G_i,>i||^2 at
    (blocks + 1) / (2 blocks) of the full product's work; G is assembled for the backward.
    Backward: dL/dU = 4 g (G U - U diag(d)), one (B, B) @ (B, K) product. The reference:
    `colstats._offdiag_sq_gram` (one full Gram, same gradient)."""

    @staticmethod
    def forward(ctx, u: Tensor, blocks: int) -> Tensor:
        b = u.shape[0]
        step = -(-b // max(1, blocks))  # rows per block
        gram = torch.empty(b, b, device=u.device, dtype=u.dtype)  # (B, B)
        sq = torch.zeros((), device=u.device, dtype=torch.float32)
        for i0 in range(0, b, step):
            i1 = min(i0 + step, b)
            g = u[i0:i1] @ u[i0:].mT  # (i1 - i0, B - i0): row block i, columns from i0
            gram[i0:i1, i0:] = g
            gram[i1:, i0:i1] = g[:, i1 - i0 :].mT
            gf = g.float()
            sq = sq + gf[:, : i1 - i0].square().sum() + 2 * gf[:, i1 - i0 :].square().sum()
        d = u.float().square().sum(dim=0)  # (K,)
        ctx.save_for_backward(u, gram, d)
        return sq - d.square().sum()

    @staticmethod
    def backward(ctx, g: Tensor):
        u, gram, d = ctx.saved_tensors
        return ((4 * g) * ((gram @ u).float() - u.float() * d)).to(u.dtype), None  # (B, K)
