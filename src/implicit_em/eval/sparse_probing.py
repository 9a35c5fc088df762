"""k-sparse probing: the SAEBench / sae-probes protocol on pooled codes, with controls.

Legend: P passages, T tokens per passage, D hidden size, K latents. acts (P, T, D) token
activations, mask (P, T) which tokens count, codes (P, T, K), pooled z (P, K), labels y (P,)
in {0, 1}.

Protocol (SAEBench `sae_bench/evals/sparse_probing`, Karvonen et al. 2025, "SAEBench: A
Comprehensive Benchmark for Sparse Autoencoders"; and sae-probes, Kantamneni et al. 2025,
"Are Sparse Autoencoders Useful? A Case Study in Sparse Probing", arXiv:2502.16681):

1. Pool: each passage's codes are averaged over its tokens, BOS / EOS / padding excluded
   (SAEBench: `get_all_llm_activations(..., mask_bos_pad_eos_tokens=True)`, then
   `create_meaned_model_activations` / `get_sae_meaned_activations`: codes are computed per
   token and the mean is taken over the unmasked tokens).
2. Select: the k latents with the largest |mean_{y=1} z - mean_{y=0} z| on the *training*
   split (SAEBench `probe_training.get_top_k_mean_diff_mask`).
3. Fit: scikit-learn `LogisticRegression` (L2, C = 1, max_iter = 1000, no scaling) on the k
   selected latents; report test accuracy (SAEBench `train_sklearn_probe`).

Deviation: SAEBench fits its full-dictionary and full-activation probes with a torch probe
(AdamW, early stopping on the test split); here every probe, full ones included, is the same
scikit-learn logistic regression, which does not look at the test split.

Controls (issue 18): `RandomDirections` reads out K random unit directions at a chosen L0
(ReLU, then the L0 largest per token), the same number of latents per token as the model it
stands beside; the untrained model of each family is built by the caller.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor, nn

DEFAULT_KS = (1, 2, 5, 10, 20)
"""The k of the issue's protocol (SAEBench's default list is 1, 2, 5, 10, 20, 50)."""


def _check_mask(mask: Tensor, P: int, T: int) -> None:
    if tuple(mask.shape) != (P, T):
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected (P, T) = ({P}, {T})")
    if not bool(mask.any(dim=1).all()):
        raise ValueError("a passage has no unmasked token: every passage needs >= 1 token")


@torch.no_grad()
def mean_pool(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean of x (P, T, F) over the tokens where mask (P, T) is True -> (P, F), float32.

    mask None counts every token. Raises ValueError for a passage with no counted token.
    """
    if x.ndim != 3:
        raise ValueError(f"expected x of shape (P, T, F), got {tuple(x.shape)}")
    P, T, _ = x.shape
    if mask is None:
        return x.float().mean(dim=1)
    _check_mask(mask, P, T)
    w = mask.to(torch.float32).unsqueeze(-1)  # (P, T, 1)
    return (x.float() * w).sum(dim=1) / w.sum(dim=1)  # (P, F)


@torch.no_grad()
def pooled_codes(encode, acts: Tensor, mask: Tensor | None = None, batch: int = 64) -> Tensor:
    """Encode every token of acts (P, T, D) with encode((N, D)) -> (N, K), then mean-pool.

    Returns (P, K) float32: the SAEBench read-out (codes per token, then the masked mean).
    """
    P, T, D = acts.shape
    if mask is not None:
        _check_mask(mask, P, T)
    out = []
    for i in range(0, P, batch):
        chunk = acts[i : i + batch].float()  # (p, T, D)
        codes = encode(chunk.reshape(-1, D))  # (p T, K)
        codes = codes.reshape(chunk.shape[0], T, -1)  # (p, T, K)
        out.append(mean_pool(codes, None if mask is None else mask[i : i + batch]))
    return torch.cat(out)


