"""Stack checkpoints: an interrupted stack, run again, ends bitwise where an uninterrupted one ends.

The interruption is drawn at random in each test run (its step or moment is in the failure
message): a KeyboardInterrupt raised at a random training step in this process, and a real
SIGINT sent to a process group whose worker processes train two stacks.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from stack_stops import stop_at_step

from implicit_em import runs
from implicit_em.config import from_dict
from implicit_em.data import load_digits
from implicit_em.train.stacked import StackedTrainer, stack_checkpoint, train_many

EPOCHS, EVERY = 6, 2


@pytest.fixture(scope="module")
def x_digits() -> torch.Tensor:
    return load_digits()[0]  # (1797, 64): 15 steps per epoch at batch 128


def cfg(model_type: str, seed: int, lr: float = 1e-3, **loss):
    if model_type == "topk_sae":
        loss = {"dead_steps": 3, "aux_coef": 0.5, **loss}  # AuxK state carries across epochs
    return from_dict({
        "model": {"type": model_type, "input_dim": 64, "hidden_dim": 16, "k": 4},
        "loss": loss,
        "data": {"dataset": "digits"},
        "training": {"lr": lr, "seed": seed, "epochs": EPOCHS, "batch_size": 128},
    })  # fmt: skip


STACKS = {
    "encoder": [cfg("encoder", 1), cfg("encoder", 2, 2e-3), cfg("encoder", 1, lambda_tc=0.5)],
    "encoder_sketched": [cfg("encoder", 1, tc_probes=4), cfg("encoder", 2, tc_probes=4)],  # RNG
    "standard_sae": [cfg("standard_sae", 1), cfg("standard_sae", 2, 3e-3)],
    "topk_sae": [cfg("topk_sae", 1), cfg("topk_sae", 2)],
}


def strip(hist: list[dict]) -> list[dict]:
    return [{k: v for k, v in rec.items() if k != "seconds"} for rec in hist]  # wall clock


def assert_bitwise(dirs_a: list[Path], dirs_b: list[Path], msg: str) -> None:
    for a, b in zip(dirs_a, dirs_b, strict=True):
        wa, wb = runs.load_weights(a), runs.load_weights(b)
        assert wa.keys() == wb.keys()
        for name in wa:
            assert torch.equal(wa[name], wb[name]), f"{name} of {b.name} differs ({msg})"
        assert strip(runs.read_history(a)) == strip(runs.read_history(b)), msg
        assert len(runs.read_history(b)) == EPOCHS


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_interrupted_stack_continues_bitwise(tmp_path, x_digits, monkeypatch, stack):
    cfgs = STACKS[stack]
    steps_per_epoch = 15
    stop_at = random.randrange(1, EPOCHS * steps_per_epoch)  # a step of epoch 0 .. EPOCHS - 1
    msg = f"interrupted before step {stop_at}"
    whole = [tmp_path / "whole" / f"r{i}" for i in range(len(cfgs))]
    train_many(cfgs, x_digits, x_digits[:500], run_dirs=whole, progress=False, eval_every=2,
               checkpoint_every=EVERY)  # fmt: skip

    dirs = [tmp_path / "cut" / f"r{i}" for i in range(len(cfgs))]
    with stop_at_step(monkeypatch, stop_at):
        train_many(cfgs, x_digits, x_digits[:500], run_dirs=dirs, progress=False, eval_every=2,
                   checkpoint_every=EVERY)  # fmt: skip
    assert not any(runs.is_complete(d) for d in dirs)
    ckpt = stack_checkpoint(dirs)
    saved_epoch = (stop_at - 1) // steps_per_epoch // EVERY * EVERY  # epochs finished, rounded
    if saved_epoch:  # at most EVERY epochs are lost
        assert torch.load(ckpt, weights_only=False)["epoch"] == saved_epoch, msg
    else:
        assert not ckpt.exists(), msg
    assert not list(ckpt.parent.glob(".*.tmp")), "a temporary file was left behind"

    step, step_count = StackedTrainer.step, [0]
    monkeypatch.setattr(StackedTrainer, "step",
                        lambda self, xb: step_count.__setitem__(0, step_count[0] + 1) or step(self, xb))  # fmt: skip
    train_many(cfgs, x_digits, x_digits[:500], run_dirs=dirs, progress=False, eval_every=2,
               checkpoint_every=EVERY)  # fmt: skip
    assert step_count[0] == (EPOCHS - saved_epoch) * steps_per_epoch, msg  # continued, not redone
    assert not ckpt.exists() and not ckpt.parent.exists()  # spent once the runs are saved
    assert_bitwise(whole, dirs, msg)


def test_a_checkpoint_of_other_configs_or_a_damaged_one_is_not_used(tmp_path, x_digits):
    cfgs = STACKS["encoder"][:2]
    trainer = StackedTrainer(cfgs)
    ckpt = tmp_path / "ckpt.pt"
    trainer.fit(x_digits, progress=False, checkpoint=ckpt, checkpoint_every=1)  # leaves epoch 5
    assert torch.load(ckpt, weights_only=False)["epoch"] == EPOCHS - 1
    other = [cfg("encoder", 1, 3e-3), cfg("encoder", 2, 2e-3)]  # another learning rate
    hist = StackedTrainer(other).fit(x_digits, progress=False, checkpoint=ckpt, checkpoint_every=0)
    assert [r["epoch"] for r in hist[0]] == list(range(1, EPOCHS + 1))  # from epoch 0
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # truncated
    hist = StackedTrainer(cfgs).fit(x_digits, progress=False, checkpoint=ckpt, checkpoint_every=0)
    assert [r["epoch"] for r in hist[0]] == list(range(1, EPOCHS + 1))


SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from implicit_em.config import from_dict
    from implicit_em.experiments.common import Settings, ensure_runs, load_data

    def cfg(t, seed):
        return from_dict({"model": {"type": t, "input_dim": 64, "hidden_dim": 16, "k": 4},
                          "data": {"dataset": "digits"},
                          "training": {"seed": seed, "epochs": 80, "batch_size": 128}})

    if __name__ == "__main__":  # the workers are spawned: they import this file
        cfgs = [cfg("encoder", 1), cfg("encoder", 2), cfg("standard_sae", 1),
                cfg("standard_sae", 2)]
        s = Settings(base={}, out=Path(sys.argv[1]), progress=False, jobs=2, threads=2,
                     eval_every=4, checkpoint_every=3)
        assert s.parallel
        try:
            ensure_runs(s, cfgs, load_data(cfgs[0]))
        except KeyboardInterrupt:
            sys.exit(130)  # as the CLI: no traceback
""")


