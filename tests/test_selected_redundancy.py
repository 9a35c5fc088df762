"""Redundancy of probe-selected latents (`implicit_em.eval.selected_redundancy`): known
directions give known numbers; the de-duplicated selection skips a planted duplicate."""

import math

import numpy as np
import pytest

from implicit_em.eval import selected_redundancy as sr


def basis_rows() -> np.ndarray:
    """Rows: e1, 2 e1 (a duplicate), -e1 (anti-parallel), e2, e3, and a zero row; D = 4."""
    e = np.eye(4)
    return np.stack([e[0], 2 * e[0], -e[0], e[1], e[2], np.zeros(4)])  # (6, 4)


def test_mean_abs_cos_known_values():
    W = basis_rows()
    assert sr.mean_abs_cos(W, [0, 1, 3]) == pytest.approx(1 / 3)  # pairs 1, 0, 0
    assert sr.mean_abs_cos(W, [0, 1, 2]) == pytest.approx(1.0)  # sign ignored
    assert sr.mean_abs_cos(W, [0, 3, 4]) == pytest.approx(0.0)
    assert sr.mean_abs_cos(W, [0, 5]) == pytest.approx(0.0)  # a zero row: cos 0
    assert math.isnan(sr.mean_abs_cos(W, [0]))


def test_mean_abs_cos_of_random_directions_is_the_known_level():
    D = 576
    W = np.random.default_rng(0).standard_normal((400, D))
    got = sr.mean_abs_cos(W, np.arange(400))
    assert got == pytest.approx(math.sqrt(2 / (math.pi * D)), abs=0.002)  # 0.0332


def test_distinct_directions_counts_components():
    W = basis_rows()
    assert sr.distinct_directions(W, [0, 1, 2, 3, 4]) == 3  # {e1, 2e1, -e1}, e2, e3
    assert sr.distinct_directions(W, [3, 4, 5]) == 3
    assert sr.duplicate_components(W, [3, 0, 4, 1]).tolist() == [0, 1, 2, 1]


def test_distinct_directions_follows_chains_and_threshold():
    t = math.acos(0.95)  # a-b and b-c at cos 0.95, a-c at cos(2t) = 0.805 < 0.9
    W = np.array([[1.0, 0.0], [math.cos(t), math.sin(t)], [math.cos(2 * t), math.sin(2 * t)]])
    assert sr.distinct_directions(W, [0, 1, 2]) == 1  # one chain
    assert sr.distinct_directions(W, [0, 2]) == 2
    assert sr.distinct_directions(W, [0, 1, 2], threshold=0.96) == 3


def test_mean_abs_corr_known_values_and_constant_latents():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([1.0, 3.0, 2.0, 4.0])  # corr(x, y) = 4 / 5
    z = np.stack([x, 2 * x + 1, -x, np.full(4, 7.0), y], axis=1)  # (P = 4, K = 5)
    assert sr.mean_abs_corr(z, [0, 1, 2]) == (pytest.approx(1.0), 0)
    assert sr.mean_abs_corr(z, [0, 4])[0] == pytest.approx(0.8)
    mean, left_out = sr.mean_abs_corr(z, [0, 1, 2, 3])  # 6 pairs, 3 with the constant one
    assert (mean, left_out) == (pytest.approx(1.0), 3)
    mean, left_out = sr.mean_abs_corr(z, [3, 4])
    assert math.isnan(mean) and left_out == 1


def test_rows_with_duplicate_counts_and_chunks_agree():
    W = basis_rows()
    assert sr.rows_with_duplicate(W) == 3  # e1, 2e1, -e1
    assert sr.rows_with_duplicate(W, chunk=2) == 3
    assert sr.rows_with_duplicate(W[3:]) == 0
    rng = np.random.default_rng(1)
    U = rng.standard_normal((50, 16))
    U[7] = U[30] * 3 + 0.01 * rng.standard_normal(16)  # one planted pair
    assert sr.rows_with_duplicate(U) == 2
    assert sr.rows_with_duplicate(U, chunk=7) == 2


def test_dedup_selection_skips_a_planted_duplicate():
    W = basis_rows()
    order = [0, 1, 3, 2, 4]  # the duplicate 2 e1 ranks second, -e1 fourth
    assert sr.dedup_selection(order, W, 3).tolist() == [0, 3, 4]
    assert sr.dedup_selection(order, W, 2).tolist() == [0, 3]
    assert sr.dedup_selection(order, W, 5).tolist() == [0, 3, 4]  # runs out: fewer than k
    # without the threshold reached, the ranking is kept as it is
    t = math.acos(0.89)
    V = np.array([[1.0, 0.0], [math.cos(t), math.sin(t)], [0.0, 1.0]])
    assert sr.dedup_selection([0, 1, 2], V, 2).tolist() == [0, 1]
    assert sr.dedup_selection([0, 1, 2], V, 2, threshold=0.88).tolist() == [0, 2]


def test_dedup_selection_equals_plain_selection_without_duplicates():
    rng = np.random.default_rng(2)
    W = rng.standard_normal((300, 576))
    order = rng.permutation(300)
    assert sr.dedup_selection(order, W, 20).tolist() == order[:20].tolist()


def test_selection_stats_and_bad_input():
    W = basis_rows()
    z = np.random.default_rng(3).standard_normal((10, 6))
    s = sr.selection_stats(W, z, [0, 1, 3])
    assert s["k"] == 3 and s["distinct"] == 2
    assert s["mean_abs_cos"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="repeat a latent"):
        sr.mean_abs_cos(W, [0, 0])
    with pytest.raises(ValueError, match=r"in \[0, K = 6\)"):
        sr.mean_abs_cos(W, [6])
    with pytest.raises(ValueError, match=r"\(K, D\)"):
        sr.unit_rows(np.zeros(3))
    with pytest.raises(ValueError, match="k = 0"):
        sr.dedup_selection([0], W, 0)


def test_bad_input_is_refused_in_one_line():
    """NaN directions, non-integer indices and a chunk below 1 stop with a ValueError that
    names the problem (a NaN row used to count as no duplicate; floats were truncated)."""
    import numpy as np
    import pytest

    from implicit_em.eval import selected_redundancy as sr

    W = np.eye(4, 3)
    with pytest.raises(ValueError, match="NaN or inf"):
        sr.rows_with_duplicate(np.where(W == 1, np.nan, W))
    with pytest.raises(ValueError, match="must be integers"):
        sr.mean_abs_cos(W, np.array([0.0, 1.7]))
    with pytest.raises(ValueError, match="chunk = 0"):
        sr.rows_with_duplicate(W, chunk=0)
    assert sr.rows_with_duplicate(W, chunk=1) == 0  # rows 0-2 orthogonal, row 3 zero
