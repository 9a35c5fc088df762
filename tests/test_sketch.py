"""The sketched (Hutchinson) decorrelation penalty against the exact one.

Deterministic: probes V = sqrt(K) I make the estimate exact, value and gradient.
Statistical: the mean over many random probe draws converges to the exact value.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from implicit_em.config import ConfigError, LossConfig
from implicit_em.losses import (
    combined_loss,
    correlation_loss,
    correlation_probes,
    sketched_correlation_loss,
    variance_loss,
)
from implicit_em.models import Encoder
from implicit_em.train.loop import loss_terms


def codes(b: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, k, generator=g, dtype=torch.float64) + 0.3
    z[:, 0] += 0.8 * z[:, 1]  # some real correlation
    return torch.relu(z).requires_grad_(True)


@pytest.mark.parametrize("b,k", [(6, 10), (20, 7)])  # B < K and B > K
def test_identity_probes_are_exact(b, k):
    a = codes(b, k)
    probes = k**0.5 * torch.eye(k, dtype=torch.float64)
    est = sketched_correlation_loss(a, probes)
    exact = correlation_loss(a)
    torch.testing.assert_close(est, exact, rtol=1e-10, atol=1e-12)
    (g_est,) = torch.autograd.grad(est, a)
    (g_exact,) = torch.autograd.grad(exact, a)
    torch.testing.assert_close(g_est, g_exact, rtol=1e-9, atol=1e-12)


def test_unbiased_over_random_probes():
    a = codes(16, 12).detach()
    exact = float(correlation_loss(a))
    g = torch.Generator().manual_seed(1)
    draws = torch.stack(
        [sketched_correlation_loss(a, correlation_probes(12, 4, a, g)) for _ in range(4000)]
    )
    sem = float(draws.std()) / len(draws) ** 0.5
    assert abs(float(draws.mean()) - exact) < 4 * sem
    assert float(draws.std()) > 0  # it is an estimate, not the exact value


def test_gradcheck_sketch():
    probes = torch.randn(5, 3, dtype=torch.float64)
    assert gradcheck(lambda a: sketched_correlation_loss(a, probes), (codes(7, 5),))


def test_constant_column_stays_finite():
    a = codes(8, 6).detach().clone()
    a[:, 2] = 1.5
    a.requires_grad_(True)
    loss = sketched_correlation_loss(a, torch.randn(6, 4, dtype=torch.float64))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(a.grad).all()


def test_combined_loss_with_probes_shares_the_column_statistics():
    a = codes(9, 11)
    w = torch.randn(11, 4, dtype=torch.float64)
    probes = torch.randn(11, 5, dtype=torch.float64)
    cfg = LossConfig()
    out = combined_loss(a, w, cfg, probes=probes, responsibilities=False)
    assert "responsibilities" not in out
    torch.testing.assert_close(out["var"], variance_loss(a, cfg.variance_eps))
    torch.testing.assert_close(out["tc"], sketched_correlation_loss(a, probes))
    exact = combined_loss(a, w, cfg)
    torch.testing.assert_close(out["lse"], exact["lse"])
    assert exact["responsibilities"].shape == (9, 11)


def test_loss_terms_draws_fresh_probes_each_step():
    torch.manual_seed(0)
    model = Encoder(5, 12).double()
    x = torch.randn(8, 5, dtype=torch.float64)
    cfg = LossConfig(tc_probes=3)
    t1, t2 = loss_terms(model, x, cfg)["tc"], loss_terms(model, x, cfg)["tc"]
    assert not torch.equal(t1, t2)  # new probes, new estimate
    torch.manual_seed(5)
    t3 = loss_terms(model, x, cfg)["tc"]
    torch.manual_seed(5)
    assert torch.equal(t3, loss_terms(model, x, cfg)["tc"])  # seeded: reproducible


def test_bad_probes_and_config_are_named():
    a = codes(6, 5)
    with pytest.raises(ValueError, match="probes .* must be \\(K, m\\)"):
        sketched_correlation_loss(a, torch.randn(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least one probe"):
        correlation_probes(5, 0, a)
    with pytest.raises(ConfigError, match="tc_probes"):
        LossConfig(tc_probes=0)
