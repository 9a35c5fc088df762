"""scripts/probing_gpu.py end to end at toy size on CPU (the GPU study's code path)."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_sparse_probing import ByteTokenizer, tiny_corpora

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "probing_gpu.py"


def _script():
    spec = importlib.util.spec_from_file_location("probing_gpu", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["probing_gpu"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_prepare_and_run_on_a_tiny_llama(tmp_path):
    transformers = pytest.importorskip("transformers")
    mod = _script()
    plan = mod.Plan(**mod.TINY)
    meta = mod.prepare(plan, tiny_corpora(), ByteTokenizer(), tmp_path / "data")
    meta, arrays = mod.load_data(tmp_path / "data")
    assert arrays["train_ctx"].shape[1] == plan.ctx_len and (arrays["train_ctx"][:, 0] == 256).all()
    assert arrays["held_ctx"].shape == (plan.held_contexts, plan.ctx_len)
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=258, hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=3, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    lm = transformers.LlamaForCausalLM(cfg).eval()
    res = mod.main_run(plan, meta, arrays, lm, tmp_path / "out", "cpu")
    assert res["blocks_done"] == ["K16-s0", "K32-s0", "K16-s1", "K32-s1"]
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["l0"] == res["l0"]
    # the L0 rule: every k-family takes k = round(L0 of the same block's encoder)
    for block in res["blocks_done"]:
        K, s = block.split("-")
        enc = res["l0"][f"encoder-{K}-{s}"]
        k = int(min(int(K[1:]), max(1, round(enc))))
        for fam in ("topk", "batchtopk", "matryoshka"):
            assert f"{fam}-{K}-k{k}-{s}" in res["l0"]
        assert 0.5 * k <= res["l0"][f"topk-{K}-k{k}-{s}"] <= k  # TopK keeps k (ties at 0 aside)
        ce = res["downstream"][block]
        assert ce["orig"]["kl"] == pytest.approx(0.0, abs=1e-6)
        r = ce[f"topk-{K}-k{k}-{s} | own decoder"]
        assert r["ce_loss_recovered"] == pytest.approx(
            (ce["zero"]["ce"] - r["ce"]) / (ce["zero"]["ce"] - ce["orig"]["ce"])
        )
        assert f"encoder-{K}-{s} | post-hoc least squares" in ce
        assert any(key.startswith("random dirs") for key in ce)
    probes = res["probing"]["saebench"]
    # every row probed on every task: raw + 2 blocks-worth of (trained, untrained, random)
    assert len(probes) == 1 + 4 * 6 * 3
    raw = probes["raw residual (ceiling)"]
    assert set(raw) == {t["name"] for t in meta["tasks"]}
    assert np.mean([r["full"] for r in raw.values()]) > 0.8  # byte statistics separate corpora
    assert all(set(r["k"]) == {"1", "2"} for row in probes.values() for r in row.values())


def test_probe_fit_selects_by_rank_and_matches_the_library(tmp_path):
    """fit_task on pre-ranked columns equals sparse_probing.k_sparse_probe on all columns."""
    from implicit_em.eval.sparse_probing import k_sparse_probe, mean_difference_ranking

    mod = _script()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    z = rng.normal(size=(120, 40)) + np.outer(y, rng.normal(size=40)) * 0.3
    tr, te = slice(0, 80), slice(80, 120)
    order = mean_difference_ranking(z[tr], y[tr])[:5]
    got = mod.fit_task(z[tr][:, order], y[tr], z[te][:, order], y[te], (1, 2, 5), None)
    want = k_sparse_probe(z[tr], y[tr], z[te], y[te], (1, 2, 5), full=False)
    assert got["saebench"]["k"] == {str(k): v for k, v in want["k"].items()}
