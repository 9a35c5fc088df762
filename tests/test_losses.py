"""Losses: gradcheck in float64, fast paths against the plain formula, stability, bad input."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

import implicit_em.losses as losses
from implicit_em.config import LossConfig
from implicit_em.losses import (
    combined_loss,
    correlation_loss,
    lse_loss,
    sae_loss,
    topk_loss,
    variance_loss,
    weight_redundancy_loss,
)


def rand64(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def plain_correlation(a: torch.Tensor) -> float:
    """sum_{i != j} Corr_ij^2 from numpy's corrcoef, in float64."""
    c = np.corrcoef(a.detach().double().numpy(), rowvar=False)
    return float((c**2).sum() - (np.diag(c) ** 2).sum())


# --- gradcheck in float64 -------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_gradcheck_lse(reduction):
    assert gradcheck(lambda a: lse_loss(a, reduction=reduction)[0], (rand64(6, 5),))


def test_gradcheck_variance():
    assert gradcheck(variance_loss, (rand64(6, 5),))


@pytest.mark.parametrize("shape", [(4, 9), (9, 4)], ids=["gram_B<K", "kk_B>=K"])
def test_gradcheck_correlation(shape):
    assert gradcheck(correlation_loss, (rand64(*shape),))


@pytest.mark.parametrize("shape", [(4, 9), (9, 4)], ids=["K<=D", "K>D"])
def test_gradcheck_weight_redundancy(shape):
    assert gradcheck(weight_redundancy_loss, (rand64(*shape),))


def test_gradcheck_combined():
    cfg = LossConfig(lambda_lse=1.0, lambda_var=0.5, lambda_tc=2.0, lambda_wr=0.3)
    assert gradcheck(lambda a, W: combined_loss(a, W, cfg)["total"], (rand64(6, 5), rand64(5, 3)))


def test_gradcheck_sae():
    x = torch.randn(4, 6, dtype=torch.float64)
    assert gradcheck(
        lambda xh, a: sae_loss(x, xh, a, l1_weight=0.1)["total"], (rand64(4, 6), rand64(4, 3))
    )


def test_gradcheck_topk():
    # The AuxK target x - x_hat is detached by design (Gao et al.), so x_hat and aux_hat are
    # checked separately: x_hat through the MSE alone, aux_hat with x_hat held fixed.
    x, x_hat = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    assert gradcheck(lambda xh: topk_loss(x, xh)["total"], (rand64(4, 6),))
    assert gradcheck(lambda aux: topk_loss(x, x_hat, aux, aux_coef=0.5)["total"], (rand64(4, 6),))


# --- values ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(16, 40), (40, 16), (20, 20)], ids=["gram", "kk", "square"])
def test_correlation_matches_plain_formula(shape, dtype):
    a = torch.randn(*shape, dtype=dtype) @ torch.randn(
        shape[1], shape[1], dtype=dtype
    )  # correlated
    expected = plain_correlation(a)
    assert float(correlation_loss(a)) == pytest.approx(expected, rel=1e-5)
    ref = torch.corrcoef(a.double().T)
    assert expected == pytest.approx(float((ref**2).sum() - (ref.diagonal() ** 2).sum()), rel=1e-12)


@pytest.mark.parametrize("shape", [(16, 40), (40, 16)])
def test_both_paths_agree(shape):
    u = losses._unit_columns(torch.randn(*shape, dtype=torch.float64))
    torch.testing.assert_close(
        losses._offdiag_sq_gram(u), losses._offdiag_sq_kk(u), rtol=1e-12, atol=0
    )


