"""Self-describing run directories: config.json, model.safetensors, history.jsonl, metrics.json.

Every file is written to a temporary name and renamed into place, so a killed process never
leaves a half-written file under a trusted name. `metrics.json` marks a run as complete, and
`manifest.json` (written last) holds the sha256 of every other file, so damage done later (a
truncated copy, a bad disk) is found when the run is loaded. model.safetensors and the `model`
entry of checkpoint.pt hold the same weights: either repairs the other.
"""

from __future__ import annotations

import hashlib
import json
import sys
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
MANIFEST = "manifest.json"
"""{"sha256": {file name: hex digest}} of the run's other files; written last."""


class RunDamagedError(RuntimeError):
    """A run file is truncated or fails its checksum and no intact twin can replace it."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(run_dir: str | Path) -> None:
    """Write manifest.json with the sha256 of every run file present (call it last)."""
    run_dir = Path(run_dir)
    names = [n for n in (CONFIG, MODEL, HISTORY, METRICS, CHECKPOINT) if (run_dir / n).is_file()]
    atomic_write_json(run_dir / MANIFEST, {"sha256": {n: sha256_file(run_dir / n) for n in names}})


def verify(run_dir: str | Path, name: str) -> str | None:
    """Why run_dir/name fails manifest.json (missing, checksum), or None when it matches or the
    manifest does not list it (an unfinished run has no manifest)."""
    run_dir = Path(run_dir)
    try:
        listed = json.loads((run_dir / MANIFEST).read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if name not in listed:
        return None
    if not (run_dir / name).is_file():
        return "missing"
    return None if sha256_file(run_dir / name) == listed[name] else "sha256 differs from manifest.json"


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
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"{run_dir} is a file, not a directory: choose another output directory")
    if overwrite and run_dir.exists():
        for name in (MANIFEST, CONFIG, MODEL, HISTORY, METRICS, CHECKPOINT):
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
    same_anyway = ("training.device", "training.epochs")  # a run may move, and be extended
    diff = sorted(k for k in saved.keys() | wanted.keys()
                  if k not in same_anyway and saved.get(k) != wanted.get(k))  # fmt: skip
    if diff:
        changes = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}" for k in diff)
        raise ValueError(
            f"cannot resume {run_dir}: its config differs in {changes}; pass the same config, "
            "--overwrite to replace the run, or another output directory"
        )


def _recover(run_dir: Path, name: str) -> str:
    return (f"{run_dir / name} is damaged and no intact twin holds its contents: restore it from a "
            f"backup, or re-train with `implicit-em train --overwrite --out {run_dir}`")  # fmt: skip


def load_checkpoint(run_dir: str | Path, device: str | torch.device = "cpu") -> dict:
    """run_dir/checkpoint.pt (model, optimizer, state, epoch), verified; RunDamagedError if not."""
    run_dir = Path(run_dir)
    problem = verify(run_dir, CHECKPOINT)
    if problem is None:
        try:
            return torch.load(run_dir / CHECKPOINT, map_location=device, weights_only=False)
        except Exception as err:  # noqa: BLE001  (any unpickling failure means a damaged file)
            problem = f"{type(err).__name__}: {err}"
    raise RunDamagedError(f"{_recover(run_dir, CHECKPOINT)} ({' '.join(problem.split())[:120]})")


def load_weights(run_dir: str | Path, device: str | torch.device = "cpu") -> dict:
    """The state dict saved in run_dir/model.safetensors, verified against manifest.json.

    A damaged model.safetensors is rebuilt from checkpoint.pt's copy of the same weights (with
    a note on stderr); RunDamagedError names the file when neither is intact.
    """
    run_dir = Path(run_dir)
    problem = verify(run_dir, MODEL)
    if problem is None:
        try:
            return load_file(run_dir / MODEL, device=str(device))
        except Exception as err:  # noqa: BLE001  (SafetensorError, OSError: a damaged file)
            problem = f"{type(err).__name__}: {err}"
    if (run_dir / CHECKPOINT).is_file():
        try:
            state = load_checkpoint(run_dir, "cpu")["model"]
        except RunDamagedError:
            state = None
        if state is not None:
            state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
            atomic_save(lambda p: save_file(state, p), run_dir / MODEL)
            print(f"note: {run_dir / MODEL} was damaged ({' '.join(problem.split())[:80]}); "
                  f"restored from its twin {CHECKPOINT}", file=sys.stderr)  # fmt: skip
            return {k: v.to(device) for k, v in state.items()}
    raise RunDamagedError(f"{_recover(run_dir, MODEL)} ({' '.join(problem.split())[:120]})")


def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, RunConfig]:
    """Rebuild a model and its config from a run directory alone."""
    run_dir = Path(run_dir)
    for name in (CONFIG, MODEL):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir} is not a run directory ({name} is missing): pass a "
                                    "directory written by `implicit-em train`")
    cfg = None
    try:
        problem = verify(run_dir, CONFIG)
        cfg = from_dict(json.loads((run_dir / CONFIG).read_text())) if problem is None else None
    except ValueError as err:
        problem = str(err)
    if cfg is None:
        raise RunDamagedError(f"{_recover(run_dir, CONFIG)} ({' '.join(problem.split())[:120]})")
    model = build_model(cfg)
    model.load_state_dict(load_weights(run_dir, "cpu"))
    return model.to(device), cfg


def read_history(run_dir: str | Path) -> list[dict]:
    """The per-epoch records of history.jsonl ([] when absent); RunDamagedError names the file
    and line of a record that is cut or not JSON."""
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            raise RunDamagedError(
                f"{path} line {n} is cut or not JSON (the file is damaged): restore it from a "
                f"backup, or re-train with `implicit-em train --overwrite --out {path.parent}`"
            ) from None
    return out


def write_history(run_dir: str | Path, history: list[dict]) -> None:
    body = "".join(json.dumps(rec, sort_keys=True) + "\n" for rec in history)
    atomic_write_bytes(Path(run_dir) / HISTORY, body.encode())
