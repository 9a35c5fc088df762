"""Per-feature best-latent F1 (`eval.feature_f1`) against the plain formula and its promises."""

import math

import pytest
import torch

from implicit_em.eval.feature_f1 import add_counts, empty_counts, feature_f1


def plain_feature_f1(codes: torch.Tensor, feats: torch.Tensor) -> float:
    """The definition, one (latent, feature) pair at a time with Python loops."""
    c, f = (codes != 0).tolist(), (feats != 0).tolist()
    per_feature = []
    for n in range(feats.shape[1]):
        fires_n = sum(row[n] for row in f)
        if fires_n == 0:
            continue
        best = 0.0
        for k in range(codes.shape[1]):
            tp = sum(1 for s in range(len(c)) if c[s][k] and f[s][n])
            fires_k = sum(row[k] for row in c)
            best = max(best, 2 * tp / (fires_k + fires_n))
        per_feature.append(best)
    return sum(per_feature) / len(per_feature)


def tiny_case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.rand(60, 5, generator=g) * (torch.rand(60, 5, generator=g) < 0.3)  # (S, N)
    codes = torch.relu(torch.randn(60, 7, generator=g) - 0.5)  # (S, K)
    codes[:, 0] = feats[:, 1] * 2.0  # latent 0 detects feature 1 exactly
    feats[:, 4] = 0.0  # a feature that never fires is left out
    return codes, feats


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chunked_products_equal_the_plain_loop(seed):
    codes, feats = tiny_case(seed)
    res = feature_f1(codes, feats, chunk=7)  # uneven chunks
    assert res["feature_f1"] == pytest.approx(plain_feature_f1(codes, feats), abs=1e-12)
    assert res["features_firing"] == 4
    assert res["features_f1_0.5"] >= 1  # feature 1 has its perfect detector


def test_planted_duplicates_do_not_raise_it():
    codes, feats = tiny_case()
    base = feature_f1(codes, feats)["feature_f1"]
    dup = torch.cat([codes, codes[:, :1].repeat(1, 20)], dim=1)  # 20 copies of the detector
    assert feature_f1(dup, feats)["feature_f1"] == base


def test_a_dead_latent_does_not_lower_it():
    codes, feats = tiny_case()
    base = feature_f1(codes, feats)
    dead = feature_f1(torch.cat([codes, torch.zeros(60, 50)], dim=1), feats)
    assert dead == base


def test_a_perfect_detector_of_every_feature_gives_one():
    codes, feats = tiny_case()
    res = feature_f1(torch.cat([feats[:, :4] * 3.0, codes], dim=1), feats)
    assert res["feature_f1"] == 1.0 and res["features_f1_0.5"] == 4


def test_a_detector_of_the_wrong_samples_scores_below_one():
    """Precision and recall enter: a latent firing on every sample scores 2 p / (1 + p) for a
    feature of firing rate p, not 1."""
    feats = torch.zeros(100, 1)
    feats[:25, 0] = 1.0  # p = 0.25
    res = feature_f1(torch.ones(100, 1), feats)
    assert res["feature_f1"] == pytest.approx(2 * 0.25 / 1.25)


def test_no_feature_fires_gives_nan_and_bad_shapes_one_clear_error():
    assert math.isnan(feature_f1(torch.ones(10, 3), torch.zeros(10, 2))["feature_f1"])
    counts = empty_counts(3, 2)
    with pytest.raises(ValueError, match="same B"):
        add_counts(counts, torch.ones(10, 3), torch.ones(9, 2))
    with pytest.raises(ValueError, match="empty_counts"):
        add_counts(counts, torch.ones(10, 4), torch.ones(10, 2))
