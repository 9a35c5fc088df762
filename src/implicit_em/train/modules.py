"""Distribute-modules training: a grid of models, each rank training its own subset, from ONE
activation stream (sparsify's --distribute_modules), launched with `torchrun`.

Legend: R ranks, M models, B batch (every model sees the whole batch), D input dim of a
source, K components, N rows of the stream.

Every rank holds the stream (one tensor per source: several layers' activations of the same
tokens, rows aligned) and draws the same batch each step from a seeded permutation
(`distributed.BatchStream`), so the data are read once per step per rank and no collective
runs inside the step: a broadcast from rank 0 would make every rank wait on rank 0 and on
each other each step, while reading the same rows costs one index into a tensor already on
the device. Ranks meet only before the loop (the run directories are checked on every rank,
so all refuse or all start) and after it (the summary). Model i trains on rank i mod R; within
a rank the models step one after another on the same batch, each with its own optimizer,
family state and probe stream (`distributed.ModelStepper` with parallel=False), so each model
is the model `distributed.train_steps` trains alone on the same stream (the test checks
bitwise equality on the CPU). Each model's run directory (config.json, model.safetensors,
history.jsonl, checkpoint.pt, metrics.json, manifest.json, each written atomically: `runs`)
is written by the rank that trained it.

    torchrun --nproc-per-node 2 -m implicit_em.train.modules --random-tokens 1000000 \\
        --types encoder topk_sae --hidden-dims 16384 --seeds 1 --out runs/grid --amp --compile
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from implicit_em import runs
from implicit_em.config import LossConfig, ModelConfig, RunConfig, TrainConfig
from implicit_em.train.distributed import (
    BatchStream,
    ModelStepper,
    init_device,
    load_stream,
    record_last,
    world,
)
from implicit_em.train.options import ModulesOptions, StepOptions  # noqa: F401  (their old home)


@dataclass(frozen=True)
class GridModel:
    """One model of the grid: its name (the run directory's), config and source index."""

    name: str
    cfg: RunConfig
    source: int = 0


def grid(
    types: list[str],
    hidden_dims: list[int],
    seeds: list[int],
    input_dims: list[int],
    base: RunConfig | None = None,
) -> list[GridModel]:
    """The product sources x types x K x seeds, in that order (model i runs on rank i mod R:
    put models of similar cost next to each other). input_dims: D of each source (layer).
    base: the config every model starts from (loss, k, training fields)."""
    base = base or RunConfig()
    out = []
    for s, d in enumerate(input_dims):
        for kind in types:
            for k in hidden_dims:
                for seed in seeds:
                    cfg = replace(base, model=replace(base.model, type=kind, input_dim=d,
                                                      hidden_dim=k),
                                  training=replace(base.training, seed=seed))  # fmt: skip
                    prefix = f"src{s}_" if len(input_dims) > 1 else ""
                    out.append(GridModel(f"{prefix}{kind}_K{k}_seed{seed}", cfg, s))
    return out


def owned(n_models: int, rank: int, n_ranks: int) -> list[int]:
    """Indices of the models rank trains: i mod R == rank."""
    return [i for i in range(n_models) if i % n_ranks == rank]


def check_run_dirs(models: list[GridModel], out: str | Path, overwrite: bool) -> None:
    """Refuse (on every rank alike, before any training) run directories that hold results,
    unless overwrite; the same check `runs.prepare_run_dir` makes."""
    for m in models:
        d = Path(out) / m.name
        if d.exists() and any(d.iterdir()) and not overwrite:
            raise runs.RunExistsError(
                f"{d} already holds a run: pass --overwrite to replace it, or choose another --out"
            )


META = ("rank_seconds", "kept")
"""The keys of `train_modules`' result that are not model names."""


def finished_runs(models: list[GridModel], out: str | Path, steps: int, batch_size: int,
                  data_seed: int) -> list[str]:  # fmt: skip
    """Names of the models whose run directory out/<name> holds a finished run of this grid:
    a manifest, every file matching it, metrics.json with these steps, batch size and data
    seed, and the model's config. A finished run under another config is an error (ValueError:
    resuming must not mix grids); anything else (no manifest, fewer steps) is unfinished."""
    done = []
    for m in models:
        d = Path(out) / m.name
        if not (d / runs.MANIFEST).is_file() or not (d / runs.METRICS).is_file():
            continue
        bad = [n for n in (runs.CONFIG, runs.MODEL, runs.METRICS) if runs.verify(d, n)]
        if bad:
            continue  # damaged: trained again
        metrics = json.loads((d / runs.METRICS).read_text())
        if (metrics.get("steps_completed"), metrics.get("batch_size"),
                metrics.get("data_seed")) != (steps, batch_size, data_seed):  # fmt: skip
            continue
        runs.check_same_config(d, m.cfg)
        done.append(m.name)
    return done


def train_modules(
    models: list[GridModel],
    sources: list[Tensor],
    *,
    batch_size: int,
    steps: int,
    data_seed: int = 0,
    warmup: int = 0,
    log_every: int = 0,
    compile: bool = False,
    out: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
) -> dict:
    """Train this rank's models (`owned`) on the shared stream; every rank calls it.

    sources: (N, D_s) tensors, rows aligned, on this rank's device (the rows are cast to
    float32 per step). Each model uses its cfg's model, loss, training.lr, training.seed (init
    and probes) and training.amp; batch_size, steps and data_seed are shared. With out, each
    model's run directory out/<name> is written by its rank at the end. resume (with out): the
    models whose run is finished (`finished_runs`) are kept as they are and the others are
    trained from the start, spread over the ranks (a model's own training does not resume
    mid-run). Returns {name: {"history", "seconds", "tokens_per_s"}} for this rank's models
    plus "rank_seconds" (the loop's wall time, after warmup) and "kept" (the finished models
    left as they were).
    """
    if resume and overwrite:
        raise ValueError("resume keeps finished runs and overwrite replaces them: pass one")
    if resume and out is None:
        raise ValueError("resume needs the run directories: pass --out")
    kept: list[str] = []
    if out is not None and resume:
        kept = finished_runs(models, out, steps, batch_size, data_seed)
        models = [m for m in models if m.name not in kept]
        overwrite = True  # the unfinished ones start again
    if not models:
        return {"rank_seconds": float("nan"), "kept": kept}  # every run finished already
    rank, n = world()
    if len({len(s) for s in sources}) != 1:
        raise ValueError(f"sources have {[len(s) for s in sources]} rows: they must be the same "
                         "tokens (rows aligned), e.g. several layers of one harvest")  # fmt: skip
    if out is not None:
        check_run_dirs(models, out, overwrite)
    device = sources[0].device
    mine = [models[i] for i in owned(len(models), rank, n)]
    stepper = {}
    for m in mine:
        model = runs.build_model(m.cfg).to(device)
        stepper[m.name] = ModelStepper(model, m.cfg.loss, lr=m.cfg.training.lr,
                                       probe_seed=m.cfg.training.seed, amp=m.cfg.training.amp,
                                       compile=compile, parallel=False)  # fmt: skip
    stream = BatchStream(len(sources[0]), batch_size, data_seed, device)
    history: dict[str, list[dict]] = {m.name: [] for m in mine}
    used = sorted({m.source for m in mine})
    tic = None
    for step in range(steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            tic = time.perf_counter()
        idx = stream.next()  # (B,) the same on every rank
        xs = {s: sources[s][idx].to(device, torch.float32, non_blocking=True) for s in used}
        terms = {m.name: stepper[m.name].step(xs[m.source]) for m in mine}  # (B, D_s) each
        if log_every and (step + 1) % log_every == 0:
            for m in mine:
                history[m.name].append({"step": step + 1, **stepper[m.name].record(terms[m.name])})
    for s in stepper.values():
        s.settle()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - tic if tic is not None else float("nan")
    if steps > 0:
        for m in mine:
            record_last(stepper[m.name], terms[m.name], history[m.name], steps)
    timed = steps - warmup
    result: dict = {"rank_seconds": seconds, "kept": kept}
    for m in mine:
        tps = timed * batch_size / seconds if timed > 0 else float("nan")
        result[m.name] = {"history": history[m.name], "seconds": seconds, "tokens_per_s": tps}
        if out is not None:
            _write_run(Path(out) / m.name, m.cfg, stepper[m.name], history[m.name],
                       {"steps_completed": steps, "batch_size": batch_size,
                        "data_seed": data_seed, "tokens_per_s": tps})  # fmt: skip
    return result


def _write_run(run_dir: Path, cfg: RunConfig, stepper: ModelStepper, history: list[dict],
               extra: dict) -> None:  # fmt: skip
    """A run directory as `train.loop.train` writes one (each file atomically, manifest last)."""
    run_dir = runs.prepare_run_dir(run_dir, resume=False, overwrite=True)
    runs.save_model(stepper.model, cfg, run_dir)
    runs.write_history(run_dir, history)
    snapshot = {"model": stepper.model.state_dict(), "optimizer": stepper.opt.state_dict(),
                "state": stepper.state, "step": extra["steps_completed"]}  # fmt: skip
    runs.atomic_save(lambda p: torch.save(snapshot, p), run_dir / runs.CHECKPOINT)
    runs.atomic_write_json(run_dir / runs.METRICS, {**(history[-1] if history else {}), **extra})
    runs.write_manifest(run_dir)


def run_modules(args: ModulesOptions) -> int:
    """Train this rank's models; rank 0 prints (and writes) the JSON summary."""
    distributed = "RANK" in os.environ
    cuda = torch.cuda.is_available()
    device, _ = init_device(distributed)
    rank, n = world()
    sources = load_stream(args.acts, args.random_tokens, args.input_dim, args.data_seed, device)
    base = RunConfig(model=ModelConfig(k=args.k), loss=LossConfig(tc_probes=args.tc_probes),
                     training=TrainConfig(batch_size=args.batch_size, lr=args.lr, amp=args.amp,
                                          device=device.type))  # fmt: skip
    models = grid(args.types, args.hidden_dims, args.seeds, [s.shape[1] for s in sources], base)
    try:
        res = train_modules(models, sources, batch_size=args.batch_size, steps=args.steps,
                            data_seed=args.data_seed, warmup=args.warmup,
                            log_every=args.log_every, compile=args.compile, out=args.out,
                            overwrite=args.overwrite, resume=args.resume)  # fmt: skip
        parts = [None] * n
        if distributed:
            dist.all_gather_object(parts, res)
        else:
            parts = [res]
    finally:
        if distributed:
            dist.destroy_process_group()
    if rank == 0:
        timed = args.steps - args.warmup
        slowest = max(p["rank_seconds"] for p in parts)
        kept = parts[0]["kept"]
        trained = len(models) - len(kept)
        summary = {
            "world_size": n,
            "device": torch.cuda.get_device_name(device) if cuda else "cpu",
            "models": trained,
            "kept": kept,
            "per_rank": [[k for k in p if k not in META] for p in parts],
            "batch_size": args.batch_size, "amp": args.amp, "tc_probes": args.tc_probes,
            "compile": args.compile, "steps": args.steps, "warmup": args.warmup,
            "stream_tokens_per_s": timed * args.batch_size / slowest,
            "model_tokens_per_s": timed * args.batch_size * trained / slowest,
            "last": {k: v["history"][-1] for p in parts for k, v in p.items()
                     if k not in META and v["history"]},
        }  # fmt: skip
        print(json.dumps(summary))
        if args.summary:
            Path(args.summary).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":  # torchrun -m implicit_em.train.modules: the `ddp-modules` command
    from implicit_em.cli import main

    sys.exit(main(["ddp-modules", *sys.argv[1:]]))