def mean_difference_ranking(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Latent indices sorted by |mean_{y=1} z - mean_{y=0} z|, largest first (stable).

    z: (P, K) pooled codes, y: (P,) labels in {0, 1}. Returns (K,) int64.
    Source: SAEBench `get_top_k_mean_diff_mask`.
    """
    z, y = np.asarray(z, dtype=np.float64), np.asarray(y)
    if z.ndim != 2 or y.shape != (z.shape[0],):
        raise ValueError(f"expected z (P, K) and y (P,), got {z.shape} and {y.shape}")
    if set(np.unique(y).tolist()) != {0, 1}:
        raise ValueError(f"labels must be binary 0/1 with both classes present, got {np.unique(y)}")
    diff = np.abs(z[y == 1].mean(axis=0) - z[y == 0].mean(axis=0))  # (K,)
    return np.argsort(-diff, kind="stable")


def select_latents(z: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """The k latents with the largest class-mean difference on (z, y): (k,) int64."""
    if not 1 <= k <= np.asarray(z).shape[1]:
        raise ValueError(f"k = {k} must be in [1, K = {np.asarray(z).shape[1]}]")
    return mean_difference_ranking(z, y)[:k]


_CONTROLLER = []


def _blas_controller():
    """One threadpoolctl controller, made once (making it scans the loaded libraries)."""
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


def logistic_accuracy(
    z_train: np.ndarray,
    y_train: np.ndarray,
    z_test: np.ndarray,
    y_test: np.ndarray,
    C: float = 1.0,
    max_iter: int = 1000,
    standardize: bool = False,
) -> float:
    """Test accuracy of scikit-learn LogisticRegression(C, L2, lbfgs) fitted on the train split.

    z_*: (P, F) features; y_*: (P,) labels. Returns a float in [0, 1]. standardize=False
    fits the raw features (SAEBench); True z-scores each feature with train-split statistics
    first (then C = 1 means the same for a feature of any scale, e.g. responsibilities).
    Convergence warnings are silenced (the accuracy is what is reported). BLAS runs on one
    thread: these fits are tiny, and on a shared machine BLAS threads cost ~7x the CPU time.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    z_train = np.asarray(z_train, dtype=np.float64)
    z_test = np.asarray(z_test, dtype=np.float64)
    if standardize:
        mu, sd = z_train.mean(axis=0), z_train.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)  # a constant feature stays 0
        z_train, z_test = (z_train - mu) / sd, (z_test - mu) / sd
    clf = LogisticRegression(C=C, max_iter=max_iter)
    with warnings.catch_warnings(), _blas_controller().limit(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(z_train, np.asarray(y_train))
    return float((clf.predict(z_test) == np.asarray(y_test)).mean())


def k_sparse_probe(
    z_train: np.ndarray,
    y_train: np.ndarray,
    z_test: np.ndarray,
    y_test: np.ndarray,
    ks: tuple[int, ...] = DEFAULT_KS,
    full: bool = True,
    standardize: bool = False,
) -> dict:
    """k-sparse probing of pooled codes (SAEBench protocol, see module docstring).

    z_train (P, K), y_train (P,), z_test (Q, K), y_test (Q,). For each k in ks (skipped when
    k > K): select k latents by class-mean difference on the train split, fit a logistic
    regression on them, report test accuracy. full=True adds the probe on all K latents.
    standardize: see `logistic_accuracy` (False = SAEBench).
    Returns {"k": {k: accuracy}, "full": accuracy or None, "selected": {k: [indices]}}.
    """
    z_train, z_test = np.asarray(z_train), np.asarray(z_test)
    if z_train.shape[1] != z_test.shape[1]:
        raise ValueError(f"train has {z_train.shape[1]} latents, test {z_test.shape[1]}")
    order = mean_difference_ranking(z_train, y_train)
    acc, selected = {}, {}
    for k in ks:
        if k > z_train.shape[1]:
            continue
        idx = order[:k]
        acc[k] = logistic_accuracy(
            z_train[:, idx], y_train, z_test[:, idx], y_test, standardize=standardize
        )
        selected[k] = idx.tolist()
    out = {"k": acc, "full": None, "selected": selected}
    if full:
        out["full"] = logistic_accuracy(z_train, y_train, z_test, y_test, standardize=standardize)
    return out


class RandomDirections(nn.Module):
    """Control read-out: K random unit directions u_j (Gaussian, normalised), codes
    a = TopL0(ReLU(U x)) (every other entry zero), so each token keeps `l0` latents.

    input_dim D, hidden_dim K, l0 in [1, K] (l0 = K keeps every positive projection). Has
    `encode` (N, D) -> (N, K) and `W` (K, D) like the trained models; nothing is learned.
    """

    def __init__(self, input_dim: int, hidden_dim: int, l0: int, seed: int = 0) -> None:
        super().__init__()
        if not 1 <= l0 <= hidden_dim:
            raise ValueError(f"l0 = {l0} must be in [1, hidden_dim = {hidden_dim}]")
        g = torch.Generator().manual_seed(seed)
        U = torch.randn(hidden_dim, input_dim, generator=g)  # (K, D)
        self.register_buffer("U", U / U.norm(dim=1, keepdim=True))
        self.input_dim, self.hidden_dim, self.l0 = input_dim, hidden_dim, int(l0)

    @property
    def W(self) -> Tensor:  # (K, D)
        return self.U

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        z = torch.relu(x @ self.U.t())  # (N, D) @ (D, K) -> (N, K)
        if self.l0 >= self.hidden_dim:
            return z
        top = z.topk(self.l0, dim=1)
        return torch.zeros_like(z).scatter_(1, top.indices, top.values)  # (N, K)
