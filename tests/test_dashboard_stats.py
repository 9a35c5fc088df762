"""The dashboard's streaming statistics against plain whole-array formulas."""

from __future__ import annotations

import math

import pytest
import torch

from implicit_em.dashboard.stats import (
    HIST_BINS,
    LatentStats,
    StatsConfig,
    hist_edges,
    log10_bins,
    logit_effects,
    nearest_by_cosine,
)


def sparse_codes(C: int, P: int, K: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(C, P, K, generator=g).exp()  # distinct positive values
    return a * (torch.rand(C, P, K, generator=g) < 0.3)  # about 30% fire


def feed(a: torch.Tensor, cfg: StatsConfig, chunk: int, keep=None) -> dict:
    acc = LatentStats(a.shape[2], cfg)
    P = a.shape[1]
    for s in range(0, a.shape[0], chunk):
        k = None if keep is None else keep[s : s + chunk]
        acc.update(a[s : s + chunk], s * P, k)
    return acc.result()


@pytest.mark.parametrize("chunk", [1, 3, 50])
def test_streaming_equals_whole_array(chunk: int) -> None:
    C, P, K = 12, 10, 7
    a = sparse_codes(C, P, K)
    cfg = StatsConfig(top_k=5, n_samples=8, context=2, responsibilities=True)
    out = feed(a, cfg, chunk)
    flat = a.reshape(-1, K)  # (N, K)
    assert out["n_tokens"] == C * P
    assert torch.equal(out["fires"], (flat > 0).sum(0))
    torch.testing.assert_close(out["act_sum"], flat.double().sum(0))
    r = torch.softmax(-flat, dim=1)
    torch.testing.assert_close(out["r_sum"], r.double().sum(0), rtol=1e-5, atol=1e-6)
    # histogram: plain per-latent loop over non-zero values
    for j in range(K):
        v = flat[:, j][flat[:, j] > 0]
        want = torch.bincount(log10_bins(v), minlength=HIST_BINS)
        assert torch.equal(out["hist"][j], want)
    # top-k: values and token indices are those of a plain sort
    vals, rows = flat.topk(5, dim=0)
    torch.testing.assert_close(out["top_value"], vals.t())
    assert torch.equal(out["top_index"], rows.t())
    # windows: the latent's codes at positions p-2..p+2 of the same context, NaN outside
    for j in (0, K - 1):
        for i in range(5):
            g = int(out["top_index"][j, i])
            c, p = divmod(g, P)
            for o in range(-2, 3):
                got = out["top_win"][j, i, o + 2]
                got_r = out["top_win_r"][j, i, o + 2]
                if 0 <= p + o < P:
                    assert got == a[c, p + o, j]
                    torch.testing.assert_close(got_r, r.view(C, P, K)[c, p + o, j])
                else:
                    assert math.isnan(got) and math.isnan(got_r)


def test_reservoir_is_a_sample_of_firing_events() -> None:
    C, P, K = 20, 10, 4
    a = sparse_codes(C, P, K, seed=1)
    out = feed(a, StatsConfig(top_k=3, n_samples=10, context=1), chunk=4)
    flat = a.reshape(-1, K)
    for j in range(K):
        idx = out["sample_index"][j]
        assert (idx >= 0).all() and len(set(idx.tolist())) == 10  # without replacement
        assert (flat[idx, j] > 0).all()
        torch.testing.assert_close(out["sample_value"][j], flat[idx, j])
        assert (out["sample_value"][j].diff() >= 0).all()  # sorted ascending


def test_reservoir_is_uniform() -> None:
    """Each firing event is kept with probability R / n_fires (chi-square over many seeds)."""
    C, P, K, R = 4, 5, 1, 5
    a = torch.ones(C, P, K)  # 20 events, all firing
    counts = torch.zeros(C * P)
    trials = 2000
    for seed in range(trials):
        out = feed(a, StatsConfig(top_k=1, n_samples=R, context=0, seed=seed), chunk=1)
        counts[out["sample_index"][0]] += 1
    expected = trials * R / (C * P)  # 500 each
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 43.8  # 99.9% quantile of chi-square with 19 degrees of freedom


def test_few_firings_leave_empty_slots_and_keep_mask() -> None:
    a = torch.zeros(3, 4, 2)
    a[1, 2, 0] = 2.0
    a[2, 0, 0] = 5.0  # masked out below
    keep = torch.ones(3, 4, dtype=torch.bool)
    keep[2, 0] = False
    out = feed(a, StatsConfig(top_k=3, n_samples=4, context=1), chunk=2, keep=keep)
    assert out["n_tokens"] == 11
    assert out["fires"].tolist() == [1, 0]
    assert out["top_index"][0].tolist() == [6, -1, -1]
    assert out["top_value"][0, 0] == 2.0
    assert out["top_index"][1].tolist() == [-1, -1, -1]
    assert out["sample_index"][0].tolist() == [6, -1, -1, -1]
    assert out["top_win"][0, 0].tolist() == [0.0, 2.0, 0.0]


def test_hist_grid() -> None:
    edges = hist_edges()
    assert len(edges) == HIST_BINS + 1
    v = torch.tensor([1e-9, 1e-5, 1.0, 1.05, 99999.0, 1e9])
    b = log10_bins(v).tolist()
    assert b[0] == 0 and b[1] == 0 and b[-1] == HIST_BINS - 1 and b[-2] == HIST_BINS - 1
    assert edges[b[2]] <= 1.0 < edges[b[2] + 1]
    assert edges[b[3]] <= 1.05 < edges[b[3] + 1]


def test_nearest_by_cosine_matches_full_matrix() -> None:
    V = torch.randn(37, 6)
    cos, idx = nearest_by_cosine(V, n=4, block=8)
    U = torch.nn.functional.normalize(V, dim=1)
    S = U @ U.t()
    S.fill_diagonal_(-2)
    want_c, want_i = S.topk(4, dim=1)
    torch.testing.assert_close(cos, want_c)
    assert torch.equal(idx, want_i)


def test_logit_effects_match_plain_product() -> None:
    W_dec, W_U = torch.randn(6, 9), torch.randn(30, 6)  # (D, K), (V, D)
    tv, ti, bv, bi = logit_effects(W_dec, W_U, n=3, block=4)
    L = (W_U @ W_dec).t()  # (K, V)
    s = L.sort(dim=1, descending=True)
    torch.testing.assert_close(tv, s.values[:, :3])
    assert torch.equal(ti, s.indices[:, :3])
    torch.testing.assert_close(bv, s.values[:, -3:].flip(1))
    assert torch.equal(bi, s.indices[:, -3:].flip(1))
