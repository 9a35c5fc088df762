"""Run directories a researcher can trust: extend a finished run bitwise, interrupts end with
one line and leave nothing half-written (issue 15)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from implicit_em import runs
from implicit_em.cli import main

SMALL = ["--set", "data.dataset=digits", "--set", "model.hidden_dim=16", "--set", "training.seed=3",
         "--set", "data.train_subset=400", "--set", "data.test_subset=100", "--quiet"]  # fmt: skip


def train(out: Path, epochs: int, *extra: str) -> int:
    return main(["train", "--out", str(out), *SMALL, "--set", f"training.epochs={epochs}", *extra])


def losses(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in runs.read_history(run)]


def test_extending_a_finished_run_equals_training_all_epochs_at_once(tmp_path):
    assert train(tmp_path / "once", 5) == 0
    assert train(tmp_path / "ext", 2) == 0
    assert runs.is_complete(tmp_path / "ext")
    assert train(tmp_path / "ext", 5, "--resume") == 0
    a, b = load_file(tmp_path / "once" / runs.MODEL), load_file(tmp_path / "ext" / runs.MODEL)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bitwise
    assert losses(tmp_path / "once") == losses(tmp_path / "ext")
    assert json.loads((tmp_path / "ext" / runs.CONFIG).read_text())["training"]["epochs"] == 5
    assert runs.verify(tmp_path / "ext", runs.MODEL) is None  # manifest rewritten at the new end
    assert json.loads((tmp_path / "ext" / runs.METRICS).read_text())["epochs_completed"] == 5


def test_manifest_lists_every_file_and_twin_recovery_restores_the_weights(tmp_path):
    run = tmp_path / "r"
    assert train(run, 1) == 0
    listed = json.loads((run / runs.MANIFEST).read_text())["sha256"]
    assert set(listed) == {runs.CONFIG, runs.MODEL, runs.HISTORY, runs.METRICS, runs.CHECKPOINT}
    good = (run / runs.MODEL).read_bytes()
    (run / runs.MODEL).write_bytes(good[:100])
    assert runs.verify(run, runs.MODEL) == "sha256 differs from manifest.json"
    model, _ = runs.load_run(run)
    assert (run / runs.MODEL).read_bytes() == good  # repaired from checkpoint.pt, same bytes
    assert runs.verify(run, runs.MODEL) is None


@pytest.mark.parametrize("sig, status, word", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated")])  # fmt: skip
def test_a_signal_during_training_ends_with_one_line_and_resume_finishes_it(
    tmp_path, sig, status, word, sigint_acts
):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # far more epochs than can finish before the signal, even on a loaded machine (400 once
    # finished first there); a signal that is not acted on fails the communicate timeout
    epochs = 100_000
    cmd = [sys.executable, "-m", "implicit_em.cli", "train", "--out", str(run), *SMALL,
           "--set", f"training.epochs={epochs}", "--threads", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not (run / runs.CHECKPOINT).is_file():  # at least one epoch written
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert err.strip().count("\n") == 0 and f"implicit-em: {word}" in err and "Traceback" not in err
    names = {p.name for p in run.iterdir()}
    assert not [n for n in names if n.endswith(".tmp")]  # nothing half-written
    assert runs.METRICS not in names and runs.MANIFEST not in names  # not claimed complete
    done = torch.load(run / runs.CHECKPOINT, weights_only=False)["epoch"]
    assert 1 <= done < epochs and done <= len(runs.read_history(run)) <= done + 1  # in order
    assert train(run, done + 1, "--resume", "--threads", "1") == 0
    assert len(runs.read_history(run)) == done + 1 and runs.is_complete(run)
