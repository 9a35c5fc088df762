"""The `implicit-em` command line: reproduce the paper, run one experiment, train, evaluate."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

SUBMODULES = (
    "implicit_em.data.cli",
    "implicit_em.experiments.llm",
    "implicit_em.experiments.ood",
    "implicit_em.experiments.scale",
)


def _common(p: argparse.ArgumentParser, out_default: str) -> None:
    p.add_argument("--out", default=out_default, help="results directory (default: %(default)s)")
    p.add_argument(
        "--quick", action="store_true", help="smoke-sized run: 1 seed, few epochs, data subset"
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    p.add_argument("--no-stack", action="store_true", help="train runs one by one (plain loop)")
    p.add_argument(
        "--probe", choices=("torch", "sklearn"), default="torch", help="linear-probe backend"
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config field for every run, e.g. --set training.epochs=10")  # fmt: skip
    p.add_argument("--data-dir", default=None, help="directory with the MNIST IDX files")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--jobs", type=int, default=None,
                   help="CPU worker processes for independent stacks, threads split "
                   "among them (default: 2 on CPU with >= 2 threads, else 1)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _setup(args) -> dict:
    import torch

    from implicit_em.allocator import keep_freed_memory
    from implicit_em.experiments.common import parse_overrides

    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    overrides = parse_overrides(args.overrides)
    if args.data_dir:
        overrides.setdefault("data", {})["root"] = args.data_dir
    threads = torch.get_num_threads()
    jobs = args.jobs if args.jobs is not None else (2 if device == "cpu" and threads >= 2 else 1)
    if jobs < 1:
        raise SystemExit(f"--jobs must be >= 1, got {jobs}")
    return dict(device=device, stacked=not args.no_stack, probe=args.probe,
                progress=not args.quiet, overrides=overrides, jobs=jobs, threads=threads)  # fmt: skip


def _out(args) -> Path:
    out = Path(args.out)
    return out.with_name(out.name + "-quick") if args.quick and args.out == "results" else out


def cmd_reproduce(args) -> int:
    from implicit_em.experiments.reproduce import reproduce

    kw = _setup(args)
    report = reproduce(
        _out(args), quick=args.quick, only=args.only, command=shlex.join(sys.argv), **kw
    )
    print(f"report written to {report} and {report.with_suffix('.html')}")
    return 0


def cmd_experiment(args) -> int:
    from implicit_em.experiments.reproduce import reproduce

    kw = _setup(args)
    report = reproduce(
        _out(args), quick=args.quick, only=[args.name], command=shlex.join(sys.argv), **kw
    )
    print(f"report written to {report}")
    return 0


def cmd_train(args) -> int:
    import torch

    from implicit_em.allocator import keep_freed_memory
    from implicit_em.config import load_config
    from implicit_em.experiments.common import load_data
    from implicit_em.runs import build_model
    from implicit_em.training import train

    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    device = cfg.training.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    data = load_data(cfg, device)
    model = build_model(cfg)
    history = train(model, data.x_train, cfg, x_eval=data.x_test, run_dir=args.out,
                    resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)  # fmt: skip
    print(json.dumps(history[-1] if history else {}, indent=2))
    return 0


def cmd_evaluate(args) -> int:
    import torch

    from implicit_em.experiments.common import load_data
    from implicit_em.probe import torch_probe_accuracy
    from implicit_em.runs import load_run
    from implicit_em.training import evaluate

    model, cfg = load_run(args.run_dir)
    data = load_data(cfg)
    out = evaluate(model, data.x_test)
    with torch.no_grad():
        out["probe_accuracy"] = torch_probe_accuracy(model.encode(data.x_train), data.y_train,
                                                     model.encode(data.x_test), data.y_test)[0]  # fmt: skip
    print(json.dumps(out, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="implicit-em", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("reproduce", help="run every experiment of the paper and write the report")
    _common(p, "results")
    p.add_argument(
        "--only", nargs="+", choices=("theorem", "ablation", "benchmark", "features", "dynamics")
    )
    p.set_defaults(func=cmd_reproduce)
    for name in ("theorem", "ablation", "benchmark", "features", "dynamics"):
        p = sub.add_parser(name, help=f"run the {name} experiment alone")
        _common(p, "results")
        p.set_defaults(func=cmd_experiment, name=name)
    p = sub.add_parser("train", help="train one model from a YAML config")
    p.add_argument("--config", default="configs/default.yaml")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE"
    )
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--resume", action="store_true", help="continue an unfinished run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("evaluate", help="evaluate a run directory on its test set")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_evaluate)
    import importlib

    for mod in SUBMODULES:
        try:
            importlib.import_module(mod).add_parser(sub)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
    return parser


def standalone(add_parser, argv: list[str] | None = None, prog: str = "implicit-em") -> int:
    """Run one module's subcommands alone (`python -m implicit_em.<module> <subcommand> ...`)."""
    parser = argparse.ArgumentParser(prog=prog)
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"implicit-em: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
