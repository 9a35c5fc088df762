"""Self-describing run directories: config.json, model.safetensors, history.jsonl, metrics.json.

Every file is written to a temporary name and renamed into place, so a killed process never
leaves a half-written file under a trusted name. `metrics.json` is written last: its presence
marks a run as complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from implicit_em.atomic import atomic_save, atomic_write_bytes, atomic_write_json
from implicit_em.config import RunConfig, from_dict
from implicit_em.families import family

CONFIG, MODEL, HISTORY, METRICS, CHECKPOINT = (
    "config.json",
    "model.safetensors",
    "history.jsonl",
    "metrics.json",
    "checkpoint.pt",
)


class RunExistsError(FileExistsError):
    """A run directory already holds results; nothing is overwritten silently."""


def build_model(cfg: RunConfig, seed: int | None = None) -> torch.nn.Module:
    """The model a config describes; `seed` (default cfg.training.seed) fixes its init."""
    torch.manual_seed(cfg.training.seed if seed is None else seed)
    m = cfg.model
    if m.input_dim is None:
        raise ValueError(
            "model.input_dim is None: resolve it from the data first "
            "(implicit_em.data.resolve_input_dim(cfg)) or set it explicitly"
        )
    return family(m.type).build(m)


def is_complete(run_dir: str | Path) -> bool:
    return (Path(run_dir) / METRICS).is_file()


def prepare_run_dir(run_dir: str | Path, resume: bool, overwrite: bool) -> Path:
    """Create run_dir, or refuse to touch existing results unless asked to."""
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()) and not (resume or overwrite):
        state = "a complete run" if is_complete(run_dir) else "an unfinished run"
        raise RunExistsError(
            f"{run_dir} already holds {state}: pass --resume to continue it, --overwrite to "
            "replace it, or choose another output directory"
        )
    if overwrite and run_dir.exists():
        for name in (CONFIG, MODEL, HISTORY, METRICS, CHECKPOINT):
            (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def save_model(model: torch.nn.Module, cfg: RunConfig, run_dir: str | Path) -> None:
    run_dir = Path(run_dir)
    atomic_write_json(run_dir / CONFIG, cfg.to_dict())
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_save(lambda p: save_file(state, p), run_dir / MODEL)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def check_same_config(run_dir: str | Path, cfg: RunConfig) -> None:
    """Refuse to resume a run under a different config (the device may change)."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return
    saved = _flatten(json.loads(path.read_text()))
    wanted = _flatten(cfg.to_dict())
    diff = sorted(k for k in saved.keys() | wanted.keys()
                  if k != "training.device" and saved.get(k) != wanted.get(k))  # fmt: skip
    if diff:
        changes = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}" for k in diff)
        raise ValueError(
            f"cannot resume {run_dir}: its config differs in {changes}; pass the same config, "
            "--overwrite to replace the run, or another output directory"
        )


def load_weights(run_dir: str | Path, device: str | torch.device = "cpu") -> dict:
    """The state dict saved in run_dir/model.safetensors."""
    return load_file(Path(run_dir) / MODEL, device=str(device))


def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, RunConfig]:
    """Rebuild a model and its config from a run directory alone."""
    run_dir = Path(run_dir)
    for name in (CONFIG, MODEL):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir / name} is missing: not a run directory")
    cfg = from_dict(json.loads((run_dir / CONFIG).read_text()))
    model = build_model(cfg)
    model.load_state_dict(load_file(run_dir / MODEL, device="cpu"))
    return model.to(device), cfg


def read_history(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_history(run_dir: str | Path, history: list[dict]) -> None:
    body = "".join(json.dumps(rec, sort_keys=True) + "\n" for rec in history)
    atomic_write_bytes(Path(run_dir) / HISTORY, body.encode())
