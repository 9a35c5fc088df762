"""scikit-learn's 8x8 handwritten digits: 1,797 real images shipped with the package."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

DIGITS_MAX = 16.0  # Pixel values are counts of set bits in 4x4 blocks: 0..16.


def load_digits() -> tuple[Tensor, Tensor]:
    """x (1797, 64) float32 in [0, 1] and y (1797,) int64 in [0, 10); no download needed."""
    # Imported here: sklearn.datasets takes ~2 s to import, which every CLI call would pay.
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = (bunch.data / DIGITS_MAX).astype(np.float32)  # (1797, 64)
    y = bunch.target.astype(np.int64)  # (1797,)
    return torch.from_numpy(x), torch.from_numpy(y)
