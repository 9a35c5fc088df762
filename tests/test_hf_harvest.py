"""Harvest from Hugging Face causal LMs: tiny random Llama and GPT-2 built from configs."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from implicit_em.data.hf_harvest import (  # noqa: E402
    HFHarvestOptions,
    capture,
    harvest_hf,
    hook_dir_name,
    pack_windows,
)
from implicit_em.data.lm import decoder_layers  # noqa: E402
from implicit_em.data.lm.activations import ManifestMismatchError, load_manifest, read_split  # noqa: E402
from implicit_em.data.lm.corpus import Document  # noqa: E402


class ByteTokenizer:
    """UTF-8 bytes as tokens; 256 = BOS, 257 = EOS."""

    bos_token_id, eos_token_id = 256, 257

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(text.encode())


def tiny(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    if arch == "llama":
        cfg = transformers.LlamaConfig(
            vocab_size=258,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            initializer_range=0.2,
        )
        return transformers.LlamaForCausalLM(cfg).eval()
    cfg = transformers.GPT2Config(
        vocab_size=258,
        n_embd=32,
        n_layer=3,
        n_head=4,
        n_positions=64,
        bos_token_id=256,
        eos_token_id=257,
        initializer_range=0.2,
    )
    return transformers.GPT2LMHeadModel(cfg).eval()


def _text(i: int) -> str:
    g = torch.Generator().manual_seed(i)
    letters = torch.randint(97, 123, (60 + 10 * i,), generator=g).tolist()
    return f"Doc {i}: " + "".join(chr(c) for c in letters)


DOCS = [Document(f"doc{i:02d}", _text(i)) for i in range(12)]
INFO = {"model_id": "tiny", "revision": "test", "weights_sha256": None}
MODULE = {"llama": "model.layers.0.mlp.down_proj", "gpt2": "transformer.h.0.mlp.c_proj"}
ATTN = {"llama": "self_attn", "gpt2": "attn"}


def opts(tmp, hooks, **kw) -> HFHarvestOptions:
    base = dict(
        model="tiny",
        out=str(tmp),
        hooks=tuple(hooks),
        text=("unused.txt",),
        ctx_len=16,
        n_tokens=600,
        heldout_fraction=0.25,
        batch_size=4,
        shard_contexts=8,
        progress=False,
    )
    base.update(kw)
    return HFHarvestOptions(**base)


def run(tmp, arch, hooks, stop=None, **kw):
    return harvest_hf(
        opts(tmp, hooks, **kw),
        model=tiny(arch),
        tokenizer=ByteTokenizer(),
        model_info=INFO,
        docs=DOCS,
        stop_after_shards=stop,
    )


def hand_written(model, tokens: torch.Tensor, arch: str) -> dict[str, torch.Tensor]:
    """The same quantities from plain forward hooks on a full forward pass."""
    got: dict[str, torch.Tensor] = {}
    blocks = decoder_layers(model)
    hs = []
    hs.append(
        getattr(blocks[1], ATTN[arch]).register_forward_hook(
            lambda m, a, o: got.__setitem__("attn", o[0])
        )
    )
    hs.append(blocks[0].mlp.register_forward_hook(lambda m, a, o: got.__setitem__("mlp", o)))
    module = dict(model.named_modules())[MODULE[arch]]
    hs.append(module.register_forward_hook(lambda m, a, o: got.__setitem__("mod", o)))
    with torch.no_grad():
        out = model(input_ids=tokens, output_hidden_states=True, use_cache=False)
    for h in hs:
        h.remove()
    flat = lambda t: t[:, 1:].reshape(-1, t.shape[-1])  # noqa: E731  drop BOS, (N, D)
    return {
        "blocks.1.hook_resid_pre": flat(out.hidden_states[1]),
        "blocks.1.hook_resid_post": flat(out.hidden_states[2]),
        "blocks.1.hook_attn_out": flat(got["attn"]),
        "blocks.0.hook_mlp_out": flat(got["mlp"]),
        MODULE[arch]: flat(got["mod"]),
    }


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_harvested_rows_equal_hand_written_hooks(tmp_path, arch):
    hooks = list(hand_written(tiny(arch), torch.zeros(1, 4, dtype=torch.long), arch))
    ms = run(tmp_path, arch, hooks)
    assert set(ms) == set(hooks) and all(m["complete"] for m in ms.values())
    model = tiny(arch)
    for split in ("train", "heldout"):
        tokens = read_split(tmp_path / hook_dir_name(hooks[0]), split)[1]
        ref = hand_written(model, tokens, arch)
        for hook in hooks:
            x, t = read_split(tmp_path / hook_dir_name(hook), split)
            assert torch.equal(t, tokens)
            assert x.shape == (len(tokens) * 15, 32)
            scale = float(ref[hook].abs().max())
            assert float(ref[hook].std()) > 0.05  # not a vacuous comparison
            torch.testing.assert_close(x, ref[hook].half().float(), atol=1e-3 * scale, rtol=2e-3)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_multi_hook_equals_single_hook_harvests(tmp_path, arch):
    hooks = ["blocks.0.hook_resid_post", "blocks.2.hook_mlp_out", "blocks.1.hook_attn_out"]
    run(tmp_path / "multi", arch, hooks)
    for hook in hooks:
        run(tmp_path / hook_dir_name(hook), arch, [hook])
        for split in ("train", "heldout"):
            multi = read_split(tmp_path / "multi" / hook_dir_name(hook), split)[0]
            single = read_split(tmp_path / hook_dir_name(hook) / hook_dir_name(hook), split)[0]
            assert torch.equal(multi, single)


def test_resumed_harvest_equals_uninterrupted(tmp_path):
    hooks = ["blocks.1.hook_resid_pre", "blocks.1.hook_mlp_out"]
    full = run(tmp_path / "full", "llama", hooks)
    part = run(tmp_path / "part", "llama", hooks, stop=2)
    assert not any(m["complete"] for m in part.values())
    # a kill between the hooks' writes: one hook one shard ahead
    d = tmp_path / "part" / hook_dir_name(hooks[1])
    m = load_manifest(d)
    m["splits"]["train"]["shards"].pop()
    (d / "manifest.json").write_text(json.dumps(m))
    resumed = run(tmp_path / "part", "llama", hooks)
    for hook in hooks:
        for split in ("train", "heldout"):
            a = [e["sha256"] for e in full[hook]["splits"][split]["shards"]]
            b = [e["sha256"] for e in resumed[hook]["splits"][split]["shards"]]
            assert a == b and len(a) >= 1
        assert resumed[hook]["stats"] == full[hook]["stats"]
    with pytest.raises(ManifestMismatchError, match="ctx_len"):
        run(tmp_path / "full", "llama", hooks, ctx_len=12)


def test_stride_and_unknown_hooks():
    tok = ByteTokenizer()
    docs = [Document("a", "x" * 40)]
    w = pack_windows(docs, tok, ctx_len=9, stride=4)  # 41 tokens, windows of 8 every 4
    assert w.shape == (9, 9) and torch.equal(w[1, 1:5], w[0, 5:9])
    assert (w[:, 0] == 256).all()
    model = tiny("gpt2")
    with pytest.raises(ValueError, match="out of range"):
        capture(model, torch.zeros(1, 4, dtype=torch.long), ("blocks.7.hook_resid_pre",))
    with pytest.raises(ValueError, match="unknown hook"):
        capture(model, torch.zeros(1, 4, dtype=torch.long), ("blocks.0.nothing",))


def _save_tiny_gpt2(path):
    """A tiny random GPT-2 and a byte-level tokenizer, written with save_pretrained."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab.update({"<s>": 256, "</s>": 257})
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<s>", eos_token="</s>"
    )
    model = tiny("gpt2", seed=5)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return model, fast


