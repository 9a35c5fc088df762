"""Distribute-modules training (issue 20): each model of a grid trained on one of 2 gloo ranks
from the shared stream equals the same model trained alone by `distributed.train_steps`."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from gloo_ranks import run_on_ranks

from implicit_em import runs
from implicit_em.config import LossConfig, ModelConfig, RunConfig, TrainConfig
from implicit_em.train.distributed import train_steps
from implicit_em.train.modules import META, check_run_dirs, grid, owned, train_modules

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
    return {k: v["history"] for k, v in res.items() if k not in META}


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


def test_resume_keeps_finished_runs_and_trains_the_rest(tmp_path):
    """--resume: finished, verified runs stay byte for byte; a run without its metrics.json
    (unfinished) and a damaged one are trained again from the start and equal a fresh run;
    a finished run under another config is refused; resume and overwrite exclude each other."""
    grid_ = models()[:3]
    kw = dict(batch_size=BATCH, steps=STEPS, data_seed=9, log_every=LOG, out=tmp_path)
    train_modules(grid_, sources(), **kw)
    first = {m.name: {p.name: p.read_bytes() for p in (tmp_path / m.name).iterdir()}
             for m in grid_}  # fmt: skip
    (tmp_path / grid_[1].name / runs.METRICS).unlink()  # unfinished
    weights = tmp_path / grid_[2].name / runs.MODEL
    weights.write_bytes(weights.read_bytes()[:-8] + b"damaged!")  # fails its manifest
    res = train_modules(grid_, sources(), resume=True, **kw)
    assert res["kept"] == [grid_[0].name]
    assert sorted(k for k in res if k not in META) == sorted(m.name for m in grid_[1:])
    for m in grid_:  # the kept run untouched; the others trained again to the same weights
        now = {p.name: p.read_bytes() for p in (tmp_path / m.name).iterdir()}
        if m is grid_[0]:
            assert now == first[m.name], m.name
            continue
        for name in (runs.MODEL, runs.CONFIG, runs.HISTORY):  # checkpoint.pt: a zip with ids
            assert now[name] == first[m.name][name], (m.name, name)
        metrics = [json.loads(f[runs.METRICS]) for f in (now, first[m.name])]
        assert [{k: v for k, v in d.items() if k != "tokens_per_s"} for d in metrics] == [
            {k: v for k, v in metrics[1].items() if k != "tokens_per_s"}] * 2
    assert train_modules(grid_, sources(), resume=True, **kw)["kept"] == [m.name for m in grid_]
    other = [replace(m, cfg=replace(m.cfg, training=replace(m.cfg.training, lr=0.5)))
             for m in grid_]  # fmt: skip
    with pytest.raises(ValueError, match="config differs"):
        train_modules(other, sources(), resume=True, **kw)
    with pytest.raises(ValueError, match="pass one"):
        train_modules(grid_, sources(), resume=True, overwrite=True, **kw)
