"""The stacked trainer's opt-in fused step (`StackedTrainer(fused_step=True)`,
IMPLICIT_EM_FUSED_STEP=1) against its default step: the same training to float32 rounding."""

from __future__ import annotations

import pytest
import torch

from implicit_em import kernels
from implicit_em.config import from_dict
from implicit_em.data import load_digits
from implicit_em.train.stacked import (
    FUSED_KERNEL_ENV,
    FUSED_STEP_ENV,
    StackedTrainer,
    fused_step_enabled,
)


@pytest.fixture(scope="module")
def x_digits() -> torch.Tensor:
    return load_digits()[0][:512]  # (512, 64)


def cfgs(optimizer: str = "adam", lr: float = 1e-3) -> list:
    """Four encoders on two data seeds (one block), two learning rates. Frozen models under
    the fused step: tests/test_stacked.py::test_a_diverged_model_is_frozen."""
    return [
        from_dict({"model": {"type": "encoder", "input_dim": 64, "hidden_dim": 16},
                   "loss": {"reference_k": 16}, "data": {"dataset": "digits"},
                   "training": {"optimizer": optimizer, "lr": lr * (1 + i % 2), "seed": 1 + i % 2,
                                "epochs": 2, "batch_size": 128}})
        for i in range(4)
    ]  # fmt: skip


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_fused_step_trains_like_the_default_step(x_digits, monkeypatch, device):
    """Two epochs, float32: the default step as CUDA runs it (tensor-only Adam) and the fused
    step (block kernel `kernels.triton_stacked_v2`: compiled on CUDA, Triton's interpreter on a
    CPU machine) end within float32 noise of each other, not bitwise (the kernels round
    differently)."""
    if not kernels.triton_available():
        pytest.skip("Triton is not installed")
    from implicit_em.kernels import triton_stacked_v2

    calls = []
    kernel = triton_stacked_v2.block_terms_grad_v2
    monkeypatch.setattr(triton_stacked_v2, "block_terms_grad_v2",
                        lambda *args: calls.append(1) or kernel(*args))  # fmt: skip
    default = StackedTrainer(cfgs(), device, fused_step=False)
    default.fused_adam = False  # the update CUDA graphs capture
    fused = StackedTrainer(cfgs(), device, fused_step=True)
    h_default = default.fit(x_digits, progress=False)
    h_fused = fused.fit(x_digits, progress=False)
    for a, b in zip(default.models, fused.models, strict=True):
        torch.testing.assert_close(b.W.cpu(), a.W.cpu(), rtol=1e-4, atol=1e-5)
    for ha, hb in zip(h_default, h_fused, strict=True):
        for key in ("lse", "var", "tc", "total"):
            assert ha[-1][key] == pytest.approx(hb[-1][key], rel=1e-4), key
    if device == "cuda":  # eager warm-up steps and captures call it; replays do not
        assert calls
    elif kernels.interpreted():  # every step of every block
        assert len(calls) == 2 * 4 * len(fused.blocks)


def test_the_environment_switch_and_its_default_per_device(monkeypatch):
    """FUSED_STEP_ENV: "1" on, "0" off, unset on for CUDA only (measured faster there,
    docs/benchmarks.md "Round 5b"); anything else one line naming the variable."""
    monkeypatch.delenv(FUSED_STEP_ENV, raising=False)
    assert not fused_step_enabled() and not fused_step_enabled("cpu")
    assert fused_step_enabled("cuda") and fused_step_enabled(torch.device("cuda", 1))
    assert not StackedTrainer(cfgs()[:1]).fused_step  # the CPU default is unchanged
    monkeypatch.setenv(FUSED_STEP_ENV, "0")
    assert not fused_step_enabled("cuda")
    monkeypatch.setenv(FUSED_STEP_ENV, "1")
    assert fused_step_enabled() and StackedTrainer(cfgs()[:1]).optim.multi_tensor
    monkeypatch.setenv(FUSED_STEP_ENV, "yes")
    with pytest.raises(ValueError, match=f"^{FUSED_STEP_ENV} must be 0 or 1, got 'yes'"):
        fused_step_enabled("cuda")


@pytest.mark.parametrize(
    ("split", "fused", "want"),
    [(None, None, True), (None, "0", False), (None, "1", True), ("0", None, False),
     ("1", "0", True), ("1", None, True)],
)  # fmt: skip
def test_split_urgent_follows_the_fused_step_unless_set(monkeypatch, split, fused, want):
    """experiments.common.split_urgent: "1" / "0" as set; unset, whether the fused step is on
    for CUDA (the split alone was slower on the H200, beside the fused step faster)."""
    from implicit_em.experiments.common import SPLIT_URGENT_ENV, split_urgent

    for name, value in ((SPLIT_URGENT_ENV, split), (FUSED_STEP_ENV, fused)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert split_urgent() is want


def test_split_urgent_refuses_other_values(monkeypatch):
    from implicit_em.experiments.common import SPLIT_URGENT_ENV, split_urgent

    monkeypatch.setenv(SPLIT_URGENT_ENV, "yes")
    with pytest.raises(ValueError, match=f"^{SPLIT_URGENT_ENV} must be 0 or 1, got 'yes'"):
        split_urgent()


def test_a_removed_kernel_is_refused(monkeypatch):
    """FUSED_KERNEL_ENV: unset or "v2" (the one kernel) pass; "v1" (removed) is refused in one
    line when the fused step is on (the default step never reads it)."""
    for value in (None, "v2"):
        if value is None:
            monkeypatch.delenv(FUSED_KERNEL_ENV, raising=False)
        else:
            monkeypatch.setenv(FUSED_KERNEL_ENV, value)
        assert StackedTrainer(cfgs()[:1], fused_step=True).fused_step
    monkeypatch.setenv(FUSED_KERNEL_ENV, "v1")
    StackedTrainer(cfgs()[:1], fused_step=False)  # not read
    with pytest.raises(ValueError, match="IMPLICIT_EM_FUSED_KERNEL='v1': .* unset it"):
        StackedTrainer(cfgs()[:1], fused_step=True)
