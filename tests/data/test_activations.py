"""Harvesting, storing and streaming LM activations, on a tiny random Llama (no download)."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from implicit_em.data.lm import activations as acts_mod  # noqa: E402
from implicit_em.data.lm import capture_residual, decoder_layers  # noqa: E402
from implicit_em.data.lm.activations import (  # noqa: E402
    ActivationReader,
    HarvestConfig,
    ManifestMismatchError,
    Normalization,
    ShardCorruptedError,
    check_same_model,
    harvest,
    load_manifest,
    pack_documents,
    read_split,
)
from implicit_em.data.lm.corpus import Document, check_corpus, load_text_dir, split_documents  # noqa: E402


class ByteTokenizer:
    """UTF-8 bytes as tokens; 256 = BOS, 257 = EOS."""

    bos_token_id, eos_token_id = 256, 257

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(text.encode())


def tiny_llama(seed: int = 0, n_layers: int = 3):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=258,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return transformers.LlamaForCausalLM(cfg).eval()


def info(name: str = "tiny-llama", sha: str | None = None) -> dict:
    return {"model_id": name, "revision": "test", "weights_sha256": sha}


def _text(i: int) -> str:
    g = torch.Generator().manual_seed(i)
    letters = torch.randint(97, 123, (60 + 10 * i,), generator=g).tolist()
    return f"Doc {i}: " + "".join(chr(c) for c in letters)


DOCS = [Document(f"doc{i:02d}", _text(i)) for i in range(12)]
CFG = HarvestConfig(
    model="tiny-llama",
    corpus="test",
    layer=1,
    ctx_len=16,
    n_tokens=600,
    heldout_fraction=0.25,
    batch_size=4,
    shard_contexts=8,
)


def run(tmp, model=None, cfg=CFG, model_info=None):
    return harvest(
        cfg,
        tmp,
        model=model or tiny_llama(),
        tokenizer=ByteTokenizer(),
        model_info=model_info or info(),
        docs=DOCS,
        progress=False,
    )


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_resid_pre_is_hf_hidden_states(layer):
    model = tiny_llama()
    ids = torch.randint(0, 258, (2, 10))
    ref = model(input_ids=ids, output_hidden_states=True).hidden_states
    h = capture_residual(model, ids, layer, "resid_pre")
    torch.testing.assert_close(h, ref[layer], rtol=0, atol=0)
    if layer < 2:  # the last block's output gets the final norm in hidden_states[-1]
        h_post = capture_residual(model, ids, layer, "resid_post")
        torch.testing.assert_close(h_post, ref[layer + 1], rtol=0, atol=0)


def test_gpt2_blocks_are_found():
    cfg = transformers.GPT2Config(vocab_size=258, n_embd=16, n_layer=2, n_head=2, n_positions=32)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, 258, (1, 8))
    ref = model(input_ids=ids, output_hidden_states=True).hidden_states
    assert len(decoder_layers(model)) == 2
    torch.testing.assert_close(capture_residual(model, ids, 1), ref[1])


def test_layer_out_of_range_is_clear():
    with pytest.raises(ValueError, match=r"layer 7 out of range.*use 0\.\.2"):
        capture_residual(tiny_llama(), torch.zeros(1, 4, dtype=torch.long), 7)


def test_pack_prefixes_bos_and_separates_documents():
    tok = ByteTokenizer()
    w = pack_documents([Document("a", "abc"), Document("b", "defgh")], tok, ctx_len=4)
    # stream: a b c EOS d e f g h EOS (10 tokens) -> 3 windows of 3, tail of 1 dropped
    assert w.shape == (3, 4)
    assert (w[:, 0] == 256).all()
    assert w[0, 1:].tolist() == [97, 98, 99] and w[1, 1:].tolist() == [257, 100, 101]


def test_split_is_by_document_and_stable():
    train, held = split_documents(DOCS, 0.25, seed=0)
    assert {d.name for d in train}.isdisjoint({d.name for d in held})
    assert len(train) + len(held) == len(DOCS) and held and train
    again = split_documents(DOCS[::-1], 0.25, seed=0)[1]
    assert {d.name for d in again} == {d.name for d in held}  # independent of order


def test_empty_corpus_is_clear(tmp_path):
    with pytest.raises(ValueError, match="empty corpus"):
        check_corpus([Document("x", "  \n")])
    with pytest.raises(ValueError, match="empty corpus"):
        load_text_dir(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_text_dir(tmp_path / "missing")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("bee")
    (tmp_path / "a.txt").write_text("ay")
    assert [(d.name, d.text) for d in load_text_dir(tmp_path)] == [("a", "ay"), ("sub/b", "bee")]


def test_round_trip_matches_model(tmp_path):
    model = tiny_llama()
    m = run(tmp_path, model)
    assert m["complete"] and m["identity"]["d_model"] == 32
    for split in ("train", "heldout"):
        x, tokens = read_split(tmp_path, split)
        assert x.shape == (tokens.shape[0] * 15, 32)  # BOS dropped: T - 1 per context
        ref = capture_residual(model, tokens, 1)[:, 1:].reshape(-1, 32)
        torch.testing.assert_close(x, ref.half().float(), rtol=0, atol=0)
    # held-out contexts come from held-out documents only: no shared window with train
    _, t_train = read_split(tmp_path, "train")
    _, t_held = read_split(tmp_path, "heldout")
    assert not {tuple(r) for r in t_train.tolist()} & {tuple(r) for r in t_held.tolist()}
    assert m["splits"]["train"]["n_tokens"] >= 450 and m["splits"]["heldout"]["n_tokens"] >= 150


def test_stats_and_normalization(tmp_path):
    run(tmp_path)
    x, _ = read_split(tmp_path, "train")
    st = load_manifest(tmp_path)["stats"]
    assert st["mean_sq_norm"] == pytest.approx(float(x.double().square().sum(1).mean()), rel=1e-6)
    norm = Normalization.from_manifest(tmp_path, center=True)
    xn = norm.apply(x)
    assert float(((x - x.mean(0)) * norm.scale).square().sum(1).mean()) == pytest.approx(
        float(xn.square().sum(1).mean()), rel=1e-4
    )
    torch.testing.assert_close(norm.invert(xn), x, rtol=1e-5, atol=1e-4)
    plain = Normalization.from_manifest(tmp_path)
    assert float(plain.apply(x).square().sum(1).mean()) == pytest.approx(32.0, rel=1e-4)


def test_reader_streams_every_row_once_shuffled(tmp_path):
    run(tmp_path)
    x, _ = read_split(tmp_path, "train")
    reader = ActivationReader(tmp_path, "train", batch_size=50, buffer_shards=2, drop_last=False)
    batches = list(reader)
    got = torch.cat(batches)
    assert got.shape == x.shape and all(len(b) == 50 for b in batches[:-1])
    assert not torch.equal(got, x)  # shuffled
    key = lambda t: t[torch.argsort(t[:, 0] * 1e3 + t[:, 1])]  # noqa: E731
    torch.testing.assert_close(key(got), key(x))
    assert not torch.equal(torch.cat(list(reader)), got)  # a new order each epoch


def test_corrupted_shard_is_detected_and_rewritten(tmp_path):
    m = run(tmp_path)
    entry = m["splits"]["train"]["shards"][1]
    path = tmp_path / entry["file"]
    good = path.read_bytes()
    raw = bytearray(good)
    raw[-7] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ShardCorruptedError, match="corrupted.*re-run"):
        read_split(tmp_path, "train")
    with pytest.raises(ShardCorruptedError):
        list(ActivationReader(tmp_path, "train"))
    run(tmp_path)  # resume verifies, truncates at the bad shard, rewrites it
    assert path.read_bytes() == good


def test_resume_after_interruption_gives_identical_shards(tmp_path, monkeypatch):
    clean = run(tmp_path / "clean")
    real, calls = acts_mod._write_shard, []

    def crash_after_two(*args):
        if len(calls) == 2:
            (args[0].with_name(args[0].name + ".tmp")).write_bytes(b"half a shard")
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(acts_mod, "_write_shard", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut")
    partial = load_manifest(tmp_path / "cut")
    assert not partial["complete"] and len(partial["splits"]["train"]["shards"]) == 2
    with pytest.raises(ValueError, match="incomplete"):
        read_split(tmp_path / "cut", "train")
    monkeypatch.setattr(acts_mod, "_write_shard", real)
    resumed = run(tmp_path / "cut")
    for split in ("train", "heldout"):
        assert [e["sha256"] for e in resumed["splits"][split]["shards"]] == [
            e["sha256"] for e in clean["splits"][split]["shards"]
        ]


def test_manifest_from_other_model_is_rejected(tmp_path):
    m = run(tmp_path, model_info=info(sha="aaaa"))
    with pytest.raises(ManifestMismatchError, match="different harvest.*new --out"):
        run(tmp_path, model=tiny_llama(seed=1), model_info=info(sha="bbbb"))
    with pytest.raises(ManifestMismatchError, match="loaded model"):
        check_same_model(m, info(sha="bbbb"))
    check_same_model(m, info(sha="aaaa"))
    other_layer = HarvestConfig(**{**json.loads(json.dumps(CFG.__dict__)), "layer": 2})
    with pytest.raises(ManifestMismatchError, match=r"\['layer'\]"):
        run(tmp_path, cfg=other_layer, model_info=info(sha="aaaa"))


def test_pack_batch_encoding_of_a_fast_tokenizer_equals_one_call_per_document():
    pytest.importorskip("transformers")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dashboard_fixtures import WORDS, word_tokenizer

    tok = word_tokenizer()
    assert tok.is_fast
    docs = [Document(f"d{i}", " ".join(WORDS[i : i + 7] + ["zzz"])) for i in range(6)]

    class Slow:  # the same tokenizer, one encode call per document
        bos_token_id, eos_token_id = tok.bos_token_id, tok.eos_token_id

        def encode(self, text, add_special_tokens=False):
            return tok.encode(text, add_special_tokens=add_special_tokens)

    fast, slow = pack_documents(docs, tok, ctx_len=5), pack_documents(docs, Slow(), ctx_len=5)
    assert fast.shape[0] >= 8 and torch.equal(fast, slow)
    assert (fast == tok.unk_token_id).any()  # "zzz" is out of vocabulary
