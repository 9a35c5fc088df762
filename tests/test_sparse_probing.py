"""k-sparse probing protocol, passage tasks, and the whole probing run on a tiny random Llama."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from implicit_em.data.lm.corpus import Document
from implicit_em.eval.probing_tasks import build_pool, build_tasks, sotu_party, spam_is_spam
from implicit_em.eval.sparse_probing import (
    RandomDirections,
    k_sparse_probe,
    mean_difference_ranking,
    mean_pool,
    pooled_codes,
    select_latents,
)


def one_latent_task(seed: int = 0, n: int = 200, K: int = 50, carrier: int = 7):
    """Pooled codes where only latent `carrier` depends on the label."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    z = rng.exponential(1.0, (n, K))
    z[:, carrier] = 3.0 * y + 0.1 * rng.random(n)
    return z, y


def test_one_carrier_latent_gives_perfect_k1_and_control_gives_chance():
    z_tr, y_tr = one_latent_task(0)
    z_te, y_te = one_latent_task(1)
    res = k_sparse_probe(z_tr, y_tr, z_te, y_te, ks=(1, 2, 5))
    assert res["selected"][1] == [7]
    assert res["k"][1] >= 0.99
    assert res["full"] >= 0.95
    # control: the same codes without the carrier latent hold no label information
    drop = np.delete(np.arange(50), 7)
    ctrl = k_sparse_probe(z_tr[:, drop], y_tr, z_te[:, drop], y_te, ks=(1, 5))
    assert abs(ctrl["k"][1] - 0.5) < 0.12
    assert abs(ctrl["k"][5] - 0.5) < 0.12


def test_mean_difference_selection_matches_numpy_reference():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(40, 12))
    y = np.array([0, 1] * 20)
    ref = []  # hand-written: |mean over positives - mean over negatives| per latent
    for j in range(12):
        pos = [z[i, j] for i in range(40) if y[i] == 1]
        neg = [z[i, j] for i in range(40) if y[i] == 0]
        ref.append(abs(sum(pos) / len(pos) - sum(neg) / len(neg)))
    want = sorted(range(12), key=lambda j: -ref[j])
    assert mean_difference_ranking(z, y).tolist() == want
    assert select_latents(z, y, 3).tolist() == want[:3]
    with pytest.raises(ValueError, match="binary"):
        mean_difference_ranking(z, np.zeros(40, dtype=int))
    with pytest.raises(ValueError, match="k = 13"):
        select_latents(z, y, 13)


def test_mean_pool_skips_masked_tokens_and_pooled_codes_encode_per_token():
    x = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)  # (P, T, D)
    mask = torch.tensor([[True, False, True], [False, True, False]])
    pooled = mean_pool(x, mask)
    assert torch.allclose(pooled[0], (x[0, 0] + x[0, 2]) / 2)
    assert torch.allclose(pooled[1], x[1, 1])
    codes = pooled_codes(torch.relu, x - 10, mask, batch=1)  # ReLU per token, then the mean
    assert torch.allclose(codes[0], (torch.relu(x[0, 0] - 10) + torch.relu(x[0, 2] - 10)) / 2)
    with pytest.raises(ValueError, match="no unmasked token"):
        mean_pool(x, torch.zeros(2, 3, dtype=torch.bool))


def test_random_directions_keep_l0_latents_on_unit_rows():
    rd = RandomDirections(8, 32, l0=5, seed=1)
    assert torch.allclose(rd.W.norm(dim=1), torch.ones(32))
    a = rd.encode(torch.randn(100, 8))
    assert ((a > 0).sum(1) == 5).all()  # 8-dim Gaussian input: >= 5 of 32 projections > 0
    with pytest.raises(ValueError, match="l0"):
        RandomDirections(8, 32, l0=33)


class ByteTokenizer:
    """UTF-8 bytes as tokens; 256 = BOS, 257 = EOS."""

    bos_token_id, eos_token_id = 256, 257

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(text.encode())


def _text(alphabet: str, seed: int, n: int = 120) -> str:
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list(alphabet), n))


def tiny_corpora() -> dict[str, list[Document]]:
    """Three corpora whose byte statistics differ, named like the real ones."""
    spam = [Document(f"spam/spam-1/{i:04d}", _text("XYZxyz !", i)) for i in range(12)]
    spam += [Document(f"spam/easy-ham-1/{i:04d}", _text("abcdef .", 100 + i)) for i in range(12)]
    pydoc = [Document(f"pydoc/p{i}", _text("def():_ ", 200 + i)) for i in range(12)]
    perldoc = [Document(f"perldoc/q{i}", _text("$@%;{} ", 300 + i)) for i in range(12)]
    return {"spam": spam, "pydoc": pydoc, "perldoc": perldoc}


