"""Fused InfoMax kernels against the reference formulas, values and gradients, float32.

On a CPU machine the Triton kernels run in Triton's interpreter (conftest sets
TRITON_INTERPRET=1 before anything imports Triton); on a GPU machine they run compiled. Either
way the fused path is forced (fused=True) and compared with `losses.infomax_reference`.
"""

from __future__ import annotations

import pytest
import torch

from implicit_em import kernels
from implicit_em.config import LossConfig
from implicit_em.kernels import fused_active, fused_mode, set_fused_mode
from implicit_em.kernels import infomax as fused_impl
from implicit_em.losses import combined_loss, correlation_probes, infomax_terms

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
WEIGHTS = (1.0, 0.7, 1.3)  # lse, var, tc: distinct, so a wrong term's gradient shows


def codes(b: int, k: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, k, generator=g) + 0.3
    z[:, 0] += 0.8 * z[:, 1]  # some real correlation
    return (scale * torch.relu(z)).to(DEVICE)


def probes(k: int, m: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, m, generator=g).to(DEVICE)


def terms_and_grad(a: torch.Tensor, v: torch.Tensor | None, fused: bool):
    a = a.detach().clone().requires_grad_(True)
    out = infomax_terms(a, v, 1e-6, fused=fused)
    (grad,) = torch.autograd.grad(sum(w * t for w, t in zip(WEIGHTS, out, strict=True)), a)
    return torch.stack([t.detach() for t in out]), grad


def assert_matches(a: torch.Tensor, v: torch.Tensor | None, rtol: float = 1e-5) -> torch.Tensor:
    """Fused vs reference: each term to rtol relative, the gradient to rtol relative to its
    largest entry. Returns the fused gradient."""
    val_f, grad_f = terms_and_grad(a, v, fused=True)
    val_r, grad_r = terms_and_grad(a, v, fused=False)
    torch.testing.assert_close(val_f, val_r, rtol=rtol, atol=0.0)
    assert grad_f.dtype == a.dtype and grad_f.shape == a.shape
    err = (grad_f - grad_r).abs().max() / grad_r.abs().max()
    assert err < rtol, f"gradient off by {err:.2e} relative"
    return grad_f


# B not a multiple of the row tiles (nor of the 256-row chunk of the statistics pass: 300 is
# one full chunk and a partial one), K not a multiple of the 128-column strip; B < K takes the
# exact penalty's Gram path, B > K its K x K path.
@pytest.mark.parametrize("b,k", [(70, 300), (200, 130), (64, 128), (300, 260)])
@pytest.mark.parametrize("m", [None, 8])
def test_fused_matches_reference(b, k, m):
    a = codes(b, k)
    assert_matches(a, None if m is None else probes(k, m))


def test_fused_lse_is_stable_for_large_energies():
    assert_matches(codes(70, 300, scale=1e3), probes(300, 4))


def test_constant_and_dead_columns_exact():
    """Dead units (all zero) and a constant column (1.5, exact in float32 so that its centred
    values are exactly zero on both paths): finite values, gradients that match, and the
    penalties pass nothing to such a column (only the LSE's softmax remains)."""
    a = codes(70, 300)
    a[:, 3] = 0.0
    a[:, 10:20] = 0.0
    a[:, 5] = 1.5
    grad = assert_matches(a, None)
    assert torch.isfinite(grad).all()
    soft = torch.softmax(-a, dim=1)
    torch.testing.assert_close(grad[:, [3, 5, 10]], WEIGHTS[0] * soft[:, [3, 5, 10]],
                               rtol=1e-5, atol=1e-7)  # fmt: skip


