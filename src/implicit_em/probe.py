"""Linear probes: multinomial logistic regression on frozen features.

The torch probe solves, for each of N feature sets at once, the same problem as
scikit-learn's default `LogisticRegression` after `StandardScaler`:
    min_{W, b}  sum_i CE(x_i W + b, y_i) + ||W||^2 / (2 C)      (bias not penalized)
with full-batch L-BFGS. The problems are independent, so minimizing their sum solves each.
Legend: N feature sets, n samples, K features, C classes.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _standardize(train: Tensor, test: Tensor) -> tuple[Tensor, Tensor]:
    mean = train.mean(dim=-2, keepdim=True)
    std = train.std(dim=-2, correction=0, keepdim=True)
    std = torch.where(std > 0, std, torch.ones_like(std))  # StandardScaler leaves constants at 0
    return (train - mean) / std, (test - mean) / std


def torch_probe_accuracy(
    train_feats: Tensor,
    train_y: Tensor,
    test_feats: Tensor,
    test_y: Tensor,
    C: float = 1.0,
    max_iter: int = 500,
    tol: float = 1e-5,
) -> list[float]:
    """Test accuracy of a logistic-regression probe per feature set.

    train_feats (N, n, K) or (n, K); labels (n,) shared by all sets. Computes in float64 on the
    features' device. Returns a list of N accuracies in [0, 1].
    """
    if train_feats.ndim == 2:
        train_feats, test_feats = train_feats[None], test_feats[None]
    dev = train_feats.device
    xtr, xte = _standardize(train_feats.double(), test_feats.double())  # (N, n, K)
    ytr, yte = train_y.to(dev).long(), test_y.to(dev).long()
    n_sets, n, k = xtr.shape
    n_classes = int(max(ytr.max(), yte.max())) + 1
    W = torch.zeros(n_sets, k, n_classes, dtype=torch.float64, device=dev, requires_grad=True)
    b = torch.zeros(n_sets, 1, n_classes, dtype=torch.float64, device=dev, requires_grad=True)
    opt = torch.optim.LBFGS(
        [W, b], lr=1, max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-12,
        history_size=20, line_search_fn="strong_wolfe",
    )  # fmt: skip
    target = ytr.expand(n_sets, n)

    def closure() -> Tensor:
        opt.zero_grad()
        logits = torch.baddbmm(b, xtr, W)  # (N, n, C)
        ce = -torch.log_softmax(logits, dim=-1).gather(-1, target[..., None]).sum()
        # Divided by n: the same minimizer, better-scaled for L-BFGS's tolerances.
        loss = (ce + W.square().sum() / (2 * C)) / n
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = torch.baddbmm(b, xte, W).argmax(dim=-1)  # (N, n_test)
        return (pred == yte).double().mean(dim=1).tolist()
