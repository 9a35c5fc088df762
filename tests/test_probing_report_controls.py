"""The probing report's note on random-direction controls that fall short of their L0
(`probing_suite.short_controls`): with ReLU codes, random directions fire on at most their
positive projections, about K / 2 per token."""

import torch

from implicit_em.eval.probing_suite import measured_l0, short_controls
from implicit_em.eval.sparse_probing import RandomDirections


def test_a_dense_control_is_named_and_a_matched_one_is_not():
    torch.manual_seed(0)
    x = torch.randn(512, 16)
    dense = RandomDirections(16, 64, 64, seed=1)  # every positive projection: about 32 of 64
    sparse = RandomDirections(16, 64, 8, seed=2)
    l0 = {"random dirs @ L0 64 (encoder-softplus)": measured_l0(dense, x),
          "random dirs @ L0 8 (topk)": measured_l0(sparse, x)}  # fmt: skip
    assert 24 < l0["random dirs @ L0 64 (encoder-softplus)"] < 40
    assert l0["random dirs @ L0 8 (topk)"] == 8
    lines = short_controls(["topk", *l0], l0)
    assert len(lines) == 2 and lines[0] == ""
    assert lines[1].startswith("- `random dirs @ L0 64 (encoder-softplus)` fires ")
    assert "not 64" in lines[1]
    assert short_controls(["random dirs @ L0 8 (topk)"], l0) == []


def test_small_test_sets_are_flagged():
    from implicit_em.eval.probing_suite import small_test_sets

    assert small_test_sets([{"name": "a", "n_test": 1000}]) == []
    lines = small_test_sets([{"name": "a", "n_test": 1000}, {"name": "spam", "n_test": 6},
                             {"name": "era", "n_test": 40}])  # fmt: skip
    assert lines[0] == "" and "spam, era" in lines[1] and "6 passages in spam" in lines[1]
    assert "0.167" in lines[1]