def test_sketch_drops_columns_the_rule_calls_constant(monkeypatch):
    """With a rule that marks columns constant (as `losses.column_scale` may by their own
    scale, issue 13), the fused sketch takes effect with no other change: constant and dead
    columns get exactly zero penalty gradient, and tc equals the reference's on the other
    columns alone. (Under the plain 1e-12 guard the sketch of such columns is round-off times
    1e6 on either path, the case issue 13 fixes.)"""
    a = codes(70, 300)
    a[:, 3] = 0.0  # dead
    a[:, 10:20] = 0.0  # dead
    a[:, 5] = 1.5
    a[:, 7] = 1.81  # not exact in binary: its float mean is off by round-off
    constant = torch.zeros(300, dtype=torch.bool, device=DEVICE)
    constant[[3, 5, 7, *range(10, 20)]] = True
    v = probes(300, 8)

    def rule(mean, ss, n_rows):
        live = (~constant).to(ss.dtype)
        ssu = ss * live
        s = torch.where(ssu > 0, torch.rsqrt(torch.where(ssu > 0, ssu, 1.0)), 0.0)
        return live, s

    monkeypatch.setattr(fused_impl, "column_scale", rule)
    x = a.clone().requires_grad_(True)
    _, var, tc = infomax_terms(x, v, 1e-6, fused=True)
    (g,) = torch.autograd.grad(var + tc, x)
    assert torch.isfinite(g).all()
    assert (g[:, constant] == 0).all()
    live = ~constant
    y = a[:, live].clone().requires_grad_(True)
    _, var_r, tc_r = infomax_terms(y, v[live], 1e-6, fused=False)
    (g_r,) = torch.autograd.grad(var_r + tc_r, y)
    torch.testing.assert_close(tc, tc_r, rtol=1e-5, atol=0.0)
    assert (g[:, live] - g_r).abs().max() / g_r.abs().max() < 1e-5


def test_bfloat16_codes():
    """bf16 codes on the fused path: gradient in bf16, terms and gradient close to the float32
    reference on the same codes (the sketch's products run in bf16: a loose tolerance)."""
    a = codes(70, 300)
    v = probes(300, 8)
    x = a.to(torch.bfloat16).requires_grad_(True)
    out = infomax_terms(x, v, 1e-6, fused=True)
    (g,) = torch.autograd.grad(sum(out), x)
    assert g.dtype == torch.bfloat16
    y = x.detach().float().requires_grad_(True)
    ref = infomax_terms(y, v, 1e-6, fused=False)
    torch.testing.assert_close(torch.stack(out), torch.stack(ref), rtol=2e-2, atol=0.0)
    (g_ref,) = torch.autograd.grad(sum(ref), y)
    assert ((g.float() - g_ref).norm() / g_ref.norm()).item() < 2e-2


def test_combined_loss_takes_the_fused_path_when_on():
    a = codes(70, 300)
    w = torch.randn(300, 16, device=DEVICE)
    cfg = LossConfig(tc_probes=8)
    v = correlation_probes(300, 8, a)
    with fused_mode("on"):
        assert fused_active(a)
        fused = combined_loss(a, w, cfg, probes=v)
    with fused_mode("off"):
        assert not fused_active(a)
        ref = combined_loss(a, w, cfg, probes=v)
    for k in ("total", "lse", "var", "tc"):
        torch.testing.assert_close(fused[k], ref[k], rtol=1e-5, atol=0.0)


def test_mode_is_checked_and_restored():
    with pytest.raises(ValueError, match="auto, on or off"):
        set_fused_mode("fast")
    before = kernels._mode["value"]
    with fused_mode("off"):
        assert kernels._mode["value"] == "off"
    assert kernels._mode["value"] == before
    a = codes(8, 16)
    with fused_mode("auto"):  # auto: fused exactly on CUDA tensors
        assert fused_active(a) == a.is_cuda


@pytest.mark.parametrize("m", [None, 8])
def test_fused_path_traces_under_torch_compile(m):
    """The custom ops' fake implementations let torch.compile trace the fused path whole
    (aot_eager: AOTAutograd's forward and backward graphs, no code generation)."""
    a = codes(70, 300)
    v = None if m is None else probes(300, m)

    def objective(x):
        return sum(w * t for w, t in zip(WEIGHTS, infomax_terms(x, v, 1e-6, fused=True),
                                         strict=True))  # fmt: skip

    compiled = torch.compile(objective, backend="aot_eager", fullgraph=True)
    x = a.clone().requires_grad_(True)
    y = a.clone().requires_grad_(True)
    (gc,) = torch.autograd.grad(compiled(x), x)
    (ge,) = torch.autograd.grad(objective(y), y)
    torch.testing.assert_close(gc, ge, rtol=1e-5, atol=1e-7)


def test_triton_skinny_products_match(monkeypatch):
    """The split-K Triton products (the alternative to cuBLAS for the sketch's m-wide matmuls)."""
    monkeypatch.setitem(fused_impl.SKINNY, "backend", "triton")
    assert_matches(codes(70, 300), probes(300, 8))


