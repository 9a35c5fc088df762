"""The dequantized-model cache (`data.lm.model._dequantize_once`): concurrent processes
dequantize once under a lock, and the temporary folders killed runs left are removed, only
this cache entry's and only when their process is gone."""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from implicit_em import atomic
from implicit_em.data.lm import model as model_mod

SHA = "ab" * 32


def fake_tf(log: Path, seconds: float = 0.0) -> SimpleNamespace:
    """A stand-in for transformers whose GGUF 'dequantize' appends a line to log and takes
    `seconds`; the model and tokenizer write named files (no transformers needed)."""

    def load_model(*a, **kw):
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(seconds)
        model = torch.nn.Linear(2, 2)
        model.config = SimpleNamespace(
            save_pretrained=lambda d: (Path(d) / "config.json").write_text("{}")
        )
        return model

    tok = SimpleNamespace(save_pretrained=lambda d: (Path(d) / "tokenizer.json").write_text("{}"))
    return SimpleNamespace(
        AutoModelForCausalLM=SimpleNamespace(from_pretrained=load_model),
        AutoTokenizer=SimpleNamespace(from_pretrained=lambda *a, **kw: tok),
    )


def dequantize(cache: Path, log: Path, seconds: float) -> None:
    model_mod.cache_dir = lambda: cache  # in this (forked) process only
    model_mod._dequantize_once(fake_tf(log, seconds), Path("/x/Tiny.Q4_1.gguf"), SHA)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_concurrent_runs_dequantize_once_and_do_not_race(tmp_path):
    log = tmp_path / "calls.log"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=dequantize, args=(tmp_path, log, 1.0)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]  # without the lock one fails on the rename
    assert len(log.read_text().split()) == 1  # dequantized once; the other waited and reused
    models = tmp_path / "models"
    dest = models / f"Tiny.Q4_1-{SHA[:12]}"
    assert sorted(p.name for p in dest.iterdir()) == ["config.json", "model.safetensors",
                                                      "tokenizer.json"]  # fmt: skip
    assert [p.name for p in models.iterdir() if p.name.endswith(".tmp")] == []


def test_stale_temps_of_this_entry_only_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(model_mod, "cache_dir", lambda: tmp_path)
    models = tmp_path / "models"
    name = f"Tiny.Q4_1-{SHA[:12]}"
    host = socket.gethostname()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = models / f".{name}.{host}-{dead_pid()}.0a1b2c3d.tmp"  # killed writer: removed
        alive = models / f".{name}.{host}-{live.pid}.0a1b2c3d.tmp"  # live writer: kept
        legacy = models / f"{name}.tmp"  # older version's name, untouched for 2 h: removed
        fresh = models / f".{name}.9f8e7d6c.tmp"  # writer-less, 1 minute old: kept
        remote = models / f".{name}.elsewhere-{dead_pid()}.0a1b2c3d.tmp"  # other host: kept
        other = models / f".Other.Q8_0-{SHA[:12]}.{host}-{dead_pid()}.0a1b2c3d.tmp"  # kept
        for d in (dead, alive, legacy, fresh, remote, other):
            d.mkdir(parents=True)
            (d / "model.safetensors").write_bytes(b"x" * 1000)
        old = time.time() - 7200
        os.utime(legacy, (old, old))
        minute = time.time() - 60
        os.utime(fresh, (minute, minute))
        model_mod._dequantize_once(fake_tf(tmp_path / "log"), Path("/x/Tiny.Q4_1.gguf"), SHA)
        left = {p.name for p in models.iterdir()}
        assert name in left and not dead.exists() and not legacy.exists()
        assert alive.exists() and fresh.exists() and remote.exists() and other.exists()
    finally:
        live.kill()
        live.wait()
    # the live writer has ended now: its folder is stale and goes on the next cleanup
    with atomic.lock_beside(models / name):
        assert atomic.remove_stale_temps(models / name) == [alive]


def test_a_cached_copy_is_reused_and_its_stale_temps_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(model_mod, "cache_dir", lambda: tmp_path)
    log = tmp_path / "calls.log"
    first = model_mod._dequantize_once(fake_tf(log), Path("/x/Tiny.Q4_1.gguf"), SHA)
    stale = first.parent / f".{first.name}.{socket.gethostname()}-{dead_pid()}.0a1b2c3d.tmp"
    stale.mkdir()
    assert model_mod._dequantize_once(fake_tf(log), Path("/x/Tiny.Q4_1.gguf"), SHA) == first
    assert len(log.read_text().split()) == 1 and not stale.exists()
    stale.mkdir()
    with atomic.lock_beside(first):  # held elsewhere: the copy is used, nothing is touched
        child = mp.get_context("fork").Process(target=dequantize, args=(tmp_path, log, 0.0))
        child.start()
        child.join(30)
    assert child.exitcode == 0 and stale.exists() and len(log.read_text().split()) == 1
