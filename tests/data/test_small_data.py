"""Embedded digits and synthetic mixtures: shapes, ranges, determinism."""

import pytest
import torch

from implicit_em.data import get_synthetic, load_digits


def test_digits():
    x, y = load_digits()
    assert x.shape == (1797, 64) and x.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.int64
    assert x.min() == 0 and x.max() == 1
    assert torch.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    x2, y2 = load_digits()
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_synthetic_shapes_and_unit_prototypes():
    data, W = get_synthetic(500, 20, 5, noise_std=0.1, seed=1)
    assert data.shape == (500, 20) and data.dtype == torch.float32
    assert W.shape == (5, 20) and W.dtype == torch.float32
    torch.testing.assert_close(W.norm(dim=1), torch.ones(5))


def test_synthetic_is_deterministic_per_seed():
    a = get_synthetic(100, 8, 3, seed=7)
    b = get_synthetic(100, 8, 3, seed=7)
    c = get_synthetic(100, 8, 3, seed=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_synthetic_samples_sit_on_their_prototypes():
    data, W = get_synthetic(300, 16, 4, noise_std=0.0, seed=0)
    k = torch.cdist(data, W).argmin(dim=1)  # (N,) nearest prototype
    assert torch.equal(data, W[k])  # Every sample is exactly one prototype...
    assert set(k.tolist()) == {0, 1, 2, 3}  # ...and every prototype is used.
    noisy, _ = get_synthetic(2000, 16, 4, noise_std=0.1, seed=0)
    residual = noisy - W[torch.cdist(noisy, W).argmin(dim=1)]  # (N, D)
    assert residual.std().item() == pytest.approx(0.1, rel=0.05)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_samples": 0}, "n_samples must be >= 1, got 0"),
        ({"n_components": 0}, "n_components must be >= 1, got 0"),
        ({"noise_std": -1.0}, "noise_std must be >= 0, got -1.0"),
    ],
)
def test_synthetic_rejects_bad_arguments(kwargs, message):
    args = {"n_samples": 10, "n_features": 4, "n_components": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        get_synthetic(**args)