@pytest.mark.parametrize("sketched", [False, True])
def test_issue13_constant_float32_columns_fused(sketched):
    """Issue 13's input through the fused path: columns of 1.81 and 0.576 (constant, but their
    float32 means carry round-off) and two random ones. The penalty is the random columns'
    2 r^2 (1.29e-05 exactly with probes sqrt(K) I), and the constant columns get exactly
    zero gradient from var and tc, as in every reference path."""
    g = torch.Generator().manual_seed(0)
    a = torch.empty(1448, 4)
    a[:, 0], a[:, 1] = 1.81, 0.576
    a[:, 2:] = torch.rand(1448, 2, generator=g)
    a = a.to(DEVICE)
    v = 2.0 * torch.eye(4, device=DEVICE) if sketched else None
    _, _, tc = infomax_terms(a, v, 1e-6, fused=True)
    r = torch.corrcoef(a[:, 2:].double().T.cpu())[0, 1].item()
    assert abs(tc.item() - 2 * r * r) < 1e-3 * 2 * r * r
    x = a.detach().clone().requires_grad_(True)
    _, var, tc = infomax_terms(x, v, 1e-6, fused=True)
    (grad,) = torch.autograd.grad(var + tc, x)
    assert (grad[:, :2] == 0).all()


def preact_and_codes(b: int, k: int) -> torch.Tensor:
    """z (B, K) with negative entries, a dead unit (z < 0 throughout) and a constant one."""
    g = torch.Generator().manual_seed(3)
    z = torch.randn(b, k, generator=g)
    z[:, 0] += 0.8 * z[:, 1]
    z[:, 4] = -1.0 - torch.rand(b, generator=g)  # dead: a = 0
    z[:, 6] = 1.5  # constant: a = 1.5
    return z.to(DEVICE)


@pytest.mark.parametrize("b,k,m", [(70, 300, 8), (300, 130, 4), (64, 128, 8)])
def test_relu_fold_matches_reference(b, k, m):
    """preact z (a = ReLU(z)): the fused sketch writes dL/dz itself, ReLU's mask in its
    kernel; values and dL/dz match the reference through autograd's ReLU to 1e-5."""
    z0 = preact_and_codes(b, k)
    v = probes(k, m)
    grads, vals = [], []
    for fused in (True, False):
        z = z0.clone().requires_grad_(True)
        a = torch.relu(z)
        out = infomax_terms(a, v, 1e-6, fused=fused, preact=z)
        (gz,) = torch.autograd.grad(sum(w * t for w, t in zip(WEIGHTS, out, strict=True)), z)
        grads.append(gz)
        vals.append(torch.stack([t.detach() for t in out]))
    torch.testing.assert_close(vals[0], vals[1], rtol=1e-5, atol=0.0)
    err = (grads[0] - grads[1]).abs().max() / grads[1].abs().max()
    assert err < 1e-5, f"dL/dz off by {err:.2e} relative"
    assert (grads[0][z0 <= 0] == 0).all()  # the mask: nothing flows where a = 0


def test_relu_fold_rejects_mismatched_preact():
    a = codes(70, 300)
    with pytest.raises(ValueError, match="pass z with a = relu"):
        infomax_terms(a, probes(300, 8), 1e-6, fused=True, preact=a[:, :10])


def test_relu_fold_traces_under_torch_compile():
    z0 = preact_and_codes(70, 300)
    v = probes(300, 8)

    def objective(z):
        out = infomax_terms(torch.relu(z), v, 1e-6, fused=True, preact=z)
        return sum(w * t for w, t in zip(WEIGHTS, out, strict=True))

    compiled = torch.compile(objective, backend="aot_eager", fullgraph=True)
    x = z0.clone().requires_grad_(True)
    y = z0.clone().requires_grad_(True)
    (gc,) = torch.autograd.grad(compiled(x), x)
    (ge,) = torch.autograd.grad(objective(y), y)
    torch.testing.assert_close(gc, ge, rtol=1e-5, atol=1e-7)


