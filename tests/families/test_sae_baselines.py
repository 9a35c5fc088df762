"""The SAE baselines of issue 18: BatchTopK and JumpReLU SAEs, and mean-centred inputs for
every SAE family. Shapes, gradients (gradcheck in float64 where the loss is differentiable),
the top-k-over-batch and the JumpReLU straight-through gradients against plain formulas, the
running threshold and mean estimates, run directories, the SAELens export through the real
sae-lens package, and training by name through `implicit-em llm-train`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch.func import functional_call

from implicit_em import runs
from implicit_em.config import LossConfig, ModelConfig, RunConfig, TrainConfig
from implicit_em.families import family
from implicit_em.families.batchtopk_sae import THRESHOLD_RATE, BatchTopKSAE, batch_topk
from implicit_em.families.jumprelu_sae import JumpReLUSAE, jumprelu, step
from implicit_em.models import CENTRE_BATCHES, StandardSAE, TopKSAE
from implicit_em.train.loop import loss_terms, term_weights, train

SAES = ("standard_sae", "topk_sae", "batchtopk_sae", "matryoshka_batchtopk_sae", "jumprelu_sae")
D, K = 10, 12


def build(name: str, centre: bool = False, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return family(name).build(ModelConfig(type=name, input_dim=D, hidden_dim=K, k=3,
                                          centre=centre, **kw))  # fmt: skip


def fix_mean_(model: torch.nn.Module) -> None:
    """Run the first CENTRE_BATCHES training forwards so that x_mean is fixed."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for _ in range(CENTRE_BATCHES):
            model(torch.randn(16, D, generator=g, dtype=model.W.dtype) + 2.0)


@pytest.mark.parametrize("centre", [False, True])
@pytest.mark.parametrize("name", SAES)
def test_forward_shapes_and_terms(name, centre):
    model = build(name, centre)
    x = torch.randn(16, D)
    out = model(x)
    assert out[0].shape == (16, D) and out[1].shape == (16, K)
    terms = loss_terms(model, x, LossConfig(), None)
    assert terms.pop("a").shape == (16, K)
    assert set(terms) == set(family(name).term_names)
    assert all(t.ndim == 0 and torch.isfinite(t) for t in terms.values())
    assert (len(list(model.buffers())) > 0) == (centre or "batchtopk" in name)


def test_config_checks():
    assert ModelConfig(type="encoder", centre=True).centre  # the encoder centres too (gpu3)
    with pytest.raises(ValueError, match="model.unit_norm_rows does not apply to 'topk_sae'"):
        ModelConfig(type="topk_sae", unit_norm_rows=True)
    with pytest.raises(ValueError, match="jump_bandwidth must be > 0"):
        ModelConfig(type="jumprelu_sae", jump_bandwidth=0.0)
    with pytest.raises(ValueError, match="l0_coef must be >= 0"):
        LossConfig(l0_coef=-1.0)
    with pytest.raises(ValueError, match="model.k must be in"):
        ModelConfig(type="batchtopk_sae", hidden_dim=4, k=5)


class AuxK(torch.nn.Module):
    """The AuxK reconstruction as a forward (so functional_call can reach it)."""

    def __init__(self, m: torch.nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor, dead: torch.Tensor) -> torch.Tensor:
        return self.m.aux_reconstruction(x, dead, 4)


