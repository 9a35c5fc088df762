"""Atomic file writes: write to a hidden temporary file beside the target, then rename.

A killed process leaves at most a hidden `.<name>.*.tmp` file, never a half-written file
under a trusted name. Folders (`atomic_save_dir`) name their temporary by writer
(`.<name>.<host>-<pid>.<hex>.tmp`), so that `remove_stale_temps` can tell a killed writer's
leftover from a live one's; `lock_beside` serialises writers of one path across processes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
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
    tmp = path.parent / f".{path.name}.{_writer()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        save_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _writer() -> str:
    """This process as named in temporary folders: '<host>-<pid>'."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def remove_stale_temps(path: str | Path, max_age_s: float = 3600.0) -> list[Path]:
    """Remove what interrupted writes of path left beside it; return what was removed.

    Only path's own temporaries are considered: `.<name>.<host>-<pid>.<hex>.tmp` (removed when
    <host> is this machine and process <pid> is gone), and the writer-less names of older
    versions, `.<name>.<hex>.tmp` and `<name>.tmp` (removed when untouched for max_age_s
    seconds). Call it while holding `lock_beside(path)`, so that no live writer of path that
    takes the lock can lose its temporary.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    host, removed = socket.gethostname(), []
    prefix = f".{path.name}."
    for p in path.parent.iterdir():
        name = p.name
        if name == f"{path.name}.tmp":
            writer = None
        elif name.startswith(prefix) and name.endswith(".tmp"):
            middle = name[len(prefix) : -len(".tmp")]  # '<host>-<pid>.<hex>' or '<hex>'
            writer = middle.rsplit(".", 1)[0] if "." in middle else None
        else:
            continue
        if writer is not None:
            w_host, _, pid = writer.rpartition("-")
            if w_host != host or not pid.isdigit():
                continue  # another machine's writer: its liveness cannot be seen from here
            stale = not _alive(int(pid))
        else:
            stale = time.time() - p.lstat().st_mtime > max_age_s
        if stale:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def lock_beside(path: str | Path):
    """An inter-process lock for writing path (`filelock.FileLock` on `.<name>.lock` beside it):
    `with lock_beside(p): ...` waits while another process holds it."""
    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.parent / f".{path.name}.lock"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_save(write, path)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def file_in_the_way(out: str | Path) -> Path | None:
    """The file standing where folder `out` should be (`out` itself, or the nearest existing
    part of its path when that is a file), or None when `out` can be a folder."""
    out = Path(out)
    for p in (out, *out.parents):
        if p.exists():
            return None if p.is_dir() else p
    return None


def free_paths(out: Path, names: tuple[str, ...], overwrite: bool) -> list[Path]:
    """out / name for each name, `out` created; FileExistsError when one exists and not
    `overwrite` (nothing already written is replaced silently). The CLI prints the error's one
    line; the eval-suite commands that write fixed file names call this first."""
    if (p := file_in_the_way(out)) is not None:
        part = "" if p == out else f" (its part {p} is a file)"
        raise FileExistsError(f"{out} is a file, not a directory{part}: choose another --out")
    paths = [out / n for n in names]
    for p in paths:
        if p.exists() and not overwrite:
            raise FileExistsError(
                f"{p} exists: move it away, choose another --out, or pass --overwrite"
            )
    out.mkdir(parents=True, exist_ok=True)
    return paths
