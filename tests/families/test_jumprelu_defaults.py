"""The JumpReLU SAE's defaults (threshold 1.0, bandwidth 0.1, L0 coefficient 1.0) reach a
sparse code that recovers planted features on a small synthetic problem of unit scale per
dimension; the paper's starting threshold and bandwidth (0.001) stay dense over the same run."""

from __future__ import annotations

import torch

from implicit_em import runs
from implicit_em.config import ModelConfig, RunConfig, TrainConfig
from implicit_em.train.loop import train

D, N_FEATURES, K, TRUE_L0 = 32, 128, 128, 3.0


def sparse_problem(n: int = 4096, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """x (n, D) = codes (n, N) @ F (N, D): each unit feature fires with probability
    TRUE_L0 / N at magnitude U(1, 2); x scaled to mean squared norm D (as llm-train's inputs)."""
    g = torch.Generator().manual_seed(seed)
    F = torch.randn(N_FEATURES, D, generator=g)
    F = F / F.norm(dim=1, keepdim=True)
    on = torch.rand(n, N_FEATURES, generator=g) < TRUE_L0 / N_FEATURES
    x = (on * (1 + torch.rand(n, N_FEATURES, generator=g))) @ F  # (n, D)
    return x * (D / x.square().sum(1).mean()).sqrt(), F


def fit(x: torch.Tensor, **model) -> tuple[float, float, int, torch.nn.Module]:
    cfg = RunConfig(model=ModelConfig(type="jumprelu_sae", input_dim=D, hidden_dim=K, **model),
                    training=TrainConfig(epochs=40, batch_size=256, seed=0))  # fmt: skip
    torch.manual_seed(0)
    m = runs.build_model(cfg)
    train(m, x, cfg, progress=False)
    with torch.no_grad():
        a = m.encode(x)  # (n, K)
        fvu = float((m.decode(a) - x).square().sum() / (x - x.mean(0)).square().sum())
    return float((a != 0).sum(1).float().mean()), fvu, int(((a != 0).sum(0) == 0).sum()), m


def recovery(F: torch.Tensor, m) -> float:
    """Mean over true features of the largest |cosine| with a decoder column."""
    return float((F @ m.W_dec.detach()).abs().max(dim=1).values.mean())  # (N, K) -> ()


def test_defaults_reach_a_sparse_code_that_recovers_the_features():
    x, F = sparse_problem()
    l0, fvu, dead, model = fit(x)  # measured: L0 3.33, FVU 0.344, 0 dead, recovery 0.724
    assert 2.0 <= l0 <= 5.0 and dead <= K // 8 and fvu < 0.5
    torch.manual_seed(0)
    untrained = runs.build_model(RunConfig(model=ModelConfig(type="jumprelu_sae", input_dim=D,
                                                             hidden_dim=K)))  # fmt: skip
    assert recovery(F, model) > recovery(F, untrained) + 0.15  # measured 0.724 against 0.489
    dense_l0, _, _, dense = fit(x, jump_threshold=0.001, jump_bandwidth=0.001)
    assert dense_l0 > 8 * TRUE_L0  # the paper's start: measured L0 38.9 after the same run
    assert recovery(F, dense) < recovery(F, model) - 0.15  # measured 0.504
