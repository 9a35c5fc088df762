"""How redundant are the latents a k-sparse probe selects? Pure numpy measurements.

Legend: K latents, D input dimension, P passages, k selected latents. W (K, D) the
directions of a read-out (the decoder-free encoder's rows W, an SAE's encoder rows W_enc,
random unit directions U), idx (k,) int indices of selected latents, z (P, K) pooled codes.

Question (issue 18, docs/eval/probing/gpu5.md): the decoder-free encoder's k-sparse probing
gains little from k = 5 to 20. If the k latents chosen by class-mean difference
(SAEBench `get_top_k_mean_diff_mask`, `sparse_probing.mean_difference_ranking`) are
near-copies of a few directions, the extra latents carry no new information. The
measurements here say how many distinct directions a selection holds, and
`dedup_selection` gives the check that can fail: the same ranking with near-duplicates
skipped, fed to the same probe.

Near-duplicate: |cos(w_i, w_j)| >= threshold (0.9 by default; the synthetic study of issue
18 counted rows with a near-duplicate the same way). A zero row has cos 0 with every row.
"""

from __future__ import annotations

import numpy as np

DUPLICATE_COS = 0.9
"""|cos| at and above which two directions count as near-duplicates."""


def _directions(W) -> np.ndarray:
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"expected directions W of shape (K, D), got {W.shape}")
    if not np.isfinite(W).all():
        raise ValueError("directions W hold NaN or inf: pass finite weights (a diverged "
                         "training run cannot be scored)")  # fmt: skip
    return W


def _indices(idx, K: int) -> np.ndarray:
    raw = np.asarray(idx).reshape(-1)
    if raw.size and not np.issubdtype(raw.dtype, np.integer):
        raise ValueError(f"selected indices must be integers, got dtype {raw.dtype}: pass latent "
                         "indices, not scores")  # fmt: skip
    idx = raw.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= K):
        raise ValueError(f"selected indices must lie in [0, K = {K}), got {idx.min()}..{idx.max()}")
    if len(np.unique(idx)) != len(idx):
        raise ValueError("selected indices repeat a latent: pass each latent once")
    return idx


def unit_rows(W) -> np.ndarray:
    """Rows of W (K, D) scaled to unit L2 norm, float64 (a zero row stays zero)."""
    W = _directions(W)
    norm = np.linalg.norm(W, axis=1, keepdims=True)  # (K, 1)
    return W / np.where(norm > 0, norm, 1.0)


def cosine_matrix(W, idx) -> np.ndarray:
    """cos(w_i, w_j) of the selected rows: (k, k) float64, 1 on the diagonal (0 for a zero row)."""
    W = _directions(W)
    U = unit_rows(W[_indices(idx, len(W))])  # (k, D)
    return U @ U.T  # (k, D) @ (D, k) -> (k, k)


def _upper(M: np.ndarray) -> np.ndarray:
    return M[np.triu_indices(len(M), k=1)]  # (k (k - 1) / 2,)


def mean_abs_cos(W, idx) -> float:
    """Mean over the k (k - 1) / 2 pairs of selected latents of |cos| of their directions.

    W (K, D), idx (k,). Returns a float in [0, 1]; NaN when k < 2. Random unit directions
    in D dimensions give about sqrt(2 / (pi D)) (0.033 at D = 576); k copies of one
    direction give 1.
    """
    pairs = _upper(np.abs(cosine_matrix(W, idx)))
    return float(pairs.mean()) if pairs.size else float("nan")