def test_gram_path_used_when_batch_smaller_than_k(monkeypatch):
    def forbidden(u):
        raise AssertionError("the K x K path must not run when B < K")

    a = torch.randn(8, 32)
    expected = plain_correlation(a)
    monkeypatch.setattr(losses, "_offdiag_sq_kk", forbidden)
    assert float(correlation_loss(a)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(AssertionError, match="K x K path"):
        correlation_loss(torch.randn(32, 8))


def test_kk_path_used_when_batch_at_least_k(monkeypatch):
    def forbidden(u):
        raise AssertionError("the Gram path must not run when B >= K")

    monkeypatch.setattr(losses, "_offdiag_sq_gram", forbidden)
    a = torch.randn(8, 8)
    assert float(correlation_loss(a)) == pytest.approx(plain_correlation(a), rel=1e-5)


@pytest.mark.parametrize("shape", [(4096, 8), (20000, 4)])
def test_kk_path_float32_when_batch_much_larger_than_k(shape):
    # Off-diagonal sum ~ K^2 / B sits far below the diagonal's K: must not cancel in float32.
    a = torch.randn(*shape)
    assert float(correlation_loss(a)) == pytest.approx(plain_correlation(a), rel=1e-5)


def test_weight_redundancy_float32_near_orthogonal():
    q, _ = torch.linalg.qr(torch.randn(200, 200, dtype=torch.float64))
    W = q[:64] + 1e-3 * torch.randn(64, 200, dtype=torch.float64)
    ref = float(weight_redundancy_loss(W))
    assert float(weight_redundancy_loss(W.float())) == pytest.approx(ref, rel=1e-5)


def test_variance_loss_value():
    a = torch.randn(10, 4, dtype=torch.float64)
    expected = -np.log(np.var(a.numpy(), axis=0, ddof=1) + 1e-3).sum()
    assert float(variance_loss(a, eps=1e-3)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("shape", [(5, 12), (12, 5)])
def test_weight_redundancy_value(shape):
    W = torch.randn(*shape, dtype=torch.float64)
    wn = W.numpy() / np.linalg.norm(W.numpy(), axis=1, keepdims=True)
    expected = np.linalg.norm(wn @ wn.T - np.eye(shape[0])) ** 2
    assert float(weight_redundancy_loss(W)) == pytest.approx(expected, rel=1e-10)


def test_weight_redundancy_zero_for_orthonormal_rows():
    q, _ = torch.linalg.qr(torch.randn(10, 10, dtype=torch.float64))
    assert abs(float(weight_redundancy_loss(3.0 * q[:4]))) < 1e-12


def test_combined_loss_terms_and_weights():
    a, W = torch.randn(16, 6), torch.randn(6, 10)
    cfg = LossConfig(lambda_lse=0.5, lambda_var=2.0, lambda_tc=3.0, lambda_wr=0.0, reference_k=None)
    out = combined_loss(a, W, cfg)
    assert set(out) == {"total", "lse", "var", "tc", "wr", "responsibilities"}
    torch.testing.assert_close(out["lse"], lse_loss(a)[0])
    torch.testing.assert_close(out["var"], variance_loss(a, cfg.variance_eps))
    torch.testing.assert_close(out["tc"], correlation_loss(a))
    torch.testing.assert_close(out["wr"], weight_redundancy_loss(W))
    torch.testing.assert_close(out["total"], 0.5 * out["lse"] + 2.0 * out["var"] + 3.0 * out["tc"])
    torch.testing.assert_close(out["responsibilities"], torch.softmax(-a, dim=1))
    cfg_wr = SimpleNamespace(
        lambda_lse=0.5, lambda_var=2.0, lambda_tc=3.0, lambda_wr=0.7, variance_eps=1e-6
    )
    total_wr = combined_loss(a, W, cfg_wr)["total"]
    torch.testing.assert_close(total_wr, out["total"] + 0.7 * out["wr"])


def test_sae_loss_values():
    x, x_hat, a = torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 3)
    out = sae_loss(x, x_hat, a, l1_weight=0.25)
    assert float(out["mse"]) == pytest.approx(float(((x - x_hat) ** 2).sum() / 24), rel=1e-6)
    assert float(out["l1"]) == pytest.approx(float(a.abs().sum() / 12), rel=1e-6)
    assert float(out["total"]) == pytest.approx(float(out["mse"] + 0.25 * out["l1"]), rel=1e-6)


def test_topk_loss_aux_targets_detached_residual():
    x, x_hat = torch.randn(4, 6), torch.randn(4, 6, requires_grad=True)
    aux = torch.randn(4, 6, requires_grad=True)
    out = topk_loss(x, x_hat, aux, aux_coef=0.5)
    torch.testing.assert_close(out["aux"], ((x - x_hat) - aux).square().mean())
    torch.testing.assert_close(out["total"], out["mse"] + 0.5 * out["aux"])
    out["aux"].backward()
    assert x_hat.grad is None  # the residual is a fixed target for the dead latents
    torch.testing.assert_close(aux.grad, -2 * ((x - x_hat) - aux).detach() / 24)
    assert float(topk_loss(x, x_hat)["aux"]) == 0.0


# --- LSE: the identity and stability -----------------------------------------------------


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_lse_gradient_is_responsibility(reduction):
    a = rand64(32, 10)
    loss, r = lse_loss(a, reduction=reduction)
    (g,) = torch.autograd.grad(loss, a)
    scale = 1.0 if reduction == "sum" else 1.0 / 32
    torch.testing.assert_close(g, scale * r, rtol=0, atol=1e-14)
    assert not r.requires_grad


@pytest.mark.parametrize("scale", [1e4, -1e4, 1e3, -1e3])
def test_lse_stable_at_extreme_energies(scale):
    a64 = torch.rand(8, 6, dtype=torch.float64) * scale  # every entry in [0, scale] or [scale, 0]
    a64[:, 0] = scale  # one column pinned at the extreme
    a = a64.float().requires_grad_(True)
    loss, r = lse_loss(a)
    assert torch.isfinite(loss) and torch.isfinite(r).all()
    torch.testing.assert_close(r.sum(dim=1), torch.ones(8))
    # float64 reference: -log sum_j exp(-a_ij) = min_j a_ij - log sum_j exp(-(a_ij - min_j a_ij))
    ref64 = a.detach().double()
    m = ref64.min(dim=1, keepdim=True).values
    ref = (m.squeeze(1) - torch.log(torch.exp(-(ref64 - m)).sum(dim=1))).sum()
    assert float(loss.detach()) == pytest.approx(float(ref), rel=1e-6)
    torch.testing.assert_close(r.double(), torch.softmax(-ref64, dim=1), rtol=0, atol=1e-6)
    (g,) = torch.autograd.grad(loss, a)
    assert torch.isfinite(g).all()
    torch.testing.assert_close(g, r, rtol=0, atol=1e-6)


def test_lse_bad_reduction():
    with pytest.raises(ValueError, match="reduction must be 'sum' or 'mean'"):
        lse_loss(torch.randn(3, 4), reduction="max")


# --- degenerate columns ----------------------------------------------------------------


@pytest.mark.parametrize("fn", [variance_loss, correlation_loss], ids=["variance", "correlation"])
@pytest.mark.parametrize("shape", [(6, 4), (3, 8)], ids=["B>=K", "B<K"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_variance_column_is_finite(fn, shape, dtype):
    a = torch.randn(*shape, dtype=dtype)
    a[:, 1] = 0.3  # constant column, its mean not exactly representable
    a[:, 2] = 0.0  # dead ReLU unit
    a.requires_grad_(True)
    loss = fn(a)
    (g,) = torch.autograd.grad(loss, a)
    assert torch.isfinite(loss) and torch.isfinite(g).all()
    if fn is correlation_loss:
        # constant columns contribute nothing: same value as without them
        keep = [j for j in range(shape[1]) if j not in (1, 2)]
        assert float(loss.detach()) == pytest.approx(
            plain_correlation(a[:, keep]), rel=1e-5, abs=1e-6
        )


# --- bad input -------------------------------------------------------------------------

ALL_BATCH_LOSSES = [
    lambda a: lse_loss(a),
    variance_loss,
    correlation_loss,
    lambda a: combined_loss(a, torch.randn(a.shape[-1], 3), LossConfig()),
]


@pytest.mark.parametrize("fn", ALL_BATCH_LOSSES, ids=["lse", "var", "tc", "combined"])
def test_rejects_non_2d(fn):
    with pytest.raises(ValueError, match=r"expected a of shape \(B, K\), got \(2, 3, 4\).*flatten"):
        fn(torch.randn(2, 3, 4))


@pytest.mark.parametrize("fn", ALL_BATCH_LOSSES, ids=["lse", "var", "tc", "combined"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_rejects_non_finite(fn, bad):
    a = torch.randn(4, 3)
    a[2, 1] = bad
    with pytest.raises(ValueError, match="contains NaN or Inf"):
        fn(a)


@pytest.mark.parametrize("fn", ALL_BATCH_LOSSES[1:], ids=["var", "tc", "combined"])
def test_rejects_batch_of_one(fn):
    with pytest.raises(ValueError, match="batch size 1.*at least 2 rows: use a larger batch"):
        fn(torch.randn(1, 3))


def test_lse_accepts_batch_of_one():
    loss, r = lse_loss(torch.zeros(1, 4))
    assert float(loss) == pytest.approx(-np.log(4.0))


def test_weight_redundancy_rejects_non_2d():
    with pytest.raises(ValueError, match=r"expected W of shape"):
        weight_redundancy_loss(torch.randn(5))


def test_rejects_non_tensor():
    with pytest.raises(TypeError, match="must be a torch.Tensor, got ndarray"):
        variance_loss(np.zeros((3, 2)))


@pytest.mark.parametrize("fn", [sae_loss, topk_loss], ids=["sae", "topk"])
def test_mismatched_reconstruction_shapes(fn):
    x, x_hat = torch.randn(4, 6), torch.randn(4, 5)
    args = (x, x_hat, torch.randn(4, 3)) if fn is sae_loss else (x, x_hat)
    with pytest.raises(ValueError, match=r"x \(4, 6\) and x_hat \(4, 5\) must match"):
        fn(*args)


def test_topk_loss_mismatched_aux_shape():
    x = torch.randn(4, 6)
    with pytest.raises(ValueError, match=r"aux_hat \(1, 6\) must match x \(4, 6\)"):
        topk_loss(x, x.clone(), torch.randn(1, 6))


def test_combined_loss_checks_w():
    a = torch.randn(8, 5)
    with pytest.raises(ValueError, match=r"K=5 components but W \(3, 5\) has 3 rows"):
        combined_loss(a, torch.randn(3, 5), LossConfig())
    W = torch.randn(5, 3)
    W[0, 0] = float("nan")
    with pytest.raises(ValueError, match="W contains NaN or Inf"):
        combined_loss(a, W, LossConfig())


def test_gram_square_sum_fast_gradient_matches_plain_autograd():
    """The one-matmul backward of ||U U^T||_F^2 against autograd of the plain formula,
    also under vmap (the stacked trainer)."""
    torch.manual_seed(0)
    u = torch.randn(2, 6, 11, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: losses._offdiag_sq_gram(v[0]), (u,))
    fast = torch.func.vmap(losses._offdiag_sq_gram)(u)
    plain = torch.stack([(w @ w.t()).square().sum() - w.square().sum(0).square().sum() for w in u])
    torch.testing.assert_close(fast, plain, rtol=1e-12, atol=1e-12)
    (g_fast,) = torch.autograd.grad(fast.sum(), u)
    (g_plain,) = torch.autograd.grad(plain.sum(), u)
    torch.testing.assert_close(g_fast, g_plain, rtol=1e-12, atol=1e-12)