@pytest.mark.slow
def test_sigint_to_worker_processes_then_rerun_is_bitwise(tmp_path, sigint_acts):
    """Ctrl-C (SIGINT to the whole process group) while two worker processes train a stack
    each, at a random moment after the first checkpoint; the same command again finishes."""
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, str(script)]
    subprocess.run([*run, str(tmp_path / "whole")], check=True, env=env, timeout=600)

    out = tmp_path / "cut"
    proc = subprocess.Popen([*run, str(out)], env=env, start_new_session=True,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while not list((out / "runs" / ".stacks").glob("stack-*.pt")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no stack checkpoint appeared"
        time.sleep(0.05)
    # an epoch takes about 0.04 s; an idle machine finishes every stack within about 1 s of
    # the first checkpoint (a run with a 0.99 s delay was not interrupted), so stay below that
    delay = random.uniform(0.0, 0.5)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    msg = f"SIGINT {delay:.2f} s after the first checkpoint"
    finished = sum(runs.is_complete(d) for d in (out / "runs").iterdir() if d.name != ".stacks")
    assert proc.returncode == 130 and finished < 4, f"{msg}: not interrupted ({err[-500:]})"
    assert "Traceback" not in err, err[-2000:]  # the workers stop without one
    assert not list(out.rglob(".*.tmp")), f"a temporary file was left behind ({msg})"
    subprocess.run([*run, str(out)], check=True, env=env, timeout=600)
    whole = sorted(d for d in (tmp_path / "whole" / "runs").iterdir())
    cut = sorted(d for d in (out / "runs").iterdir())
    assert [d.name for d in whole] == [d.name for d in cut]
    for a, b in zip(whole, cut, strict=True):
        wa, wb = runs.load_weights(a), runs.load_weights(b)
        for name in wa:
            assert torch.equal(wa[name], wb[name]), f"{name} of {b.name} differs ({msg})"
        assert strip(runs.read_history(a)) == strip(runs.read_history(b)), msg
