"""Theory-guided variant terms (issue 18): gradcheck in float64 and tiny-recipe smoke runs."""

import pytest
import torch

from implicit_em.eval.variants import decoder_norm_l1, match_energy, tied_reconstruction_loss


def test_tied_reconstruction_matches_the_plain_formula_and_passes_gradcheck():
    g = torch.Generator().manual_seed(0)
    x, a = (
        torch.randn(5, 3, generator=g, dtype=torch.float64),
        torch.rand(5, 4, generator=g, dtype=torch.float64),
    )
    W, b = (
        torch.randn(4, 3, generator=g, dtype=torch.float64),
        torch.randn(3, generator=g, dtype=torch.float64),
    )
    plain = sum(float(((x[i] - (a[i] @ W + b)) ** 2).sum()) for i in range(5)) / 5
    assert float(tied_reconstruction_loss(x, a, W, b)) == pytest.approx(plain, rel=1e-12)
    args = [t.clone().requires_grad_() for t in (x, a, W, b)]
    assert torch.autograd.gradcheck(tied_reconstruction_loss, args)
    # exact reconstruction costs nothing
    assert float(tied_reconstruction_loss(a @ W + b, a, W, b)) == pytest.approx(0.0, abs=1e-20)


def test_decoder_norm_l1_matches_the_plain_formula_and_passes_gradcheck():
    """sae-lens's Standard L1: sum_j |a_j| ||d_j|| per sample, mean over the batch, / D."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(5, 4, generator=g, dtype=torch.float64)  # (B, K)
    W_dec = torch.randn(3, 4, generator=g, dtype=torch.float64)  # (D, K)
    plain = sum(abs(float(a[i, j])) * float(W_dec[:, j].norm()) for i in range(5)
                for j in range(4)) / 5 / 3  # fmt: skip
    assert float(decoder_norm_l1(a, W_dec)) == pytest.approx(plain, rel=1e-12)
    # blind to the decoder's scale: codes x 2, decoder / 2 costs the same
    assert float(decoder_norm_l1(2 * a, W_dec / 2)) == pytest.approx(plain, rel=1e-12)
    args = [a.clone().requires_grad_(), W_dec.clone().requires_grad_()]
    assert torch.autograd.gradcheck(decoder_norm_l1, args)


@pytest.mark.parametrize("form", ["softplus", "relu"])
def test_match_energy_is_zero_where_active_and_passes_gradcheck(form):
    z = torch.tensor([[-3.0, -0.5, 0.7, 4.0]], dtype=torch.float64)
    e = match_energy(z, form)
    assert (e >= 0).all()
    assert float(e[0, 3]) < 0.02 and float(e[0, 0]) > 2.9  # active ~0, inactive ~ -z
    zz = torch.randn(6, 5, dtype=torch.float64).add_(0.3).requires_grad_()  # away from relu's kink
    assert torch.autograd.gradcheck(lambda t: match_energy(t, form), (zz,))


def test_unknown_match_form_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown match form"):
        match_energy(torch.zeros(2, 2), "exp")


def test_variants_train_and_score_on_the_tiny_recipe():
    pytest.importorskip("sae_lens")
    from implicit_em.eval.synthetic import SyntheticEvalOptions, run

    names = (
        "tied-0.3",
        "tied-only",
        "match-relu",
        "match-softplus",
        "topk-pretrained",
        "topk-half",
        "tied-topk",
        "tied-topk-im-0.3",
    )
    res = run(SyntheticEvalOptions(recipe="tiny", variants=names, steps=6, batch_size=64,
                                   eval_samples=500, log_every=3, plot=False))  # fmt: skip
    rows = {r["variant"]: r for r in res["rows"]}
    for name in names:
        assert 0 < rows[name]["trained"]["mcc"] <= 1
        assert 0 < rows[name]["untrained"]["mcc"] <= 1
    assert "tied_recon" in rows["tied-0.3"]["history"][0]
    assert "lse" in rows["match-relu"]["history"][0]
    # half the steps decoder-free (encoder terms), half TopK (mse)
    hist = rows["topk-pretrained"]["history"]
    assert [h["step"] for h in hist] == [3, 6]
    assert "lse" in hist[0] and "mse" in hist[1]
    # the control drops the pre-training steps: its history starts at step 6
    assert [h["step"] for h in rows["topk-half"]["history"]] == [6]
    assert rows["tied-topk"]["trained"]["l0"] <= 1 + round(res["true_l0"])


def test_topk_codes_keeps_the_k_largest():
    from implicit_em.eval.variants import topk_codes

    a = torch.tensor([[0.1, 3.0, 2.0, 0.0], [5.0, 0.2, 0.3, 0.4]])
    assert torch.equal(topk_codes(a, 2), torch.tensor([[0.0, 3.0, 2.0, 0.0], [5.0, 0.0, 0.0, 0.4]]))


# ---------------------------------------------------------------------------------------
# Higher-order terms (docs/eval/synthetic/why.md): plain formulas and gradcheck in float64
# ---------------------------------------------------------------------------------------


def _z(b=5, k=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, generator=g, dtype=torch.float64)


def test_sparse_prior_matches_the_plain_formulas_and_passes_gradcheck():
    import math

    from implicit_em.eval.variants import sparse_prior

    z = _z()
    a = torch.relu(z)
    assert float(sparse_prior(a, "l1")) == pytest.approx(float(a.sum()), rel=1e-12)
    plain = sum(math.log(math.cosh(float(v))) for v in z.flatten())
    assert float(sparse_prior(z, "logcosh")) == pytest.approx(plain, rel=1e-12)
    # stable far out: log cosh t ~ |t| - log 2
    assert float(
        sparse_prior(torch.tensor([[800.0]], dtype=torch.float64), "logcosh")
    ) == pytest.approx(800 - math.log(2), rel=1e-9)
    zz = (z + 0.05).requires_grad_()  # away from |t|'s kink
    for rho in ("l1", "logcosh"):
        assert torch.autograd.gradcheck(lambda t, rho=rho: sparse_prior(t, rho), (zz,))
    with pytest.raises(ValueError, match="unknown prior"):
        sparse_prior(z, "cauchy")


def test_claimant_penalty_counts_effective_claimants():
    import math

    from implicit_em.eval.variants import claimant_penalty

    a = torch.tensor(
        [[3.0, 0, 0, 0], [1.0, 1, 0, 0], [2.0, 2, 2, 2], [0.0, 0, 0, 0]], dtype=torch.float64
    )
    per = [0.0, math.log(2), math.log(4), 0.0]  # one, two, four equal claimants, none
    assert float(claimant_penalty(a)) == pytest.approx(sum(per), abs=1e-9)
    # scale-free per sample
    assert float(claimant_penalty(7 * a)) == pytest.approx(float(claimant_penalty(a)), abs=1e-9)
    x = torch.rand(6, 5, dtype=torch.float64).add_(0.1)
    plain = sum(math.log(float(r.sum()) ** 2 / float((r * r).sum())) for r in x)
    assert float(claimant_penalty(x)) == pytest.approx(plain, rel=1e-10)
    assert torch.autograd.gradcheck(claimant_penalty, (x.requires_grad_(),))


def test_sparse_filtering_matches_the_plain_formula_and_passes_gradcheck():
    from implicit_em.eval.variants import sparse_filtering_loss

    z = _z(6, 3)
    f = [[(float(z[i, j]) ** 2 + 1e-8) ** 0.5 for j in range(3)] for i in range(6)]
    cn = [sum(f[i][j] ** 2 for i in range(6)) ** 0.5 for j in range(3)]
    f = [[f[i][j] / cn[j] for j in range(3)] for i in range(6)]
    plain = sum(sum(r) / sum(v * v for v in r) ** 0.5 for r in f)
    assert float(sparse_filtering_loss(z)) == pytest.approx(plain, rel=1e-10)
    assert torch.autograd.gradcheck(sparse_filtering_loss, (z.requires_grad_(),))


def test_factorial_em_gradient_is_the_per_unit_responsibility():
    import math

    from implicit_em.eval.variants import factorial_em_loss

    a = torch.relu(_z()).add_(0.01).requires_grad_()
    loss = factorial_em_loss(a, c=0.3)
    plain = sum(-math.log(math.exp(-float(v)) + math.exp(-0.3)) for v in a.detach().flatten())
    assert float(loss) == pytest.approx(plain, rel=1e-12)
    (g,) = torch.autograd.grad(loss, a)
    assert torch.allclose(g, torch.sigmoid(0.3 - a.detach()), atol=1e-12)  # r_ij, per unit
    assert torch.autograd.gradcheck(lambda t: factorial_em_loss(t, 0.3), (a,))
    # saturating: from -log 2 at a = 0 (c = 0) towards 0
    assert float(factorial_em_loss(torch.zeros(1, 1))) == pytest.approx(-math.log(2))
    assert float(factorial_em_loss(torch.full((1, 1), 30.0))) == pytest.approx(0.0, abs=1e-12)


def test_extra_term_names_one_clear_error():
    from implicit_em.eval.variants import extra_term

    with pytest.raises(ValueError, match="unknown extra term"):
        extra_term("nope", torch.zeros(2, 2), torch.zeros(2, 2))


def test_gaussian_surrogate_matches_mean_and_covariance():
    pytest.importorskip("sae_lens")
    from implicit_em.eval.synthetic import build_synthetic_model, gaussian_sampler

    synth = build_synthetic_model("tiny")
    torch.manual_seed(0)
    x = synth.sample(40000)
    g = gaussian_sampler(synth)(40000)
    assert torch.allclose(g.mean(0), x.mean(0), atol=0.1)
    c_x, c_g = torch.cov(x.t()), torch.cov(g.t())
    assert float((c_x - c_g).norm() / c_x.norm()) < 0.05
    # but not the higher-order structure: the data's excess kurtosis along the features is
    # large (sparse), the surrogate's ~0
    f = synth.feature_dict.feature_vectors[:20]  # (20, D)

    def kurt(s):
        p = s @ f.t()
        p = p - p.mean(0)
        return (p.pow(4).mean(0) / p.var(0).square() - 3).mean()

    assert float(kurt(x)) > 1.0 and abs(float(kurt(g))) < 0.2


def test_why_variants_train_and_score_on_the_tiny_recipe():
    pytest.importorskip("sae_lens")
    from implicit_em.eval.synthetic import SyntheticEvalOptions, run

    names = ("encoder-gauss", "prior-l1-0.01", "prior-logcosh-nolse-0.01", "claimants-1.0",
             "sparse-filtering", "factorial-0.1")  # fmt: skip
    res = run(SyntheticEvalOptions(recipe="tiny", variants=names, steps=4, batch_size=64,
                                   eval_samples=500, log_every=2, plot=False))  # fmt: skip
    rows = {r["variant"]: r for r in res["rows"]}
    for name in names:
        t = rows[name]["trained"]
        assert 0 < t["mcc"] <= 1 and 0 < t["mcc_lstsq"] <= 1
        h = rows[name]["history"][-1]
        shares = [v for k, v in h.items() if k.startswith("gshare_")]
        assert shares and sum(shares) == pytest.approx(1.0, abs=1e-4)  # components of the step
    assert "gshare_lse" not in rows["prior-logcosh-nolse-0.01"]["history"][-1]
    assert "gshare_lse" not in rows["factorial-0.1"]["history"][-1]
    assert set(rows["sparse-filtering"]["history"][-1]) >= {"gshare_sparse_filtering"}
    assert rows["sparse-filtering"]["trained"]["l0"] == pytest.approx(round(res["true_l0"]))


def test_wiener_filters_are_least_squares_detectors_and_start_near_the_features():
    pytest.importorskip("sae_lens")
    from implicit_em.eval.synthetic import (
        SyntheticEvalOptions,
        build_synthetic_model,
        run,
        wiener_filters,
    )

    synth = build_synthetic_model("tiny")
    filt, icpt = wiener_filters(synth, n=20000)
    assert filt.shape == synth.feature_dict.feature_vectors.shape and icpt.shape == (256,)
    torch.manual_seed(1)
    x, f = synth.sample_with_features(4000)
    pred = x @ filt.t() + icpt  # (n, N)
    # beats the plain projection on each feature's (unit) direction, and any scaled copy of it
    dirs = synth.feature_dict.feature_vectors
    proj = x @ (dirs / dirs.norm(dim=1, keepdim=True)).t()
    scale = (proj * f).sum(0) / proj.square().sum(0)
    assert float((pred - f).square().mean()) < float((proj * scale - f).square().mean())
    res = run(SyntheticEvalOptions(recipe="tiny", variants=("encoder-from-filters",), steps=0,
                                   batch_size=64, eval_samples=1000, plot=False))  # fmt: skip
    row = res["rows"][0]
    assert row["trained"]["mcc"] > row["untrained"]["mcc"] + 0.2


def test_hybrid_with_wr_carries_the_weight_redundancy_term():
    """tied-topk-im-3.0-wr is tied-topk-im-3.0 plus lambda_wr = 1: from the same init and
    batches, its wr term has weight 1 (0 without), and its weights move apart."""
    pytest.importorskip("sae_lens")
    import torch

    from implicit_em.eval.synthetic import (
        SyntheticEvalOptions,
        build_synthetic_model,
    )

    synth = build_synthetic_model("tiny", 42, "cpu")
    opts = SyntheticEvalOptions(recipe="tiny", steps=5, batch_size=64, plot=False)
    trs = _wr_pair(synth, opts, "tied-topk-im-3.0", "tied-topk-im-3.0-wr")
    assert not torch.allclose(trs[0].model.W, trs[1].model.W)


def _wr_pair(synth, opts, base: str, name: str) -> list:
    """Trainers of `base` and its wr twin `name` from one init, 5 steps on the same batches
    (the wr term weighted 1 in the twin, 0 in the base row)."""
    from implicit_em.eval.options import VARIANTS
    from implicit_em.eval.synthetic import VariantTrainer

    trs = [VariantTrainer(VARIANTS[n], synth, opts, 0, None) for n in (base, name)]
    assert trs[0].weights.get("wr", 0.0) == 0.0 and trs[1].weights["wr"] == 1.0
    assert torch.equal(trs[0].model.W, trs[1].model.W)  # same init
    torch.manual_seed(0)
    for _ in range(5):
        x = synth.sample(64)
        for tr in trs:
            tr.step(x)
    return trs


@pytest.mark.parametrize(("name", "base"), [("encoder-wr-softplus", "encoder-softplus"),
                                            ("encoder-wr-unit-rows", "encoder-unit-rows")])  # fmt: skip
def test_wr_combinations_are_their_base_row_plus_encoder_wrs_term(name, base):
    """encoder-wr-softplus / encoder-wr-unit-rows (docs/eval/synthetic/gpu16k-next11-PLAN.md):
    the one-variant row with encoder-wr's lambda_wr and nothing else changed; the fast step
    covers them; from the same init and batches the wr term has weight 1 (0 in the base row),
    the weights move apart, and unit rows stay unit norm with wr on."""
    pytest.importorskip("sae_lens")
    from dataclasses import replace

    from implicit_em.eval.options import VARIANTS, SyntheticEvalOptions
    from implicit_em.eval.synthetic import build_synthetic_model, fast_step_covers

    assert VARIANTS[name] == replace(VARIANTS[base], lambda_wr=VARIANTS["encoder-wr"].lambda_wr)
    assert VARIANTS[name].lambda_wr == 1.0 and fast_step_covers(VARIANTS[name])
    synth = build_synthetic_model("tiny", 42, "cpu")
    opts = SyntheticEvalOptions(recipe="tiny", steps=5, batch_size=64, latents=32, lr=3e-3,
                                plot=False)  # fmt: skip
    trs = _wr_pair(synth, opts, base, name)
    assert trs[1].history[-1]["wr"] > 0  # the logged term (mean over the steps)
    assert not torch.allclose(trs[0].model.W, trs[1].model.W, atol=1e-4)
    if VARIANTS[name].unit_norm_rows:
        norms = trs[1].model.W.detach().norm(dim=1)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    else:
        assert trs[1].model.activation == "softplus"
