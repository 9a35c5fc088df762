"""Evaluation metrics against plain formulas, and splicing into a tiny random Llama."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import r2_score

from implicit_em.lm_eval import (
    ce_loss_recovered,
    code_stats,
    density_histogram,
    evaluate_model,
    fit_linear_decoder,
    fit_scalar_decoder,
    fvu,
    spliced_ce,
)
from implicit_em.models import Encoder, TopKSAE


def data(n=400, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * torch.arange(1, d + 1) + 3.0
    return x, x + 0.3 * torch.randn(n, d, generator=g)


def test_fvu_matches_numpy_and_sklearn():
    x, x_hat = data()
    xn, hn = x.double().numpy(), x_hat.double().numpy()
    plain = ((xn - hn) ** 2).sum() / ((xn - xn.mean(0)) ** 2).sum()
    assert fvu(x, x_hat) == pytest.approx(plain, rel=1e-12)
    assert fvu(x, x_hat) == pytest.approx(
        1 - r2_score(xn, hn, multioutput="variance_weighted"), rel=1e-10
    )
    per_dim = np.mean(((xn - hn) ** 2).sum(0) / ((xn - xn.mean(0)) ** 2).sum(0))
    assert fvu(x, x_hat, per_dim=True) == pytest.approx(per_dim, rel=1e-12)
    assert fvu(x, x) == 0.0
    assert fvu(x, x.mean(0).expand_as(x)) == pytest.approx(1.0)


def test_fvu_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="equal"):
        fvu(torch.zeros(4, 3), torch.zeros(4, 2))


def test_scalar_decoder_recovers_scale_and_offset():
    g = torch.Generator().manual_seed(1)
    a, W = torch.rand(300, 8, generator=g), torch.randn(8, 5, generator=g)
    m = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0])
    x = 2.5 * (a @ W) + m
    c, m_fit = fit_scalar_decoder(a, W, x, offset=True)
    assert c == pytest.approx(2.5, rel=1e-6)
    torch.testing.assert_close(m_fit, m, atol=1e-4, rtol=0)
    c0, m0 = fit_scalar_decoder(a, W, 2.5 * (a @ W), offset=False)
    assert c0 == pytest.approx(2.5, rel=1e-6) and float(m0.abs().max()) == 0.0
    y = (a.double() @ W.double()).numpy()
    xn = x.double().numpy()
    assert fit_scalar_decoder(a, W, x, offset=False)[0] == pytest.approx(
        (xn * y).sum() / (y * y).sum(), rel=1e-9
    )


def test_linear_decoder_matches_numpy_lstsq():
    g = torch.Generator().manual_seed(2)
    a, x = torch.rand(500, 7, generator=g), torch.randn(500, 4, generator=g)
    V, v = fit_linear_decoder(a, x, ridge=0.0, chunk=64)  # 8 chunks, the last one short
    A = np.hstack([a.double().numpy(), np.ones((500, 1))])
    sol = np.linalg.lstsq(A, x.double().numpy(), rcond=None)[0]
    np.testing.assert_allclose(V.numpy(), sol[:7], atol=1e-4)
    np.testing.assert_allclose(v.numpy(), sol[7], atol=1e-4)


def test_code_stats_by_hand():
    a = torch.tensor([[0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 1.0], [0.0, 3.0, 0.0, 0.0]])
    s = code_stats(a)
    assert s["l0"] == pytest.approx(4 / 3) and s["l0_fraction"] == pytest.approx(1 / 3)
    assert s["dead_fraction"] == 0.5  # units 0 and 2 never fire
    r = torch.softmax(-a, dim=1)
    assert s["responsibility_entropy"] == pytest.approx(
        float(-(r * r.log()).sum(1).mean()), rel=1e-6
    )
    assert s["max_entropy"] == pytest.approx(math.log(4))
    h = density_histogram(torch.tensor([0.0, 1e-3, 0.5, 1.0]), n_bins=6)
    assert h["n_dead"] == 1 and sum(h["counts"]) == 3


def test_ce_loss_recovered_formula():
    assert ce_loss_recovered(2.0, 2.0, 5.0) == 1.0
    assert ce_loss_recovered(2.0, 5.0, 5.0) == 0.0
    assert ce_loss_recovered(2.0, 3.5, 5.0) == pytest.approx(0.5)


def tiny_llama():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    return transformers.LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize("hook_point", ["resid_pre", "resid_post"])
@pytest.mark.parametrize("drop_bos", [True, False])
def test_identity_splice_changes_nothing(hook_point, drop_bos):
    model = tiny_llama()
    tokens = torch.randint(0, 64, (5, 12), generator=torch.Generator().manual_seed(3))
    out = spliced_ce(
        model, tokens, 1, hook_point, {"identity": lambda h: h}, drop_bos, batch_size=2
    )
    assert out["identity"]["ce"] == out["orig"]["ce"]
    assert out["identity"]["kl"] == 0.0 and out["orig"]["kl"] == 0.0
    assert out["zero"]["ce"] != out["orig"]["ce"] and out["zero"]["kl"] > 0
    # CE by hand over the same positions
    start = 1 if drop_bos else 0
    with torch.no_grad():
        logits = model(input_ids=tokens).logits[:, start:-1]
    ref = torch.nn.functional.cross_entropy(
        logits.reshape(-1, 64), tokens[:, start + 1 :].reshape(-1)
    )
    assert out["orig"]["ce"] == pytest.approx(float(ref), rel=1e-5)


def test_evaluate_model_end_to_end():
    model = tiny_llama()
    tokens = torch.randint(0, 64, (4, 10), generator=torch.Generator().manual_seed(4))
    from implicit_em.data.lm import capture_residual

    h = capture_residual(model, tokens, 1)[:, 1:].reshape(-1, 16)  # (36, 16)
    torch.manual_seed(0)
    for sae, names in (
        (Encoder(16, 8), {"wt_scalar", "wt_scalar_offset", "lstsq"}),
        (TopKSAE(16, 8, k=2), {"decoder", "lstsq"}),
    ):
        res = evaluate_model(
            sae,
            h,
            h,
            lm=model,
            tokens=tokens,
            layer=1,
            apply=lambda x: 2 * x,
            invert=lambda x: x / 2,
            typical=torch.arange(36) % 3 > 0,
        )
        assert res["n_typical"] == 24 and set(res["fvu_typical"]) == names
        assert set(res["fvu"]) == names == set(res["ce_loss_recovered"])
        assert all(0 <= v for v in res["fvu"].values())
        assert {"orig", "zero"} <= set(res["ce"]) and res["codes"]["n_tokens"] == 36
    # a least-squares decoder fitted on the same tokens never does worse than the mean
    assert res["fvu"]["lstsq"] <= 1.0 + 1e-9
