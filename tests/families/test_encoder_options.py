"""The decoder-free encoder's variant options (issue 18, gpu3_plan.md): mean-centred inputs,
unit-norm rows, the weight-redundancy term at K > D, softplus energies, and a TopK SAE started
from a trained encoder. Tiny models on the CPU."""

from __future__ import annotations

import pytest
import torch

from implicit_em import runs
from implicit_em.config import LossConfig, ModelConfig, RunConfig, TrainConfig
from implicit_em.families import family
from implicit_em.losses import weight_redundancy_loss
from implicit_em.models import CENTRE_BATCHES, Encoder, TopKSAE, init_from_encoder_
from implicit_em.train.distributed import train_steps

D, K = 6, 10  # K > D: the weight-redundancy term goes through the D x D Gram


def data(n: int = 512, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=g) + torch.linspace(2.0, 5.0, D)  # far from centred


def build(**model) -> torch.nn.Module:
    torch.manual_seed(0)
    return family("encoder").build(ModelConfig(input_dim=D, hidden_dim=K, **model))


def test_centred_encoder_estimates_the_mean_then_subtracts_it():
    x = data()
    enc, plain = build(centre=True), build()
    enc.eval()
    assert torch.allclose(enc(x)[1], plain(x)[1])  # untrained: x_mean = 0, the same model
    enc.train()
    batches = x.split(32)
    for b in batches[: CENTRE_BATCHES + 3]:  # only the first CENTRE_BATCHES count
        enc(b)
    want = torch.cat(batches[:CENTRE_BATCHES]).mean(0)
    assert torch.allclose(enc.x_mean, want, atol=1e-6)
    z = enc(x)[1]
    assert torch.allclose(z, plain.linear(x - want), atol=1e-5)
    assert not torch.allclose(z, plain.linear(x), atol=1e-1)
    assert set(enc.state_dict()) >= {"x_mean", "x_mean_rows", "x_mean_batches"}


def test_unit_norm_rows_hold_through_training():
    x = data()
    unit, plain = build(unit_norm_rows=True), build()
    w0 = plain.W.detach().clone()
    assert torch.allclose(unit.W, w0 / w0.norm(dim=1, keepdim=True))  # same draw, unit rows
    loss = LossConfig(reference_k=None)
    for m in (unit, plain):
        train_steps(m, x, loss, global_batch=64, steps=20, lr=1e-2, seed=0)
    assert torch.allclose(unit.W.norm(dim=1), torch.ones(K), atol=1e-6)
    assert (plain.W.norm(dim=1) / w0.norm(dim=1) - 1).abs().max() > 1e-2  # the hook matters


def test_stacked_trainer_refuses_unit_rows_and_centred_encoders():
    from implicit_em.train.stacked import StackedTrainer

    for model, match in ((dict(unit_norm_rows=True), "unit-norm rows"),
                         (dict(centre=True), "centred input mean")):  # fmt: skip
        cfg = RunConfig(model=ModelConfig(input_dim=D, hidden_dim=K, **model))
        with pytest.raises(ValueError, match=match):
            StackedTrainer([cfg])


def test_weight_redundancy_term_trains_at_k_above_d():
    """lambda_wr > 0 through train_steps: logged, the D x D form equal to the plain K x K
    formula, and lowered against the same run without it."""
    x = data()
    out = {}
    for wr in (0.0, 1.0):
        m = build()
        r = train_steps(m, x, LossConfig(lambda_wr=wr), global_batch=64, steps=40, lr=1e-2,
                        seed=0, log_every=40)  # fmt: skip
        wn = m.W.detach().double()
        wn = wn / wn.norm(dim=1, keepdim=True)
        plain = float((wn @ wn.t() - torch.eye(K, dtype=torch.float64)).square().sum())
        assert float(weight_redundancy_loss(m.W.detach())) == pytest.approx(plain, rel=1e-4)
        out[wr] = (r["history"][-1]["wr"], plain)
    assert out[1.0][0] == pytest.approx(out[1.0][1], rel=0.02)  # logged one step earlier
    assert out[1.0][1] < out[0.0][1] - 0.05 * out[0.0][1]


def test_softplus_encoder_has_dense_codes_and_trains():
    x = data()
    m = build(activation="softplus")
    r = train_steps(m, x, LossConfig(), global_batch=64, steps=10, lr=1e-3, seed=0, log_every=5)
    a = m.encode(x)
    assert (a > 0).all()  # never exactly zero: L0 = K
    assert all(torch.isfinite(torch.tensor(v)) for v in r["history"][-1].values())
    assert torch.allclose(a, torch.nn.functional.softplus(m.linear(x)))


@pytest.mark.parametrize("centre", [False, True])
def test_topk_started_from_an_encoder_computes_its_pre_activations(centre):
    x = data()
    enc = build(centre=centre)
    train_steps(enc, x, LossConfig(), global_batch=64, steps=CENTRE_BATCHES + 2, lr=1e-2, seed=0)
    torch.manual_seed(1)
    cfg = RunConfig(model=ModelConfig(type="topk_sae", input_dim=D, hidden_dim=K, k=3,
                                      centre=centre), training=TrainConfig())  # fmt: skip
    sae = runs.build_model(cfg, seed=1)
    init_from_encoder_(sae, enc)
    enc.eval(), sae.eval()
    assert torch.allclose(sae.pre_activations(x), torch.relu(enc(x)[1]), atol=1e-5)
    assert torch.allclose(sae.W_dec.norm(dim=0), torch.ones(K), atol=1e-6)
    if centre:
        assert torch.equal(sae.x_mean, enc.x_mean) and int(sae.x_mean_batches) == CENTRE_BATCHES
        sae.train()
        before = sae.x_mean.clone()
        sae(x[:7] + 100.0)  # the copied mean counts as estimated: no update
        assert torch.equal(sae.x_mean, before)
    with pytest.raises(ValueError, match="centre="):
        init_from_encoder_(TopKSAE(D, K, 3, centre=not centre), enc)
    with pytest.raises(ValueError, match="same K and D"):
        init_from_encoder_(TopKSAE(D, K + 1, 3, centre=centre), enc)


def test_untrained_encoder_unchanged_by_the_new_options():
    """The default encoder draws the same weights as before the options existed."""
    torch.manual_seed(0)
    ref = torch.nn.Linear(D, K)
    m = build()
    assert isinstance(m, Encoder) and not m.centre and not m.unit_norm_rows
    assert torch.equal(m.W, ref.weight) and torch.equal(m.b, ref.bias)
    assert list(m.buffers()) == []
