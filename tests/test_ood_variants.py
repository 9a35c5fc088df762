"""scripts/ood_variants.py on tiny data: the OOD study for the issue-18 variants.

In-distribution: non-negative mixtures of 3 directions in 24 dims (+ small noise); OOD: random
directions at the same norms. A tied TopK autoencoder with k = 3 spans the in-distribution
subspace after a few epochs, so its reconstruction error separates the sets; its untrained
init cannot (no trained b_dec, random rows).
"""

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ood_variants.py"
ARGS = {"n_components": 8, "topk_k": 3, "batch_size": 64, "lr": 1e-2, "epochs": 4}


def _script():
    spec = importlib.util.spec_from_file_location("ood_variants", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["ood_variants"] = mod
    spec.loader.exec_module(mod)
    return mod


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    d, r = 24, 3
    basis = torch.linalg.qr(torch.randn(d, r, generator=g))[0].T  # (r, D)

    def inside(n):
        return torch.relu(torch.randn(n, r, generator=g)) @ basis * 3 + 0.05 * torch.randn(
            n, d, generator=g
        )  # (n, D)

    def outside(n):
        x = torch.randn(n, d, generator=g)
        return x / x.norm(dim=1, keepdim=True) * inside(n).norm(dim=1, keepdim=True)  # (n, D)

    return inside(512), inside(256), outside(256)


@pytest.fixture(scope="module")
def mod():
    return _script()


@pytest.fixture(scope="module")
def results(mod):
    x_train, x_in, x_out = _data()
    return mod.run(x_train, x_in, x_out, [0, 1], ARGS, log=lambda _: None)


def test_trained_tied_reconstruction_separates_and_untrained_does_not(results):
    tied = [r["recon"]["auroc"] for r in results["tied-topk"]["per_seed"]]
    control = [r["recon"]["auroc"] for r in results["untrained"]["per_seed"]]
    assert min(tied) > 0.75, tied
    assert all(0.4 < a < 0.6 for a in control), control
    assert "recon" not in results["encoder"]["per_seed"][0]
    s = results["tied-topk"]["summary"]["recon_auroc"]
    assert s["min"] == pytest.approx(min(tied)) and s["mean"] == pytest.approx(np.mean(tied))
    assert s["sd"] == pytest.approx(np.std(tied, ddof=1))


def test_untrained_is_the_trainers_start(mod):
    x_train, _, _ = _data()
    src = mod.ImageSource(x_train.shape[1], ARGS["n_components"], ARGS["topk_k"])
    opts = mod.options(len(x_train), ARGS)
    for name in mod.MODELS:
        tr = mod.VariantTrainer(mod.VARIANTS[name], src, opts, 3, None)
        init = mod.untrained(x_train, 3, ARGS)
        assert torch.equal(tr.model.W, init.W) and torch.equal(tr.model.b, init.b)
        assert tr.model.tied_k == ARGS["topk_k"]


def test_training_runs_every_epoch(mod):
    x_train, _, _ = _data()
    model, history = mod.train("tied-topk-im-3.0", x_train[:129], 0, {**ARGS, "epochs": 3})
    # 129 rows at batch 64: slices of 64 and 65 (a trailing batch of one joins the one before)
    assert len(history) == 3 and history[-1]["step"] == 6
    assert {"lse", "var", "tc", "tied_recon"} <= set(history[-1])


def test_scores_match_the_plain_formulas(mod):
    x_train, x_in, _ = _data()
    model = mod.untrained(x_train, 0, ARGS)
    with torch.no_grad():
        model.b_dec.normal_()
    s = mod.scores(model, x_in, 3)
    x = x_in.double()
    W, b, b_dec = (t.detach().double() for t in (model.W, model.b, model.b_dec))
    a = torch.relu(x @ W.T + b)  # (N, K)
    lse = np.log(np.exp(-a.numpy()).sum(axis=1))
    top = np.sort(a.numpy(), axis=1)[:, -3:][:, :1]  # the third largest energy of each row
    codes = np.where(a.numpy() >= top, a.numpy(), 0.0)  # (N, K), the 3 largest kept
    x_hat = codes @ W.numpy() + b_dec.numpy()  # (N, D)
    np.testing.assert_allclose(s["lse"], lse, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s["recon"], -((x.numpy() - x_hat) ** 2).mean(axis=1), rtol=1e-4)
    np.testing.assert_array_equal(s["zeros"], (a.numpy() == 0).sum(axis=1))


def test_table_has_one_row_per_score(mod, results):
    table = mod.markdown_table(results)
    assert table.count("\n") == 2 + 7  # header, rule, 3 tied x 2 scores + encoder x 1
    assert "| tied-topk-im-3.0 | LSE energy logsumexp(-a) |" in table


def test_match_variant_is_scored_on_its_own_energies(mod):
    x_train, x_in, _ = _data()
    model = mod.untrained(x_train, 0, ARGS, "match-softplus")
    assert not hasattr(model, "b_dec")
    np.testing.assert_allclose(model.W.detach().norm(dim=1).numpy(), 1.0, rtol=1e-6)
    s = mod.scores(model, x_in, 3, "softplus")
    z = (x_in.double() @ model.W.detach().double().T + model.b.detach().double()).numpy()
    energy = np.logaddexp(0.0, -z)  # softplus(-z), (N, K)
    np.testing.assert_allclose(s["lse"], np.log(np.exp(-energy).sum(axis=1)), rtol=1e-5)
    assert set(s) == {"lse", "zeros"}


def _gpu3_rows() -> list[tuple[int, dict]]:
    """(K, row) for every encoder row of the LLM-scale run 3 (docs/eval/probing/gpu3)."""
    import json

    root = SCRIPT.parents[1] / "docs" / "eval" / "probing" / "gpu3"
    out = []
    for K in (4096, 16384):
        plan = json.loads((root / f"plan_K{K}.json").read_text())
        out += [(K, r) for r in plan["rows"] if r["family"] == "encoder"]
    return out


@pytest.mark.parametrize("label", ["encoder-wr", "encoder-wr-centred"])
def test_wr_variants_build_what_gpu3_ran(mod, label):
    """The OOD study's encoder-wr / encoder-wr-centred are gpu3's rows of the same name: the
    same LossConfig weights (lambda_wr 1.0, the rest the library defaults) and centring."""
    spec = importlib.util.spec_from_file_location("probing_gpu", SCRIPT.parent / "probing_gpu.py")
    pg = importlib.util.module_from_spec(spec)
    sys.modules["probing_gpu"] = pg  # dataclasses look their module up
    spec.loader.exec_module(pg)
    from implicit_em.eval.synthetic import _loss_config

    rows = [(K, r) for K, r in _gpu3_rows() if r.get("label") == label]
    assert len(rows) == 2  # one per K
    v = mod.VARIANTS[label]
    mine = _loss_config(v, ARGS["batch_size"])
    for K, row in rows:
        cfg = pg.run_config("encoder", K, 576, pg.Plan(), 0, row=row)
        assert cfg.loss.lambda_wr == v.lambda_wr == 1.0
        for f in ("lambda_lse", "lambda_var", "lambda_tc", "lambda_wr", "reference_k",
                  "variance_eps"):  # fmt: skip
            assert getattr(mine, f) == getattr(cfg.loss, f), f
        assert cfg.model.centre is v.centre is (label == "encoder-wr-centred")
        assert (cfg.model.activation, cfg.model.unit_norm_rows) == (v.activation, False)
        assert not v.unit_norm_rows
    # the new entry changes nothing but centring against the existing one
    assert replace(mod.VARIANTS["encoder-wr-centred"], centre=False) == mod.VARIANTS["encoder-wr"]


def test_centred_variant_trains_and_scores_on_centred_inputs(mod):
    x_train, x_in, x_out = _data()
    mu = x_train.mean(dim=0)  # (D,)
    args = {**ARGS, "epochs": 1}
    model, _ = mod.train("encoder-wr-centred", x_train, 0, args, mu)
    plain, _ = mod.train("encoder-wr", x_train - mu, 0, args)  # the same steps on x - mu
    torch.testing.assert_close(model.W, plain.W)
    torch.testing.assert_close(model.b, plain.b)
    s = mod.scores(model, x_in, 3, mean=mu)
    a = torch.relu((x_in - mu).double() @ model.W.detach().double().T + model.b.detach().double())
    np.testing.assert_allclose(s["lse"], torch.logsumexp(-a, dim=1).numpy(), rtol=1e-5)
    res = mod.run(x_train, x_in, x_out, [0], args, log=lambda _: None,
                  models=("encoder-wr-centred",))  # fmt: skip
    assert set(res) == {"encoder-wr-centred", "untrained", "untrained centred"}
    init = mod.untrained(x_train, 0, args, "encoder")
    expect = mod.evaluate(init, x_in, x_out, 3, None, mu)["lse"]["auroc"]
    assert res["untrained centred"]["per_seed"][0]["lse"]["auroc"] == pytest.approx(expect)
    assert expect != pytest.approx(res["untrained"]["per_seed"][0]["lse"]["auroc"])


def test_topk_sae_is_scored_on_its_pre_activations_and_own_decoder(mod):
    """topk-pretrained / topk-half: lse on ReLU(W_enc (x - b_dec) + b_enc) before TopK, recon
    through the SAE's own decoder (plain formulas, float64)."""
    x_train, x_in, _ = _data()
    model = mod.untrained(x_train, 0, ARGS, "topk-half")
    with torch.no_grad():
        model.b_dec.normal_()  # a non-zero b_dec, so that both of its uses are checked
    s = mod.scores(model, x_in, 3)
    x = x_in.double()
    W, b, W_dec, b_dec = (t.detach().double() for t in (model.W, model.encoder.bias,
                                                         model.W_dec, model.b_dec))  # fmt: skip
    a = torch.relu((x - b_dec) @ W.T + b).numpy()  # (N, K), every unit
    top = np.sort(a, axis=1)[:, -3:][:, :1]  # the k = 3rd largest energy of each row
    x_hat = np.where(a >= top, a, 0.0) @ W_dec.numpy().T + b_dec.numpy()  # (N, D)
    np.testing.assert_allclose(s["lse"], np.log(np.exp(-a).sum(axis=1)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s["recon"], -((x.numpy() - x_hat) ** 2).mean(axis=1), rtol=1e-4)
    np.testing.assert_array_equal(s["zeros"], (a == 0).sum(axis=1))
    assert model.k == ARGS["topk_k"] and model.hidden_dim == ARGS["n_components"]


def test_topk_pretrained_starts_from_the_encoder_init_and_half_from_its_own(mod):
    x_train, _, _ = _data()
    src = mod.ImageSource(x_train.shape[1], ARGS["n_components"], ARGS["topk_k"])
    opts = mod.options(len(x_train), ARGS)
    enc0 = mod.untrained(x_train, 3, ARGS)  # the standing control "untrained"
    pre = mod.VariantTrainer(mod.VARIANTS["topk-pretrained"], src, opts, 3, None)
    assert torch.equal(pre.inner.model.W, enc0.W) and torch.equal(pre.inner.model.b, enc0.b)
    half = mod.VariantTrainer(mod.VARIANTS["topk-half"], src, opts, 3, None)
    init = mod.untrained(x_train, 3, ARGS, "topk-half")
    assert torch.equal(half.model.W, init.W) and torch.equal(half.model.W_dec, init.W_dec)
    # the SAE's init draws the same encoder layer (one nn.Linear after the same seed), its
    # decoder is W^T with unit columns and b_dec = 0: "untrained topk-half" has the same LSE
    # energies as "untrained", and its own recon (the SAE decoder's, not the tied one)
    assert torch.equal(init.W, enc0.W) and torch.equal(init.encoder.bias, enc0.b)
    torch.testing.assert_close(init.W_dec, (enc0.W / enc0.W.norm(dim=1, keepdim=True)).T)
    assert not init.b_dec.any()
    assert not mod.own_init("topk-pretrained") and mod.own_init("topk-half")
    assert not mod.own_init("encoder") and mod.own_init("match-softplus")


def test_topk_pretrained_switches_at_half_and_keeps_the_total_steps(mod):
    x_train, _, _ = _data()
    args = {**ARGS, "epochs": 2}  # 512 rows at batch 64: 8 steps per epoch, 16 in all
    model, history = mod.train("topk-pretrained", x_train, 0, args)
    # the encoder logs at its own end (step 8 = the switch), the TopK SAE at step 16
    assert [h["step"] for h in history] == [8, 16]
    assert "lse" in history[0] and "mse" in history[-1] and "lse" not in history[-1]
    half, h2 = mod.train("topk-half", x_train, 0, args)
    assert [h["step"] for h in h2] == [16] and not torch.equal(model.W, half.W)
    # the TopK stage started from the pre-trained encoder, not from the SAE's own init
    init = mod.untrained(x_train, 0, args, "topk-pretrained")
    assert not torch.equal(model.W, init.W)


def test_topk_rows_get_their_controls_and_labels(mod):
    x_train, x_in, x_out = _data()
    res = mod.run(x_train, x_in, x_out, [0], {**ARGS, "epochs": 1}, log=lambda _: None,
                  models=("topk-pretrained", "topk-half"))  # fmt: skip
    assert set(res) == {"topk-pretrained", "topk-half", "untrained", "untrained topk-half"}
    for name in res:
        assert {"lse", "recon"} <= set(res[name]["per_seed"][0]), name
    init = mod.untrained(x_train, 0, ARGS, "topk-half")
    expect = mod.evaluate(init, x_in, x_out, 3)
    got = res["untrained topk-half"]["per_seed"][0]
    assert got["recon"]["auroc"] == pytest.approx(expect["recon"]["auroc"])
    assert got["lse"]["auroc"] == pytest.approx(expect["lse"]["auroc"])
    assert got["lse"] == res["untrained"]["per_seed"][0]["lse"]  # the same encoder layer
    table = mod.markdown_table(res)
    assert "| topk-pretrained | -TopK SAE reconstruction MSE (own decoder) |" in table
    assert "| untrained topk-half | -TopK SAE reconstruction MSE (own decoder) |" in table
    assert "| untrained | -tied TopK reconstruction MSE |" in table
    assert table.count("\n") == 2 + 8  # 4 rows x 2 scores


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("standard-l1-3.0", "is a standard_sae model"),
        ("jumprelu-0.001", "is a jumprelu_sae model"),
        ("batchtopk", "is a batchtopk_sae model"),
        ("hybrid", "is a hybrid model"),
        ("topk-from-truth", "needs the synthetic model's features or samples"),
        ("encoder-gauss", "needs the synthetic model's features or samples"),
        ("no-such-variant", "unknown variant 'no-such-variant'"),
    ],
)
def test_models_outside_the_scored_families_are_refused_in_one_line(mod, capsys, name, problem):
    """An L1 SAE used to run with no recon score, a JumpReLU SAE with a recon labelled tied:
    --models now refuses them before any data is loaded, with the problem and the fix."""
    with pytest.raises(ValueError, match="choose an encoder-family variant"):
        mod.run(*_data(), [0], ARGS, log=lambda _: None, models=(name,))
    with pytest.raises(SystemExit) as exc:
        mod.main(["/nonexistent-out", "--models", "encoder", name])
    assert exc.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert problem in line and "choose an encoder-family variant or a TopK SAE" in line, line


