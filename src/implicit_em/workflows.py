"""Train one model from a config into a run directory, and evaluate a run directory.

The `implicit-em train` and `implicit-em evaluate` commands: each an options dataclass (its
fields are the flags) and a `run_*` function. Heavy imports happen inside the functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from implicit_em.options import check_threads, flag, set_threads  # noqa: F401  (check_threads: its old home)


@dataclass(frozen=True)
class TrainOptions:
    """Train one model; the run directory gets config.json, model.safetensors, history.jsonl
    and metrics.json. model.input_dim follows the data set unless set."""

    out: str
    """run directory to write"""
    config: str = "default"
    """YAML file, or the name of a config shipped with the package (default, quick, ...)"""
    set: list[str] = flag(factory=list, metavar="SECTION.FIELD=VALUE", append=True, config_flags=True)
    """override a config field, e.g. --set training.epochs=10 (repeatable)"""
    resume: bool = False
    """continue an unfinished run in --out"""
    overwrite: bool = False
    """replace an existing run in --out"""
    threads: int | None = None
    """torch CPU threads (default: torch's)"""
    quiet: bool = False
    """no progress bars"""

    def __post_init__(self) -> None:
        check_threads(self.threads)


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is available, else "cpu"; other names unchanged.

    Raises ValueError (one line, naming the fix) for a CUDA device this torch cannot use: a
    CPU-only build, no visible GPU, or an index beyond the GPUs present.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise ValueError(f"device {device!r} requested but this torch ({torch.__version__}) is "
                             "built without CUDA: use device cpu or auto, or install a CUDA build")  # fmt: skip
        if not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} requested but {torch.cuda.device_count()} GPU(s) "
                             "are visible: use device cpu or auto, or check CUDA_VISIBLE_DEVICES")  # fmt: skip
    return device


def run_train(opts: TrainOptions) -> int:
    """Train the config's model on its data set; print the last epoch's record as JSON."""

    from implicit_em import runs
    from implicit_em.allocator import keep_freed_memory
    from implicit_em.config import load_config
    from implicit_em.data import load_dataset, resolve_input_dim
    from implicit_em.runs import build_model
    from implicit_em.train.loop import train

    keep_freed_memory()
    set_threads(opts.threads)
    cfg = resolve_input_dim(load_config(opts.config, opts.set))
    device = resolve_device(cfg.training.device)
    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a directory: choose another output directory")
    if opts.resume and not (out / runs.CONFIG).is_file():
        raise FileNotFoundError(f"--resume: {out} is not a run directory (no {runs.CONFIG}): check the "
                                "path, or drop --resume to start a new run")  # fmt: skip
    data = load_dataset(cfg.data, device)
    history = train(build_model(cfg), data.x_train, cfg, x_eval=data.x_test, run_dir=opts.out,
                    resume=opts.resume, overwrite=opts.overwrite, progress=not opts.quiet)  # fmt: skip
    print(json.dumps(history[-1] if history else {}, indent=2))
    return 0


@dataclass(frozen=True)
class EvaluateOptions:
    """Evaluate a run directory on its data set's test split (and a linear probe)."""

    run_dir: str = flag(positional=True)
    """run directory written by `implicit-em train`"""


def run_evaluate(opts: EvaluateOptions) -> int:
    """Print the run's metrics on its test split and the linear-probe accuracy as JSON."""
    import torch

    from implicit_em.data import load_dataset
    from implicit_em.probe import torch_probe_accuracy
    from implicit_em.runs import load_run
    from implicit_em.train.loop import evaluate

    model, cfg = load_run(opts.run_dir)
    data = load_dataset(cfg.data)
    out = evaluate(model, data.x_test)
    with torch.no_grad():
        out["probe_accuracy"] = torch_probe_accuracy(model.encode(data.x_train), data.y_train,
                                                     model.encode(data.x_test), data.y_test)[0]  # fmt: skip
    print(json.dumps(out, indent=2))
    return 0
