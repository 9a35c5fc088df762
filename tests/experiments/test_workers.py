"""Stacks trained in worker processes give what the single process gives."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from implicit_em import runs
from implicit_em.config import from_dict
from implicit_em.experiments.common import Settings, ensure_runs, load_data
from implicit_em.train import workers


def cfg(model_type: str, seed: int, lr: float = 1e-3, epochs: int = 2):
    return from_dict({
        "model": {"type": model_type, "input_dim": 64, "hidden_dim": 16, "k": 4},
        "data": {"dataset": "digits"},
        "training": {"lr": lr, "seed": seed, "epochs": epochs, "batch_size": 128},
    })  # fmt: skip


def test_plan_orders_stacks_by_cost():
    cfgs = [cfg("standard_sae", 1)] + [cfg("encoder", s) for s in (1, 2, 1)]
    cfgs.append(cfg("topk_sae", 5))
    # encoders 3 x 1.0 x 2 epochs = 6.0; TopK 2.9 x 2 = 5.8; standard SAE 1.9 x 2 = 3.8
    assert workers.plan_stacks(cfgs) == [[1, 2, 3], [4], [0]]


def test_parallel_training_equals_one_process(tmp_path: Path, monkeypatch):
    cfgs = [cfg("encoder", s, lr) for s, lr in ((1, 1e-3), (2, 2e-3), (3, 1e-3))]
    cfgs.append(cfg("standard_sae", 4))
    one = Settings(base={}, out=tmp_path / "one", progress=False)
    two = Settings(base={}, out=tmp_path / "two", progress=False, jobs=2, threads=2)
    assert not one.parallel and two.parallel and two.worker_threads == 1
    data = load_data(cfgs[0])
    runs_one = ensure_runs(one, cfgs, data)
    calls = []
    train_stacks = workers.train_stacks
    monkeypatch.setattr(workers, "train_stacks", lambda *a: calls.append(a) or train_stacks(*a))
    runs_two = ensure_runs(two, cfgs, data)
    assert len(calls) == 1  # two stacks: the worker processes trained them
    for a, b in zip(runs_one, runs_two, strict=True):
        assert runs.is_complete(b.run_dir)
        sa, sb = a.model.state_dict(), b.model.state_dict()
        assert sa.keys() == sb.keys()
        for name in sa:
            torch.testing.assert_close(sb[name], sa[name], rtol=1e-4, atol=1e-5, msg=name)
        assert [r["epoch"] for r in b.history] == [1, 2]
    lone = [cfg("encoder", 7)]  # one stack: trained here, with all the threads
    ensure_runs(two, lone, data)
    assert len(calls) == 1


def test_a_worker_error_reaches_the_caller(tmp_path: Path):
    bad = cfg("encoder", 1).to_dict()
    bad["model"]["input_dim"] = 50  # the digits have 64 pixels: the first step fails
    with pytest.raises(RuntimeError, match="50"):
        workers.train_stacks([from_dict(bad), cfg("standard_sae", 1)],
                             [tmp_path / "a", tmp_path / "b"], jobs=2, threads=2, eval_every=1)  # fmt: skip
    assert not runs.is_complete(tmp_path / "a")


def test_a_signal_that_reaches_a_worker_first_is_reported_as_that_signal(tmp_path: Path):
    """Ctrl-C that ends a worker before it reaches this process breaks the pool; the caller
    gets KeyboardInterrupt (the CLI's one line, exit 130), not BrokenProcessPool, and no
    temporary file is left behind. The SIGINT goes to the workers only, so the parent's
    own SIGINT never races it."""
    import multiprocessing
    import threading
    import time

    cfgs = [cfg("encoder", 1, epochs=5000), cfg("standard_sae", 1, epochs=5000)]
    dirs = [tmp_path / "a", tmp_path / "b"]
    caught: list[BaseException] = []

    def train() -> None:
        try:
            workers.train_stacks(cfgs, dirs, jobs=2, threads=2, eval_every=1,
                                 checkpoint_every=1)  # fmt: skip
        except BaseException as e:  # noqa: BLE001  (kept for the assertions below)
            caught.append(e)

    thread = threading.Thread(target=train)
    thread.start()
    deadline = time.monotonic() + 120
    while not list(tmp_path.rglob("*.pt")):  # a worker is training (a checkpoint is written)
        assert thread.is_alive() and time.monotonic() < deadline, caught
        time.sleep(0.05)
    children = multiprocessing.active_children()
    for child in children:
        os.kill(child.pid, signal.SIGINT)
    thread.join(60)
    alive = thread.is_alive()
    codes = [(child.pid, child.exitcode) for child in children]
    for child in children:  # a failure here leaves nothing training behind
        child.kill()
    assert not alive, f"the pool still waits; workers (pid, exit code): {codes}"
    assert len(caught) == 1 and isinstance(caught[0], KeyboardInterrupt), caught
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".*.tmp"))
    assert not runs.is_complete(dirs[0]) and not runs.is_complete(dirs[1])


def test_workers_signal_is_read_from_their_exit_codes():
    class P:
        def __init__(self, exitcode):
            self.exitcode = exitcode

    sig = workers._signal_of
    assert sig([P(130), P(-15)]) == sig([P(-2)]) == signal.SIGINT  # -15: the pool's terminate
    assert sig([P(-15), P(143)]) == signal.SIGTERM
    assert sig([P(1), P(-15), P(None)]) is None


def test_parallel_is_cpu_only():
    assert not Settings(base={}, out=Path("x"), jobs=2, threads=4, device="cuda").parallel
    assert not Settings(base={}, out=Path("x"), jobs=2, threads=4, stacked=False).parallel


def test_runs_started_in_the_background_are_waited_for(tmp_path: Path, monkeypatch):
    """`start_runs` (its background thread, run here on CPU) then `ensure_runs`: the same
    models as training them in `ensure_runs`, reported as trained now, nothing left pending."""
    from implicit_em.experiments import common
    from implicit_em.train import stacked

    monkeypatch.setattr(common, "train_many_in_background",
                        lambda cfgs, x, xe, **kw: stacked._train_in_thread(cfgs, x, xe, **kw))  # fmt: skip
    cfgs = [cfg("encoder", 1), cfg("encoder", 2, 2e-3), cfg("standard_sae", 3)]
    data = load_data(cfgs[0])
    ref = ensure_runs(Settings(base={}, out=tmp_path / "ref", progress=False), cfgs, data)
    bg = Settings(base={}, out=tmp_path / "bg", progress=False)
    assert common.start_runs(bg, cfgs, data)
    assert len(common.PENDING) == 3
    start = len(common.RUN_LOG)
    got = ensure_runs(bg, cfgs, data)
    assert not common.PENDING
    assert common.describe_runs(common.RUN_LOG[start:]) == "3 trained now"
    for a, b in zip(ref, got, strict=True):
        for name, p in a.model.state_dict().items():
            assert torch.equal(p, b.model.state_dict()[name]), name
    assert not common.start_runs(bg, cfgs, data)  # all complete: nothing to start


def test_work_queued_while_waiting_runs_before_a_wait(tmp_path: Path):
    """`WHILE_WAITING`: `ensure_runs` does the queued work before it blocks on a run still
    training in the background, and only then (a finished background run: no work)."""
    from concurrent.futures import Future

    from implicit_em.experiments import common

    c = cfg("encoder", 1)
    data = load_data(c)
    settings = Settings(base={}, out=tmp_path, progress=False)
    ensure_runs(settings, [c], data)
    d = tmp_path / "runs" / common.run_id(c)
    calls = []
    try:
        done = Future()
        done.set_result(None)
        common.PENDING[d] = done
        common.WHILE_WAITING.append(lambda: calls.append("early"))
        ensure_runs(settings, [c], data)
        assert calls == [] and common.WHILE_WAITING and not common.PENDING
        pending = Future()
        common.PENDING[d] = pending
        common.WHILE_WAITING.append(lambda: calls.append("second") or pending.set_result(None))
        got = ensure_runs(settings, [c], data)
        assert calls == ["early", "second"] and not common.WHILE_WAITING and not common.PENDING
        assert runs.is_complete(got[0].run_dir)
    finally:
        common.WHILE_WAITING.clear()
        common.PENDING.clear()


def test_run_ids_do_not_move_when_a_config_field_is_added():
    """A field added later (common.ADDED_LATER) at its default leaves a config's run id as
    the digest of the config without it (a run store made before keeps its ids); set, it
    gives another id."""
    import hashlib
    import json

    from implicit_em.experiments import common

    c = cfg("encoder", 1)
    d = c.to_dict()
    d["training"].pop("device")
    for section, key in common.ADDED_LATER:
        del d[section][key]
    before = hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
    assert common.run_id(c) == f"encoder-{before}"
    unit = c.to_dict()
    unit["model"]["unit_norm_rows"] = True
    assert common.run_id(from_dict(unit)) != common.run_id(c)


def test_a_stop_swallowed_in_a_callback_is_signalled_again(monkeypatch):
    """workers._unraisable: a _Stop that Python could not raise (it was raised inside a
    callback) comes back as the same signal a moment later, with the stack marked training
    (so that it unwinds, not exits); other unraisable exceptions reach Python's own hook."""
    import threading
    import time
    from types import SimpleNamespace

    got: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: got.append(signum))
    try:
        monkeypatch.setattr(workers, "_training", False)
        workers._unraisable(SimpleNamespace(exc_value=workers._Stop(signal.SIGUSR1)))
        assert workers._training is True
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got == [signal.SIGUSR1] and threading.current_thread() is threading.main_thread()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    seen = []
    monkeypatch.setattr(workers.sys, "__unraisablehook__", seen.append)
    other = SimpleNamespace(exc_value=ValueError("x"))
    workers._unraisable(other)
    assert seen == [other]


SWALLOWS_ITS_STOP = """
import sys, time
from implicit_em.train import workers
workers.STOP_SECONDS = 0.5
workers._install_stop_handlers()
workers._training = True
while True:
    try:  # the signal comes once this line is read: it lands inside the try
        print("training", flush=True)
        while True:
            time.sleep(0.01)
    except BaseException:  # swallowed without a trace, as C code can
        pass
"""


def test_a_worker_whose_stop_is_swallowed_still_ends(tmp_path: Path):
    """workers._watch: a worker whose `_Stop` some code swallows without calling the
    unraisable hook (training would go on, the pool would wait for ever: a hang seen once in
    CI) ends `STOP_SECONDS` after its signal, with the signal's exit code (the parent reads
    it as that signal) and every thread's stack on stderr."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", SWALLOWS_ITS_STOP], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout.readline() == "training\n"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "still running 0.5 s after signal 2" in err and "most recent call first" in err, err
