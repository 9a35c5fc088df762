"""The tied TopK autoencoder and its hybrid (families.tied_topk_sae, families.tied_topk_hybrid):
the synthetic harness's `tied-topk` and `tied-topk-im-W` objectives, now trainable as families."""

from __future__ import annotations

import pytest
import torch

from implicit_em.config import LossConfig, ModelConfig
from implicit_em.eval.variants import tied_reconstruction_loss
from implicit_em.families import family, family_of
from implicit_em.losses import combined_loss
from implicit_em.models import Encoder, topk_codes
from implicit_em.train.distributed import train_steps

TIED, HYBRID = "tied_topk_sae", "tied_topk_hybrid"


def build(name: str, d: int = 6, k_lat: int = 10, k: int = 3, seed: int = 0, centre=False):
    torch.manual_seed(seed)
    return family(name).build(ModelConfig(type=name, input_dim=d, hidden_dim=k_lat, k=k,
                                          centre=centre))  # fmt: skip


@pytest.mark.parametrize("name", [TIED, HYBRID])
def test_same_start_as_the_encoder_and_the_plain_formulas(name):
    """Seeded like models.Encoder (same W, b), codes TopK(ReLU(W x + b)), x_hat = a W + b_dec."""
    m = build(name, seed=3)
    torch.manual_seed(3)
    enc = Encoder(6, 10)
    torch.testing.assert_close(m.W, enc.W)
    torch.testing.assert_close(m.b, enc.b)
    assert family_of(m).name == name
    x = torch.randn(32, 6)
    z = torch.relu(x @ m.W.T + m.b)
    a = m.encode(x)
    assert ((a != 0).sum(1) <= 3).all() and ((a != 0).sum(1) == 3).float().mean() > 0.9
    kept = a != 0
    torch.testing.assert_close(a[kept], z[kept])
    assert (z[~kept].unsqueeze(0) <= 1e-12 + z.max()).all()
    # every dropped code is at most the smallest kept code of its row
    smallest_kept = torch.where(kept, a, torch.inf).min(1).values
    assert (torch.where(kept, -torch.inf, z).max(1).values <= smallest_kept + 1e-7).all()
    with torch.no_grad():
        m.b_dec.add_(torch.randn(6))
    torch.testing.assert_close(m.decode(a), a @ m.W + m.b_dec)
    x_hat, a2, z2 = m(x)
    torch.testing.assert_close(a2, a)
    torch.testing.assert_close(z2, z)
    mse = family(name).loss_terms(m, x, LossConfig())["mse"]
    torch.testing.assert_close(mse, ((x - x_hat) ** 2).sum(1).mean())


@pytest.mark.parametrize(("w", "wr"), [(0.3, 0.0), (3.0, 0.0), (3.0, 1.0)])
def test_hybrid_is_the_harness_objective_divided_by_its_weight(w, wr):
    """The harness's tied-topk-im-w objective, w * tied_recon(TopK(a)) + encoder terms on
    a = ReLU(W x + b) at lambdas 1 (and lambda_wr = wr: `tied-topk-im-3.0-wr`), equals w times
    the hybrid's loss at lambdas 1 / w and lambda_wr = wr / w: same value / w and same
    gradients / w (float64, exact decorrelation). So the harness's lambda_wr = 1 at w = 3 is
    the family's lambda_wr = 1/3 (docs/eval/probing/gpu7/plan.json)."""
    torch.set_default_dtype(torch.float64)
    try:
        m = build(HYBRID, d=5, k_lat=8, k=2, seed=1)
        with torch.no_grad():
            m.b_dec.add_(0.1 * torch.randn(5))
        x = torch.randn(40, 5) + 0.5
        ref_cfg = LossConfig(lambda_wr=wr)
        z = torch.relu(m.linear(x))
        ref = w * tied_reconstruction_loss(x, topk_codes(z, 2), m.W, m.b_dec)
        ref = ref + combined_loss(z, m.W, ref_cfg, responsibilities=False)["total"]
        g_ref = torch.autograd.grad(ref, list(m.parameters()))
        cfg = LossConfig(lambda_lse=1 / w, lambda_var=1 / w, lambda_tc=1 / w, lambda_wr=wr / w)
        fam = family(HYBRID)
        terms = fam.loss_terms(m, x, cfg)
        terms.pop("a")
        weights = fam.weights(cfg, 8)
        ours = sum(weights[t] * terms[t] for t in weights)
        g = torch.autograd.grad(ours, list(m.parameters()))
        torch.testing.assert_close(ours * w, ref)
        for gi, gr in zip(g, g_ref, strict=True):
            torch.testing.assert_close(gi * w, gr)
    finally:
        torch.set_default_dtype(torch.float32)


