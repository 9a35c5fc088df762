"""Shared machinery of the experiments: settings from YAML, data, a run store and probes.

Runs live in `<out>/runs/<type>-<hash of config>`, so an identical configuration requested
by two experiments (e.g. the full objective at Adam 1e-3, seed 1) is trained once, and a
finished run is never trained again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from implicit_em import runs
from implicit_em.config import ConfigError, RunConfig, from_dict, load_yaml
from implicit_em.stacked import group_configs, train_many

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"


def config_path(name: str) -> Path:
    """configs/<name>.yaml of the repository (or name itself if it is a path)."""
    p = Path(name)
    return p if p.suffix in (".yaml", ".yml") else CONFIG_DIR / f"{name}.yaml"


def merge(base: dict, update: dict) -> dict:
    """Recursive dict merge: `update` wins."""
    out = dict(base)
    for k, v in (update or {}).items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass(frozen=True)
class Settings:
    """What every experiment needs: the base run config as a dict, and how to run."""

    base: dict
    """default.yaml merged with the experiment's `base` and the quick overrides."""
    out: Path
    """Results directory (runs/, figures/, tables)."""
    quick: bool = False
    """Smoke-sized run: one seed, few epochs, a data subset."""
    device: str = "cpu"
    stacked: bool = True
    """Train compatible runs as one stacked model (implicit_em.stacked)."""
    probe: str = "torch"
    """Linear-probe backend: torch (L-BFGS) or sklearn (the paper's reference)."""
    eval_every: int = 10
    """The stacked trainer evaluates each run on the test set every eval_every epochs and at
    the last; every epoch records the loss terms and the mean row norm of W. The reports read
    the last epoch's evaluation and the per-epoch loss and row norm (dynamics, Figure 3)."""
    progress: bool = True
    jobs: int = 1
    """CPU worker processes for independent stacks (experiments.workers); each gets
    threads // jobs torch threads. 1: everything in this process."""
    threads: int = 1
    """Torch CPU threads in all (split over the jobs)."""
    extra: dict = field(default_factory=dict)
    """Experiment-specific keys of its YAML (variants, seeds, ...)."""

    @property
    def parallel(self) -> bool:
        return self.jobs > 1 and self.stacked and torch.device(self.device).type == "cpu"

    @property
    def worker_threads(self) -> int:
        return max(1, self.threads // self.jobs)

    def seeds(self) -> list[int]:
        seeds = list(self.extra.get("seeds", [1]))
        return seeds[:1] if self.quick else seeds

    def config(self, *updates: dict) -> RunConfig:
        d = self.base
        for u in updates:
            d = merge(d, u)
        d = merge(d, {"training": {"device": self.device}})
        return from_dict(d)


def load_settings(
    name: str, out: Path, quick: bool = False, overrides: dict | None = None, **kw
) -> Settings:
    default = load_yaml(config_path("default"))
    exp = load_yaml(config_path(name)) if name != "default" else {}
    base = merge(default, exp.pop("base", {}) or {})
    if quick:
        q = load_yaml(config_path("quick"))
        q.pop("seeds", None)
        base = merge(base, q)
    base = merge(base, overrides or {})
    from_dict(base)  # validate early: unknown keys or bad values name themselves here
    return Settings(base=base, out=Path(out), quick=quick, extra=exp, **kw)


def parse_overrides(items: list[str]) -> dict:
    """`section.field=value` strings -> nested dict (values parsed as YAML scalars)."""
    import yaml

    out: dict = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        section, dot, name = key.partition(".")
        if not (sep and dot and name):
            raise ConfigError(f"override {item!r} must look like section.field=value")
        out.setdefault(section, {})[name] = yaml.safe_load(raw)
    return out


@dataclass
class Data:
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


_DATA_CACHE: dict = {}


def load_data(cfg: RunConfig, device: str = "cpu") -> Data:
    """The data set a config names (MNIST by default), with its subsets, on `device`."""
    d = cfg.data
    key = (d.dataset, d.root, d.train_subset, d.test_subset, device)
    if key not in _DATA_CACHE:
        from implicit_em import data as D

        if d.dataset == "digits":
            x, y = D.load_digits()
            xtr, ytr, xte, yte = x[:1400], y[:1400], x[1400:], y[1400:]
        else:
            load = D.load_mnist if d.dataset == "mnist" else D.load_fashion_mnist
            (xtr, ytr), (xte, yte) = load("train", root=d.root), load("test", root=d.root)
        if d.train_subset:
            xtr, ytr = xtr[: d.train_subset], ytr[: d.train_subset]
        if d.test_subset:
            xte, yte = xte[: d.test_subset], yte[: d.test_subset]
        _DATA_CACHE[key] = Data(*(t.to(device) for t in (xtr, ytr, xte, yte)))
    return _DATA_CACHE[key]


def run_id(cfg: RunConfig) -> str:
    """Stable name of a configuration (the device does not change what is trained)."""
    d = cfg.to_dict()
    d["training"].pop("device")
    digest = hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
    return f"{cfg.model.type}-{digest}"


@dataclass
class Run:
    cfg: RunConfig
    model: nn.Module
    history: list[dict]
    run_dir: Path

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}

    @property
    def diverged(self) -> bool:
        return len(self.history) < self.cfg.training.epochs


