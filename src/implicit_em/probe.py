"""Linear probes: multinomial logistic regression on frozen features.

The torch probe solves, for each of N feature sets at once, the same problem as
scikit-learn's default `LogisticRegression` after `StandardScaler`:
    min_{W, b}  sum_i CE(x_i W + b, y_i) + ||W||^2 / (2 C)      (bias not penalized)
with full-batch L-BFGS. The problems are independent, so minimizing their sum solves each.
Legend: N feature sets, n samples, K features, C classes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _standardize(train: Tensor, test: Tensor) -> tuple[Tensor, Tensor]:
    mean = train.mean(dim=-2, keepdim=True)
    std = train.std(dim=-2, correction=0, keepdim=True)
    std = torch.where(std > 0, std, torch.ones_like(std))  # StandardScaler leaves constants at 0
    return (train - mean) / std, (test - mean) / std


def encode_labels(train_y, test_y) -> tuple[np.ndarray, np.ndarray, int]:
    """Labels of any values scikit-learn accepts as class indices, as its LabelEncoder does.

    train_y, test_y: (n,) arrays, lists or tensors of ints (negative, non-contiguous), strings
    or bools. Classes are np.unique(train_y), sorted; train labels become their index, test
    labels their index or -1 for a class unseen in training (never predicted, so counted
    wrong, as scikit-learn's score counts it). Returns (train codes, test codes, n classes).
    Raises ValueError with fewer than two classes (scikit-learn's LogisticRegression does too).
    """

    def to_np(t) -> np.ndarray:
        return t.detach().cpu().numpy() if isinstance(t, Tensor) else np.asarray(t)

    train_y, test_y = to_np(train_y).ravel(), to_np(test_y).ravel()
    classes, train_codes = np.unique(train_y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(
            f"the probe needs at least 2 classes in train_y, got {classes.tolist()}: "
            "pass labels of more than one class"
        )
    pos = np.clip(np.searchsorted(classes, test_y), 0, len(classes) - 1)
    test_codes = np.where(classes[pos] == test_y, pos, -1)
    return train_codes, test_codes, len(classes)


def probe_loss_and_grad(
    x: Tensor, x_t: Tensor, y: Tensor, W: Tensor, b: Tensor, C: float
) -> tuple[Tensor, Tensor, Tensor]:
    """The probe objective divided by n, and its gradients in W and b, written out by hand.

    x (N, n, K) features, x_t the same as a contiguous (N, K, n) copy, y (N, n, 1) labels,
    W (N, K, C), b (N, 1, C). d CE / d logits = softmax - onehot, so dW = x^T (P - Y) + W / C.
    Autograd would form x^T G from the transposed view of x, whose strided reads made that
    one matmul 3-6x slower than the forward on CPU; x_t keeps both matmuls contiguous.
    """
    n = x.shape[1]
    logp = torch.log_softmax(torch.baddbmm(b, x, W), dim=-1)  # (N, n, C)
    loss = (W.square().sum() / (2 * C) - logp.gather(-1, y).sum()) / n
    g = logp.exp_().scatter_add_(-1, y, torch.full_like(y, -1, dtype=logp.dtype))  # P - Y
    grad_w = torch.baddbmm(W, x_t, g, beta=1 / C).div_(n)
    return loss, grad_w, g.sum(dim=1, keepdim=True).div_(n)


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

    train_feats (N, n, K) or (n, K); labels (n,) shared by all sets, of any values
    scikit-learn accepts (encoded by `encode_labels`: {-1, +1}, non-contiguous ints, strings).
    Computes in float64 on the features' device. Returns a list of N accuracies in [0, 1].
    With two classes the softmax over two logits is the binary logistic model; its penalty
    on the two weight vectors equals the binary one on their difference at C / 2, which is
    what is used, so the solution is scikit-learn's binary LogisticRegression's.
    """
    if train_feats.ndim == 2:
        train_feats, test_feats = train_feats[None], test_feats[None]
    dev = train_feats.device
    xtr, xte = _standardize(train_feats.double(), test_feats.double())  # (N, n, K)
    xtr_t = xtr.mT.contiguous()  # (N, K, n)
    ytr_np, yte_np, n_classes = encode_labels(train_y, test_y)
    ytr, yte = torch.from_numpy(ytr_np).to(dev), torch.from_numpy(yte_np).to(dev)
    if n_classes == 2:  # ||w1||^2 + ||w0||^2 at w1 = -w0 = w / 2 is ||w||^2 / 2
        C = C / 2
    n_sets, n, k = xtr.shape
    W = torch.zeros(n_sets, k, n_classes, dtype=torch.float64, device=dev)
    b = torch.zeros(n_sets, 1, n_classes, dtype=torch.float64, device=dev)
    opt = torch.optim.LBFGS(
        [W, b], lr=1, max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-12,
        history_size=20, line_search_fn="strong_wolfe",
    )  # fmt: skip
    target = ytr.expand(n_sets, n)[..., None]  # (N, n, 1)

    @torch.no_grad()
    def closure() -> Tensor:
        # Divided by n: the same minimizer, better-scaled for L-BFGS's tolerances.
        loss, W.grad, b.grad = probe_loss_and_grad(xtr, xtr_t, target, W, b, C)
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = torch.baddbmm(b, xte, W).argmax(dim=-1)  # (N, n_test)
        return (pred == yte).double().mean(dim=1).tolist()