def test_supported_models_are_the_encoder_family_and_topk_saes(mod):
    ok = {n for n in mod.VARIANTS if mod.supported(n) is None}
    assert {"encoder", "tied-topk", "tied-topk-im-3.0", "encoder-wr-centred", "match-softplus",
            "topk", "topk-pretrained", "topk-half", "topk-k214", "topk-k304"} <= ok  # fmt: skip
    assert {mod.VARIANTS[n].family for n in ok} == {"encoder", "topk_sae"}
    assert mod.model_name("topk-half") == "topk-half"


def test_recon_label_is_read_from_the_model(mod):
    """An SAE with its own decoder is never labelled tied (a JumpReLU SAE used to be, by name)."""
    x_train, _, _ = _data()
    src = mod.ImageSource(x_train.shape[1], ARGS["n_components"], ARGS["topk_k"])
    opts = mod.options(len(x_train), ARGS)
    jump = mod.untrained_model(mod.VARIANTS["jumprelu-0.001"], src, opts, 0)
    assert "(own decoder)" in mod.recon_label(jump) and "tied" not in mod.recon_label(jump)
    assert mod.recon_label(mod.untrained(x_train, 0, ARGS, "topk-half")) == (
        "-TopK SAE reconstruction MSE (own decoder)"
    )
    assert mod.recon_label(mod.untrained(x_train, 0, ARGS)) == "-tied TopK reconstruction MSE"