def ensure_runs(settings: Settings, cfgs: list[RunConfig], data: Data) -> list[Run]:
    """Train the configs that have no complete run directory (stacked), load the rest."""
    store = settings.out / "runs"
    dirs = [store / run_id(c) for c in cfgs]
    todo: dict[Path, RunConfig] = {}
    for c, d in zip(cfgs, dirs, strict=True):
        if not runs.is_complete(d) and d not in todo:
            if d.exists():  # an unfinished directory from a killed run: retrain it from scratch
                runs.prepare_run_dir(d, resume=False, overwrite=True)
            todo[d] = c
    if settings.parallel and len(group_configs(list(todo.values()))) > 1:
        from implicit_em.experiments import workers  # a lone stack keeps all the threads here

        workers.train_stacks(list(todo.values()), list(todo), settings.jobs,
                             settings.worker_threads, settings.eval_every)  # fmt: skip
    elif todo:
        train_many(
            list(todo.values()), data.x_train, data.x_test, run_dirs=list(todo),
            device=settings.device, progress=settings.progress, stacked=settings.stacked,
            eval_every=settings.eval_every,
        )  # fmt: skip
    out = []
    for c, d in zip(cfgs, dirs, strict=True):
        model, _ = runs.load_run(d, settings.device)
        out.append(Run(c, model, runs.read_history(d), d))
    return out


@torch.no_grad()
def features(model: nn.Module, x: Tensor, chunk: int = 20000) -> Tensor:
    model.eval()
    return torch.cat([model.encode(x[i : i + chunk]) for i in range(0, len(x), chunk)])


def probe_accuracies(settings: Settings, run_list: list[Run], data: Data) -> list[float]:
    """Linear-probe test accuracy of each run's codes, cached in <run_dir>/probe.json."""
    from implicit_em.metrics import linear_probe_accuracy
    from implicit_em.probe import torch_probe_accuracy

    key = f"{settings.probe}"
    accs: dict[int, float] = {}
    todo = []
    for i, r in enumerate(run_list):
        cache = r.run_dir / "probe.json"
        cached = json.loads(cache.read_text()) if cache.is_file() else {}
        if key in cached:
            accs[i] = cached[key]
        elif r.diverged:
            accs[i] = float("nan")
        else:
            todo.append(i)
    for start in range(0, len(todo), 8):  # stacked torch probes, 8 feature sets at a time
        idx = todo[start : start + 8]
        tr = [features(run_list[i].model, data.x_train) for i in idx]
        te = [features(run_list[i].model, data.x_test) for i in idx]
        if settings.probe == "torch":
            got = torch_probe_accuracy(torch.stack(tr), data.y_train, torch.stack(te), data.y_test)
        else:
            got = [
                linear_probe_accuracy(a, data.y_train, b, data.y_test)
                for a, b in zip(tr, te, strict=True)
            ]
        for i, acc in zip(idx, got, strict=True):
            accs[i] = float(acc)
            cache = run_list[i].run_dir / "probe.json"
            cached = json.loads(cache.read_text()) if cache.is_file() else {}
            runs.atomic_write_json(cache, {**cached, key: float(acc)})
    return [accs[i] for i in range(len(run_list))]


def mean_std(values) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def fmt(mean: float, std: float, digits: int = 2, pct: bool = False) -> str:
    if not np.isfinite(mean):
        return "—"
    s = 100 if pct else 1
    unit = " %" if pct else ""
    return f"{mean * s:.{digits}f} ± {std * s:.{digits}f}{unit}"


def save_json(path: Path, obj) -> None:
    runs.atomic_write_json(Path(path), obj)


def savefig(fig, path: Path) -> Path:
    """Save a matplotlib figure as PNG (written atomically)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    runs.atomic_save(lambda p: fig.savefig(p, dpi=120, bbox_inches="tight", format="png"), path)
    plt.close(fig)
    return path
