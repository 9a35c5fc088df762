"""`export` / `import` command layer on an LM run (tiny random Llama harvest, no download)."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
sae_lens = pytest.importorskip("sae_lens", reason="install the saelens extra")

from implicit_em import runs  # noqa: E402
from implicit_em.config import ModelConfig, RunConfig  # noqa: E402
from implicit_em.data.hf_harvest import HFHarvestOptions, harvest_hf  # noqa: E402
from implicit_em.data.lm.activations import Normalization, load_manifest, read_split  # noqa: E402
from implicit_em.data.lm.corpus import Document  # noqa: E402
from implicit_em.interop.commands import (  # noqa: E402
    ExportOptions,
    ImportOptions,
    run_export,
    run_import,
)
from implicit_em.interop.saelens import load_native  # noqa: E402

HOOK = "blocks.1.hook_resid_pre"


class ByteTokenizer:
    bos_token_id, eos_token_id = 256, 257

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(text.encode())


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm")
    torch.manual_seed(0)
    lm = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=258, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, initializer_range=0.2,
        )
    ).eval()  # fmt: skip
    docs = [
        Document(f"d{i}", f"Document {i}: " + "lorem ipsum dolor " * (5 + i)) for i in range(10)
    ]
    opts = HFHarvestOptions(
        model="tiny", out=str(tmp / "acts"), hooks=(HOOK,), text=("x.txt",), ctx_len=16,
        n_tokens=800, heldout_fraction=0.2, progress=False,
    )  # fmt: skip
    info = {"model_id": "tiny-llama", "revision": None, "weights_sha256": None}
    harvest_hf(opts, model=lm, tokenizer=ByteTokenizer(), model_info=info, docs=docs)
    acts = tmp / "acts" / HOOK
    cfg = RunConfig(model=ModelConfig(type="encoder", input_dim=32, hidden_dim=16))
    torch.manual_seed(1)
    model = runs.build_model(cfg)
    run_dir = runs.prepare_run_dir(tmp / "run", resume=False, overwrite=False)
    runs.save_model(model, cfg, run_dir)
    manifest = load_manifest(acts)
    (run_dir / "llm.json").write_text(
        json.dumps(
            {
                "harvest_dir": str(acts),
                "harvest_identity": manifest["identity"],
                "normalization": {"scale": manifest["stats"]["norm_scale"], "center": True},
            }
        )
    )
    return run_dir, acts, model


def test_export_command_writes_saelens_with_lm_metadata(lm_run, tmp_path):
    run_dir, acts, model = lm_run
    res = run_export(ExportOptions(run=str(run_dir), out=str(tmp_path / "sae"), fit_tokens=300))
    assert res["decoder"] == "lstsq" and res["architecture"] == "standard"
    assert res["fit_tokens"] == 300  # whole contexts: 20 x 15 tokens
    sae = sae_lens.SAE.load_from_disk(tmp_path / "sae")
    meta = sae.cfg.metadata
    assert meta.hook_name == HOOK and meta.model_name == "tiny-llama" and meta.context_size == 16
    x, _ = read_split(acts, "heldout")
    norm = Normalization.from_manifest(acts, center=True)
    _, _, c = load_native(tmp_path / "sae")
    with torch.no_grad():
        torch.testing.assert_close(
            sae.encode(x), model.encode(norm.apply(x)) * c, atol=1e-5, rtol=1e-5
        )
    with pytest.raises(FileExistsError):
        run_export(ExportOptions(run=str(run_dir), out=str(tmp_path / "sae")))


def test_export_sparsify_and_import_evaluates(lm_run, tmp_path):
    run_dir, acts, _ = lm_run
    res = run_export(ExportOptions(run=str(run_dir), out=str(tmp_path / "sp"), format="sparsify"))
    assert res["out"].endswith("layers.0")  # resid_pre of block 1 = output of layers.0
    run_export(ExportOptions(run=str(run_dir), out=str(tmp_path / "sae"), fit_tokens=300))
    got = run_import(
        ImportOptions(
            path=str(tmp_path / "sae"), acts=str(acts), fit_tokens=300, out=str(tmp_path / "m.json")
        )
    )
    fvu = got["metrics"]["fvu"]
    # the exported decoder is the least-squares one, refitted here on the same train tokens:
    # the two reconstructions agree
    assert abs(fvu["decoder"] - fvu["lstsq"]) < 1e-3 and 0 < fvu["decoder"] < 1
    assert json.loads((tmp_path / "m.json").read_text())["d_sae"] == 16
    sp = run_import(ImportOptions(path=res["out"], format="sparsify"))
    assert sp["architecture"] == "topk" and sp["k"] == 16
    with pytest.raises(ValueError, match="unknown format"):
        ExportOptions(run="r", out="o", format="onnx")
