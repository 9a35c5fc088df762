"""Metrics against plain numpy formulas, bad-input messages, and the linear probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from implicit_em.metrics import (
    dead_units,
    effective_rank,
    linear_probe_accuracy,
    max_entropy,
    reconstruction_mse,
    redundancy_score,
    responsibility_entropy,
    sparsity_l0,
    usage_distribution,
    weight_redundancy,
)


def test_dead_units():
    a = torch.randn(50, 6)
    a[:, 1] = 3.0  # constant
    a[:, 4] *= 0.05  # variance ~ 0.0025 < 0.01
    expected = int((np.var(a.numpy(), axis=0, ddof=1) < 0.01).sum())
    assert dead_units(a) == expected == 2
    assert dead_units(a, threshold=1e-9) == 1


@pytest.mark.parametrize("shape", [(10, 25), (25, 10)], ids=["gram", "kk"])
def test_redundancy_score(shape):
    a = torch.randn(*shape) @ torch.randn(shape[1], shape[1])
    c = np.corrcoef(a.double().numpy(), rowvar=False)
    expected = np.linalg.norm(c - np.eye(shape[1])) ** 2
    assert redundancy_score(a) == pytest.approx(expected, rel=1e-9)


def test_redundancy_score_zero_for_uncorrelated_columns():
    a = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert redundancy_score(a) == pytest.approx(0.0, abs=1e-12)


def test_weight_redundancy():
    W = torch.randn(6, 9)
    wn = W.double().numpy() / np.linalg.norm(W.double().numpy(), axis=1, keepdims=True)
    assert weight_redundancy(W) == pytest.approx(
        np.linalg.norm(wn @ wn.T - np.eye(6)) ** 2, rel=1e-9
    )


def test_effective_rank():
    W = torch.randn(8, 12)
    s = np.linalg.svd(W.double().numpy(), compute_uv=False)
    p = s / s.sum()
    assert effective_rank(W) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-9)
    assert effective_rank(torch.eye(5)) == pytest.approx(5.0)
    rank_one = torch.outer(torch.randn(7), torch.randn(4))
    assert effective_rank(rank_one) == pytest.approx(1.0, abs=1e-4)


def test_responsibility_entropy():
    r = torch.softmax(torch.randn(20, 7), dim=1)
    rn = r.double().numpy()
    assert responsibility_entropy(r) == pytest.approx(-(rn * np.log(rn)).sum(1).mean(), rel=1e-6)
    assert responsibility_entropy(torch.full((3, 7), 1 / 7)) == pytest.approx(
        max_entropy(7), rel=1e-6
    )
    one_hot = torch.eye(7)[[0, 3, 6]]
    assert responsibility_entropy(one_hot) == 0.0  # 0 log 0 = 0, not NaN


def test_usage_distribution():
    r = torch.softmax(torch.randn(30, 5), dim=1)
    u = usage_distribution(r)
    assert isinstance(u, np.ndarray) and u.shape == (5,)
    assert u.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(u, r.double().numpy().mean(axis=0), rtol=1e-12)


def test_reconstruction_mse():
    x, a, W = torch.randn(10, 6), torch.rand(10, 4), torch.randn(4, 6)
    xn, an, Wn = (t.double().numpy() for t in (x, a, W))
    assert reconstruction_mse(x, a, W) == pytest.approx(((xn - an @ Wn) ** 2).mean(), rel=1e-5)

    an_unit = an / np.linalg.norm(an, axis=1, keepdims=True)
    xh = an_unit @ Wn
    xh = xh * np.linalg.norm(xn, axis=1, keepdims=True) / np.linalg.norm(xh, axis=1, keepdims=True)
    assert reconstruction_mse(x, a, W, normalize=True) == pytest.approx(
        ((xn - xh) ** 2).mean(), rel=1e-5
    )


def test_reconstruction_mse_normalized_is_scale_free():
    x, a, W = torch.randn(10, 6), torch.rand(10, 4), torch.randn(4, 6)
    base = reconstruction_mse(x, a, W, normalize=True)
    assert reconstruction_mse(x, 7.0 * a, 0.1 * W, normalize=True) == pytest.approx(base, rel=1e-5)
    assert reconstruction_mse(x, 7.0 * a, 0.1 * W) != pytest.approx(reconstruction_mse(x, a, W))


@pytest.mark.parametrize(
    "x_shape, a_shape, w_shape",
    [((10, 6), (10, 5), (4, 6)), ((10, 7), (10, 4), (4, 6)), ((9, 6), (10, 4), (4, 6))],
    ids=["K", "D", "B"],
)
def test_reconstruction_mse_mismatched_shapes(x_shape, a_shape, w_shape):
    with pytest.raises(ValueError, match=r"shapes do not match: x \(\d+, \d+\), a \(\d+, \d+\), W"):
        reconstruction_mse(torch.randn(*x_shape), torch.randn(*a_shape), torch.randn(*w_shape))


def test_sparsity_l0():
    a = torch.tensor([[0.0, 0.5, 0.02, 0.005], [1.0, 2.0, 3.0, 0.0]])
    l0, density = sparsity_l0(a)
    assert (l0, density) == (2.5, 2.5 / 4)
    an = torch.rand(40, 8).numpy() - 0.5
    expected = (an > 0.1).sum(1).mean()
    assert sparsity_l0(torch.from_numpy(an), threshold=0.1)[0] == pytest.approx(expected)


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="batch size 1"):
        dead_units(torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"expected a of shape \(B, K\)"):
        redundancy_score(torch.randn(4))
    with pytest.raises(ValueError, match="r contains NaN or Inf"):
        responsibility_entropy(torch.tensor([[float("nan"), 1.0]]))


def test_linear_probe_on_digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    train, test = idx[:600], idx[600:]
    with threadpool_limits(1):  # the suite runs on small shared machines
        acc = linear_probe_accuracy(
            X[train], y[train], torch.from_numpy(X[test]), torch.from_numpy(y[test])
        )
    assert 0.9 < acc <= 1.0


def test_linear_probe_chance_on_shuffled_labels():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    y = rng.integers(0, 4, size=400)
    assert linear_probe_accuracy(X[:200], y[:200], X[200:], y[200:]) < 0.45


def test_reconstruction_mse_rejects_1d_w():
    with pytest.raises(ValueError, match=r"expected W of shape"):
        reconstruction_mse(torch.randn(4, 6), torch.randn(4, 3), torch.randn(6))
