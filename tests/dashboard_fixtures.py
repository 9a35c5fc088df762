"""A tiny harvest (random Llama, word-level tokenizer built offline) and runs of two families,
for the dashboard tests. Nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = ["the", "cat", "dog", "sat", "on", "mat", "and", "ran", "far", "away", "red", "blue",
         "big", "small", "house", "tree", "under", "over", "quick", "slow"]  # fmt: skip


def word_tokenizer():
    """A PreTrainedTokenizerFast over WORDS plus <bos>, <eos>, <unk> (ids 0, 1, 2)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<bos>": 0, "<eos>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>"
    )


def make_harvest(root: Path, n_tokens: int = 1500):
    """Harvest a random 2-layer Llama (D = 16) over random word documents. Returns the dir."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from implicit_em.data.lm.activations import HarvestConfig, harvest
    from implicit_em.data.lm.corpus import Document

    torch.manual_seed(0)
    tok = word_tokenizer()
    lm = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(WORDS) + 3,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=64,
        )  # fmt: skip
    ).eval()
    g = torch.Generator().manual_seed(1)
    docs = [
        Document(f"d{i:02d}", " ".join(WORDS[j] for j in torch.randint(0, 20, (120,), generator=g)))
        for i in range(16)
    ]
    cfg = HarvestConfig(model="tiny", corpus="words", layer=1, ctx_len=24, n_tokens=n_tokens,
                        heldout_fraction=0.2, batch_size=8, shard_contexts=16)  # fmt: skip
    out = root / "acts"
    info = {"model_id": "tiny", "revision": "test", "weights_sha256": None}
    harvest(cfg, out, model=lm, tokenizer=tok, model_info=info, docs=docs, progress=False)
    return out, tok, lm


def make_run(root: Path, acts: Path, family: str, K: int = 12) -> Path:
    """An untrained model of `family` saved as a run that names the harvest (like llm-train)."""
    from implicit_em.config import ModelConfig, RunConfig
    from implicit_em.data.lm.activations import Normalization
    from implicit_em.runs import atomic_write_json, build_model, save_model

    cfg = RunConfig(model=ModelConfig(type=family, input_dim=16, hidden_dim=K, k=3))
    model = build_model(cfg)
    run_dir = root / family
    run_dir.mkdir()
    save_model(model, cfg, run_dir)
    norm = Normalization.from_manifest(acts)
    meta = {"harvest_dir": str(acts), "normalization": norm.to_dict(),
            "outliers": {"max_norm_ratio": 0.0, "median_norm_model_units": None}}  # fmt: skip
    (run_dir / "llm.json").write_text(json.dumps(meta))
    atomic_write_json(run_dir / "metrics.json", {"fvu": 0.25, "dead_fraction": 0.0})
    return run_dir