def test_bf16_gram_error_against_float64(monkeypatch):
    """The exact penalty with the unit columns' Gram in bf16 (`infomax.EXACT`): tc within
    2e-3 relative of the float64 reference (5.7e-4 measured), its gradient within 2e-2 in
    relative Frobenius norm (8.0e-3 measured; the float32 path: 9e-7). See docs/benchmarks.md,
    issue 19."""
    a = codes(256, 1024)
    ref = a.double().requires_grad_(True)
    _, _, tc_ref = infomax_terms(ref, None, 1e-6, fused=False)
    (g_ref,) = torch.autograd.grad(tc_ref, ref)
    monkeypatch.setitem(fused_impl.EXACT, "gram", "bfloat16")
    x = a.clone().requires_grad_(True)
    _, _, tc = infomax_terms(x, None, 1e-6, fused=True)
    (g,) = torch.autograd.grad(tc, x)
    assert tc.dtype == torch.float32
    assert abs(tc.item() - tc_ref.item()) < 2e-3 * tc_ref.item()
    assert ((g.double() - g_ref).norm() / g_ref.norm()).item() < 2e-2


@pytest.mark.parametrize("tc_probes", [None, 8])
def test_encoder_step_gradients_match_through_the_family(tc_probes):
    """The encoder family's loss terms (which pass z to the fused path for the ReLU fold):
    the parameters' gradients with the fused path on and off agree to 1e-5."""
    from implicit_em.models import Encoder
    from implicit_em.train.loop import loss_terms, term_weights

    torch.manual_seed(0)
    model = Encoder(24, 300).to(DEVICE)
    x = torch.randn(70, 24, device=DEVICE)
    cfg = LossConfig(tc_probes=tc_probes)
    weights = term_weights("encoder", cfg, 300)
    grads = []
    for mode in ("on", "off"):
        model.zero_grad()
        torch.manual_seed(1)  # the same probes
        with fused_mode(mode):
            terms = loss_terms(model, x, cfg)
        sum(weights[k] * terms[k] for k in weights).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for gf, gr in zip(*grads, strict=True):
        assert (gf - gr).abs().max() / gr.abs().max() < 1e-5


