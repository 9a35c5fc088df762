"""The gradient-responsibility identity (paper Eq. 4): dL_LSE/da = softmax(-a)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from implicit_em.theorem import verify_lse_identity


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_identity(dtype, tol):
    out = verify_lse_identity(64, 128, dtype=dtype, seed=0)
    assert out["shape"] == [64, 128]
    assert out["dtype"] == str(dtype).removeprefix("torch.")
    assert out["grad"].shape == out["r"].shape == (64 * 128,)
    assert out["max_abs_error"] <= tol
    assert out["mean_abs_error"] <= out["max_abs_error"]
    assert out["correlation"] > 0.999999
    # The reported error is the real one, recomputed from the returned arrays.
    assert np.abs(out["grad"] - out["r"]).max() == pytest.approx(out["max_abs_error"], abs=1e-15)
    # r is a distribution over components for each sample.
    np.testing.assert_allclose(out["r"].reshape(64, 128).sum(axis=1), 1.0, atol=1e-6)


def test_identity_is_seeded():
    a, b = verify_lse_identity(seed=3), verify_lse_identity(seed=3)
    np.testing.assert_array_equal(a["grad"], b["grad"])
    assert not np.array_equal(a["r"], verify_lse_identity(seed=4)["r"])
