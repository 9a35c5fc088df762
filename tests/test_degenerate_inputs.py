"""Right numbers on degenerate inputs (issue 13, cases 1-4), through every path of each kind.

Each right value is derived independently (numpy / scikit-learn) on the issue's own input.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import r2_score

from implicit_em.config import DataConfig, LossConfig, ModelConfig, RunConfig, TrainConfig
from implicit_em.data.batches import TensorBatches, batch_slices
from implicit_em.estimator import DecoderFreeSAE
from implicit_em.lm_eval import ce_loss_recovered, fit_scalar_decoder, fvu
from implicit_em.losses import (
    centred_columns,
    combined_loss,
    correlation_loss,
    sketched_correlation_loss,
    variance_loss,
)
from implicit_em.metrics import (
    activation_correlation_matrix,
    effective_rank,
    linear_probe_accuracy,
    redundancy_score,
)
from implicit_em.models import Encoder
from implicit_em.probe import torch_probe_accuracy
from implicit_em.runs import build_model
from implicit_em.train.distributed import encoder_terms_share, global_column_stats, train_steps
from implicit_em.train.loop import train
from implicit_em.train.stacked import StackedTrainer, encoder_terms, encoder_terms_grad

# ------------------------------------------------------------ 1. constant columns, float32


def constant_columns_input(b: int = 1448) -> torch.Tensor:
    """The issue's a (B, 4) float32: columns 0 and 1 constant (1.81, 0.576), 2 and 3 U(0, 1)."""
    a = torch.empty(b, 4)
    a[:, 0], a[:, 1] = 1.81, 0.576
    a[:, 2:] = torch.rand(b, 2, generator=torch.Generator().manual_seed(0))
    return a


def two_r_squared(a: torch.Tensor) -> float:
    """The right penalty: the random columns' squared sample correlation, twice (numpy)."""
    r = np.corrcoef(a[:, 2:].double().numpy().T)[0, 1]
    return 2 * r**2


def penalty_paths(a: torch.Tensor) -> dict:
    """Every path that computes the decorrelation penalty, as functions of a (B, K)."""
    k = a.shape[1]
    return {
        "kxk": lambda a: correlation_loss(a),
        "sketched": lambda a: sketched_correlation_loss(a, k**0.5 * torch.eye(k)),
        "combined": lambda a: combined_loss(a, torch.ones(k, 3), LossConfig(reference_k=None))[
            "tc"
        ],
        "combined_sketched": lambda a: combined_loss(
            a, torch.ones(k, 3), LossConfig(reference_k=None), probes=k**0.5 * torch.eye(k)
        )["tc"],
        "stacked": lambda a: encoder_terms(a[None, :, None, :], 1e-6)["tc"].sum(),
        "distributed": lambda a: encoder_terms_share(a, torch.ones(k, 3), LossConfig())["tc"],
        "distributed_sketched": lambda a: encoder_terms_share(
            a, torch.ones(k, 3), LossConfig(), probes=k**0.5 * torch.eye(k)
        )["tc"],
    }


@pytest.mark.parametrize("b", [1448, 128, 4096])
@pytest.mark.parametrize(
    "path",
    ["kxk", "sketched", "combined", "combined_sketched", "stacked", "distributed",
     "distributed_sketched"],
)  # fmt: skip
def test_constant_float32_columns_contribute_nothing_to_the_penalty(b, path):
    """Issue: 1.947 (K x K), 1.947 (stacked), hundreds to thousands (sketched); right 1.29e-05."""
    a = constant_columns_input(b).requires_grad_()
    tc = penalty_paths(a)[path](a)
    expected = two_r_squared(a.detach())
    if b == 1448:
        assert expected == pytest.approx(1.29e-05, rel=1e-3)
    assert float(tc.detach()) == pytest.approx(expected, rel=1e-4, abs=1e-9)
    (grad,) = torch.autograd.grad(tc, a)
    assert torch.equal(grad[:, :2], torch.zeros_like(grad[:, :2]))  # exactly zero
    assert grad[:, 2:].abs().max() > 0


