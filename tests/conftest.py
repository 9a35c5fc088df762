"""Shared test set-up: one CPU thread (the suite runs on small shared machines) and a seed."""

from __future__ import annotations

import os

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
