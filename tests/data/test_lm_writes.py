"""The language-model writers go through `implicit_em.atomic`: Ctrl-C in the middle of a write
leaves neither a half-written file under a trusted name nor a stray temporary file."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import safetensors.torch
import torch

from implicit_em import atomic
from implicit_em.data.lm import activations as acts_mod
from implicit_em.data.lm import model as model_mod
from implicit_em.data.lm.model import file_sha256
from implicit_em.eval import probing_suite


def interrupted_save_file(tensors, filename, *a, **kw):
    """Writes half a file, then Ctrl-C arrives."""
    Path(filename).write_bytes(b"half a safetensors file")
    raise KeyboardInterrupt


def test_shard_is_hashed_written_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "train" / "shard_00000.safetensors"
    acts, tokens = torch.randn(6, 4).half(), torch.arange(6).view(2, 3)
    entry = acts_mod._write_shard(path, acts, tokens)
    assert entry["sha256"] == file_sha256(path) and entry["n_tokens"] == 6
    assert torch.equal(safetensors.torch.load_file(path)["acts"], acts)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]

    other = path.with_name("shard_00001.safetensors")
    monkeypatch.setattr(acts_mod, "save_file", interrupted_save_file)
    with pytest.raises(KeyboardInterrupt):
        acts_mod._write_shard(other, acts, tokens)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no half shard, no .tmp


def test_manifest_keeps_its_old_contents_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "manifest.json"
    acts_mod._write_json_atomic(path, {"shards": 1})

    def interrupted_replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        acts_mod._write_json_atomic(path, {"shards": 2})
    assert json.loads(path.read_text()) == {"shards": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def fake_hf():
    """A model and tokenizer whose save_pretrained writes named files (no transformers)."""

    def saver(name):
        def save_pretrained(folder) -> None:
            (Path(folder) / name).write_text("{}")

        return save_pretrained

    config = SimpleNamespace(save_pretrained=saver("config.json"), quantization_config={})
    model = torch.nn.Linear(2, 2)
    model.config = config
    return model, SimpleNamespace(save_pretrained=saver("tokenizer.json"))


def test_dequantized_model_folder_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    model, tok = fake_hf()
    dest = tmp_path / "smollm2-dequantized"
    model_mod._save_dequantized(model, tok, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["config.json", "model.safetensors",
                                                      "tokenizer.json"]  # fmt: skip
    assert not hasattr(model.config, "quantization_config")  # the plain folder is not "quantized"

    def interrupted_save_model(model, filename, *a, **kw):
        Path(filename).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_model", interrupted_save_model)
    other = tmp_path / "other-dequantized"
    with pytest.raises(KeyboardInterrupt):
        model_mod._save_dequantized(*fake_hf(), other)
    assert sorted(p.name for p in tmp_path.iterdir()) == [dest.name]  # no folder, no scratch


def test_probing_activation_cache_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    monkeypatch.setattr(probing_suite, "cache_dir", lambda: tmp_path)
    acts = torch.randn(2, 3, 4).half()
    monkeypatch.setattr(probing_suite, "harvest_passages", lambda *a, **kw: acts)
    tokens = torch.arange(6).view(2, 3)
    monkeypatch.setattr(safetensors.torch, "save_file", interrupted_save_file)
    with pytest.raises(KeyboardInterrupt):
        probing_suite.cached_passage_activations(None, tokens, "w", 1)
    folder = tmp_path / "probing"
    assert not folder.exists() or list(folder.iterdir()) == []
    monkeypatch.undo()
    monkeypatch.setattr(probing_suite, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(probing_suite, "harvest_passages", lambda *a, **kw: acts)
    got, info = probing_suite.cached_passage_activations(None, tokens, "w", 1)
    assert info["cached"] is False and torch.equal(got, acts)
    again, info = probing_suite.cached_passage_activations(None, tokens, "w", 1)
    assert info["cached"] is True and torch.equal(again, acts)
    assert [p.suffix for p in folder.iterdir()] == [".safetensors"]


def test_atomic_save_dir_refuses_nothing_half_done(tmp_path):
    def fill(folder: Path) -> None:
        (folder / "a").write_text("1")

    atomic.atomic_save_dir(fill, tmp_path / "out")
    assert (tmp_path / "out" / "a").read_text() == "1"

    def fail(folder: Path) -> None:
        (folder / "a").write_text("2")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic.atomic_save_dir(fail, tmp_path / "out2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