@pytest.mark.parametrize("centre", [False, True])
@pytest.mark.parametrize("name", SAES)
def test_weighted_loss_passes_gradcheck_in_float64(name, centre):
    """Every parameter that the loss is differentiable in (all but JumpReLU's thresholds,
    whose gradient is the straight-through estimate, tested below). AuxK's target, the
    residual, is detached by design (Gao et al.): its term is checked with the residual
    held fixed."""
    model = build(name, centre).double()
    fix_mean_(model)
    torch.manual_seed(3)
    x = torch.randn(8, D, dtype=torch.float64) * 2 + 1.0
    loss = LossConfig(l1_weight=0.1, l0_coef=0.01)
    weights = {t: w for t, w in term_weights(name, loss, K).items() if t != "aux"}
    params = {k: v.detach().clone() for k, v in model.named_parameters() if k != "threshold"}
    extra = {k: v for k, v in model.named_parameters() if k == "threshold"}

    def total(*ps):
        p = {**dict(zip(params, ps, strict=True)), **extra}
        out = functional_call(model, p, (x,))
        terms, _ = family(name).terms_from_outputs(model, x, out, loss, None)
        return sum(weights[t] * terms[t] for t in weights)

    inputs = tuple(v.requires_grad_() for v in params.values())
    assert torch.autograd.gradcheck(total, inputs, eps=1e-6, atol=1e-6)
    if hasattr(model, "aux_reconstruction"):
        dead = torch.zeros(K, dtype=torch.bool)
        dead[::3] = True
        with torch.no_grad():
            residual = x - model(x)[0]  # (B, D), the detached AuxK target

        wrapper = AuxK(model)

        def aux(*ps):
            p = {f"m.{k}": v for k, v in zip(params, ps, strict=True)}
            aux_hat = functional_call(wrapper, p, (x, dead))  # (B, D)
            return (residual - aux_hat).square().mean()

        assert torch.autograd.gradcheck(aux, inputs, eps=1e-6, atol=1e-6)


def test_batch_topk_keeps_the_k_b_largest_of_the_batch():
    torch.manual_seed(0)
    z = torch.randn(6, 9).relu()
    got = batch_topk(z, 2)
    vals = sorted(z.flatten().tolist(), reverse=True)
    cut = vals[2 * 6 - 1]  # the (kB)-th largest value
    want = torch.where(z >= cut, z, torch.zeros_like(z))
    torch.testing.assert_close(got, want)
    per_row = (got > 0).sum(dim=1)
    assert int(per_row.sum()) == 12 and len(set(per_row.tolist())) > 1  # k on average only


def test_matryoshka_inner_term_is_the_sum_of_prefix_reconstruction_errors():
    """inner = sum over the inner prefixes m_i (K/8, K/4, K/2 at L = 4) of the MSE of the
    reconstruction from the first m_i codes only (Bussmann et al. 2025), codes zeroed beyond."""
    from implicit_em.families.matryoshka_batchtopk_sae import matryoshka_widths

    assert matryoshka_widths(16, 4) == [2, 4, 8, 16]
    assert matryoshka_widths(6, 4) == [1, 3, 6] and matryoshka_widths(6, 1) == [6]
    model = build("matryoshka_batchtopk_sae", centre=True)
    fix_mean_(model)
    x = torch.randn(16, D)
    terms = loss_terms(model, x, LossConfig())
    a = terms["a"]
    want = 0.0
    for w in model.widths[:-1]:
        masked = torch.where(torch.arange(K) < w, a, torch.zeros_like(a))  # (B, K)
        want += float((x - model.decode(masked)).square().mean())
    assert model.widths == [1, 3, 6, 12] and float(terms["inner"]) == pytest.approx(want)
    full = float((x - model.decode(a)).square().mean())
    assert float(terms["mse"]) == pytest.approx(full)


def test_batchtopk_threshold_is_the_running_mean_of_the_smallest_kept_code():
    model = build("batchtopk_sae")
    g = torch.Generator().manual_seed(1)
    mins = []
    for _ in range(5):
        x = torch.randn(16, D, generator=g)
        with torch.no_grad():
            _, a = model(x)
        mins.append(float(a[a > 0].min()))
    assert 5 < 1 / THRESHOLD_RATE  # still in the running-mean phase
    assert float(model.threshold) == pytest.approx(sum(mins) / len(mins), rel=1e-6)
    model.eval()
    x = torch.randn(16, D, generator=g)
    z = model.pre_activations(x)
    torch.testing.assert_close(model.encode(x), torch.where(z > model.threshold, z, 0.0))
    # after the running-mean phase: an exponential moving average with THRESHOLD_RATE
    model.threshold_steps.fill_(10_000)
    model.threshold.fill_(1.0)
    model.train()
    with torch.no_grad():
        _, a = model(x)
    m = float(a[a > 0].min())
    assert float(model.threshold) == pytest.approx(1.0 + THRESHOLD_RATE * (m - 1.0), rel=1e-6)


