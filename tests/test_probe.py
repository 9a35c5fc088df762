"""The torch L-BFGS probe against scikit-learn's StandardScaler + LogisticRegression."""

from __future__ import annotations

import pytest
import torch

from implicit_em import runs
from implicit_em.config import from_dict
from implicit_em.data import load_digits
from implicit_em.metrics import linear_probe_accuracy
from implicit_em.probe import torch_probe_accuracy
from implicit_em.train.loop import train


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits()  # (1797, 64), (1797,)
    return x[:1200], y[:1200], x[1200:], y[1200:]


@pytest.fixture(scope="module")
def codes(digits):
    """64-dim and 16-dim codes of two small trained encoders (a constant pixel column too)."""
    xtr, _, xte, _ = digits
    out = []
    for k, seed in ((32, 1), (16, 2)):
        cfg = from_dict({
            "model": {"input_dim": 64, "hidden_dim": k},
            "data": {"dataset": "digits"},
            "training": {"epochs": 3, "lr": 3e-3, "seed": seed},
        })  # fmt: skip
        model = runs.build_model(cfg)
        train(model, xtr, cfg, progress=False)
        with torch.no_grad():
            out.append((model.encode(xtr), model.encode(xte)))
    return out


def test_torch_probe_matches_sklearn_on_pixels(digits):
    xtr, ytr, xte, yte = digits
    ref = linear_probe_accuracy(xtr, ytr, xte, yte)
    (got,) = torch_probe_accuracy(xtr, ytr, xte, yte)
    assert ref > 0.85
    assert abs(got - ref) <= 0.002, (got, ref)


def test_torch_probe_matches_sklearn_on_encoder_codes(digits, codes):
    """Against scikit-learn run to convergence: on the K = 16 codes one borderline test sample
    (1 / 597 = 0.0017) flips with the solvers' stopping points (sklearn's default tol=1e-4
    gives 0.8358, converged 0.8342; a ulp-level change of the codes moves the torch probe
    between 0.8325 and 0.8342), so the reference is the optimum both solvers approach."""
    _, ytr, _, yte = digits
    for tr, te in codes:
        ref = linear_probe_accuracy(tr, ytr, te, yte, max_iter=20000, tol=1e-10)
        (got,) = torch_probe_accuracy(tr, ytr, te, yte)
        assert ref > 0.5
        assert abs(got - ref) <= 0.002, (got, ref)


def test_stacked_probes_equal_separate_ones(digits):
    xtr, ytr, xte, yte = digits
    g = torch.Generator().manual_seed(0)
    proj = [torch.randn(64, 20, generator=g) for _ in range(3)]  # three 20-dim feature sets
    tr = torch.stack([torch.relu(xtr @ p) for p in proj])  # (3, n, 20)
    te = torch.stack([torch.relu(xte @ p) for p in proj])
    stacked = torch_probe_accuracy(tr, ytr, te, yte)
    separate = [torch_probe_accuracy(a, ytr, b, yte)[0] for a, b in zip(tr, te, strict=True)]
    assert len(stacked) == 3
    assert stacked == pytest.approx(separate, abs=1 / len(yte) + 1e-12)  # at most one sample
    for s, a, b in zip(stacked, tr, te, strict=True):
        assert abs(s - linear_probe_accuracy(a, ytr, b, yte)) <= 0.002


def test_probe_handles_constant_features_and_returns_fractions(digits):
    xtr, ytr, xte, yte = digits
    # digits has all-zero pixel columns: standardization must leave them at 0, not NaN
    assert (xtr.std(dim=0) == 0).any()
    (acc,) = torch_probe_accuracy(xtr, ytr, xte, yte)
    assert 0.0 <= acc <= 1.0
    (chance,) = torch_probe_accuracy(torch.zeros(len(xtr), 4), ytr, torch.zeros(len(xte), 4), yte)
    assert chance == pytest.approx(float((yte == torch.bincount(ytr).argmax()).double().mean()))


def test_probe_gradient_is_autograd_of_the_objective():
    from implicit_em.probe import probe_loss_and_grad

    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 50, 7, dtype=torch.float64, generator=g)
    y = torch.randint(0, 4, (2, 50, 1), generator=g)
    W = torch.randn(2, 7, 4, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(2, 1, 4, dtype=torch.float64, generator=g, requires_grad=True)
    C = 0.7
    logits = torch.baddbmm(b, x, W)
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
    ref = (ce + W.square().sum() / (2 * C)) / 50
    ref_w, ref_b = torch.autograd.grad(ref, [W, b])
    with torch.no_grad():
        loss, gw, gb = probe_loss_and_grad(x, x.mT.contiguous(), y, W, b, C)
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gw, ref_w, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gb, ref_b, rtol=1e-12, atol=1e-12)