def test_scale_trainer_step_applies_the_hybrids_wr():
    """The scale trainer's step (`train.distributed.ModelStepper`, which `train_steps` and the
    probing study run) on the hybrid with lambda_wr > 0: its loss is the weighted sum with
    wr at lambda_wr, and its gradient differs from the lambda_wr = 0 step's by exactly
    lambda_wr * grad ||W_n W_n^T - I||_F^2 (wr is applied, not only logged; float64)."""
    from implicit_em.losses import weight_redundancy_loss
    from implicit_em.train.distributed import ModelStepper

    torch.set_default_dtype(torch.float64)
    try:
        x = torch.randn(64, 6) + 0.3
        third = 1 / 3
        grads, totals = {}, {}
        for wr in (0.0, third):
            m = build(HYBRID, d=6, k_lat=10, k=3, seed=4, centre=True)
            cfg = LossConfig(lambda_lse=third, lambda_var=third, lambda_tc=third, lambda_wr=wr)
            stepper = ModelStepper(m, cfg, lr=1e-3, probe_seed=0)
            total, terms, _ = stepper._forward(x, None, None)
            weights = family(HYBRID).weights(cfg, 10)
            assert weights["wr"] == wr and terms["wr"].requires_grad == bool(wr)
            torch.testing.assert_close(total, sum(weights[t] * terms[t] for t in terms))
            grads[wr] = torch.autograd.grad(total, [m.linear.weight])[0]
            totals[wr] = total.detach()
        W = build(HYBRID, d=6, k_lat=10, k=3, seed=4, centre=True).linear.weight
        g_wr = torch.autograd.grad(weight_redundancy_loss(W), [W])[0]
        torch.testing.assert_close(grads[third] - grads[0.0], third * g_wr)
        torch.testing.assert_close(totals[third] - totals[0.0],
                                   third * weight_redundancy_loss(W).detach())  # fmt: skip
    finally:
        torch.set_default_dtype(torch.float32)


def test_hybrid_loss_passes_gradcheck_in_float64():
    torch.manual_seed(0)
    m = build(HYBRID, d=4, k_lat=6, k=2, seed=2).double()
    x = torch.randn(12, 4, dtype=torch.float64) + 1.0
    fam = family(HYBRID)
    cfg = LossConfig(lambda_wr=0.5)
    weights = fam.weights(cfg, 6)
    names = [n for n, _ in m.named_parameters()]

    def total(*params):
        state = dict(zip(names, params, strict=True))
        out = torch.func.functional_call(m, state, (x,))
        terms, _ = fam.terms_from_outputs(m, x, out, cfg)
        # wr reads model.W directly: recompute it from the functional W
        from implicit_em.losses import weight_redundancy_loss

        terms["wr"] = weight_redundancy_loss(state["linear.weight"], validate=False)
        return sum(weights[t] * terms[t] for t in weights)

    params = tuple(p.detach().clone().requires_grad_(True) for p in m.parameters())
    assert torch.autograd.gradcheck(total, params, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", [TIED, HYBRID])
def test_centred_model_reads_out_in_the_units_of_x(name):
    m = build(name, d=6, k_lat=10, k=10, centre=True)
    x = torch.randn(64, 6) + 7.0
    m.train()
    for _ in range(8):
        m(x)
    torch.testing.assert_close(m.x_mean, x.mean(0))
    m.eval()
    with torch.no_grad():
        m.b_dec.zero_()
        m.linear.weight.zero_()
    torch.testing.assert_close(m.decode(m.encode(x)), x.mean(0).expand_as(x))


@pytest.mark.parametrize("name", [TIED, HYBRID])
def test_trains_through_train_steps_and_reconstruction_improves(name):
    """The probing study's trainer (train.distributed.train_steps), tiny CPU data: the
    reconstruction error falls, L0 is k, the sketched decorrelation (tc_probes) runs."""
    torch.manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(12, 8), dim=1)  # 12 features in 8 dims
    f = torch.relu(torch.randn(4096, 12) - 1.0)
    x = f @ dirs + 0.3
    m = build(name, d=8, k_lat=24, k=3, centre=True)
    cfg = LossConfig(tc_probes=4)
    fam = family(name)
    m.eval()  # (a training-mode forward would fix the centring mean)
    with torch.no_grad():
        before = float(fam.loss_terms(m, x[:512], cfg)["mse"])
    m.train()
    r = train_steps(m, x, cfg, global_batch=256, steps=150, lr=3e-3, seed=0, log_every=50)
    assert [h["step"] for h in r["history"]] == [50, 100, 150]
    assert set(fam.term_names) | {"total"} <= set(r["history"][-1])
    m.eval()
    with torch.no_grad():
        after = float(fam.loss_terms(m, x[:512], cfg)["mse"])
        a = m.encode(x[:512])
    # measured 1.003 -> 0.081 (tied) and -> 0.468 (hybrid: its LSE, summed over the batch,
    # pulls against the reconstruction)
    assert after < (0.2 if name == TIED else 0.6) * before
    assert float((a > 0).sum(1).float().mean()) == pytest.approx(3.0, abs=0.05)