def test_jumprelu_straight_through_gradients_match_the_plain_formulas():
    """d/dtheta JumpReLU = -(theta/eps) K((z-theta)/eps), d/dz = H(z-theta);
    d/dtheta H = -(1/eps) K((z-theta)/eps), no gradient to z (Rajamanoharan et al. Eq. 11-12)."""
    torch.manual_seed(0)
    eps = 0.5
    z = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    theta = torch.rand(5, dtype=torch.float64).mul(0.5).requires_grad_()
    g = torch.randn(7, 5, dtype=torch.float64)
    dz, dth = torch.autograd.grad((jumprelu(z, theta, eps) * g).sum(), (z, theta))
    dz_s, dth_s = torch.autograd.grad((step(z, theta, eps) * g).sum(), (z, theta),
                                      allow_unused=True)  # fmt: skip
    want_dth = torch.zeros(5, dtype=torch.float64)
    want_dth_s = torch.zeros(5, dtype=torch.float64)
    want_dz = torch.zeros(7, 5, dtype=torch.float64)
    inside = 0
    for b in range(7):
        for j in range(5):
            zz, th = float(z[b, j].detach()), float(theta[j].detach())
            kern = 1.0 if -0.5 < (zz - th) / eps < 0.5 else 0.0
            inside += kern
            want_dth[j] -= th / eps * kern * float(g[b, j])
            want_dth_s[j] -= 1 / eps * kern * float(g[b, j])
            want_dz[b, j] = float(g[b, j]) if zz > th else 0.0
    assert inside >= 5  # the window is not empty
    torch.testing.assert_close(dth, want_dth)
    torch.testing.assert_close(dth_s, want_dth_s)
    torch.testing.assert_close(dz, want_dz)
    assert dz_s is None or bool((dz_s == 0).all())
    with torch.no_grad():
        torch.testing.assert_close(jumprelu(z, theta, eps), z * (z > theta))


def test_jumprelu_l0_term_counts_active_latents_and_thresholds_stay_non_negative():
    model = build("jumprelu_sae", jump_threshold=0.2, jump_bandwidth=0.1)
    x = torch.randn(32, D)
    terms = loss_terms(model, x, LossConfig())
    z = model.pre_activations(x)
    assert float(terms["l0"]) == pytest.approx(float((z > 0.2).sum(1).float().mean()))
    assert torch.equal(terms["a"] != 0, z > 0.2)
    with torch.no_grad():
        model.threshold.fill_(-0.5)
    family("jumprelu_sae").after_step(model)
    assert float(model.threshold.min()) == 0.0


@pytest.mark.parametrize("name", SAES)
def test_centring_estimates_the_mean_of_the_first_batches_then_keeps_it(name):
    model = build(name, centre=True)
    g = torch.Generator().manual_seed(2)
    xs = [torch.randn(8 + i, D, generator=g) + 3.0 for i in range(CENTRE_BATCHES + 2)]
    assert float(model.x_mean.abs().max()) == 0.0
    model.eval()
    with torch.no_grad():
        model(xs[0])  # eval mode: nothing is estimated
    assert float(model.x_mean.abs().max()) == 0.0
    model.train()
    with torch.no_grad():
        for x in xs:
            model(x)
    want = torch.cat(xs[:CENTRE_BATCHES]).mean(dim=0)  # rows of the first batches only
    torch.testing.assert_close(model.x_mean, want)
    # the centred model is the uncentred one applied to x - mu, with mu added back
    plain = build(name)
    plain.load_state_dict(
        {k: v for k, v in model.state_dict().items() if not k.startswith("x_mean")}
    )
    model.eval(), plain.eval()
    x = xs[-1]
    with torch.no_grad():
        torch.testing.assert_close(model.encode(x), plain.encode(x - want))
        torch.testing.assert_close(model(x)[0], plain(x - want)[0] + want)


