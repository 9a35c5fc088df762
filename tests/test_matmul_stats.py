"""The matmul fold (issue 19, round 14): the encoder's matmul with the InfoMax statistics in
its epilogue (`kernels.triton_matmul_stats`, `kernels.infomax.fused_encoder_terms`) against
the plain formulas, values and gradients, float32 to 1e-5 relative.

On a CPU machine the kernel runs in Triton's interpreter (conftest sets TRITON_INTERPRET=1);
on a GPU machine compiled. Every tile configuration of `MM_CONFIGS` is run; shapes are not
multiples of any tile, with dead units (W row 0, bias < 0) and a constant one (W row 0, bias
1.5, exact in float32).
"""

from __future__ import annotations

import pytest
import torch

from implicit_em.config import LossConfig
from implicit_em.kernels import fused_mode
from implicit_em.kernels import infomax as fused_impl
from implicit_em.kernels import triton_matmul_stats as tm
from implicit_em.losses import infomax_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
WEIGHTS = (1.0, 0.7, 1.3)  # lse, var, tc: distinct, so a wrong term's gradient shows
DEAD, CONSTANT = (4, 9), 6


def operands(b: int, k: int, d: int, seed: int = 0):
    """x (B, D), W (K, D), bias (K,) float32 with units DEAD never firing and CONSTANT a
    column of 1.5 (W rows 0)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g) + 0.2
    w = torch.randn(k, d, generator=g) / d**0.5
    w[0] += 0.8 * w[1]  # some real correlation between two units
    bias = 0.3 * torch.randn(k, generator=g)
    w[list(DEAD)], bias[list(DEAD)] = 0.0, -1.0
    w[CONSTANT], bias[CONSTANT] = 0.0, 1.5
    return x.to(DEVICE), w.to(DEVICE), bias.to(DEVICE)


def plain_stats(a: torch.Tensor):
    """(row_lse, mean, ss) of a (B, K) by the plain formulas, float64."""
    a = a.double()
    mean = a.mean(dim=0)
    return torch.logsumexp(-a, dim=1), mean, (a - mean).square().sum(dim=0)


@pytest.mark.parametrize("b,k,d", [(70, 300, 50), (300, 130, 64), (129, 257, 33)])
def test_mm_stats_every_config_matches_plain(b, k, d):
    """Each tile of MM_CONFIGS: the codes ReLU(x W^T + b) and the merged row LSE, column mean
    and centred sum of squares, to 1e-5 relative; the constant column's exactly 0."""
    x, w, bias = operands(b, k, d)
    want = torch.relu(x @ w.T + bias)  # (B, K)
    lse_w, mean_w, ss_w = plain_stats(want)
    for cfg in tm.MM_CONFIGS:
        codes, rmax, rsum, cmean, cm2 = tm.mm_stats(x, w, bias, config=cfg)
        assert (rmax.shape, cmean.shape) == tm.mm_partial_shapes(b, k, cfg)
        torch.testing.assert_close(codes, want, rtol=1e-5, atol=1e-5)
        lse, mean, ss = fused_impl.merge_partials(rmax, rsum, cmean, cm2, b, cfg["BM"])
        torch.testing.assert_close(lse.double(), lse_w, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(mean.double(), mean_w, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ss.double(), ss_w, rtol=1e-5, atol=1e-4)
        assert ss[CONSTANT] == 0 and (codes[:, list(DEAD)] == 0).all()


def test_mm_stats_bf16_rounds_as_the_unfused_path():
    """bf16 operands: the codes are relu(x W^T + b.to(bf16)) summed in float32 and rounded
    once to bf16 (as F.linear(x, W, b) under autocast rounds them), up to the order of the
    float32 sums (no entry more than one bf16 step off); the partials are those of the codes
    the pass wrote."""
    x, w, bias = operands(300, 260, 64)
    x, w = x.to(torch.bfloat16), w.to(torch.bfloat16)
    z = x.double() @ w.double().T + bias.to(torch.bfloat16).double()
    want = torch.relu(z.to(torch.bfloat16))
    for cfg in tm.MM_CONFIGS:
        codes, *parts = tm.mm_stats(x, w, bias, config=cfg)
        assert codes.dtype == torch.bfloat16
        step = torch.finfo(torch.bfloat16).eps * want.float().abs().clamp(min=1e-2)
        assert ((codes.float() - want.float()).abs() <= step).all()
        lse, mean, ss = fused_impl.merge_partials(*parts, 300, cfg["BM"])
        lse_w, mean_w, ss_w = plain_stats(codes)
        torch.testing.assert_close(lse.double(), lse_w, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(mean.double(), mean_w, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ss.double(), ss_w, rtol=1e-5, atol=1e-3)


def terms_and_grads(fn, x, w, bias):
    xs = [t.detach().clone().requires_grad_(True) for t in (x, w, bias)]
    out = fn(*xs)
    loss = sum(c * t for c, t in zip(WEIGHTS, out[:3], strict=True))
    return torch.stack([t.detach() for t in out[:3]]), torch.autograd.grad(loss, xs)


@pytest.mark.parametrize("forward", ["triton", "cublas"])
@pytest.mark.parametrize("b,k,d,m", [(70, 300, 50, 8), (300, 130, 64, 4)])
def test_fused_encoder_terms_match_reference(b, k, d, m, forward):
    """lse, var, tc and their gradients to x, W and b against the reference formulas on
    ReLU(x W^T + b) through autograd, to 1e-5 relative (the gradient to its largest entry);
    the dead units get no gradient. Both forwards: the Triton GEMM and cuBLAS's epilogue."""
    x, w, bias = operands(b, k, d)
    v = torch.randn(k, m, generator=torch.Generator().manual_seed(1)).to(DEVICE)

    def fused(x, w, bias):
        return fused_impl.fused_encoder_terms(x, w, bias, v, 1e-6, forward)

    def plain(x, w, bias):
        return infomax_reference(torch.relu(x @ w.T + bias), v, 1e-6)

    val_f, grads_f = terms_and_grads(fused, x, w, bias)
    val_r, grads_r = terms_and_grads(plain, x, w, bias)
    torch.testing.assert_close(val_f, val_r, rtol=1e-5, atol=0.0)
    for name, gf, gr in zip(("x", "W", "b"), grads_f, grads_r, strict=True):
        assert gf.shape == gr.shape and gf.dtype == gr.dtype
        err = (gf - gr).abs().max() / gr.abs().max()
        assert err < 1e-5, f"dL/d{name} off by {err:.2e} relative"
    gw, gb = grads_f[1], grads_f[2]
    assert (gb[list(DEAD)] == 0).all() and (gw[list(DEAD)] == 0).all()


def test_fused_encoder_terms_return_the_codes_detached():
    x, w, bias = operands(70, 300, 50)
    w.requires_grad_(True)
    v = torch.randn(300, 8, device=DEVICE)
    *_, a = fused_impl.fused_encoder_terms(x, w, bias, v, 1e-6)
    assert not a.requires_grad
    torch.testing.assert_close(a, torch.relu(x @ w.detach().T + bias), rtol=1e-5, atol=1e-5)


def test_mm_stats_refuses_mismatched_operands():
    x, w, bias = operands(70, 300, 50)
    v = torch.randn(300, 8, device=DEVICE)
    with pytest.raises(ValueError, match="must be \\(K,\\)"):
        fused_impl.fused_encoder_terms(x, w, bias[:10], v, 1e-6, "cublas")
    with pytest.raises(ValueError, match="forward must be one of \\('triton', 'cublas'\\), got 'x'"):
        fused_impl.fused_encoder_terms(x, w, bias, v, 1e-6, "x")
    with pytest.raises(ValueError, match="must be \\(B, D\\) and \\(K, D\\) of one dtype"):
        tm.mm_stats(x, w[:, :40], bias)
    with pytest.raises(ValueError, match="one dtype"):
        tm.mm_stats(x.double(), w, bias)
    with pytest.raises(ValueError, match="must be \\(K,\\)"):
        tm.mm_stats(x, w, bias[:10])


@pytest.mark.parametrize("kind", ["custom", "triton"])
def test_the_op_kinds_give_the_kernel_values(monkeypatch, kind):
    """`infomax_mm_stats` as a custom op and as a triton op (eager) return what
    `mm_stats` returns."""
    monkeypatch.setitem(fused_impl.OPS, "kind", kind)
    x, w, bias = operands(70, 300, 50)
    got = fused_impl._op("mm_stats")(x, w, bias)
    for g, want in zip(got, tm.mm_stats(x, w, bias), strict=True):
        assert torch.equal(g, want)


def test_cublas_forward_writes_the_codes_and_their_statistics():
    """`linear_relu_stats`: a = ReLU(x W^T + b) (addmm's sum, then ReLU) and the statistics
    pass's partials of exactly those codes."""
    from implicit_em.kernels import triton_infomax as tk

    x, w, bias = operands(300, 260, 64)
    a, *parts = fused_impl.linear_relu_stats(x, w, bias)
    torch.testing.assert_close(a, torch.relu(x @ w.T + bias), rtol=1e-5, atol=1e-5)
    for got, want in zip(parts, tk.stats_partials(a), strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("forward", ["triton", "cublas"])
@pytest.mark.parametrize("centre", [False, True])
def test_encoder_family_takes_the_matmul_fold(monkeypatch, centre, forward):
    """With FOLD["matmul"] on, the family's step on the fused sketched path goes through
    `fused_encoder_terms`; its terms, codes and parameter gradients (W, b) equal the
    reference step's (fused off) to 1e-5 relative, with centred inputs too. Off by default;
    the exact penalty and softplus codes keep the plain step."""
    from encoder_step_fixtures import assert_step_matches_reference

    from implicit_em.families import encoder as fam
    from implicit_em.models import Encoder

    calls = []
    real = fused_impl.fused_encoder_terms
    monkeypatch.setattr(fused_impl, "fused_encoder_terms",
                        lambda *a: calls.append(fused_impl.FOLD["matmul"]) or real(*a))  # fmt: skip
    cfg = LossConfig(tc_probes=8)
    x = torch.randn(70, 24, device=DEVICE) + 0.5
    with fused_mode("on"):
        assert not fam.matmul_fold(Encoder(24, 300).to(DEVICE), cfg, x)  # the default
    monkeypatch.setitem(fused_impl.FOLD, "matmul", forward)
    assert_step_matches_reference(x, cfg, centre, ("lse", "var", "tc", "wr"))
    assert calls == [forward]
    with fused_mode("on"):
        assert not fam.matmul_fold(Encoder(24, 300).to(DEVICE), LossConfig(), x)
        assert not fam.matmul_fold(Encoder(24, 300, "softplus").to(DEVICE), cfg, x)


def test_fused_encoder_terms_trace_under_torch_compile():
    """The matmul fold under torch.compile (fullgraph: no graph break; AOTAutograd through
    the custom op and the autograd.Function): the gradients of the eager call."""
    x, w, bias = operands(70, 300, 50)
    v = torch.randn(300, 8, generator=torch.Generator().manual_seed(1)).to(DEVICE)

    def objective(x, w, bias):
        out = fused_impl.fused_encoder_terms(x, w, bias, v, 1e-6)
        return sum(c * t for c, t in zip(WEIGHTS, out[:3], strict=True))

    compiled = torch.compile(objective, backend="aot_eager", fullgraph=True)
    grads = []
    for fn in (compiled, objective):
        xs = [t.clone().requires_grad_(True) for t in (x, w, bias)]
        grads.append(torch.autograd.grad(fn(*xs), xs))
    for gc, ge in zip(*grads, strict=True):
        torch.testing.assert_close(gc, ge, rtol=1e-5, atol=1e-7)


def test_tile_from_the_environment(monkeypatch):
    monkeypatch.setenv("IMPLICIT_EM_MM_CONFIG", "1")
    assert tm._config_from_env() == tm.MM_CONFIGS[1]
    for bad in ("9", "x", "-1"):
        monkeypatch.setenv("IMPLICIT_EM_MM_CONFIG", bad)
        with pytest.raises(ValueError, match=f"IMPLICIT_EM_MM_CONFIG='{bad}': give an index"):
            tm._config_from_env()


def test_kernel_variants_for_the_diagnosis():
    """The transposed load of W (WT) gives the same result; EPILOGUE False writes z = x W^T
    + b itself (the matmul alone, negative entries kept)."""
    x, w, bias = operands(129, 257, 33)
    for cfg in tm.MM_CONFIGS[:3]:
        want = tm.mm_stats(x, w, bias, config=cfg)
        got = tm.mm_stats(x, w, bias, config={**cfg, "WT": True})
        for g, y in zip(got, want, strict=True):
            torch.testing.assert_close(g, y, rtol=1e-6, atol=1e-6)
        z = tm.mm_stats(x, w, bias, config={**cfg, "EPILOGUE": False})[0]
        torch.testing.assert_close(z, x @ w.T + bias, rtol=1e-5, atol=1e-5)
        assert (z < 0).any()
