"""`implicit-em reproduce`: every experiment of the paper, then report.md and report.html.

All runs the experiments need are planned first and trained together in as few stacks as
possible (implicit_em.stacked); finished runs are skipped, so an interrupted reproduction
continues where it stopped.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from implicit_em.experiments import BY_NAME, EXPERIMENTS, ExperimentOptions, ReproduceOptions
from implicit_em.experiments.common import Settings, ensure_runs, load_data, load_settings
from implicit_em.experiments.report import write_report


def _settings(name: str, **kw) -> Settings:
    return load_settings(BY_NAME[name].config, **kw)


def pretrain_all(kw: dict) -> None:
    """Train every run the ablation, benchmark (phase 1) and dynamics need, in shared stacks."""
    cfgs = []
    s = _settings("ablation", **kw)
    cfgs += [
        s.config(u, {"training": {"seed": sd}})
        for u in s.extra["variants"].values()
        for sd in s.seeds()
    ]
    s = _settings("benchmark", **kw)
    cfgs += [s.config(s.extra["variants"][v], {"training": {"seed": sd}})
             for v in ("ours", "standard_sae") for sd in s.seeds()]  # fmt: skip
    s = _settings("dynamics", **kw)
    cfgs += [s.config({"training": {"optimizer": o, "lr": lr, "seed": sd}})
             for o in s.extra["optimizers"] for lr in s.extra["learning_rates"] for sd in s.seeds()]  # fmt: skip
    ensure_runs(s, cfgs, load_data(cfgs[0], s.device))


def reproduce(
    out: Path, quick: bool = False, only: list[str] | None = None, command: str = "", **kw
) -> Path:
    """Run the experiments (all by default) and write <out>/report.md and report.html."""
    out = Path(out)
    kw = dict(out=out, quick=quick, **kw)
    t0 = time.perf_counter()
    names = only or [e.name for e in EXPERIMENTS if e.in_reproduce]
    timings = {}
    if any(n in names for n in ("ablation", "benchmark", "dynamics")):
        tic = time.perf_counter()
        pretrain_all(kw)
        timings["training (all stacked runs)"] = time.perf_counter() - tic
    sections = []
    for name in names:
        tic = time.perf_counter()
        res = BY_NAME[name].run(_settings(name, **kw))
        timings[name] = time.perf_counter() - tic
        sections.append((BY_NAME[name].title, res))
    total = time.perf_counter() - t0
    base = load_settings("default", out=out, quick=quick, overrides=kw.get("overrides")).base
    return write_report(out, sections, timings, total, quick, command, kw, base)


def _setup(opts: ExperimentOptions) -> dict:
    """The keyword arguments of `reproduce` that the options imply (device, jobs, overrides)."""
    import torch

    from implicit_em.allocator import keep_freed_memory
    from implicit_em.config import parse_overrides
    from implicit_em.workflows import resolve_device

    keep_freed_memory()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = resolve_device(opts.device)
    overrides = parse_overrides(opts.set)
    if opts.data_dir:
        overrides.setdefault("data", {})["root"] = opts.data_dir
    threads = torch.get_num_threads()
    jobs = opts.jobs if opts.jobs is not None else (2 if device == "cpu" and threads >= 2 else 1)
    return dict(device=device, stacked=not opts.no_stack, probe=opts.probe,
                progress=not opts.quiet, overrides=overrides, jobs=jobs, threads=threads)  # fmt: skip


def _out(opts: ExperimentOptions) -> Path:
    out = Path(opts.out)
    return out.with_name(out.name + "-quick") if opts.quick and opts.out == "results" else out


def run_command(opts: ReproduceOptions, only: list[str] | None = None) -> int:
    """`implicit-em reproduce` (or one experiment, `only=[name]`): train, evaluate, report."""
    only = only or (list(opts.only) if getattr(opts, "only", None) else None)
    report = reproduce(_out(opts), quick=opts.quick, only=only,
                       command=shlex.join(["implicit-em", *sys.argv[1:]]), **_setup(opts))  # fmt: skip
    print(f"report written to {report} and {report.with_suffix('.html')}")
    return 0


def _one(name: str):
    def run(opts: ExperimentOptions) -> int:
        return run_command(opts, only=[name])

    run.__doc__ = f"`implicit-em {name}`: the {name} experiment alone."
    return run


run_theorem, run_ablation, run_benchmark, run_features, run_dynamics = (
    _one(e.name) for e in EXPERIMENTS
)