@pytest.mark.parametrize("name, centre", [("batchtopk_sae", False), ("jumprelu_sae", False),
                                          ("topk_sae", True), ("batchtopk_sae", True)])  # fmt: skip
def test_trains_saves_and_loads_through_the_run_directory(tmp_path, name, centre):
    torch.manual_seed(0)
    x = torch.randn(256, D) + 1.5
    cfg = RunConfig(
        model=ModelConfig(type=name, input_dim=D, hidden_dim=K, k=3, centre=centre),
        loss=LossConfig(l0_coef=0.01),
        training=TrainConfig(epochs=2, batch_size=32, seed=3),
    )
    model = runs.build_model(cfg)
    hist = train(model, x, cfg, x_eval=x[:64], run_dir=tmp_path / "run", progress=False)
    assert len(hist) == 2 and all(torch.isfinite(torch.tensor(h["total"])) for h in hist)
    loaded, cfg2 = runs.load_run(tmp_path / "run")
    assert cfg2 == cfg and type(loaded) is type(model)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, msg=k)
    if centre:
        torch.testing.assert_close(loaded.x_mean, x.mean(0), atol=0.3, rtol=0)  # 8 of 8 batches
        assert int(loaded.x_mean_batches) == CENTRE_BATCHES
    if name == "batchtopk_sae":
        assert float(loaded.threshold) > 0
    model.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), model.encode(x))


def test_stacked_trainer_refuses_models_with_running_statistics():
    from implicit_em.train.stacked import StackedTrainer

    cfg = RunConfig(model=ModelConfig(type="batchtopk_sae", input_dim=D, hidden_dim=K, k=3),
                    training=TrainConfig(epochs=1, batch_size=16))  # fmt: skip
    with pytest.raises(ValueError, match="cannot be stacked: .*add --no-stack"):
        StackedTrainer([cfg])


def test_stacked_jumprelu_equals_the_one_model_loop():
    """JumpReLU has no buffers: the stacked trainer's generic (vmap) path trains it, and its
    straight-through functions carry a vmap rule."""
    from implicit_em.train.stacked import train_many

    torch.manual_seed(0)
    x = torch.randn(96, D)
    cfg = RunConfig(model=ModelConfig(type="jumprelu_sae", input_dim=D, hidden_dim=K,
                                      jump_threshold=0.05, jump_bandwidth=0.1),
                    loss=LossConfig(l0_coef=0.02),
                    training=TrainConfig(epochs=2, batch_size=32, seed=4))  # fmt: skip
    m, _ = train_many([cfg], x, x[:32], progress=False)[0]
    ref = runs.build_model(cfg)
    train(ref, x, cfg, progress=False)
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(m.state_dict()[k], v, atol=1e-5, rtol=1e-4, msg=k)


sae_lens = pytest.importorskip("sae_lens", reason="install the saelens extra")


@pytest.mark.parametrize("name, centre", [("batchtopk_sae", False), ("jumprelu_sae", False),
                                          ("jumprelu_sae", True), ("topk_sae", True),
                                          ("standard_sae", True),
                                          ("matryoshka_batchtopk_sae", True)])  # fmt: skip
