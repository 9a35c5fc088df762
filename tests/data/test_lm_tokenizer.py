"""`data.lm.load_tokenizer`: the tokenizer of a language model without its weights, for the
GGUF route (from the dequantized cache when there, else the GGUF header) and a plain folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

from implicit_em.data.lm import model as model_mod  # noqa: E402

TOKENS = ["<bos>", "<eos>", "a", "b", "c", "Ġ", "ab", "Ġa"]


def tiny_gguf(path: Path) -> Path:
    """A GGUF file with a byte-level BPE vocabulary of 8 tokens and one small tensor."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(64)
    w.add_embedding_length(16)
    w.add_block_count(1)
    w.add_feed_forward_length(32)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(8)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(TOKENS)
    w.add_token_types([3, 3, 1, 1, 1, 1, 1, 1])
    w.add_token_merges(["a b", "Ġ a"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    w.add_tensor("token_embd.weight", np.zeros((len(TOKENS), 16), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    """Loading any model's weights fails the test; the model cache is a fresh folder."""

    def refuse(*a, **kw):
        raise AssertionError("load_tokenizer loaded a model's weights")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setattr(model_mod, "cache_dir", lambda: tmp_path / "cache")


def test_gguf_tokenizer_comes_from_the_header(tmp_path, no_weights):
    path = tiny_gguf(tmp_path / "tiny.Q8_0.gguf")
    tok = model_mod.load_tokenizer(str(path))
    assert tok.convert_ids_to_tokens([2, 6]) == ["a", "ab"]
    assert tok.encode("ab a") == [6, 7] and tok.decode([6, 7]) == "ab a"
    assert not (tmp_path / "cache").exists()  # nothing dequantized or cached


def test_gguf_tokenizer_comes_from_the_dequantized_cache_when_present(tmp_path, no_weights):
    from dashboard_fixtures import word_tokenizer

    path = tiny_gguf(tmp_path / "tiny.Q8_0.gguf")
    cached = model_mod._dequantized_dir(path, model_mod.file_sha256(path))
    word_tokenizer().save_pretrained(cached)  # a different vocabulary: shows which was read
    tok = model_mod.load_tokenizer(str(path))
    assert tok.convert_ids_to_tokens(3) == "the" and len(tok) == 23


def test_folder_tokenizer_and_a_missing_model(tmp_path, no_weights):
    from dashboard_fixtures import word_tokenizer

    word_tokenizer().save_pretrained(tmp_path / "tok")
    assert model_mod.load_tokenizer(str(tmp_path / "tok")).decode([4]) == "cat"
    with pytest.raises(FileNotFoundError, match="GGUF file .* not found"):
        model_mod.load_tokenizer(str(tmp_path / "missing.gguf"))
