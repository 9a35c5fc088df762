"""Independent stacks and probes side by side in worker processes (CPU).

At MNIST sizes torch's intra-op threads scale poorly on a few cores: a stack of 24 encoders
runs about 1.3x faster on 2 threads than on 1 (docs/benchmarks.md). Independent stacks, and
independent probes, are therefore faster as single-threaded processes side by side. Each
worker loads the data itself (spawned, so nothing of the parent's thread pools is shared),
writes its runs to their directories and returns nothing but probe accuracies; the parent
reads the runs back as it would after training them itself. CUDA devices keep one process.
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from implicit_em.config import RunConfig, from_dict
from implicit_em.stacked import group_configs

# Relative cost of one model-step on CPU, per model type (measured on the reproduction's
# stacks: 23 Adam encoders 637 s, 5 standard SAEs 260 s, 5 TopK SAEs ~400 s).
_COST = {"encoder": 1.0, "standard_sae": 1.9, "topk_sae": 2.9}


def stack_cost(cfgs: Sequence[RunConfig]) -> float:
    return sum(_COST.get(c.model.type, 1.0) * c.training.epochs for c in cfgs)


def plan_stacks(cfgs: list[RunConfig], jobs: int) -> list[list[int]]:
    """Stacks of `cfgs` (indices) for `jobs` workers, most expensive first.

    While there are fewer stacks than workers, the most expensive stack of two or more
    models is split in two (stacked training gives each model the same result as training
    it alone, so a split changes nothing but speed); models sharing a data seed stay
    together where possible.
    """
    groups = group_configs(cfgs)
    while len(groups) < jobs:
        big = max(groups, key=lambda g: (len(g) > 1, stack_cost([cfgs[i] for i in g])))
        if len(big) < 2:
            break
        groups.remove(big)
        groups += _halves(big, [cfgs[i].training.seed for i in big])
    return sorted(groups, key=lambda g: -stack_cost([cfgs[i] for i in g]))


def _halves(idx: list[int], seeds: list[int]) -> list[list[int]]:
    """Two near-equal parts of idx; models of one seed stay in one part when seeds differ."""
    by_seed: dict[int, list[int]] = {}
    for i, sd in zip(idx, seeds, strict=True):
        by_seed.setdefault(sd, []).append(i)
    if len(by_seed) == 1:
        half = math.ceil(len(idx) / 2)
        return [idx[:half], idx[half:]]
    parts: list[list[int]] = [[], []]
    for members in sorted(by_seed.values(), key=len, reverse=True):
        min(parts, key=len).extend(members)
    return parts


def _init_worker(threads: int) -> None:
    import torch

    from implicit_em.allocator import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(threads)


def _train_stack(cfg_dicts: list[dict], run_dirs: list[str], eval_every: int) -> None:
    from implicit_em.experiments.common import load_data
    from implicit_em.stacked import train_many

    cfgs = [from_dict(d) for d in cfg_dicts]
    data = load_data(cfgs[0], "cpu")
    train_many(cfgs, data.x_train, data.x_test, run_dirs=run_dirs, device="cpu",
               progress=False, stacked=True, eval_every=eval_every)  # fmt: skip


def _probe_runs(run_dirs: list[str]) -> list[float]:
    import torch

    from implicit_em import runs
    from implicit_em.experiments.common import features, load_data
    from implicit_em.probe import torch_probe_accuracy

    loaded = [runs.load_run(d) for d in run_dirs]
    data = load_data(loaded[0][1], "cpu")
    tr = torch.stack([features(m, data.x_train) for m, _ in loaded])
    te = torch.stack([features(m, data.x_test) for m, _ in loaded])
    return torch_probe_accuracy(tr, data.y_train, te, data.y_test)


def _pool(jobs: int, threads: int) -> ProcessPoolExecutor:
    ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(threads,))


def _run_all(jobs: int, threads: int, calls: list[tuple[Callable, tuple]], done=None) -> list:
    with _pool(jobs, threads) as pool:
        futures = [pool.submit(fn, *args) for fn, args in calls]
        out = []
        for f in futures:  # in submission order; a worker's exception is raised here
            out.append(f.result())
            if done is not None:
                done()
        return out


def train_stacks(
    cfgs: list[RunConfig], run_dirs: list[Path], jobs: int, threads: int, eval_every: int,
    done: Callable[[], None] | None = None,
) -> None:  # fmt: skip
    """Train `cfgs` on CPU in `jobs` processes of `threads` threads; each run is saved to its
    directory by the worker that trains it. `done` is called as each stack finishes."""
    calls = [
        (_train_stack, ([cfgs[i].to_dict() for i in g], [str(run_dirs[i]) for i in g], eval_every))
        for g in plan_stacks(cfgs, jobs)
    ]
    _run_all(jobs, threads, calls, done)


def probe_runs(run_dirs: list[Path], jobs: int, threads: int) -> list[float]:
    """Torch-probe test accuracy of each saved run's codes, the runs split over `jobs`
    processes (at most 16 feature sets per probe)."""
    size = min(16, math.ceil(len(run_dirs) / jobs))
    chunks = [[str(d) for d in run_dirs[i : i + size]] for i in range(0, len(run_dirs), size)]
    return [
        acc
        for part in _run_all(jobs, threads, [(_probe_runs, (c,)) for c in chunks])
        for acc in part
    ]