def test_saelens_export_round_trip_through_the_real_package(tmp_path, name, centre):
    from implicit_em.data.lm.activations import Normalization
    from implicit_em.interop import saelens as sl

    model = build(name, centre, jump_threshold=0.3)
    fix_mean_(model)
    with torch.no_grad():  # trained-looking weights
        for k, p in model.named_parameters():
            p.add_(0.3 * torch.randn_like(p)) if k != "threshold" else p.uniform_(0.1, 0.6)
        if hasattr(model, "normalize_decoder_") and not isinstance(model, StandardSAE):
            model.normalize_decoder_()
        if "batchtopk" in name:
            model.threshold.fill_(0.4)
    model.eval()
    cfg = RunConfig(model=ModelConfig(type=name, input_dim=D, hidden_dim=K, k=3, centre=centre,
                                      jump_threshold=0.3))  # fmt: skip
    norm = Normalization(scale=0.37, mean=torch.randn(D))
    sl.export_saelens(model, tmp_path, norm=norm, model_config=cfg.to_dict())
    sae = sae_lens.SAE.load_from_disk(tmp_path)
    want_arch = {"topk_sae": "topk", "standard_sae": "standard"}.get(name, "jumprelu")
    assert sae.cfg.architecture() == want_arch
    torch.manual_seed(2)
    x = 3.0 * torch.randn(64, D) + 1.0  # raw units
    native, _, c = sl.load_native(tmp_path)
    with torch.no_grad():
        ours = model.encode(norm.apply(x)) * c
        theirs = sae.encode(x)
        torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)
        frac = float((theirs > 0).float().mean())
        assert 0.05 < frac < 0.95  # the gate is exercised both ways
        torch.testing.assert_close(sae.decode(theirs),
                                   norm.invert(model.decode(model.encode(norm.apply(x)))),
                                   atol=1e-4, rtol=1e-5)  # fmt: skip
        for k, v in model.state_dict().items():  # load_native rebuilds the model exactly
            assert torch.equal(native.state_dict()[k], v), k
        imported = sl.load_saelens(tmp_path)
        torch.testing.assert_close(imported.encode(x), theirs, atol=1e-5, rtol=1e-5)


def test_sparsify_export_refuses_threshold_families(tmp_path):
    from implicit_em.interop.sparsify import export_sparsify

    with pytest.raises(ValueError, match="export it in the saelens format"):
        export_sparsify(build("jumprelu_sae").eval(), tmp_path, "layers.1")


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@pytest.mark.parametrize("name", ["batchtopk_sae", "jumprelu_sae"])
def test_llm_train_trains_the_family_by_name(tmp_path, name):
    from dashboard_fixtures import make_harvest

    from implicit_em.cli import main

    acts, _, _ = make_harvest(tmp_path, n_tokens=600)
    out = tmp_path / name
    rc = main(["llm-train", "--acts", str(acts), "--out", str(out), "--no-progress",
               "--set", f"model.type={name}", "--set", "model.hidden_dim=24",
               "--set", "model.k=4", "--set", "model.centre=true", "--set", "training.epochs=2",
               "--set", "training.batch_size=64"])  # fmt: skip
    assert rc == 0
    model, cfg = runs.load_run(out)
    assert cfg.model.type == name and cfg.model.centre
    assert int(model.x_mean_batches) >= 1 and float(model.x_mean.abs().sum()) > 0
    assert json.loads((out / "llm.json").read_text())["outliers"]["train_tokens_used"] > 0
    assert isinstance(model, BatchTopKSAE if name == "batchtopk_sae" else JumpReLUSAE)
    assert not isinstance(model, TopKSAE) or name == "batchtopk_sae"


@pytest.mark.parametrize("name", ["batchtopk_sae", "jumprelu_sae"])
def test_scale_study_trainer_trains_the_family(name):
    """`train_steps` (the scale study's and DDP's trainer) runs the family's hooks: the
    centred mean is estimated, BatchTopK's threshold and JumpReLU's thresholds move."""
    from implicit_em.train.distributed import train_steps

    model = build(name, centre=True, jump_threshold=0.05, jump_bandwidth=0.1)
    theta0 = model.threshold.detach().clone()
    torch.manual_seed(0)
    x = torch.randn(512, D) + 2.0
    res = train_steps(model, x, LossConfig(l0_coef=0.01), global_batch=32, steps=12,
                      lr=1e-2, log_every=4)  # fmt: skip
    assert [h["step"] for h in res["history"]] == [4, 8, 12]
    assert int(model.x_mean_batches) == CENTRE_BATCHES
    torch.testing.assert_close(model.x_mean, x.mean(0), atol=0.25, rtol=0)
    assert not torch.equal(model.threshold, theta0)
