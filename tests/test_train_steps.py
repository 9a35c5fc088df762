"""`distributed.train_steps` in one process: the scale study's trainer (sketch, compile)."""

from __future__ import annotations

import math

import pytest
import torch

from implicit_em.config import LossConfig
from implicit_em.models import Encoder, StandardSAE, TopKSAE
from implicit_em.train.distributed import train_steps


def data(n: int = 96, d: int = 8) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(0))


def fit(model: torch.nn.Module, loss: LossConfig, **kw) -> dict:
    torch.manual_seed(0)
    return train_steps(model, data(), loss, global_batch=32, steps=12, lr=1e-2, seed=3,
                       log_every=4, **kw)  # fmt: skip


@pytest.mark.parametrize(
    "build", [lambda: Encoder(8, 16), lambda: TopKSAE(8, 16, 4), lambda: StandardSAE(8, 16)]
)
def test_every_family_trains_and_logs_finite_terms(build):
    torch.manual_seed(0)
    res = fit(build(), LossConfig(tc_probes=4, dead_steps=3))
    assert [h["step"] for h in res["history"]] == [4, 8, 12]  # 3 steps per pass over 96 rows
    assert all(math.isfinite(v) for h in res["history"] for v in h.values())


def test_sketched_encoder_is_seeded_and_logs_wr():
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = Encoder(8, 16)
        res = fit(model, LossConfig(tc_probes=4))
        runs.append((model.W.detach().clone(), res["history"]))
    assert torch.equal(runs[0][0], runs[1][0])  # same seed: same probes, same data order
    assert "wr" in runs[0][1][-1] and runs[0][1][-1]["wr"] > 0  # logged, though lambda_wr = 0
    torch.manual_seed(0)
    exact = Encoder(8, 16)
    fit(exact, LossConfig())
    assert not torch.equal(exact.W, runs[0][0])  # the sketch is used


def test_compiled_step_matches_eager():
    """torch.compile of the forward + loss (the study's --compile) on CPU, against eager."""
    weights = []
    for compile in (False, True):
        torch.manual_seed(0)
        model = Encoder(8, 16)
        fit(model, LossConfig(tc_probes=4), compile=compile)
        weights.append(model.W.detach())
    torch.testing.assert_close(weights[1], weights[0], rtol=1e-4, atol=1e-5)