def test_run_records_each_rows_recon_label(results):
    assert results["tied-topk"]["recon_label"] == "-tied TopK reconstruction MSE"
    assert results["untrained"]["recon_label"] == "-tied TopK reconstruction MSE"
    assert results["encoder"]["recon_label"] is None


def test_softplus_and_unit_row_variants_get_their_own_controls(mod):
    """wr + softplus / wr + unit rows and their wr-off twins: each is scored against its own
    init ("untrained NAME"), on the energies it trains on: softplus(W x + b) with the
    standing init's W, b; ReLU(W x + b) on that init's rows rescaled to norm 1."""
    x_train, x_in, x_out = _data()
    names = ("encoder-softplus", "encoder-wr-softplus", "encoder-unit-rows",
             "encoder-wr-unit-rows")  # fmt: skip
    assert all(mod.own_init(n) for n in names) and not mod.own_init("encoder-wr")
    enc0 = mod.untrained(x_train, 1, ARGS)
    z = (x_in.double() @ enc0.W.detach().double().T + enc0.b.detach().double()).numpy()
    rows = enc0.W.detach().double() / enc0.W.detach().double().norm(dim=1, keepdim=True)
    z_unit = (x_in.double() @ rows.T + enc0.b.detach().double()).numpy()
    energy = {"softplus": np.logaddexp(0.0, z), "unit": np.maximum(z_unit, 0.0)}  # (N, K)
    for name in names:
        init = mod.untrained(x_train, 1, ARGS, name)
        e = energy["softplus" if "softplus" in name else "unit"]
        np.testing.assert_allclose(mod.scores(init, x_in, 3)["lse"],
                                   np.log(np.exp(-e).sum(axis=1)), rtol=1e-5)  # fmt: skip
    res = mod.run(x_train, x_in, x_out, [0], {**ARGS, "epochs": 1}, log=lambda _: None,
                  models=("encoder-wr-softplus", "encoder-wr-unit-rows"))  # fmt: skip
    assert set(res) == {"encoder-wr-softplus", "encoder-wr-unit-rows", "untrained",
                        "untrained encoder-wr-softplus", "untrained encoder-wr-unit-rows"}  # fmt: skip
    same = res["untrained encoder-wr-softplus"]["per_seed"][0]["lse"]
    assert same != res["untrained"]["per_seed"][0]["lse"]