def test_gram_path_with_constant_columns():
    """B < K takes the B x B Gram path: constant columns still contribute exactly nothing."""
    g = torch.Generator().manual_seed(0)
    a = torch.rand(6, 10, generator=g)
    a[:, :4] = torch.tensor([1.81, 0.576, 3e5, 7e-8])  # constant at very different scales
    a.requires_grad_()
    tc = correlation_loss(a)
    corr = np.corrcoef(a[:, 4:].detach().double().numpy().T)
    expected = (corr**2).sum() - 6
    assert float(tc) == pytest.approx(expected, rel=1e-4)
    (grad,) = torch.autograd.grad(tc, a)
    assert torch.equal(grad[:, :4], torch.zeros(6, 4))


def test_stacked_closed_form_gradient_is_zero_on_constant_columns():
    a = constant_columns_input()[None, :, None, :]  # (S, B, G, K) = (1, 1448, 1, 4)
    w = {"lse": torch.zeros(1, 1), "var": torch.ones(1, 1), "tc": torch.ones(1, 1)}
    terms, grad = encoder_terms_grad(a, 1e-6, w)  # the penalties' gradient only
    assert float(terms["tc"]) == pytest.approx(two_r_squared(a[0, :, 0]), rel=1e-4)
    # The variance barrier of a constant unit is its ceiling -log(eps), with zero gradient.
    assert torch.equal(grad[..., :2], torch.zeros_like(grad[..., :2]))
    assert grad[..., 2:].abs().max() > 0
    var_live = -torch.log(a[0, :, 0, 2:].double().var(dim=0) + 1e-6).sum()
    assert float(terms["var"]) == pytest.approx(2 * -np.log(1e-6) + float(var_live), rel=1e-6)


def test_variance_barrier_of_a_constant_column_is_its_ceiling_with_zero_gradient():
    a = constant_columns_input().requires_grad_()
    var = variance_loss(a)
    expected = 2 * -np.log(1e-6) - np.log(a[:, 2:].detach().double().var(0).numpy() + 1e-6).sum()
    assert float(var) == pytest.approx(expected, rel=1e-6)
    (grad,) = torch.autograd.grad(var, a)
    assert torch.equal(grad[:, :2], torch.zeros(1448, 2))


def test_distributed_global_stats_of_constant_columns():
    mean, ss = global_column_stats(constant_columns_input())
    assert torch.equal(ss[:2], torch.zeros(2))
    assert (ss[2:] > 100).all()


def test_metrics_agree_on_constant_columns():
    a = constant_columns_input()
    assert redundancy_score(a) == pytest.approx(1.29e-05, rel=1e-3)
    c = activation_correlation_matrix(a)
    np.testing.assert_allclose(c[2:, 2:], np.corrcoef(a[:, 2:].double().numpy().T), atol=1e-12)
    assert (c[:2] == 0).all() and (c[:, :2] == 0).all()


def test_a_column_varying_far_above_round_off_is_not_constant():
    a = constant_columns_input().double()
    a[:, 0] += 1e-4 * a[:, 2]  # genuinely varying column, tiny next to its mean 1.81
    assert float(correlation_loss(a)) > 1.0  # now perfectly correlated with column 2


# ------------------------------------------------------------ 2. batches of one row


def test_batch_slices_merges_a_one_row_tail():
    assert batch_slices(129, 128) == [(0, 129)]
    assert batch_slices(257, 128) == [(0, 128), (128, 257)]
    assert batch_slices(130, 128) == [(0, 128), (128, 130)]
    assert batch_slices(1, 128) == [(0, 1)]
    assert [len(x) for x, _ in TensorBatches(torch.zeros(257, 2), batch_size=128)] == [128, 129]


def test_batch_statistics_of_one_row_raise():
    a = torch.rand(1, 4)
    with pytest.raises(ValueError, match="at least 2 rows"):
        combined_loss(a, torch.ones(4, 3), LossConfig(), validate=False)
    with pytest.raises(ValueError, match="at least 2 rows"):
        encoder_terms(a[None, :, None, :], 1e-6)
    with pytest.raises(ValueError, match="at least 2 rows"):
        centred_columns(a)


