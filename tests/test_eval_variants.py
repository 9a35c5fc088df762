"""Theory-guided variant terms (issue 18): gradcheck in float64 and tiny-recipe smoke runs."""

import pytest
import torch

from implicit_em.eval.variants import match_energy, tied_reconstruction_loss


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
