"""Atomic file writes: write to a hidden temporary file beside the target, then rename.

A killed process leaves at most a hidden `.<name>.*.tmp` file, never a half-written file
under a trusted name.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _temp_beside(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return tmp


def atomic_save(save_fn: Callable[[str], object], path: str | Path) -> None:
    """Call save_fn(tmp_path), then rename tmp_path to path (readable: mode 0644)."""
    path = Path(path)
    tmp = _temp_beside(path)
    try:
        save_fn(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; shared caches and results stay readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
