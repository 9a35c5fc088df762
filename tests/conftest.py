"""Shared test set-up: one CPU thread (the suite runs on small shared machines) and a seed."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def seed() -> int:
    """Seed torch before every test so each test is reproducible on its own; returns the seed."""
    torch.manual_seed(0)
    return 0
