"""`implicit-em reproduce`: every experiment of the paper, then report.md and report.html.

All runs the experiments need are planned first and trained together in as few stacks as
possible (implicit_em.train.stacked); finished runs are skipped, so an interrupted reproduction
continues where it stopped.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

from implicit_em.atomic import atomic_write_json
from implicit_em.experiments import BY_NAME, EXPERIMENTS, ExperimentOptions, ReproduceOptions
from implicit_em.experiments.common import (
    RUN_LOG,
    WHILE_WAITING,
    Settings,
    describe_runs,
    ensure_runs,
    load_data,
    load_settings,
    start_runs,
    wait_runs,
)
from implicit_em.experiments.report import write_report
from implicit_em.options import set_threads
from implicit_em.progress import stage


def _settings(name: str, **kw) -> Settings:
    return load_settings(BY_NAME[name].config, **kw)


def pretrain_all(kw: dict, names: list[str] = ("ablation", "benchmark", "dynamics")) -> bool:
    """Train every run the named experiments among ablation, benchmark (phase 1) and dynamics
    need, in shared stacks (an experiment run alone trains only its own runs); on CUDA, start
    the benchmark's phase 2 (TopK SAEs, whose k follows phase 1's decoder-free runs) in the
    background (`benchmark.start_topk`) as soon as those runs are saved: the stacks then train
    in the background too (`common.start_runs`), the decoder-free runs' stack first on the
    GPU, and this returns once every stack of this step is saved. Returns whether phase 2
    trains in the background. The runs are the same either way (the same kernels on the
    same data; only the order in which the GPU serves the stacks changes)."""
    cfgs = []
    if "ablation" in names:
        s = _settings("ablation", **kw)
        cfgs += [s.config(u, {"training": {"seed": sd}})
                 for u in s.extra["variants"].values() for sd in s.seeds()]  # fmt: skip
    if "benchmark" in names:
        s = _settings("benchmark", **kw)
        cfgs += [s.config(s.extra["variants"][v], {"training": {"seed": sd}})
                 for v in ("ours", "standard_sae") for sd in s.seeds()]  # fmt: skip
    if "dynamics" in names:
        s = _settings("dynamics", **kw)
        cfgs += [s.config({"training": {"optimizer": o, "lr": lr, "seed": sd}})
                 for o in s.extra["optimizers"] for lr in s.extra["learning_rates"] for sd in s.seeds()]  # fmt: skip
    label = ", ".join(n for n in ("ablation", "benchmark", "dynamics") if n in names)
    if "benchmark" not in names:
        if cfgs:
            ensure_runs(s, cfgs, load_data(cfgs[0], s.device), label)
        return False
    from implicit_em.experiments.benchmark import first_configs, start_topk

    bench = _settings("benchmark", **kw)
    data = load_data(cfgs[0], s.device)
    ours = first_configs(bench)["ours"]
    early = start_runs(s, cfgs, data, label, urgent=ours)  # False off CUDA
    topk = False
    if early:
        wait_runs(s, ours)
        topk = start_topk(bench)
    ensure_runs(s, cfgs, data, label)  # trains them here off CUDA; else waits for them
    return topk if early else start_topk(bench)


REPORT_INDEX = "report.json"
"""{"experiments": [...]}: which experiments report.md in the same directory covers."""


def check_report_target(out: Path, names: list[str], overwrite: bool) -> None:
    """Refuse (FileExistsError naming --overwrite) to replace a report of other experiments."""
    report = Path(out) / "report.md"
    if not report.exists() or overwrite:
        return
    try:
        prior = json.loads((Path(out) / REPORT_INDEX).read_text())["experiments"]
    except (OSError, ValueError, KeyError, TypeError):
        prior = None
    if prior != list(names):
        held = f"the report of {', '.join(prior)}" if prior else "a report of unknown content"
        raise FileExistsError(
            f"{report} holds {held}; writing the {', '.join(names)} report would replace it: pass "
            f"--overwrite to replace it, or choose another --out (finished runs in {out}/runs are "
            "reused either way)"
        )


def reproduce(
    out: Path, quick: bool = False, only: list[str] | None = None, command: str = "",
    overwrite: bool = False, **kw,
) -> Path:  # fmt: skip
    """Run the experiments (all by default) and write <out>/report.md and report.html.

    Raises FileExistsError when <out>/report.md covers other experiments and not overwrite."""
    out = Path(out)
    names = list(only or [e.name for e in EXPERIMENTS if e.in_reproduce])
    check_report_target(out, names, overwrite)  # before any work
    kw = dict(out=out, quick=quick, **kw)
    t0 = time.perf_counter()
    timings = {}
    RUN_LOG.clear()  # "this command" starts here, even when called twice in one process

    def timed(label: str, fn):
        start, tic = len(RUN_LOG), time.perf_counter()
        res = fn()
        timings[label] = (time.perf_counter() - tic, describe_runs(RUN_LOG[start:]))
        return res

    talk = kw.get("progress", True)
    if any(n in names for n in ("ablation", "benchmark", "dynamics")):
        # On CUDA the benchmark's TopK SAEs start in this step, once the decoder-free runs
        # they follow are saved, and train in the background while the rest of the step, the
        # theorem, the ablation and the benchmark's phase 1 run. The order stays the report's:
        # the torch probe fits up to 8 runs jointly, so a run's accuracy depends (to ~1e-4)
        # on which runs share its group, and the groups follow the order.
        background = timed("training (stacked runs)", lambda: pretrain_all(kw, names))
    else:
        background = False
    sections = []
    for i, name in enumerate(names, 1):
        if name == "benchmark" and background and "dynamics" in names:
            # While the benchmark waits for the TopK SAEs: the dynamics step's probes (the
            # benchmark has probed its own runs by then, so the probe groups stay the same).
            from implicit_em.experiments.dynamics import probe_ahead

            WHILE_WAITING.append(lambda: probe_ahead(_settings("dynamics", **kw)))
        stage(f"experiment {name} ({i}/{len(names)}): evaluating, figures, tables", talk)
        try:
            res = timed(name, lambda name=name: BY_NAME[name].run(_settings(name, **kw)))
        finally:
            WHILE_WAITING.clear()  # what this step did not need is done where it belongs
        sections.append((BY_NAME[name].title, res))
    total = time.perf_counter() - t0
    base = load_settings("default", out=out, quick=quick, overrides=kw.get("overrides")).base
    stage(f"writing report {out / 'report.md'} and report.html", talk)
    atomic_write_json(out / REPORT_INDEX, {"experiments": names})
    return write_report(out, sections, timings, total, quick, command, kw, base)


CUDA_CONNECTIONS = "32"
"""CUDA_DEVICE_MAX_CONNECTIONS the experiment commands set when the environment sets none:
hardware work queues of the GPU (the driver's default is 8). The reproduction's streams
(about 25: the stacks' branches, their own streams, the caller's) then share fewer queues,
where one stream's work waits behind another's unrelated graph replays."""


def _setup(opts: ExperimentOptions) -> dict:
    """The keyword arguments of `reproduce` that the options imply (device, jobs, overrides).
    Off CPU, also CUDA_DEVICE_MAX_CONNECTIONS (`CUDA_CONNECTIONS`), before CUDA starts."""
    if opts.device != "cpu":
        os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", CUDA_CONNECTIONS)
    import torch

    import implicit_em.train.loop  # noqa: F401 (numeric libraries before keep_freed_memory)
    from implicit_em.allocator import keep_freed_memory
    from implicit_em.config import parse_overrides
    from implicit_em.workflows import resolve_device

    keep_freed_memory()
    set_threads(opts.threads)
    device = resolve_device(opts.device)
    overrides = parse_overrides(opts.set)
    if opts.data_dir:
        overrides.setdefault("data", {})["root"] = opts.data_dir
    threads = torch.get_num_threads()
    jobs = opts.jobs if opts.jobs is not None else (2 if device == "cpu" and threads >= 2 else 1)
    return dict(device=device, stacked=not opts.no_stack, probe=opts.probe,
                progress=not opts.quiet, overrides=overrides, jobs=jobs, threads=threads,
                checkpoint_every=opts.checkpoint_every)  # fmt: skip


def _out(opts: ExperimentOptions) -> Path:
    out = Path(opts.out)
    return out.with_name(out.name + "-quick") if opts.quick and opts.out == "results" else out


def run_command(opts: ReproduceOptions, only: list[str] | None = None) -> int:
    """`implicit-em reproduce` (or one experiment, `only=[name]`): train, evaluate, report."""
    only = only or (list(opts.only) if getattr(opts, "only", None) else None)
    report = reproduce(_out(opts), quick=opts.quick, only=only, overwrite=opts.overwrite,
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