@pytest.mark.parametrize("grad_rows", [0, 64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_tile_config_gives_the_same_result(monkeypatch, dtype, grad_rows):
    """Each tile configuration the GPU autotuner may pick (`triton_infomax.STATS_CONFIGS`,
    `GRAD_CONFIGS`), on B, K that no tile divides: the same partials and gradient as the
    first configuration, to float32 round-off (bf16 codes: to one bf16 ulp of the output)."""
    from implicit_em.kernels import triton_infomax as tk

    z = preact_and_codes(300, 260).to(dtype)
    ref = tk.stats_partials(z, relu=True, config=tk.STATS_CONFIGS[0])
    for cfg in tk.STATS_CONFIGS[1:]:
        for got, want in zip(tk.stats_partials(z, relu=True, config=cfg), ref, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    a = torch.relu(z)
    _, row_lse, mean, _ = fused_impl.combine_stats(a)
    g = torch.linspace(-1, 1, 300, device=DEVICE)
    alpha, beta = mean * 0.3, mean - 0.5
    low, high = (
        torch.randn(300, 12, device=DEVICE).to(dtype),
        torch.randn(260, 12, device=DEVICE).to(dtype),
    )
    args = (z, row_lse, g, alpha, beta, mean, low, high, True)
    want = tk.grad(*args, config=tk.GRAD_CONFIGS[0])
    monkeypatch.setitem(tk.GRAD, "rows", grad_rows)  # 64: the looped kernel's strips
    for cfg in tk.GRAD_CONFIGS[1:] if not grad_rows else tk.GRAD_LOOP_CONFIGS:
        tol = 1e-6 if dtype == torch.float32 else 1e-2
        torch.testing.assert_close(tk.grad(*args, config=cfg), want, rtol=tol, atol=tol)
    assert (want[z <= 0] == 0).all()


@pytest.mark.parametrize("stats", [{"rows": 64, "shift": False}, {"rows": 256, "shift": False},
                                   {"rows": 64, "shift": True}, {"rows": 256, "shift": True},
                                   {"rows": 512, "shift": True}])  # fmt: skip
def test_statistics_pass_variants(monkeypatch, stats):
    """Each layout of the statistics pass (`triton_infomax.STATS`: rows per program, Chan
    merges or shifted sums) against the reference, with dead, constant and issue-13 columns
    (1.81: constant but not exact in binary), a column whose chunks start on an outlier (the
    shifted sums' worst case) and B spanning a partial chunk."""
    from implicit_em.kernels import triton_infomax as tk

    for key, value in stats.items():
        monkeypatch.setitem(tk.STATS, key, value)
    b = stats["rows"] + 44  # one full chunk and a partial one
    a = codes(b, 260)
    a[:, 3] = 0.0
    a[:, 5] = 1.5
    a[:, 7] = 1.81
    a[[0, stats["rows"]], 9] = 40.0  # outliers on the chunks' first rows: the shift c is far
    assert_matches(a, probes(260, 8))  # from the mean
    assert_matches(a, None)
    z = preact_and_codes(b, 260)
    want = tk.stats_partials(z, relu=True, config=tk.STATS_CONFIGS[0])
    for cfg in tk.STATS_CONFIGS[1:]:
        for got, ref in zip(tk.stats_partials(z, relu=True, config=cfg), want, strict=True):
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("blocks", [1, 3, 4, 8])
@pytest.mark.parametrize("b,k", [(70, 300), (64, 128)])
def test_blocked_gram_matches_reference(monkeypatch, blocks, b, k):
    """The exact penalty's Gram from its upper block rows (`infomax._GramBlocked`, any number
    of row blocks, B not a multiple of it): values and gradients as the reference to 1e-5,
    float32, with a constant and a dead column."""
    monkeypatch.setitem(fused_impl.EXACT, "blocks", blocks)
    a = codes(b, k)
    a[:, 5] = 0.0  # dead unit
    a[:, 7] = 0.25  # constant column
    assert_matches(a, None)


@pytest.mark.parametrize("grad_rows", [32, 64])
@pytest.mark.parametrize("b,k,m", [(70, 300, 8), (300, 130, None)])
def test_looped_gradient_pass_matches_reference(monkeypatch, grad_rows, b, k, m):
    """The gradient pass walking strips of rows (`triton_infomax.GRAD`, `_grad_loop_kernel`;
    B not a multiple of the strip) against the reference, values and gradients, with a dead
    and a constant column, on codes and through the ReLU fold."""
    from implicit_em.kernels import triton_infomax as tk

    monkeypatch.setitem(tk.GRAD, "rows", grad_rows)
    a = codes(b, k)
    a[:, 2] = 0.0
    a[:, 4] = 0.7
    v = None if m is None else probes(k, m)
    assert_matches(a, v)
    if v is not None:
        z = preact_and_codes(b, k)
        zf = z.clone().requires_grad_(True)
        zr = z.clone().requires_grad_(True)
        tf = infomax_terms(torch.relu(zf), v, 1e-6, fused=True, preact=zf)
        tr = infomax_terms(torch.relu(zr), v, 1e-6, fused=False)
        (gf,) = torch.autograd.grad(sum(w * t for w, t in zip(WEIGHTS, tf, strict=True)), zf)
        (gr,) = torch.autograd.grad(sum(w * t for w, t in zip(WEIGHTS, tr, strict=True)), zr)
        torch.testing.assert_close(torch.stack(tf), torch.stack(tr), rtol=1e-5, atol=0.0)
        assert (gf - gr).abs().max() / gr.abs().max() < 1e-5


def preact_and_bias(b: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """z0 (B, K) and b (K,) with z = z0 + b: a dead unit (z < 0 throughout, b pushing it
    down), a constant one (z0 constant, a = 0.75 + 0.75), a unit alive only through b."""
    g = torch.Generator().manual_seed(5)
    z0 = torch.randn(b, k, generator=g)
    z0[:, 0] += 0.8 * z0[:, 1]
    bias = 0.3 * torch.randn(k, generator=g)
    z0[:, 4], bias[4] = 0.5 * torch.rand(b, generator=g), -2.0  # dead: z < 0
    z0[:, 6], bias[6] = 0.75, 0.75  # constant: a = 1.5
    z0[:, 8], bias[8] = -0.5 * torch.rand(b, generator=g), 1.0  # alive through b only
    return z0.to(DEVICE), bias.to(DEVICE)


def fold_grads(z0: torch.Tensor, bias: torch.Tensor, v: torch.Tensor, fused: bool):
    """Terms and (dL/dz0, dL/db): fused with the bias fold, or the reference through
    autograd's add and ReLU."""
    z = z0.clone().requires_grad_(True)
    b = bias.clone().requires_grad_(True)
    a = torch.relu(z + b.to(z.dtype))
    out = infomax_terms(a, v, 1e-6, fused=fused, preact=z if fused else None,
                        bias=b if fused else None)  # fmt: skip
    gz, gb = torch.autograd.grad(sum(w * t for w, t in zip(WEIGHTS, out, strict=True)), (z, b))
    return torch.stack([t.detach() for t in out]), gz, gb


@pytest.mark.parametrize("grad_rows", [0, 32])
@pytest.mark.parametrize("b,k,m", [(70, 300, 8), (300, 130, 4), (64, 128, 8)])
def test_bias_fold_matches_reference(monkeypatch, grad_rows, b, k, m):
    """preact z0 and bias b (a = ReLU(z0 + b)): the statistics pass adds b, the gradient pass
    writes dL/dz0 and the column partials summed into dL/db. Values, dL/dz0 and dL/db match
    the reference through autograd to 1e-5 relative in float32, with dead, constant and
    bias-only units, B and K not multiples of any tile; both gradient kernels."""
    from implicit_em.kernels import triton_infomax as tk

    monkeypatch.setitem(tk.GRAD, "rows", grad_rows)
    z0, bias = preact_and_bias(b, k)
    v = probes(k, m)
    val_f, gz_f, gb_f = fold_grads(z0, bias, v, fused=True)
    val_r, gz_r, gb_r = fold_grads(z0, bias, v, fused=False)
    torch.testing.assert_close(val_f, val_r, rtol=1e-5, atol=0.0)
    assert (gz_f - gz_r).abs().max() / gz_r.abs().max() < 1e-5
    assert (gb_f - gb_r).abs().max() / gb_r.abs().max() < 1e-5
    assert gb_f.dtype == torch.float32 and gb_f.shape == (k,)
    assert gb_f[4] == 0 and (gz_f[:, 4] == 0).all()  # the dead unit gets nothing
    assert (gz_f[(z0 + bias) <= 0] == 0).all()


def test_bias_fold_codes_match_torch_rounding_in_bf16():
    """The codes the bf16 statistics pass writes are exactly torch's relu(z0 + b.to(bf16)),
    and its partials those of those codes (the pass rounds z0 + b as autocast's step does)."""
    from implicit_em.kernels import triton_infomax as tk

    z0, bias = preact_and_bias(300, 260)
    z0 = z0.to(torch.bfloat16)
    want = torch.relu(z0 + bias.to(torch.bfloat16))
    for cfg in tk.STATS_CONFIGS:
        got = tk.stats_partials(z0, relu=True, config=cfg, bias=bias)
        assert torch.equal(got[0], want)
        ref = tk.stats_partials(want, relu=True, config=cfg)
        for x, y in zip(got[1:], ref[1:], strict=True):
            torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_grad_pass_column_sums_every_config(monkeypatch, dtype):
    """The gradient pass's column sums (colsum=True), for every tile configuration of both
    kernels: the output's own column sums (of the values as written) to float32 round-off,
    and the output unchanged by asking for them."""
    from implicit_em.kernels import triton_infomax as tk

    z = preact_and_codes(300, 260).to(dtype)
    _, row_lse, mean, _ = fused_impl.combine_stats(torch.relu(z))
    g = torch.linspace(-1, 1, 300, device=DEVICE)
    low = torch.randn(300, 12, device=DEVICE).to(dtype)
    high = torch.randn(260, 12, device=DEVICE).to(dtype)
    args = (z, row_lse, g, mean * 0.3, mean - 0.5, mean, low, high, True)
    for rows, configs in ((0, tk.GRAD_CONFIGS), (64, tk.GRAD_LOOP_CONFIGS)):
        monkeypatch.setitem(tk.GRAD, "rows", rows)
        for cfg in configs:
            plain = tk.grad(*args, config=cfg)
            out, sums = tk.grad(*args, config=cfg, colsum=True)
            assert torch.equal(out, plain)
            want = out.double().sum(dim=0).float()
            torch.testing.assert_close(sums, want, rtol=1e-5, atol=1e-5)


def test_bias_fold_rejects_bias_without_preact_or_of_wrong_shape():
    z0, bias = preact_and_bias(70, 300)
    a = torch.relu(z0 + bias)
    with pytest.raises(ValueError, match="pass both or neither"):
        infomax_terms(a, probes(300, 8), 1e-6, fused=True, bias=bias)
    with pytest.raises(ValueError, match="must be \\(K,\\)"):
        infomax_terms(a, probes(300, 8), 1e-6, fused=True, preact=z0, bias=bias[:10])


def test_bias_fold_traces_under_torch_compile():
    z0, bias = preact_and_bias(70, 300)
    v = probes(300, 8)

    def objective(z, b):
        out = infomax_terms(torch.relu(z + b), v, 1e-6, fused=True, preact=z, bias=b)
        return sum(w * t for w, t in zip(WEIGHTS, out, strict=True))

    compiled = torch.compile(objective, backend="aot_eager", fullgraph=True)
    grads = []
    for fn in (compiled, objective):
        z, b = z0.clone().requires_grad_(True), bias.clone().requires_grad_(True)
        grads.append(torch.autograd.grad(fn(z, b), (z, b)))
    for gc, ge in zip(*grads, strict=True):
        torch.testing.assert_close(gc, ge, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("centre", [False, True])
def test_encoder_family_folds_the_bias_on_the_fused_sketch(monkeypatch, centre):
    """The family takes the bias fold exactly on the fused sketched path (`bias_fold`), and
    the step's parameter gradients (W and b) and terms match the reference step's to 1e-5,
    with centred inputs too (the input mean estimated in the same step)."""
    from encoder_step_fixtures import assert_step_matches_reference

    from implicit_em.families import encoder as fam
    from implicit_em.models import Encoder

    folds = []
    real = fam.bias_fold
    monkeypatch.setattr(fam, "bias_fold", lambda *a: folds.append(real(*a)) or folds[-1])
    monkeypatch.setitem(fused_impl.FOLD, "bias", True)  # off by default since round 6
    cfg = LossConfig(tc_probes=8)
    x = torch.randn(70, 24, device=DEVICE) + 0.5
    assert_step_matches_reference(x, cfg, centre, ("lse", "var", "tc"))
    assert folds == [True, False]
    with fused_mode("on"):
        model = Encoder(24, 300).to(DEVICE)
        assert not real(model, LossConfig(), x)  # the exact penalty keeps the plain step
        assert not real(Encoder(24, 300, "softplus").to(DEVICE), cfg, x)


@pytest.mark.parametrize("grad_rows", [0, 64])
def test_grad_pass_broadcasts_one_g(monkeypatch, grad_rows):
    """A 0-dim g (the sketched terms' one LSE weight for every row, read by the kernel, not
    expanded to (B,) first) gives exactly the output of g expanded to every row."""
    from implicit_em.kernels import triton_infomax as tk

    monkeypatch.setitem(tk.GRAD, "rows", grad_rows)
    z = preact_and_codes(300, 260)
    _, row_lse, mean, _ = fused_impl.combine_stats(torch.relu(z))
    low, high = torch.randn(300, 12, device=DEVICE), torch.randn(260, 12, device=DEVICE)
    g = torch.tensor(-0.7, device=DEVICE)
    rest = (mean * 0.3, mean - 0.5, mean, low, high, True)
    one = tk.grad(z, row_lse, g, *rest, colsum=True)
    every = tk.grad(z, row_lse, g.expand(300).contiguous(), *rest, colsum=True)
    for x, y in zip(one, every, strict=True):
        assert torch.equal(x, y)
    assert one[0].abs().sum() > 0


def test_bias_fold_switch(monkeypatch):
    """`infomax.FOLD["bias"]` True takes the fold on the fused sketched path; False (the
    default since round 6 measured it slower) keeps the plain step."""
    from implicit_em.families.encoder import bias_fold
    from implicit_em.models import Encoder

    model, cfg = Encoder(24, 300).to(DEVICE), LossConfig(tc_probes=8)
    x = torch.randn(70, 24, device=DEVICE)
    with fused_mode("on"):
        assert not bias_fold(model, cfg, x)  # the default
        monkeypatch.setitem(fused_impl.FOLD, "bias", True)
        assert bias_fold(model, cfg, x)
        monkeypatch.setitem(fused_impl.FOLD, "bias", False)
        assert not bias_fold(model, cfg, x)


def test_grad_pass_column_sums_with_a_shorter_partial_height():
    """The one-tile kernel when the partials have one row per 32 rows of out but the tile is
    128 rows tall (as under the autotuner, whose buffer serves every tile height): each
    program writes its sums at its first partial row and zeros at the others it owns, so a
    buffer of garbage (what a trial run of another height leaves) still sums right."""
    from implicit_em.kernels import triton_infomax as tk

    z = preact_and_codes(300, 260)
    _, row_lse, mean, _ = fused_impl.combine_stats(torch.relu(z))
    g = torch.linspace(-1, 1, 300, device=DEVICE)
    out = torch.empty_like(z)
    part = torch.full((10, 260), 7.0, device=DEVICE)  # ceil(300 / 32) rows of garbage
    tk._grad_kernel.fn[(3, 3)](
        z, out, row_lse, g, mean * 0.3, mean - 0.5, mean, out, out, part, 300, 260, 0,
        z.stride(0), z.stride(1), out.stride(0), out.stride(1), BM=128, BK=128, RP=16,
        HAS_LOW=False, RELU=True, PRECISION=tk.dot_precision(z.dtype),
        DOT_F32=kernels.interpreted(), COLSUM=True, G_SCALAR=False, PART_H=32, num_warps=8)  # fmt: skip
    want = tk.grad(z, row_lse, g, mean * 0.3, mean - 0.5, mean, relu=True)
    torch.testing.assert_close(out, want, rtol=0.0, atol=0.0)
    torch.testing.assert_close(part.sum(dim=0), want.double().sum(dim=0).float(),
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    assert (part[[1, 2, 3, 5, 6, 7, 9]] == 0).all()  # the rows after each program's first


@pytest.mark.parametrize("precision", ["tf32x3", "ieee"])
def test_dot_precision_switch(monkeypatch, precision):
    """`triton_infomax.dot_precision`: float32 codes take the switch DOT["float32"] (tf32x3 by
    default, ieee for a comparison), bf16 codes tf32; with either, the gradient pass with the
    rank-2m term and the skinny products match the reference to 1e-5 relative in float32."""
    from implicit_em.kernels import triton_infomax as tk

    assert tk.DOT["float32"] == "tf32x3"
    monkeypatch.setitem(tk.DOT, "float32", precision)
    assert tk.dot_precision(torch.float32) == precision
    assert tk.dot_precision(torch.bfloat16) == "tf32"
    assert_matches(codes(70, 300), probes(300, 8))
    monkeypatch.setitem(fused_impl.SKINNY, "backend", "triton")
    assert_matches(codes(70, 300), probes(300, 8))


def test_rows_problem_is_the_tiles_constraint(monkeypatch):
    """`triton_infomax.rows_problem`: a program's rows that are not a multiple of a tile height
    it may run with count the next program's first rows twice. Measured: with 96 rows per
    statistics program and 64-row tiles, the first chunk's column mean is off; at 128 rows it
    is the plain mean. The rule refuses the first and takes the second."""
    from implicit_em.kernels import triton_infomax as tk

    a = codes(256, 130)
    for shift in (False, True):
        monkeypatch.setitem(tk.STATS, "shift", shift)
        monkeypatch.setitem(tk.STATS, "rows", 96)
        _, _, cmean, _ = tk.stats_partials(a, config=tk.STATS_CONFIGS[1])  # BM 64
        assert not torch.allclose(cmean[0], a[:96].mean(dim=0), rtol=1e-4, atol=1e-5)
        monkeypatch.setitem(tk.STATS, "rows", 128)
        _, _, cmean, _ = tk.stats_partials(a, config=tk.STATS_CONFIGS[1])
        torch.testing.assert_close(cmean[0], a[:128].mean(dim=0), rtol=1e-5, atol=1e-6)
    assert tk.STATS_CONFIGS[1]["BM"] == 64
    assert "statistics rows 96 must be a positive multiple" in tk.rows_problem(96)
    assert "(tile heights 16, 32, 64)" in tk.rows_problem(96)
    for rows in (0, -64, 48, 100):
        assert tk.rows_problem(rows) is not None, rows
    for rows in (32, 64, 128, 512):
        assert tk.rows_problem(rows) is None and tk.rows_problem(rows, grad=True) is None
    assert tk.rows_problem(0, grad=True) is None  # one tile per program
    assert "or 0 (one tile per program)" in tk.rows_problem(-1, grad=True)
    assert tk.rows_problem(96, grad=True) is not None  # 64-row tiles of the loop kernel
