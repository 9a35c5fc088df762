"""Device-resident, seeded mini-batches without a DataLoader.

The whole data set lives as one tensor on the training device. Each epoch's order is a pure
function of (seed, epoch), so a run resumed at epoch e sees exactly the batches an
uninterrupted run would, and N stacked models can each draw their own order.

The batch rule, shared by every trainer (`train`, the stacked trainer, the estimator; the
DDP path draws only full global batches): an epoch of n rows is cut into batches of
batch_size rows, and a final batch of fewer than MIN_BATCH_ROWS = 2 rows is merged into the
batch before it (the variance and correlation penalties are batch statistics, 0 / 0 on one
row). `batch_slices` is that rule.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

# A large odd multiplier keeps per-(seed, epoch) streams apart.
_EPOCH_STRIDE = 1_000_003
# Fewest rows in a batch: the InfoMax terms are batch statistics (unbiased variance: n - 1).
MIN_BATCH_ROWS = 2


def batch_slices(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each batch of an epoch of n rows: consecutive runs of batch_size
    rows, a final run of fewer than MIN_BATCH_ROWS rows merged into the one before it.

    n = 129, batch_size = 128 gives [(0, 129)]; n = 257 gives [(0, 128), (128, 257)].
    A set of fewer than MIN_BATCH_ROWS rows in all stays one batch (callers that take
    batch statistics reject it).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    bounds = [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < MIN_BATCH_ROWS:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def epoch_permutation(n: int, seed: int, epoch: int, device: torch.device | str = "cpu") -> Tensor:
    """The order of n samples in `epoch` for a run seeded with `seed`. Returns (n,) int64.

    Drawn on the CPU from a dedicated generator, so it is identical on every device.
    """
    gen = torch.Generator().manual_seed(int(seed) * _EPOCH_STRIDE + int(epoch))
    return torch.randperm(n, generator=gen).to(device)


class TensorBatches:
    """Seeded batches of (x, y) from tensors held on one device.

    x: (N, D); y: (N,) or None. Iterating yields (x_b, y_b) with x_b (B, D); y_b is None when y
    is None. Call `set_epoch(e)` before iterating to get epoch e's order (default: 0, then it
    advances by one after each full pass). Batches follow `batch_slices` (a one-row tail joins
    the batch before it) unless drop_last, which drops any incomplete tail.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor | None = None,
        batch_size: int = 128,
        shuffle: bool = True,
        seed: int = 0,
        device: torch.device | str | None = None,
        drop_last: bool = False,
    ) -> None:
        if x.ndim != 2:
            raise ValueError(f"expected x of shape (N, D), got {tuple(x.shape)}: flatten first")
        if y is not None and len(y) != len(x):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}: pass matching arrays")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        device = x.device if device is None else torch.device(device)
        self.x = x.to(device)
        self.y = None if y is None else y.to(device)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.epoch = 0

    @property
    def n_samples(self) -> int:
        return len(self.x)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _slices(self) -> list[tuple[int, int]]:
        n, b = self.n_samples, self.batch_size
        if self.drop_last:
            return [(i * b, (i + 1) * b) for i in range(n // b)]
        return batch_slices(n, b)

    def __len__(self) -> int:
        return len(self._slices())

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor | None]]:
        n = self.n_samples
        if self.shuffle:
            order = epoch_permutation(n, self.seed, self.epoch, self.x.device)
        else:
            order = torch.arange(n, device=self.x.device)
        for lo, hi in self._slices():
            idx = order[lo:hi]
            yield self.x[idx], (None if self.y is None else self.y[idx])
        self.epoch += 1
