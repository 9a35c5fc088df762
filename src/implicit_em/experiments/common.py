"""Shared machinery of the experiments: settings from YAML, data, a run store and probes.

Runs live in `<out>/runs/<type>-<hash of config>`, so an identical configuration requested
by two experiments (e.g. the full objective at Adam 1e-3, seed 1) is trained once, and a
finished run is never trained again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from implicit_em import runs
from implicit_em.config import (
    RunConfig,
    config_path,
    from_dict,
    load_yaml,
    parse_overrides,  # noqa: F401  (re-exported: its old home)
)
from implicit_em.data.datasets import Dataset, load_dataset, resolve_input_dim
from implicit_em.experiments.report import fmt, mean_std  # noqa: F401  (used by the experiments)
from implicit_em.progress import stage
from implicit_em.train.stacked import (
    CHECKPOINT_EVERY,
    env_flag,
    fused_step_enabled,
    group_configs,
    stack_groups,
    train_many,
    train_many_in_background,
)

SPLIT_URGENT_ENV = "IMPLICIT_EM_SPLIT_URGENT"
"""Environment variable: "1" makes `start_runs` train its urgent configs (reproduce: the
benchmark's "ours" runs, which the TopK SAEs wait for) in stacks of their own, so that they are
saved sooner and the TopK stack starts beside the rest of the training step
(`stacked.stack_groups`); "0" keeps them in their shared stacks; unset, it follows the fused
step on CUDA (`split_urgent`). It only matters on CUDA (elsewhere nothing trains in the
background). Not bitwise the shared stacks' runs on a GPU (other matmul shapes). Measured on one
H200 (docs/benchmarks.md, "Round 5" and "Round 5b"): with the default step the split is slower
(report total 55.0 s against 51.0 s), with the fused step faster (47.3-47.4 s in three runs
against 50.2-51.2 s for neither)."""


def split_urgent() -> bool:
    """Whether SPLIT_URGENT_ENV is on ("1" yes, "0" no; unset: whether the fused step is on for
    CUDA, `stacked.fused_step_enabled("cuda")`, since the split pays only beside it). Raises
    ValueError, one line, for any other value (`stacked.env_flag`)."""
    return env_flag(SPLIT_URGENT_ENV, default=fused_step_enabled("cuda"))


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
    """Train compatible runs as one stacked model (implicit_em.train.stacked)."""
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
    checkpoint_every: int = CHECKPOINT_EVERY
    """Each stack saves its training state every this many epochs (0: never); an
    interrupted command, run again, continues each stack from there (`train_many`)."""
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
        return resolve_input_dim(from_dict(d))


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
    resolve_input_dim(from_dict(base))  # validate early: unknown keys or bad values name themselves here
    return Settings(base=base, out=Path(out), quick=quick, extra=exp, **kw)


Data = Dataset  # the name the experiments used before `implicit_em.data.load_dataset`


def load_data(cfg: RunConfig, device: str = "cpu") -> Dataset:
    """The data set a config names, with its subsets, on `device` (`data.load_dataset`)."""
    return load_dataset(cfg.data, device)


ADDED_LATER = {("model", "unit_norm_rows"): False}
"""Config fields added after run ids were first made, with their defaults: left out of the id
while at the default, so that a run store made before a field existed keeps its ids."""


def run_id(cfg: RunConfig) -> str:
    """Stable name of a configuration (the device does not change what is trained; fields of
    ADDED_LATER at their default leave it as it was before they existed)."""
    d = cfg.to_dict()
    d["training"].pop("device")
    for (section, key), default in ADDED_LATER.items():
        if d[section].get(key) == default:
            del d[section][key]
    digest = hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
    return f"{cfg.model.type}-{digest}"


TRAINED, TRAINED_ABOVE, LOADED = "trained now", "trained earlier by this command", "loaded"
RUN_LOG: list[tuple[Path, str]] = []
"""(run directory, origin) of every run `ensure_runs` returned in this process, in order; the
origin is TRAINED (by that call), TRAINED_ABOVE (by an earlier call in this process) or
LOADED (finished by an earlier command). `reproduce` clears it when it starts and reads each
step's entries to report exactly what the step did (`describe_runs`)."""


PENDING: dict[Path, Future] = {}
"""Run directories training in the background (`start_runs`), each with the Future of its
stack's training; `ensure_runs` waits for them (`wait_runs` too, leaving them listed)."""


WHILE_WAITING: list[Callable[[], object]] = []
"""Work `ensure_runs` does, in order, before it blocks on runs still training in the
background (`reproduce` queues a later experiment's probes here while the TopK SAEs train);
each item runs once."""


def describe_runs(entries: list[tuple[Path, str]]) -> str:
    """'2 trained now; 4 trained earlier by this command, loaded' for RUN_LOG entries
    (each distinct run counted once, by its first entry); '-' when there are none."""
    first: dict[Path, str] = {}
    for d, origin in entries:
        first.setdefault(d, origin)
    origins = list(first.values())
    return describe_counts(*(origins.count(o) for o in (TRAINED, TRAINED_ABOVE, LOADED)))


def describe_counts(trained: int, above: int, loaded: int) -> str:
    """`describe_runs` from the counts of each origin."""
    parts = [f"{trained} trained now"] if trained else []
    if above:
        parts.append(f"{above} trained earlier by this command, loaded")
    if loaded:
        parts.append(f"{loaded} finished by an earlier command, loaded")
    return "; ".join(parts) or "-"


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


def ensure_runs(
    settings: Settings, cfgs: list[RunConfig], data: Data, label: str = ""
) -> list[Run]:
    """Train the configs that have no complete run directory (stacked), load the rest.

    label: what the runs are for, in the stage line ("training ablation: 4 runs in 1 stack").
    """
    store = settings.out / "runs"
    dirs = [store / run_id(c) for c in cfgs]
    waited = [d for d in dict.fromkeys(dirs) if d in PENDING]
    if any(not PENDING[d].done() for d in waited):
        while WHILE_WAITING:
            WHILE_WAITING.pop(0)()
    if waited:
        stage(f"training {label}: waiting for {len(waited)} run{'s' * (len(waited) != 1)} "
              "training in the background", settings.progress)  # fmt: skip
    for d in waited:
        PENDING.pop(d).result()  # the background training's error, if any, surfaces here
    todo: dict[Path, RunConfig] = {}
    for c, d in zip(cfgs, dirs, strict=True):
        if not runs.is_complete(d) and d not in todo:
            if d.exists():  # an unfinished directory from a killed run: retrain it from scratch
                runs.prepare_run_dir(d, resume=False, overwrite=True)
            todo[d] = c
    here = {d for d, origin in RUN_LOG if origin == TRAINED}
    origins = {d: TRAINED if d in todo or d in waited else TRAINED_ABOVE if d in here else LOADED
               for d in dirs}  # fmt: skip
    n_stacks = len(group_configs(list(todo.values())))
    workers_used = settings.parallel and n_stacks > 1
    above = sum(o == TRAINED_ABOVE for o in origins.values())
    loaded = sum(o == LOADED for o in origins.values())
    if todo or above or loaded or not waited:  # else the waiting line said it all
        stage(training_line(label, len(todo), above, loaded, n_stacks if settings.stacked else 0,
                            min(settings.jobs, n_stacks) if workers_used else 1),
              settings.progress)  # fmt: skip
    if workers_used:
        from implicit_em.train import workers  # a lone stack keeps all the threads here

        workers.train_stacks(list(todo.values()), list(todo), settings.jobs,
                             settings.worker_threads, settings.eval_every,
                             settings.checkpoint_every, settings.progress)  # fmt: skip
    elif todo:
        train_many(
            list(todo.values()), data.x_train, data.x_test, run_dirs=list(todo),
            device=settings.device, progress=settings.progress, stacked=settings.stacked,
            eval_every=settings.eval_every, checkpoint_every=settings.checkpoint_every,
        )  # fmt: skip
    out = load_runs(settings, cfgs)
    RUN_LOG.extend(origins.items())
    return out


def load_runs(settings: Settings, cfgs: list[RunConfig], history: bool = True) -> list[Run] | None:
    """The finished runs of cfgs, loaded from the run store onto settings.device (history
    read when asked, else []); None when any of them is not finished."""
    dirs = [settings.out / "runs" / run_id(c) for c in cfgs]
    if not all(runs.is_complete(d) for d in dirs):
        return None
    return [Run(c, runs.load_run(d, settings.device)[0], runs.read_history(d) if history else [], d)
            for c, d in zip(cfgs, dirs, strict=True)]  # fmt: skip


def start_runs(
    settings: Settings, cfgs: list[RunConfig], data: Data, label: str = "",
    urgent: list[RunConfig] | None = None,
) -> bool:  # fmt: skip
    """Start training the configs that have no complete run directory in the background
    (`stacked.train_many_in_background`: CUDA, stacked); `ensure_runs` on them later waits
    for them and reports them as trained now. Returns whether anything was started (False:
    nothing to train, or it cannot run in the background; `ensure_runs` then trains it).
    urgent: the configs needed first (None: all of them); their stacks get the GPU first, and
    with SPLIT_URGENT_ENV set they train in stacks of their own."""
    if not settings.stacked:
        return False
    store = settings.out / "runs"
    todo: dict[Path, RunConfig] = {}
    for c in cfgs:
        d = store / run_id(c)
        if not runs.is_complete(d) and d not in todo and d not in PENDING:
            todo[d] = c
    if not todo:
        return False
    for d in todo:  # an unfinished directory from a killed run: retrained from scratch
        if d.exists():
            runs.prepare_run_dir(d, resume=False, overwrite=True)
    hot = set(todo) if urgent is None else {store / run_id(c) for c in urgent}
    first = [i for i, d in enumerate(todo) if d in hot]
    apart = urgent is not None and split_urgent()
    future = train_many_in_background(
        list(todo.values()), data.x_train, data.x_test, run_dirs=list(todo),
        device=settings.device, progress=settings.progress, eval_every=settings.eval_every,
        checkpoint_every=settings.checkpoint_every, urgent=first, apart=apart,
    )  # fmt: skip
    if future is None:
        return False
    n_stacks = len(stack_groups(list(todo.values()), first, apart))
    stage(f"training {label}: {len(todo)} run{'s' * (len(todo) != 1)} in {n_stacks} "
          f"stack{'s' * (n_stacks != 1)}, in the background", settings.progress)  # fmt: skip
    PENDING.update({d: future.of(i) for i, d in enumerate(todo)})
    return True


def wait_runs(settings: Settings, cfgs: list[RunConfig]) -> None:
    """Wait until the configs training in the background (`start_runs`) are saved, raising
    their training's error; they stay in PENDING, so that the `ensure_runs` that asks for
    them still reports them as trained now."""
    for c in cfgs:
        future = PENDING.get(settings.out / "runs" / run_id(c))
        if future is not None:
            future.result()


def training_line(
    label: str, todo: int, above: int, loaded: int, stacks: int, processes: int
) -> str:
    """The stage line of `ensure_runs`: how many runs train now and how, and where the others
    come from: trained earlier by this command (above) or finished by an earlier one (loaded).
    With nothing to train the line starts with "loading", not "training" (an experiment that
    reuses the runs `reproduce` trained above would otherwise seem to train them twice).

    stacks: 0 when the runs train one by one (no stacking)."""
    what = f"training {label}: " if label else "training "
    reused = describe_counts(0, above, loaded)
    if not todo:  # "loading": a second "training" line after "evaluating" reads as retraining
        runs_word = f"run{'s' * (above + loaded != 1)}"
        parts = [f"{above} {runs_word} trained earlier by this command"] if above else []
        if loaded:
            unit = "" if above else f" {runs_word}"
            parts.append(f"{loaded}{unit} finished by an earlier command")
        head = f"loading {label}: " if label else "loading "
        return f"{head}{' and '.join(parts)} (none trained again)"
    how = f"in {stacks} stack{'s' * (stacks != 1)}" if stacks else "one by one"
    if processes > 1:
        how += f" on {processes} worker processes"
    return f"{what}{todo} run{'s' * (todo != 1)} {how}" + (f"; {reused}" if reused != "-" else "")


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
    if todo:
        stage(f"linear probes ({settings.probe}) on the codes of {len(todo)} "
              f"run{'s' * (len(todo) != 1)}", settings.progress)  # fmt: skip
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


def save_json(path: Path, obj) -> None:
    runs.atomic_write_json(Path(path), obj)


def savefig(fig, path: Path) -> Path:
    """Save a matplotlib figure as PNG (written atomically)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    runs.atomic_save(lambda p: fig.savefig(p, dpi=120, bbox_inches="tight", format="png"), path)
    plt.close(fig)
    return path
