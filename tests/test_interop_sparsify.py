"""sparsify format both ways, checked against the format's own forward pass (the spec)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from implicit_em.config import ModelConfig, RunConfig
from implicit_em.data.lm.activations import Normalization
from implicit_em.interop import saelens as sl
from implicit_em.interop import sparsify as sp
from implicit_em.runs import build_model

D, K = 12, 20


def _model(kind: str):
    torch.manual_seed(0)
    cfg = RunConfig(model=ModelConfig(type=kind, input_dim=D, hidden_dim=K, k=5))
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
        if kind == "topk_sae":
            model.normalize_decoder_()
    return model.eval(), cfg


def _sparsify_forward(folder):
    """sparsify's SparseCoder.encode/decode written from its source, on the raw files."""
    cfg = json.loads((folder / "cfg.json").read_text())
    t = load_file(folder / "sae.safetensors")

    def encode(x):
        pre = torch.relu((x - t["b_dec"]) @ t["encoder.weight"].T + t["encoder.bias"])
        vals, idx = pre.topk(cfg["k"], dim=-1)
        return torch.zeros_like(pre).scatter(-1, idx, vals)

    return encode, lambda a: a @ t["W_dec"] + t["b_dec"], cfg


@pytest.mark.parametrize("kind", ["encoder", "standard_sae", "topk_sae"])
def test_sparsify_round_trip(tmp_path, kind):
    model, cfg = _model(kind)
    torch.manual_seed(1)
    norm = Normalization(scale=0.37, mean=torch.randn(D))
    x = 3.0 * torch.randn(64, D) + 1.0
    folder = sp.export_sparsify(
        model,
        tmp_path,
        sp.sparsify_hookpoint(3, "resid_pre"),
        norm=norm,
        model_config=cfg.to_dict(),
    )
    assert folder.name == "layers.2"
    enc, dec, scfg = _sparsify_forward(folder)
    assert scfg["num_latents"] == K and scfg["d_in"] == D
    assert scfg["k"] == (5 if kind == "topk_sae" else K)
    back, norm2, c = sl.load_native(folder)
    with torch.no_grad():
        ours = model.encode(norm.apply(x)) * c
        torch.testing.assert_close(enc(x), ours, atol=1e-5, rtol=1e-6)
        if kind != "encoder":
            torch.testing.assert_close(
                dec(enc(x)),
                norm.invert(model.decode(model.encode(norm.apply(x)))),
                atol=1e-5,
                rtol=1e-6,
            )
        imported = sp.load_sparsify(folder)
        torch.testing.assert_close(imported.encode(x), enc(x), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(imported.decode(enc(x)), dec(enc(x)), atol=1e-6, rtol=1e-6)
    for (k1, v1), (k2, v2) in zip(
        model.state_dict().items(), back.state_dict().items(), strict=True
    ):
        assert k1 == k2 and torch.equal(v1, v2)
    with pytest.raises(FileExistsError):
        sp.export_sparsify(model, tmp_path, "layers.2")


def test_sparsify_rejects_transcoders(tmp_path):
    model, _ = _model("topk_sae")
    folder = sp.export_sparsify(model, tmp_path, "layers.0")
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["transcode"] = True
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="transcode"):
        sp.load_sparsify(folder)
    assert sp.sparsify_hookpoint(0, "resid_pre") == "embed_tokens"
    assert sp.sparsify_hookpoint(4, "resid_post") == "layers.4"