def test_pool_splits_by_document_and_tasks_are_balanced():
    corpora = tiny_corpora()
    pool = build_pool(corpora, ByteTokenizer(), {"spam": 30, "pydoc": 20, "perldoc": 20}, 16, 2)
    assert pool.tokens.shape[1] == 17 and (pool.tokens[:, 0] == 256).all()
    sides = {}
    for d, s in zip(pool.doc, pool.split, strict=True):
        sides.setdefault(d, set()).add(s)
    assert all(len(v) == 1 for v in sides.values())  # no document on both sides
    tasks = build_tasks(pool, ("spam_vs_ham", "pydoc_vs_perldoc", "source"), seed=0)
    assert [t.name for t in tasks][:2] == ["spam_vs_ham", "pydoc_vs_perldoc"]
    assert len(tasks) == 5
    split = np.array(pool.split)
    for t in tasks:
        assert t.train_y.mean() == 0.5 and t.test_y.mean() == 0.5
        assert (split[t.train_idx] == "train").all() and (split[t.test_idx] == "test").all()
    again = build_pool(corpora, ByteTokenizer(), {"spam": 30, "pydoc": 20, "perldoc": 20}, 16, 2)
    assert torch.equal(pool.tokens, again.tokens)  # seeded
    assert spam_is_spam("spam/spam-2/00012") and not spam_is_spam("spam/hard-ham-1/00012")
    assert sotu_party("1861_abraham_lincoln_r") == "r"


def test_whole_run_on_a_tiny_llama(tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    from implicit_em.eval.probing_suite import ProbingOptions, run

    monkeypatch.setenv("IMPLICIT_EM_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=258,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    lm = transformers.LlamaForCausalLM(cfg).eval()
    opts = ProbingOptions(
        out_dir=str(tmp_path / "report"),
        layer=1,
        corpora=("spam", "pydoc", "perldoc"),
        quota=(30, 20, 20),
        n_tokens=16,
        per_doc=2,
        tasks=("spam_vs_ham", "source"),
        ks=(1, 2),
        hidden_dim=16,
        activations=("relu",),
        topk_k=4,
        match_encoder_l0=False,
        epochs=1,
        batch_size=64,
        ce_contexts=4,
        lm_batch_size=8,
        progress=False,
    )
    res = run(opts, lm=lm, tokenizer=ByteTokenizer(), corpora=tiny_corpora())
    for name in ("probing.json", "probing.md", "probing_vs_k.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    from implicit_em.eval.verdict import OLD_RAW_ROW, RAW_ROW, ceiling_label

    rows = res["probing_summary"]["saebench"]
    assert {RAW_ROW, "encoder-relu [a]", "encoder-relu [r]",
            "encoder-relu (untrained) [a]", "topk-k4", "topk-k4 (untrained)", "l1-sae",
            "l1-sae (untrained)"} <= set(rows)  # fmt: skip
    assert any(r.startswith("random dirs @ L0 4 (topk-k4)") for r in rows)
    # byte statistics separate the corpora: the raw residual probe is far above chance
    assert rows[RAW_ROW]["mean"]["full"] > 0.8
    std = res["probing_summary"]["standardized"][RAW_ROW]["mean"]["full"]
    assert std > 0.8
    # the new name is written, the old one nowhere; the report shows the all-D probe as the
    # ceiling row (value in the `full` column only) and the k-sparse row as a baseline
    assert res["kinds"][RAW_ROW] == "raw" and res["input_dim"] == 32
    assert OLD_RAW_ROW not in (tmp_path / "report" / "probing.json").read_text()
    md = (tmp_path / "report" / "probing.md").read_text()
    assert f"| {RAW_ROW} | raw | - | " in md and OLD_RAW_ROW not in md
    for variant, full in (("saebench", rows[RAW_ROW]["mean"]["full"]), ("standardized", std)):
        assert f"| {ceiling_label(32)} | raw | - | - | - | {full:.3f} |" in md, variant
    assert 3.5 < res["l0"]["topk-k4"] <= 4.0  # TopK keeps 4 (a kept value can be 0)
    ce = res["downstream"]
    assert ce["orig"]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert ce["topk-k4 | own decoder"]["ce_loss_recovered"] == pytest.approx(
        (ce["zero"]["ce"] - ce["topk-k4 | own decoder"]["ce"])
        / (ce["zero"]["ce"] - ce["orig"]["ce"])
    )
    assert "encoder-relu | post-hoc least squares" in ce
    assert json.loads((tmp_path / "report" / "probing.json").read_text())["l0"] == res["l0"]
    assert "## Verdict" in md and "- **k = 1:** best trained read-out" in md
    assert "- **CE-loss recovered:** best trained" in md
    # second run: activations come from the cache; the report is not silently overwritten
    with pytest.raises(FileExistsError, match="overwrite"):
        run(opts, lm=lm, tokenizer=ByteTokenizer(), corpora=tiny_corpora())
