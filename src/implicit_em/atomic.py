"""Atomic file writes: write to a hidden temporary file beside the target, then rename.

A killed process leaves at most a hidden `.<name>.*.tmp` file, never a half-written file
under a trusted name.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path


def _create_beside(path: Path, tmp: str) -> None:
    """Create the empty temporary file tmp (mode 0600) beside path, making path's folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def atomic_save(save_fn: Callable[[str], object], path: str | Path) -> None:
    """Call save_fn(tmp_path), then rename tmp_path to path (readable: mode 0644).

    The temporary name is chosen before the file exists, so an interrupt at any point (Ctrl-C
    arrives between any two bytecodes) removes it: nothing is left behind but the old target.
    """
    path = Path(path)
    tmp = str(path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        _create_beside(path, tmp)
        save_fn(tmp)
        os.chmod(tmp, 0o644)  # created 0600 like mkstemp; shared caches and results stay readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_dir(save_fn: Callable[[Path], object], path: str | Path) -> None:
    """Call save_fn(tmp_dir) to fill a new hidden folder beside path, then rename it to path.

    For outputs that are folders (a saved Hugging Face model). path must not exist yet (a
    folder cannot replace a non-empty one); on any exception or interrupt the temporary folder
    is removed, so a half-written folder is never found under path.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        save_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_save(write, path)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())
