"""Stack checkpoints that no run can continue are removed (`train.stacked.
remove_spent_checkpoints`): one whose runs another command finished goes when that command's
stack is saved; one whose runs are unfinished, and one of an older version, stay."""

from __future__ import annotations

import json
import os

import pytest
import torch
from stack_stops import stop_at_step

from implicit_em import runs
from implicit_em.config import from_dict
from implicit_em.data import load_digits
from implicit_em.train.stacked import (
    remove_spent_checkpoints,
    stack_checkpoint,
    train_many,
)

EPOCHS, EVERY, STEPS = 4, 2, 15  # 1797 digits at batch 128: 15 steps per epoch


def cfg(seed: int):
    return from_dict({"model": {"type": "encoder", "input_dim": 64, "hidden_dim": 16},
                      "data": {"dataset": "digits"},
                      "training": {"seed": seed, "epochs": EPOCHS, "batch_size": 128}})  # fmt: skip


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return load_digits()[0]


def interrupted(cfgs, dirs, x, monkeypatch, at_step: int) -> None:
    with stop_at_step(monkeypatch, at_step):
        train_many(cfgs, x, run_dirs=dirs, progress=False, checkpoint_every=EVERY)


def test_a_checkpoint_whose_runs_another_command_finished_is_removed(tmp_path, x, monkeypatch):
    store = tmp_path / "runs"
    cfgs = [cfg(s) for s in (1, 2, 3)]
    dirs = [store / f"r{s}" for s in (1, 2, 3)]
    interrupted(cfgs, dirs, x, monkeypatch, at_step=EVERY * STEPS + 3)  # after the epoch-2 save
    big = stack_checkpoint(dirs)
    assert torch.load(big, weights_only=False)["epoch"] == EVERY
    assert json.loads(big.with_suffix(".json").read_text()) == {"run_dirs": ["r1", "r2", "r3"]}

    other = [store / "o1"]  # another stack, unfinished, in the same store: must stay
    interrupted([cfg(9)], other, x, monkeypatch, at_step=EVERY * STEPS + 3)
    legacy = store / ".stacks" / "stack-0123456789abcdef.pt"  # an older version's: no record
    legacy.write_bytes(b"old")

    # another command asks for two of the three runs: they train as a stack of their own
    train_many(cfgs[:2], x, run_dirs=dirs[:2], progress=False, checkpoint_every=EVERY)
    assert all(runs.is_complete(d) for d in dirs[:2]) and not runs.is_complete(dirs[2])
    left = sorted(p.name for p in (store / ".stacks").iterdir())
    assert big.name not in left and big.with_suffix(".json").name not in left  # spent: removed
    assert stack_checkpoint(other).name in left and legacy.name in left  # kept

    # the remaining run trains (from scratch: a stack of its own) and leaves only what stays
    train_many(cfgs[2:], x, run_dirs=dirs[2:], progress=False, checkpoint_every=EVERY)
    assert remove_spent_checkpoints(store / ".stacks") == []
    assert sorted(p.name for p in (store / ".stacks").iterdir()) == sorted(
        [stack_checkpoint(other).name, stack_checkpoint(other).with_suffix(".json").name,
         legacy.name])  # fmt: skip


def test_a_checkpoint_stays_while_its_runs_are_unfinished_or_older(tmp_path, x, monkeypatch):
    store = tmp_path / "runs"
    dirs = [store / "r1", store / "r2"]
    interrupted([cfg(1), cfg(2)], dirs, x, monkeypatch, at_step=EVERY * STEPS + 3)
    ckpt = stack_checkpoint(dirs)
    assert remove_spent_checkpoints(store / ".stacks") == []  # nothing finished
    runs.atomic_write_json(dirs[0] / runs.METRICS, {})  # r1 finished ...
    t = ckpt.stat().st_mtime
    os.utime(dirs[0] / runs.METRICS, (t - 60, t - 60))  # ... a minute before the checkpoint
    assert remove_spent_checkpoints(store / ".stacks") == []
    os.utime(dirs[0] / runs.METRICS, (t + 1, t + 1))  # ... after it: the checkpoint is spent
    assert remove_spent_checkpoints(store / ".stacks") == [ckpt] and not ckpt.exists()