def test_harvest_from_local_directory_and_text_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok = _save_tiny_gpt2(tmp_path / "model")
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"text": _text(i)}) for i in range(6)))
    for i in range(6, 9):
        (tmp_path / f"t{i}.txt").write_text(_text(i))
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.table({"text": [_text(i) for i in range(9, 12)]}), tmp_path / "c.parquet")
    hook = "blocks.1.hook_resid_post"
    o = HFHarvestOptions(
        model=str(tmp_path / "model"),
        out=str(tmp_path / "acts"),
        hooks=(hook,),
        text=(str(tmp_path / "a.jsonl"), str(tmp_path / "t*.txt"), str(tmp_path / "c.parquet")),
        ctx_len=16,
        n_tokens=400,
        heldout_fraction=0.25,
        batch_size=4,
        progress=False,
    )
    m = harvest_hf(o)[hook]
    assert len(m["documents"]["train"]) + len(m["documents"]["heldout"]) == 12
    assert m["identity"]["model"]["weights_sha256"]  # the folder is fingerprinted
    x, tokens = read_split(tmp_path / "acts" / hook, "train")
    assert (tokens[:, 0] == tok.bos_token_id).all()
    with torch.no_grad():
        ref = model(input_ids=tokens, output_hidden_states=True).hidden_states[2][:, 1:]
    torch.testing.assert_close(x, ref.reshape(-1, 32).half().float(), atol=2e-3, rtol=2e-3)

    # the same text through a `datasets` json dataset (offline: local data_files)
    pytest.importorskip("datasets")
    o2 = HFHarvestOptions(
        model=str(tmp_path / "model"),
        out=str(tmp_path / "acts2"),
        hooks=(hook,),
        dataset="json",
        data_files=(str(tmp_path / "a.jsonl"),),
        ctx_len=16,
        n_tokens=200,
        heldout_fraction=0.25,
        progress=False,
    )
    m2 = harvest_hf(o2)[hook]
    assert m2["complete"] and m2["splits"]["train"]["n_tokens"] > 0


def test_load_lm_without_progress_prints_no_loading_bar(tmp_path, monkeypatch, capsys):
    from implicit_em.data.lm import load_lm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _save_tiny_gpt2(tmp_path / "model")
    capsys.readouterr()
    load_lm(str(tmp_path / "model"), progress=True)
    assert "Loading weights" in capsys.readouterr().err  # transformers' bar, as a control
    load_lm(str(tmp_path / "model"), progress=False)
    assert "Loading weights" not in capsys.readouterr().err
    assert transformers.utils.logging.is_progress_bar_enabled()  # restored afterwards
