"""SAELens format both ways, checked against the real sae-lens (the `saelens` extra)."""

from __future__ import annotations

import json

import pytest
import torch

from implicit_em.config import ModelConfig, RunConfig
from implicit_em.data.lm.activations import Normalization
from implicit_em.interop import saelens as sl
from implicit_em.runs import build_model

sae_lens = pytest.importorskip("sae_lens", reason="install the saelens extra")

D, K = 12, 20


def _model(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = RunConfig(model=ModelConfig(type=kind, input_dim=D, hidden_dim=K, k=5))
    model = build_model(cfg)
    with torch.no_grad():  # trained-looking weights: biases and a non-unit decoder
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
        if kind == "topk_sae":
            model.normalize_decoder_()
    return model.eval(), cfg


def _norm() -> Normalization:
    torch.manual_seed(1)
    return Normalization(scale=0.37, mean=torch.randn(D))


def _x(n: int = 64) -> torch.Tensor:
    torch.manual_seed(2)
    return 3.0 * torch.randn(n, D) + 1.0  # raw model units


@pytest.mark.parametrize(
    "kind, fit",
    [("encoder", False), ("encoder", True), ("standard_sae", False), ("topk_sae", False)],
)
def test_export_loads_in_saelens_with_identical_codes(tmp_path, kind, fit):
    model, cfg = _model(kind)
    norm, x = _norm(), _x()
    x_fit = norm.apply(_x(400)) if fit else None
    sl.export_saelens(
        model,
        tmp_path,
        norm=norm,
        x_fit=x_fit,
        model_config=cfg.to_dict(),
        metadata={"model_name": "toy", "hook_name": "blocks.1.hook_resid_pre"},
    )
    sae = sae_lens.SAE.load_from_disk(tmp_path)
    assert sae.cfg.architecture() == ("topk" if kind == "topk_sae" else "standard")
    assert sae.cfg.metadata.hook_name == "blocks.1.hook_resid_pre"
    meta = json.loads((tmp_path / "cfg.json").read_text())["metadata"]["implicit_em"]
    expected_decoder = {"encoder": "lstsq" if fit else "w_rows"}.get(kind, "own")
    assert meta["decoder"] == expected_decoder and meta["read_out"].startswith("energy")
    assert sae.W_enc.shape == (D, K) and sae.W_dec.shape == (K, D)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(K), atol=1e-6, rtol=0)

    _, _, c = sl.load_native(tmp_path)
    with torch.no_grad():
        ours = model.encode(norm.apply(x)) * c  # the documented read-out
        theirs = sae.encode(x)
        torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-6)
        assert (theirs > 0).float().mean() > 0.1  # the comparison is not vacuous
        if kind != "encoder":  # an SAE's decoder, in model units
            torch.testing.assert_close(
                sae.decode(theirs),
                norm.invert(model.decode(model.encode(norm.apply(x)))),
                atol=1e-5,
                rtol=1e-6,
            )
        before = {k: v.clone() for k, v in sae.state_dict().items()}
        sae.fold_W_dec_norm()  # what SAEDashboard / SAEBench do first
        for k, v in sae.state_dict().items():
            torch.testing.assert_close(v, before[k], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(sae.encode(x), theirs, atol=1e-5, rtol=1e-6)


def test_lstsq_export_decodes_to_the_post_hoc_decoder(tmp_path):
    from implicit_em.lm_eval import encode, fit_linear_decoder

    model, cfg = _model("encoder")
    norm, x = _norm(), _x()
    x_fit = norm.apply(_x(400))
    sl.export_saelens(model, tmp_path, norm=norm, x_fit=x_fit, model_config=cfg.to_dict())
    sae = sae_lens.SAE.load_from_disk(tmp_path)
    V, v = fit_linear_decoder(encode(model, x_fit), x_fit)
    with torch.no_grad():
        ours = norm.invert(model.encode(norm.apply(x)) @ V + v)  # (N, D) model units
        torch.testing.assert_close(sae.decode(sae.encode(x)), ours, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("kind", ["encoder", "standard_sae", "topk_sae"])
def test_import_of_export_is_exact(tmp_path, kind):
    model, cfg = _model(kind)
    norm = _norm()
    sl.export_saelens(model, tmp_path, norm=norm, model_config=cfg.to_dict())
    back, norm2, _ = sl.load_native(tmp_path)
    assert type(back) is type(model)
    for (k1, v1), (k2, v2) in zip(
        model.state_dict().items(), back.state_dict().items(), strict=True
    ):
        assert k1 == k2 and torch.equal(v1, v2)
    assert norm2.scale == norm.scale and torch.equal(norm2.mean, norm.mean)
    # the format-only import equals sae-lens itself
    ours = sl.load_saelens(tmp_path)
    sae = sae_lens.SAE.load_from_disk(tmp_path)
    x = _x()
    with torch.no_grad():
        assert torch.equal(ours.encode(x), sae.encode(x))
        torch.testing.assert_close(ours.decode(ours.encode(x)), sae.decode(sae.encode(x)))


def test_export_refuses_to_overwrite(tmp_path):
    model, cfg = _model("encoder")
    sl.export_saelens(model, tmp_path)
    with pytest.raises(FileExistsError, match="overwrite"):
        sl.export_saelens(model, tmp_path)
    sl.export_saelens(model, tmp_path, overwrite=True)


@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu"])
def test_import_published_saelens_saes(tmp_path, arch):
    """SAEs written by sae-lens itself load as SAELensModel with the same encode/decode."""
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.standard_sae import StandardSAE as SLStandard
    from sae_lens.saes.standard_sae import StandardSAEConfig
    from sae_lens.saes.topk_sae import TopKSAE as SLTopK
    from sae_lens.saes.topk_sae import TopKSAEConfig

    torch.manual_seed(3)
    cls, cfg_cls, extra = {
        "standard": (SLStandard, StandardSAEConfig, {}),
        "topk": (SLTopK, TopKSAEConfig, {"k": 4}),
        "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig, {}),
    }[arch]
    sae = cls(cfg_cls(d_in=D, d_sae=K, **extra))
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(0.5 * torch.randn_like(p))
        if arch == "jumprelu":
            sae.threshold.copy_(0.3 * torch.rand(K))
    sae.save_model(tmp_path)
    ours = sl.load_saelens(tmp_path)
    assert ours.architecture == arch
    x = _x()
    with torch.no_grad():
        a = sae.encode(x)
        assert (a > 0).any() and (a == 0).any()
        torch.testing.assert_close(ours.encode(x), a, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(ours.decode(a), sae.decode(a), atol=1e-6, rtol=1e-6)
    # and our evaluation code takes it
    from implicit_em.lm_eval import reconstructions

    recon = reconstructions(ours, x)
    assert set(recon) == {"decoder", "lstsq"}


def test_import_rejects_runtime_normalisation(tmp_path):
    model, _ = _model("encoder")
    sl.export_saelens(model, tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    cfg["normalize_activations"] = "layer_norm"
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="fold the normalisation"):
        sl.load_saelens(tmp_path)
    with pytest.raises(FileNotFoundError, match="not an SAELens"):
        sl.load_saelens(tmp_path / "nowhere")


def test_readout_auroc_matches_plain_formula():
    torch.manual_seed(4)
    a = torch.rand(200, 3)
    present = torch.rand(200, 3) < 0.3
    present[:, 2] = False  # never present -> NaN
    aucs = sl.readout_auroc(a, present)
    got = aucs["energy"]
    torch.testing.assert_close(aucs["neg_energy"][:2], 1 - got[:2])  # no ties in rand
    for j in range(2):
        pos, neg = a[present[:, j], j], a[~present[:, j], j]
        gt, eq = (pos[:, None] > neg[None]).double(), (pos[:, None] == neg[None]).double()
        plain = (gt + 0.5 * eq).mean()
        assert abs(float(got[j]) - float(plain)) < 1e-9
    assert torch.isnan(got[2])


def test_exported_latent_rises_with_its_feature_through_saelens(tmp_path):
    """The documented read-out on a small ground-truth problem: after training, sae-lens'
    code of each unit ranks inputs holding the unit's matched feature above the others
    (AUROC > 0.5 for most units), and the per-unit reversed order (-a) does not."""
    from implicit_em.config import TrainConfig
    from implicit_em.train.loop import train

    g = torch.Generator().manual_seed(0)
    F = torch.nn.functional.normalize(torch.randn(12, 8, generator=g), dim=1)  # (F, D)
    present = torch.rand(3000, 12, generator=g) < 0.08
    x = (present * (0.5 + torch.rand(3000, 12, generator=g))) @ F
    x = x + 0.05 * torch.randn(3000, 8, generator=g)
    cfg = RunConfig(
        model=ModelConfig(type="encoder", input_dim=8, hidden_dim=12),
        training=TrainConfig(epochs=15, batch_size=128, lr=3e-3, seed=0),
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    train(model, x[:2000], cfg, progress=False)
    sl.export_saelens(model, tmp_path, model_config=cfg.to_dict())
    sae = sae_lens.SAE.load_from_disk(tmp_path)
    with torch.no_grad():
        codes = sae.encode(x[2000:])  # (N, K)
    match = (torch.nn.functional.normalize(model.W.detach(), dim=1) @ F.t()).abs().argmax(1)
    auc = sl.readout_auroc(codes, present[2000:, match])
    assert float(auc["energy"].nanmedian()) > 0.75
    assert float(auc["neg_energy"].nanmedian()) < 0.25