def one_row_tail_config(activation: str) -> RunConfig:
    return RunConfig(
        model=ModelConfig(input_dim=8, hidden_dim=4, activation=activation),
        data=DataConfig(dataset="digits"),
        training=TrainConfig(batch_size=128, epochs=2, seed=0),
    )


def x129() -> torch.Tensor:
    return torch.rand(129, 8, generator=torch.Generator().manual_seed(0))  # N = 1 (mod 128)


@pytest.mark.parametrize("activation", ["relu", "softplus"])
def test_train_at_one_row_tail(activation):
    """Issue: NaN total, training stopped after epoch 1 (softplus: W became NaN)."""
    cfg = one_row_tail_config(activation)
    model = build_model(cfg)
    hist = train(model, x129(), cfg, progress=False)
    assert len(hist) == 2
    assert all(np.isfinite(h["total"]) for h in hist)
    assert torch.isfinite(model.W).all()


@pytest.mark.parametrize("activation", ["relu", "softplus"])
def test_stacked_at_one_row_tail_matches_train(activation):
    cfg = one_row_tail_config(activation)
    (hist,) = StackedTrainer([cfg]).fit(x129(), progress=False)
    solo = train(build_model(cfg), x129(), cfg, progress=False)
    assert len(hist) == 2
    for h, s in zip(hist, solo, strict=True):
        assert h["total"] == pytest.approx(s["total"], rel=1e-5)


@pytest.mark.parametrize("activation", ["relu", "softplus"])
def test_estimator_at_one_row_tail(activation):
    est = DecoderFreeSAE(4, activation, batch_size=128, max_epochs=2, random_state=0,
                         device="cpu").fit(x129().numpy())  # fmt: skip
    assert len(est.history_) == 2 and np.isfinite(est.history_[-1]["loss"])


@pytest.mark.parametrize("activation", ["relu", "softplus"])
def test_distributed_path_draws_only_full_global_batches(activation):
    torch.manual_seed(0)
    model = Encoder(8, 4, activation)
    out = train_steps(model, x129(), LossConfig(), global_batch=128, steps=3, log_every=1)
    assert all(np.isfinite(h["total"]) for h in out["history"])
    with pytest.raises(ValueError, match="global batch 256"):
        train_steps(model, x129(), LossConfig(), global_batch=256, steps=1)


def test_train_rejects_one_sample():
    cfg = one_row_tail_config("relu")
    with pytest.raises(ValueError, match="at least 2"):
        train(build_model(cfg), x129()[:1], cfg, progress=False)


# ------------------------------------------------------------ 3. ratios with zero denominators


