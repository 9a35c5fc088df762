"""Per-feature best-latent F1 against ground truth (issue 18; docs/eval/synthetic/cpu-feature-f1.md).

For every true feature n and every latent k, "latent k fires" (its code is non-zero, as in
sae-lens's synthetic metrics) is read as a detector of "feature n fires" (its activation is
non-zero) over the evaluation samples. With TP[k, n] the number of samples where both fire and
fires_k, fires_n the firing counts, the detector's F1 is 2 TP / (fires_k + fires_n) (precision
TP / fires_k, recall TP / fires_n). Each feature keeps its best latent (a max over k, no
one-to-one matching): a duplicate latent adds nothing, a dead latent (fires_k = 0) subtracts
nothing. This differs from sae-lens's `ClassificationMetricsCalculator` F1, a mean over latents
of each latent against its own best-matching feature by |cos| (duplicates each count, dead
latents count 0).

Legend: B samples in a chunk, K latents, N true features. Counts are accumulated chunk by chunk
as one co-firing matrix product per chunk (codes_bin^T @ feats_bin, (K, N)), so the score scales
to K = 4,096, N = 16,384 on a GPU; chunk products are exact in float32 (counts <= B < 2^24) and
summed in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class CoFiring:
    """Firing counts over the samples seen so far: tp (K, N) co-firing counts, latent (K,) and
    feature (N,) firing counts, n (int) samples. All float64 (exact integers below 2^53)."""

    tp: Tensor
    latent: Tensor
    feature: Tensor
    n: int = 0


def empty_counts(k_latents: int, n_features: int, device=None) -> CoFiring:
    """Zero counts for K latents and N features (float64, on device)."""
    z = dict(dtype=torch.float64, device=device)
    return CoFiring(torch.zeros(k_latents, n_features, **z), torch.zeros(k_latents, **z),
                    torch.zeros(n_features, **z))  # fmt: skip


@torch.no_grad()
def add_counts(counts: CoFiring, codes: Tensor, feats: Tensor) -> CoFiring:
    """counts with one chunk added (in place; also returned). codes (B, K): latent codes, a latent
    fires where its code is non-zero; feats (B, N): true feature activations, a feature fires
    where non-zero. ValueError when the shapes do not fit the counts."""
    if codes.ndim != 2 or feats.ndim != 2 or codes.shape[0] != feats.shape[0]:
        raise ValueError(f"expected codes (B, K) and feats (B, N) with the same B, got "
                         f"{tuple(codes.shape)} and {tuple(feats.shape)}")  # fmt: skip
    if (codes.shape[1], feats.shape[1]) != tuple(counts.tp.shape):
        raise ValueError(f"codes / feats give (K, N) = ({codes.shape[1]}, {feats.shape[1]}), the "
                         f"counts are {tuple(counts.tp.shape)}: start them with empty_counts(K, N)")  # fmt: skip
    c = (codes != 0).float()  # (B, K)
    f = (feats != 0).float().to(c.device)  # (B, N)
    counts.tp += (c.t() @ f).double()  # (K, B) @ (B, N) -> (K, N), exact in float32
    counts.latent += c.sum(dim=0).double()  # (K,)
    counts.feature += f.sum(dim=0).double()  # (N,)
    counts.n += codes.shape[0]
    return counts


def pair_f1(counts: CoFiring) -> Tensor:
    """F1[k, n] = 2 TP / (fires_k + fires_n) (K, N): latent k as a detector of feature n; 0
    where neither fires."""
    denom = counts.latent[:, None] + counts.feature[None, :]  # (K, N)
    return torch.where(denom > 0, 2 * counts.tp / denom.clamp_min(1), torch.zeros_like(denom))


def best_latent_f1(counts: CoFiring, chunk: int = 1024) -> Tensor:
    """Each feature's best F1 over the latents (N,), features chunked to bound memory; NaN for a
    feature that never fires (its F1 is undefined)."""
    n = counts.feature.shape[0]
    best = torch.empty(n, dtype=torch.float64, device=counts.tp.device)
    for i in range(0, n, chunk):
        part = CoFiring(counts.tp[:, i : i + chunk], counts.latent, counts.feature[i : i + chunk])
        best[i : i + chunk] = pair_f1(part).max(dim=0).values  # (K, n_chunk) -> (n_chunk,)
    return torch.where(counts.feature > 0, best, torch.full_like(best, float("nan")))


DETECTED_F1 = 0.5
"""A feature counts as detected ("features_f1_0.5") when its best latent reaches this F1."""


def feature_f1_scores(counts: CoFiring) -> dict:
    """{"feature_f1": mean of `best_latent_f1` over the features that fire (float; NaN when none
    fires), "features_f1_0.5": number of features whose best latent has F1 >= DETECTED_F1 (int),
    "features_firing": number of features that fire (int)}."""
    best = best_latent_f1(counts)
    fired = ~best.isnan()
    mean = float(best[fired].mean()) if bool(fired.any()) else float("nan")
    return {"feature_f1": mean, "features_f1_0.5": int((best[fired] >= DETECTED_F1).sum()),
            "features_firing": int(fired.sum())}  # fmt: skip


def feature_f1(codes: Tensor, feats: Tensor, chunk: int = 4096) -> dict:
    """`feature_f1_scores` of codes (S, K) against feats (S, N) held in memory, counted in
    chunks of `chunk` samples."""
    counts = empty_counts(codes.shape[1], feats.shape[1], codes.device)
    for i in range(0, codes.shape[0], chunk):
        add_counts(counts, codes[i : i + chunk], feats[i : i + chunk])
    return feature_f1_scores(counts)
