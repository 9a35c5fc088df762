"""One objective at every entry point (issue 13, case 5): combined_loss, train, the stacked
trainer, the estimator and the DDP path (tests/test_distributed.py) give the same total for
the same settings, lambda_var and lambda_tc rescaled from reference_k to K in one place."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from implicit_em.config import LossConfig, ModelConfig, RunConfig, TrainConfig
from implicit_em.estimator import DecoderFreeSAE
from implicit_em.losses import combined_loss, loss_weights
from implicit_em.models import Encoder
from implicit_em.runs import build_model
from implicit_em.train.loop import term_weights, train
from implicit_em.train.stacked import StackedTrainer

KS = [64, 128, 1024]
N, D = 32, 8


def data() -> torch.Tensor:
    return torch.rand(N, D, generator=torch.Generator().manual_seed(0))  # (N, D)


def config(k: int) -> RunConfig:
    return RunConfig(
        model=ModelConfig(input_dim=D, hidden_dim=k),
        training=TrainConfig(batch_size=N, epochs=1, seed=3, lr=1e-9),
    )


def numpy_objective(a: np.ndarray, ref: int = 64) -> float:
    """LSE + (R / K) var + (R (R - 1) / (K (K - 1))) tc, from numpy alone."""
    k = a.shape[1]
    m = (-a).max(axis=1)
    lse = -(m + np.log(np.exp(-a - m[:, None]).sum(axis=1))).sum()
    var = -np.log(a.var(axis=0, ddof=1) + 1e-6).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.nan_to_num(np.corrcoef(a.T), nan=0.0)  # dead (constant) units: 0
    np.fill_diagonal(corr, 0.0)
    return lse + ref / k * var + ref * (ref - 1) / (k * (k - 1)) * (corr**2).sum()


@pytest.mark.parametrize("k", KS)
def test_every_entry_point_minimises_the_same_total(k):
    cfg = config(k)
    model = build_model(cfg)
    a = model(data())[0].detach()  # (N, K)
    expected = numpy_objective(a.double().numpy())
    # combined_loss with the README's call, on a config and on a plain mapping.
    total = float(combined_loss(a, model.W, LossConfig())["total"])
    assert total == pytest.approx(expected, rel=1e-5)
    mapping = {"lambda_var": 1.0, "lambda_tc": 1.0, "variance_eps": 1e-6}
    assert float(combined_loss(a, model.W, mapping)["total"]) == total
    # train: one batch of all N rows, so the first record's total is at the initial weights.
    (rec,) = train(build_model(cfg), data(), cfg, progress=False)
    assert rec["total"] == pytest.approx(total, rel=1e-5)
    # The stacked trainer (batched encoder path: B < K for every K here).
    ((srec,),) = StackedTrainer([cfg]).fit(data(), progress=False)
    assert srec["total"] == pytest.approx(total, rel=1e-5)
    assert term_weights("encoder", cfg.loss, k) == loss_weights(cfg.loss, k)


@pytest.mark.parametrize("k", KS)
def test_the_estimator_minimises_the_same_total(k):
    est = DecoderFreeSAE(k, batch_size=N, max_epochs=1, random_state=0, device="cpu")
    est.fit(data().numpy())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(est.seed_)
        enc = Encoder(D, k)  # the estimator's initial weights
    a, _ = enc(data())
    expected = numpy_objective(a.detach().double().numpy())
    assert est.history_[0]["loss"] == pytest.approx(expected, rel=1e-5)


def test_readme_number_at_k_128_is_what_train_minimises():
    """Issue: at K = 128 combined_loss gave 295.8 where train minimised -57.4 (the lambdas
    were not rescaled); the two now agree, and reference_k=None is the unscaled sum."""
    cfg = config(128)
    model = build_model(cfg)
    a = model(data())[0].detach()  # (N, K)
    t = combined_loss(a, model.W, LossConfig())
    unscaled = combined_loss(a, model.W, LossConfig(reference_k=None))
    w_var, w_tc = 64 / 128, 64 * 63 / (128 * 127)
    torch.testing.assert_close(t["total"], t["lse"] + w_var * t["var"] + w_tc * t["tc"])
    torch.testing.assert_close(unscaled["total"], t["lse"] + t["var"] + t["tc"])


def test_mapping_with_an_unknown_key_is_rejected():
    a = torch.rand(4, 3)
    with pytest.raises(ValueError, match="unknown loss weights \\['lambda_typo'\\]"):
        combined_loss(a, torch.ones(3, 2), {"lambda_typo": 1.0})