def constant_target_input() -> tuple[torch.Tensor, torch.Tensor]:
    """The issue's x (200, 4) N(0, 1) with column 3 = 0.25, x_hat = x + 0.1 noise."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 4))
    x[:, 3] = 0.25
    x_hat = x + 0.1 * rng.standard_normal((200, 4))
    return torch.from_numpy(x), torch.from_numpy(x_hat)


def test_fvu_per_dim_with_a_constant_target_is_sklearns():
    """Issue: 5.8e299; right 1 - r2_score(uniform_average) = 0.258144."""
    x, x_hat = constant_target_input()
    expected = 1 - r2_score(x.numpy(), x_hat.numpy(), multioutput="uniform_average")
    assert expected == pytest.approx(0.258144, abs=1e-6)
    assert fvu(x, x_hat, per_dim=True) == pytest.approx(expected, rel=1e-12)
    assert fvu(x.float(), x_hat.float(), per_dim=True) == pytest.approx(expected, rel=1e-5)
    # A constant dimension reproduced exactly counts as explained (r2 = 1).
    x_hat[:, 3] = 0.25
    expected = 1 - r2_score(x.numpy(), x_hat.numpy(), multioutput="uniform_average")
    assert fvu(x, x_hat, per_dim=True) == pytest.approx(expected, rel=1e-12)


def test_total_fvu_is_the_sae_convention():
    x, x_hat = constant_target_input()
    err = ((x - x_hat) ** 2).sum()
    tot = ((x - x.mean(0)) ** 2).sum()
    assert fvu(x, x_hat) == pytest.approx(float(err / tot), rel=1e-12)
    x_hat[:, 3] = 0.25  # with no error on the constant dimension it is sklearn's variance_weighted
    vw = 1 - r2_score(x.numpy(), x_hat.numpy(), multioutput="variance_weighted")
    assert fvu(x, x_hat) == pytest.approx(vw, rel=1e-12)


def test_fvu_when_every_dimension_is_constant():
    x = torch.full((10, 3), 0.7, dtype=torch.float32)
    assert fvu(x, x.clone()) == 0.0 and fvu(x, x.clone(), per_dim=True) == 0.0
    assert fvu(x, x + 0.1) == 1.0 and fvu(x, x + 0.1, per_dim=True) == 1.0


def test_ce_loss_recovered_with_a_zero_or_tiny_denominator():
    assert ce_loss_recovered(2.0, 2.5, 4.0) == pytest.approx(0.75)
    assert ce_loss_recovered(2.0, 2.0, 2.0) == 1.0  # layer irrelevant, SAE exact
    assert ce_loss_recovered(2.0, 2.5, 2.0) == 0.0  # layer irrelevant, SAE hurts
    assert ce_loss_recovered(2.0, 2.0 + 1e-9, 2.0 + 1e-9) == 1.0  # tiny: float noise
    assert ce_loss_recovered(2.0, 2.5, 2.0 + 1e-9) == 0.0


def test_scalar_decoder_and_effective_rank_of_dead_codes():
    x = torch.randn(20, 5, dtype=torch.float64)
    W = torch.randn(3, 5, dtype=torch.float64)
    for offset in (True, False):
        c, m = fit_scalar_decoder(torch.zeros(20, 3), W, x, offset=offset)
        assert c == 0.0 and torch.isfinite(m).all()
    c, m = fit_scalar_decoder(torch.ones(20, 3), W, x, offset=True)  # constant y
    assert c == 0.0
    torch.testing.assert_close(m, x.mean(0).float())
    assert effective_rank(torch.zeros(4, 5)) == 0.0


# ------------------------------------------------------------ 4. probe labels


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    return X[:1000], y[:1000], X[1000:], y[1000:]


@pytest.mark.parametrize(
    "encode",
    [lambda y: np.where(y < 5, -1, 1), lambda y: 3 * y - 7,
     lambda y: np.array(["even", "odd"])[y % 2], lambda y: y],
    ids=["pm1", "noncontiguous", "strings", "digits"],
)  # fmt: skip
def test_torch_probe_takes_any_labels_sklearn_takes(digits_split, encode):
    """Issue: labels {-1, +1} raised 'index -1 is out of bounds'."""
    xtr, ytr, xte, yte = digits_split
    ytr, yte = encode(ytr), encode(yte)
    sk = linear_probe_accuracy(xtr, ytr, xte, yte)
    (ours,) = torch_probe_accuracy(torch.from_numpy(xtr), ytr, torch.from_numpy(xte), yte)
    assert abs(ours - sk) <= 0.002  # 0.2 points
    if encode(np.array([0]))[0] == -1:  # {-1, +1}
        assert sk == pytest.approx(0.858218, abs=1e-6)


def test_torch_probe_counts_unseen_test_classes_as_wrong():
    x = torch.randn(40, 3, dtype=torch.float64)
    y = np.array([-1, 1] * 20)
    (acc,) = torch_probe_accuracy(x, y, x, np.full(40, 7))
    assert acc == 0.0
    with pytest.raises(ValueError, match="at least 2 classes"):
        torch_probe_accuracy(x, np.zeros(40), x, np.zeros(40))
