"""Stacks and probes in worker processes give what the single process gives."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from implicit_em import runs
from implicit_em.config import from_dict
from implicit_em.experiments import workers
from implicit_em.experiments.common import Settings, ensure_runs, load_data, probe_accuracies


def cfg(model_type: str, seed: int, lr: float = 1e-3, epochs: int = 2):
    return from_dict({
        "model": {"type": model_type, "input_dim": 64, "hidden_dim": 16, "k": 4},
        "data": {"dataset": "digits"},
        "training": {"lr": lr, "seed": seed, "epochs": epochs, "batch_size": 128},
    })  # fmt: skip


def test_plan_splits_stacks_until_every_worker_has_one():
    cfgs = [cfg("encoder", s) for s in (1, 2, 1, 3, 2)] + [cfg("standard_sae", 1)]
    plan = workers.plan_stacks(cfgs, 2)
    assert sorted(i for g in plan for i in g) == list(range(6))  # every config, once
    assert plan == [[0, 1, 2, 3, 4], [5]]  # two stacks already: the costlier first
    plan = workers.plan_stacks(cfgs[:5], 2)  # one stack, two workers: split by seed
    assert len(plan) == 2 and sorted(len(g) for g in plan) == [2, 3]
    seeds = [{cfgs[i].training.seed for i in g} for g in plan]
    assert seeds[0].isdisjoint(seeds[1])  # models of one seed share one matmul: kept together
    same_seed = [cfg("encoder", 1, lr) for lr in (1e-3, 2e-3, 3e-3)]
    assert sorted(map(len, workers.plan_stacks(same_seed, 2))) == [1, 2]
    assert workers.plan_stacks(cfgs[:1], 4) == [[0]]  # one model cannot be split


def test_parallel_training_and_probes_equal_one_process(tmp_path: Path):
    cfgs = [cfg("encoder", s, lr) for s, lr in ((1, 1e-3), (2, 2e-3), (3, 1e-3))]
    cfgs.append(cfg("standard_sae", 4))
    one = Settings(base={}, out=tmp_path / "one", progress=False)
    two = Settings(base={}, out=tmp_path / "two", progress=False, jobs=2, threads=2)
    assert not one.parallel and two.parallel and two.worker_threads == 1
    data = load_data(cfgs[0])
    runs_one = ensure_runs(one, cfgs, data)
    runs_two = ensure_runs(two, cfgs, data)
    for a, b in zip(runs_one, runs_two, strict=True):
        assert runs.is_complete(b.run_dir)
        sa, sb = a.model.state_dict(), b.model.state_dict()
        assert sa.keys() == sb.keys()
        for name in sa:
            torch.testing.assert_close(sb[name], sa[name], rtol=1e-4, atol=1e-5, msg=name)
        assert [r["epoch"] for r in b.history] == [1, 2]
    acc_one = probe_accuracies(one, runs_one, data)
    acc_two = probe_accuracies(two, runs_two, data)
    assert acc_two == pytest.approx(acc_one, abs=2 / len(data.y_test))
    assert all(0.5 < a <= 1 for a in acc_two)
    assert all((r.run_dir / "probe.json").is_file() for r in runs_two)  # cached like the rest


def test_a_worker_error_reaches_the_caller(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        workers.probe_runs([tmp_path / "missing"], jobs=2, threads=2)


def test_parallel_is_cpu_only():
    s = Settings(base={}, out=Path("x"), jobs=2, threads=4, device="cuda")
    assert not s.parallel
