"""Shared test set-up: one CPU thread (the suite runs on small shared machines) and a seed."""

from __future__ import annotations

import copy
import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

# Without a GPU, the fused InfoMax kernels run in Triton's CPU interpreter (tests/test_kernels.py);
# it must be chosen before Triton is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def seed() -> int:
    """Seed torch before every test so each test is reproducible on its own; returns the seed."""
    torch.manual_seed(0)
    return 0


SYNTHETIC_DOCS = Path(__file__).resolve().parents[1] / "docs/eval/synthetic"


@pytest.fixture
def synthetic_table(monkeypatch):
    """A loader: synthetic_table("gpu16k_k214_table") is that table script of docs/eval/synthetic/
    as a module, run from the repository root (the scripts read relative paths and import
    gpu16k_seeds_table from their own folder); sys.path, the module cache and the working
    directory are restored after the test."""

    def load(name: str):
        monkeypatch.syspath_prepend(str(SYNTHETIC_DOCS))
        monkeypatch.chdir(SYNTHETIC_DOCS.parents[2])
        spec = importlib.util.spec_from_file_location(name, SYNTHETIC_DOCS / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, mod)
        spec.loader.exec_module(mod)
        return mod

    return load


@pytest.fixture
def edit_rows(monkeypatch):
    """An installer: edit_rows(T, folder, edit) makes gpu16k_seeds_table (the module T) read the
    committed results files in `folder` with edit(row) applied to copies of their rows, for
    the test alone (a plan's table script sees rows that fail its checks)."""

    def install(T, folder: Path, edit) -> None:
        read = T.read_rows

        def read_rows(path, names, *args):
            rows = copy.deepcopy(read(path, names, *args))
            if path.parent == folder:
                for r in rows:
                    edit(r)
            return rows

        monkeypatch.setattr(T, "read_rows", read_rows)

    return install


@pytest.fixture
def sigint_acts():
    """SIGINT handled (KeyboardInterrupt) in this process while the test runs, so that the
    commands it starts act on Ctrl-C: a child inherits an ignored SIGINT, and a shell starts
    background jobs with SIGINT ignored (POSIX), so a suite run as `pytest &` would otherwise
    start children that cannot be interrupted. Restores the previous handler after."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
