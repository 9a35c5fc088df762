"""Distribute-modules training (issue 20): each model of a grid trained on one of 2 gloo ranks
from the shared stream equals the same model trained alone by `distributed.train_steps`."""

from __future__ import annotations

import json

import pytest
import torch
from gloo_ranks import run_on_ranks

from implicit_em import runs
from implicit_em.config import LossConfig, ModelConfig, RunConfig, TrainConfig
from implicit_em.train.distributed import train_steps
from implicit_em.train.modules import check_run_dirs, grid, owned, train_modules

WORLD, N, BATCH, STEPS, LOG = 2, 40, 16, 7, 3  # 7 steps: the stream wraps after 2 batches
DIMS = [6, 4]  # two sources (layers) of the same 40 tokens
BASE = RunConfig(model=ModelConfig(k=3), loss=LossConfig(tc_probes=3, dead_steps=2),
                 training=TrainConfig(lr=1e-2, batch_size=BATCH))  # fmt: skip


def models():
    return grid(["encoder", "topk_sae", "standard_sae"], [12], [1, 2], DIMS, BASE)


def sources() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    return [torch.randn(N, d, generator=gen) for d in DIMS]


def _worker(rank: int, out_dir: str) -> dict:
    res = train_modules(models(), sources(), batch_size=BATCH, steps=STEPS, data_seed=9,
                        log_every=LOG, out=out_dir)  # fmt: skip
    return {k: v["history"] for k, v in res.items() if k != "rank_seconds"}


@pytest.fixture(scope="module")
def distributed_grid(tmp_path_factory) -> tuple:
    out_dir = tmp_path_factory.mktemp("grid")
    return out_dir, run_on_ranks(_worker, WORLD, str(out_dir))


def alone(m) -> tuple[torch.nn.Module, list[dict]]:
    """The same model trained alone, in this process, by the data-parallel trainer (R = 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = runs.build_model(m.cfg)
        res = train_steps(model, sources()[m.source], m.cfg.loss, global_batch=BATCH,
                          steps=STEPS, lr=m.cfg.training.lr, seed=9,
                          probe_seed=m.cfg.training.seed, log_every=LOG)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return model, res["history"]


def test_models_are_split_over_ranks(distributed_grid):
    _, hist = distributed_grid
    names = [m.name for m in models()]
    assert len(names) == 12 and len(set(names)) == 12
    for rank in range(WORLD):
        assert sorted(hist[rank]) == sorted(names[i] for i in owned(12, rank, WORLD))


@pytest.mark.parametrize("i", range(12))
def test_each_model_equals_the_model_trained_alone(distributed_grid, i):
    out_dir, hist = distributed_grid
    m = models()[i]
    ref_model, ref_hist = alone(m)
    model, cfg = runs.load_run(out_dir / m.name)  # verified against its manifest
    assert cfg == m.cfg
    for name, p in ref_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], p), (m.name, name)  # bitwise
    assert hist[i % WORLD][m.name] == ref_hist
    assert runs.read_history(out_dir / m.name) == ref_hist
    metrics = json.loads((out_dir / m.name / runs.METRICS).read_text())
    assert metrics["steps_completed"] == STEPS and metrics["total"] == ref_hist[-1]["total"]
    assert runs.load_checkpoint(out_dir / m.name)["step"] == STEPS


def test_existing_run_directories_are_refused(distributed_grid):
    out_dir, _ = distributed_grid
    with pytest.raises(runs.RunExistsError, match="--overwrite"):
        check_run_dirs(models(), out_dir, overwrite=False)
    check_run_dirs(models(), out_dir, overwrite=True)


def test_sources_must_be_aligned():
    with pytest.raises(ValueError, match="rows aligned"):
        train_modules(models(), [torch.zeros(N, 6), torch.zeros(N - 1, 4)], batch_size=BATCH,
                      steps=1)  # fmt: skip


@pytest.mark.parametrize("log_every", [0, LOG, 1])
def test_a_run_always_ends_with_its_final_terms(tmp_path, log_every):
    """Without --log-every (or when the last step is not a multiple of it) the last step's
    terms are still recorded, once: history ends at step STEPS, and metrics.json holds the
    loss terms (it held only the step counts before)."""
    m = models()[0]  # the encoder: lse, var, tc, wr
    res = train_modules([m], sources(), batch_size=BATCH, steps=STEPS, data_seed=9,
                        log_every=log_every, out=tmp_path)  # fmt: skip
    hist = res[m.name]["history"]
    logged = STEPS // log_every if log_every else 0
    assert [h["step"] for h in hist][-1] == STEPS
    assert len(hist) == logged + (0 if log_every and STEPS % log_every == 0 else 1)
    metrics = json.loads((tmp_path / m.name / runs.METRICS).read_text())
    assert {"lse", "var", "tc", "total"} <= set(metrics) and metrics["steps_completed"] == STEPS
    _, ref = alone(m)  # the data-parallel trainer (LOG) ends with the same last record
    assert ref[-1]["step"] == STEPS and ref[-1] == hist[-1]
