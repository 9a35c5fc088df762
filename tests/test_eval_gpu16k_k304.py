"""docs/eval/synthetic/gpu16k_k304_table.py on the committed files: the rules of
gpu16k-k304-PLAN.md (TopK at encoder-wr's L0, k = 304, 3 seeds) and the own-L0 readings the
verdict takes once gpu16k_seeds_table.py adds the row (the plan's rule 6)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "docs/eval/synthetic"


@pytest.fixture
def table(synthetic_table):
    """gpu16k_k304_table.py as a module (conftest.synthetic_table)."""
    return synthetic_table("gpu16k_k304_table")


def test_rules_on_the_committed_files(table):
    """Rules 1-3 pass on all three seeds; rule 4 'above' encoder-wr and both centred rows;
    rule 5 'below' topk-k214; rule 6: the three rows at L0 293-345 read against topk-k304, the
    unit-row encoders and the encoder still against topk-k214."""
    out = table.evaluate()
    rules = out["rules"]
    assert [c["passed"] for c in rules["1_init"]] == [True] * 3 and rules["2_short"] == []
    assert [c["l0"] for c in rules["3_l0"]] == [304.0] * 3
    assert out["seeds"]["topk-k304"] == out["seeds"]["encoder-wr"] == [0, 1, 2]
    assert {n: v["apart"] for n, v in rules["4_against_wr"].items()} == {
        "encoder-wr": "above", "encoder-wr-centred": "above", "encoder-centred": "above"}  # fmt: skip
    assert rules["4_against_wr"]["encoder-wr"]["gap_worst_best"] == pytest.approx(0.1927, abs=1e-4)
    assert rules["4_controls"]["above_controls"]
    assert (rules["4_controls"]["dead_latents"]["min"],
            rules["4_controls"]["dead_latents"]["max"]) == (767, 818)  # fmt: skip
    five = rules["5_against_topk_k214"]
    assert five["apart"] == "below" and not five["exceeds_k214_mean"]
    assert five["mean"] == pytest.approx(0.5107, abs=1e-4)
    own = rules["6_own_l0"]
    assert {n: o["sae"] for n, o in own.items()} == {
        "encoder-wr": "topk-k304", "encoder-wr-centred": "topk-k304",
        "encoder-centred": "topk-k304", "encoder-unit-rows": "topk-k214",
        "encoder-wr-unit-rows": "topk-k214", "encoder": "topk-k214"}  # fmt: skip
    assert own["encoder-wr"]["margin"] == pytest.approx(-0.1986, abs=1e-4)
    assert own["encoder"]["margin"] == pytest.approx(-0.4317, abs=1e-4)  # unchanged


def test_the_committed_json_is_what_the_script_writes(table):
    out = json.loads(json.dumps(sys.modules["gpu16k_seeds_table"]._no_nan(table.evaluate())))
    assert out == json.loads((FOLDER / "gpu16k-k304.json").read_text())


def test_a_failed_check_leaves_the_row_out(table, monkeypatch):
    """Rule 1: a row whose untrained MCC is not its seed's committed value is reported, not
    compared (here seed 2); rule 3: nor is a row outside L0 228-380 (here all, by moving the
    window): then rules 4-5 are not read."""
    monkeypatch.setitem(table.INIT, 2, 0.5)
    out = table.evaluate()
    assert out["seeds"]["topk-k304"] == [0, 1]
    assert sum("seed 2" in x and "FAILED" in x for x in out["lines"]) == 1
    monkeypatch.setattr(table, "L0_WINDOW", (100, 300))
    out = table.evaluate()
    assert "topk-k304" not in out["seeds"] and out["rules"]["4_against_wr"] == {}
    assert sum("OUTSIDE 100-300" in x for x in out["lines"]) == 3