def mean_abs_corr(z, idx) -> tuple[float, int]:
    """Mean over pairs of selected latents of |Pearson correlation| of their codes.

    z (P, K) codes (pooled per passage), idx (k,). Pairs where either latent is constant
    over the P rows are left out. Returns (mean in [0, 1] or NaN when no pair is left,
    number of pairs left out).
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"expected codes z of shape (P, K), got {z.shape}")
    zs = z[:, _indices(idx, z.shape[1])]  # (P, k)
    zs = zs - zs.mean(axis=0)
    sd = np.sqrt((zs**2).sum(axis=0))  # (k,)
    varies = sd > 0
    zn = zs / np.where(varies, sd, 1.0)
    C = np.abs(zn.T @ zn)  # (k, P) @ (P, k) -> (k, k)
    keep = _upper(varies[:, None] & varies[None, :])
    pairs = _upper(C)[keep]
    return (float(pairs.mean()) if pairs.size else float("nan")), int((~keep).sum())


def duplicate_components(W, idx, threshold: float = DUPLICATE_COS) -> np.ndarray:
    """Group label of each selected latent: connected components of the graph on the k
    selected latents with an edge where |cos| >= threshold.

    W (K, D), idx (k,). Returns (k,) int64 labels 0, 1, ... in order of first appearance.
    """
    A = np.abs(cosine_matrix(W, idx)) >= threshold  # (k, k) bool
    k = len(A)
    label = np.full(k, -1, dtype=np.int64)
    n = 0
    for start in range(k):
        if label[start] >= 0:
            continue
        stack, label[start] = [start], n
        while stack:
            i = stack.pop()
            for j in np.flatnonzero(A[i] & (label < 0)):
                label[j] = n
                stack.append(int(j))
        n += 1
    return label


def distinct_directions(W, idx, threshold: float = DUPLICATE_COS) -> int:
    """Number of distinct directions among the selected latents: the connected components of
    `duplicate_components` (k when no two are near-duplicates, 1 when all are chained copies)."""
    labels = duplicate_components(W, idx, threshold)
    return int(labels.max() + 1) if labels.size else 0


def rows_with_duplicate(W, threshold: float = DUPLICATE_COS, chunk: int = 4096) -> int:
    """Number of the K rows of W (K, D) with |cos| >= threshold to at least one other row.

    Computed in row chunks (chunk x K cosines at a time), so K in the tens of thousands fits.
    """
    if chunk < 1:
        raise ValueError(f"chunk = {chunk} rows per block must be >= 1")
    U = unit_rows(W)
    K = len(U)
    count = 0
    for i in range(0, K, chunk):
        C = np.abs(U[i : i + chunk] @ U.T)  # (c, D) @ (D, K) -> (c, K)
        C[np.arange(len(C)), np.arange(i, i + len(C))] = 0.0  # not the row itself
        count += int((C >= threshold).any(axis=1).sum())
    return count


def dedup_selection(order, W, k: int, threshold: float = DUPLICATE_COS) -> np.ndarray:
    """Greedy de-duplicated selection: walk `order` (a ranking of latents, best first, e.g.
    `sparse_probing.mean_difference_ranking`), take a latent unless its direction has
    |cos| >= threshold with one already taken, stop at k.

    order (K,) or shorter, W (K, D), k >= 1. Returns (m,) int64 with m = k, or fewer when the
    ranking runs out of non-duplicate latents.
    """
    U = unit_rows(W)
    order = _indices(order, len(U))
    if k < 1:
        raise ValueError(f"k = {k} must be >= 1")
    taken: list[int] = []
    for j in order:
        if taken and float(np.abs(U[taken] @ U[j]).max()) >= threshold:  # (m, D) @ (D,)
            continue
        taken.append(int(j))
        if len(taken) == k:
            break
    return np.asarray(taken, dtype=np.int64)


def selection_stats(W, z, idx, threshold: float = DUPLICATE_COS) -> dict:
    """All measurements of one selection: {"mean_abs_cos", "mean_abs_corr",
    "corr_pairs_left_out", "distinct", "k"}. W (K, D) directions, z (P, K) pooled codes
    (the passages the selection was made on), idx (k,)."""
    corr, left_out = mean_abs_corr(z, idx)
    return {
        "k": int(len(np.asarray(idx).reshape(-1))),
        "mean_abs_cos": mean_abs_cos(W, idx),
        "mean_abs_corr": corr,
        "corr_pairs_left_out": left_out,
        "distinct": distinct_directions(W, idx, threshold),
    }
