"""Run `implicit_em.eval.synthetic.run` from the shell (issue 18), also where sae-lens is absent.

usage: python scripts/synthetic_eval.py OUT_DIR '{"recipe": "small", "variants": ["encoder"]}'
         [--sae-lens-src DIR]

--sae-lens-src DIR: import sae-lens's synthetic modules from a copy of the package source in
DIR (the GPU machine has no sae-lens and no network). The package's __init__ files pull in
transformer-lens and the whole training stack, so they are bypassed: only the synthetic-data
modules and their evaluation functions are loaded, with the three unused heavy imports of
`sae_lens.synthetic.evals` stubbed (they serve only `eval_sae_on_synthetic_data`).
"""

import argparse
import importlib
import json
import logging
import sys
import time
import types
import typing

import torch


def sync(dev: str) -> None:
    """Wait for the GPU's queued work (no-op on the CPU)."""
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, n: int, dev: str) -> float:
    """Seconds per call of fn, over n calls, with the GPU synchronised before and after."""
    sync(dev)
    t = time.perf_counter()
    for _ in range(n):
        fn()
    sync(dev)
    return (time.perf_counter() - t) / n


def add_worker_args(p) -> None:
    """The arguments every GPU script's driver and workers share (synthetic_gpu16k*.py)."""
    p.add_argument("--recipe", default="synthsaebench-16k-v2")
    p.add_argument("--sae-lens-src", default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--t-start", type=float, default=None)


def worker_setup(args) -> float:
    """One thread, TF32 matmuls on the GPU, and the sae-lens source shim when given: the
    start of every GPU script's worker process (synthetic_gpu16k*.py). Returns the
    perf_counter of the driver's start (args.t_start, its wall-clock time; now without one)."""
    torch.set_num_threads(1)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if args.sae_lens_src:
        install_sae_lens_shim(args.sae_lens_src)
    return time.perf_counter() - (time.time() - (args.t_start or time.time()))


def install_sae_lens_shim(src: str) -> None:
    pkg = types.ModuleType("sae_lens")
    pkg.__path__ = [f"{src}/sae_lens"]
    pkg.logger = logging.getLogger("sae_lens")
    sys.modules["sae_lens"] = pkg
    syn = types.ModuleType("sae_lens.synthetic")
    syn.__path__ = [f"{src}/sae_lens/synthetic"]
    sys.modules["sae_lens.synthetic"] = syn
    pkg.synthetic = syn
    for name, attrs in {
        "sae_lens.evals": ["ExplainedVarianceCalculator"],
        "sae_lens.saes": [],
        "sae_lens.saes.sae": ["SAE"],
        "sae_lens.training": [],
        "sae_lens.training.activation_scaler": ["ActivationScaler"],
    }.items():
        m = types.ModuleType(name)
        for a in attrs:  # Generic: the stubs appear in annotations such as SAE[Any]
            setattr(m, a, types.new_class(a, (typing.Generic[typing.TypeVar("T")],)))
        sys.modules[name] = m
    sm = importlib.import_module("sae_lens.synthetic.synthetic_model")
    ev = importlib.import_module("sae_lens.synthetic.evals")
    fm = importlib.import_module("sae_lens.synthetic.firing_magnitudes")
    fp = importlib.import_module("sae_lens.synthetic.firing_probabilities")
    hi = importlib.import_module("sae_lens.synthetic.hierarchy")
    for mod in (sm, ev, fm, fp, hi):
        for k, v in vars(mod).items():
            if not k.startswith("_"):
                setattr(syn, k, v)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out_dir")
    p.add_argument("options", help="JSON object of SyntheticEvalOptions fields")
    p.add_argument("--sae-lens-src", default=None)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.sae_lens_src:
        install_sae_lens_shim(args.sae_lens_src)
    from implicit_em.eval.synthetic import SyntheticEvalOptions, run

    fields = json.loads(args.options)
    for k in ("variants", "seeds"):
        if k in fields:
            fields[k] = tuple(fields[k])
    res = run(SyntheticEvalOptions(**fields, out_dir=args.out_dir))
    print(open(f"{args.out_dir}/report.md").read())
    del res


if __name__ == "__main__":
    main()
