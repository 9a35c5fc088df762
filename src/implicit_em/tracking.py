"""Run tracking: Weights & Biases and TensorBoard behind one small interface.

A tracker receives the run's config once, metrics at each step (epoch for `train`, logged
step for the distributed trainer), and the final metrics. Trainers take `tracker=None` and
call it only when given; in a distributed run only rank 0 gets one (`for_rank`).

    tracker = make_tracker(TrackingOptions(wandb="my-project", wandb_mode="offline",
                                           tensorboard="runs/tb"))
    train(model, x, cfg, tracker=tracker)          # logs config, per-epoch, final; closes

Both back ends are optional dependencies (`pip install 'implicit-em[tracking]'`), imported
lazily with a clear message when missing. W&B's offline mode needs no account: it writes the
run under `<wandb_dir>/wandb/offline-run-*`, to upload later with `wandb sync`.
TensorBoard gets scalars (`<name>` at each step, `final/<name>` once) and the config as
text, in event files under the given log directory.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

WANDB_MODES = ("online", "offline", "disabled")


class Tracker(Protocol):
    """What trainers call. Values that are not finite numbers are skipped by `scalars`."""

    def log_config(self, config: dict) -> None: ...

    def log(self, metrics: dict, step: int) -> None: ...

    def log_final(self, metrics: dict) -> None: ...

    def close(self) -> None: ...


def scalars(metrics: dict, prefix: str = "") -> dict[str, float]:
    """The int/float entries of a (nested) metrics dict, flattened with '/'; bools excluded."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(scalars(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[f"{prefix}{k}"] = float(v)
    return out


@dataclass(frozen=True)
class TrackingOptions:
    """Where a run is tracked (all off by default)."""

    wandb: str | None = None
    """Weights & Biases project to log to (needs the `wandb` package)."""
    wandb_mode: str = "online"
    """online, offline (no account needed; `wandb sync` uploads later) or disabled."""
    wandb_dir: str | None = None
    """Directory for W&B's local files (default: the current directory)."""
    run_name: str | None = None
    """Run name shown in W&B / used as TensorBoard subfolder (default: generated / none)."""
    tensorboard: str | None = None
    """TensorBoard log directory (needs the `tensorboard` package)."""

    def __post_init__(self) -> None:
        if self.wandb_mode not in WANDB_MODES:
            raise ValueError(f"unknown wandb_mode {self.wandb_mode!r}: use one of {WANDB_MODES}")


class WandbTracker:
    """Logs to a W&B run: config at init, `wandb.log(step=...)`, final metrics to the summary."""

    def __init__(
        self, project: str, mode: str = "online", dir: str | None = None, name: str | None = None
    ) -> None:
        try:
            import wandb
        except ImportError as e:
            raise ImportError(
                "W&B tracking needs wandb: pip install 'implicit-em[tracking]' (or wandb)"
            ) from e
        if dir is not None:
            Path(dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=project, mode=mode, dir=dir, name=name, reinit=True)

    def log_config(self, config: dict) -> None:
        self.run.config.update(config, allow_val_change=True)

    def log(self, metrics: dict, step: int) -> None:
        self.run.log(scalars(metrics), step=step)

    def log_final(self, metrics: dict) -> None:
        self.run.summary.update(scalars(metrics, "final/"))

    def close(self) -> None:
        self.run.finish()


class TensorBoardTracker:
    """Logs to TensorBoard event files with torch's SummaryWriter."""

    def __init__(self, log_dir: str, name: str | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ImportError(
                "TensorBoard tracking needs tensorboard: pip install 'implicit-em[tracking]'"
            ) from e
        self.writer = SummaryWriter(str(Path(log_dir) / name) if name else log_dir)
        self.last_step = 0

    def log_config(self, config: dict) -> None:
        text = "```json\n" + json.dumps(config, indent=1, default=str) + "\n```"
        self.writer.add_text("config", text, 0)

    def log(self, metrics: dict, step: int) -> None:
        for k, v in scalars(metrics).items():
            self.writer.add_scalar(k, v, step)
        self.last_step = max(self.last_step, step)

    def log_final(self, metrics: dict) -> None:
        for k, v in scalars(metrics, "final/").items():
            self.writer.add_scalar(k, v, self.last_step)

    def close(self) -> None:
        self.writer.close()


class MultiTracker:
    """Forwards every call to several trackers."""

    def __init__(self, trackers: list[Any]) -> None:
        self.trackers = trackers

    def log_config(self, config: dict) -> None:
        for t in self.trackers:
            t.log_config(config)

    def log(self, metrics: dict, step: int) -> None:
        for t in self.trackers:
            t.log(metrics, step)

    def log_final(self, metrics: dict) -> None:
        for t in self.trackers:
            t.log_final(metrics)

    def close(self) -> None:
        for t in self.trackers:
            t.close()


def make_tracker(opts: TrackingOptions | None) -> Tracker | None:
    """The tracker `opts` asks for: None, one back end, or a MultiTracker of both."""
    if opts is None:
        return None
    trackers: list[Any] = []
    if opts.wandb:
        trackers.append(WandbTracker(opts.wandb, opts.wandb_mode, opts.wandb_dir, opts.run_name))
    if opts.tensorboard:
        trackers.append(TensorBoardTracker(opts.tensorboard, opts.run_name))
    if not trackers:
        return None
    return trackers[0] if len(trackers) == 1 else MultiTracker(trackers)


def for_rank(opts: TrackingOptions | None, rank: int) -> Tracker | None:
    """make_tracker on rank 0, None elsewhere (one record per distributed run)."""
    return make_tracker(opts) if rank == 0 else None


def from_args(args: Any) -> Tracker | None:
    """A tracker from command options (e.g. a dataclass with TrackingOptions' fields) with optional `wandb`, `wandb_mode`,
    `wandb_dir`, `run_name`, `tensorboard` attributes (absent ones mean off)."""
    opts = TrackingOptions(
        wandb=getattr(args, "wandb", None),
        wandb_mode=getattr(args, "wandb_mode", "online") or "online",
        wandb_dir=getattr(args, "wandb_dir", None),
        run_name=getattr(args, "run_name", None),
        tensorboard=getattr(args, "tensorboard", None),
    )
    return make_tracker(opts)
