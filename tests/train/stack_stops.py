"""Interrupt the stacked trainer at a chosen step, for the checkpoint tests."""

from __future__ import annotations

import contextlib

import pytest

from implicit_em.train.stacked import StackedTrainer


@contextlib.contextmanager
def stop_at_step(monkeypatch, at_step: int):
    """Inside the block, the at_step-th call (1-based) of `StackedTrainer.step` raises
    KeyboardInterrupt; the block must end by it (pytest.raises). The patch is undone after."""
    step, calls = StackedTrainer.step, [0]

    def step_or_stop(self, xb):
        calls[0] += 1
        if calls[0] == at_step:
            raise KeyboardInterrupt
        return step(self, xb)

    monkeypatch.setattr(StackedTrainer, "step", step_or_stop)
    with pytest.raises(KeyboardInterrupt):
        yield
    monkeypatch.undo()
