"""docs/eval/synthetic/gpu16k_wr_hybrid_table.py on the committed files: the rules of
gpu16k-wr-hybrid-PLAN.md (the hybrid with the weight-redundancy term on the 16k recipe,
3 seeds), and its check of rules 1-2 on rows that fail them."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "docs/eval/synthetic"


@pytest.fixture
def table(synthetic_table):
    """gpu16k_wr_hybrid_table.py as a module (conftest.synthetic_table)."""
    return synthetic_table("gpu16k_wr_hybrid_table")


def test_rules_on_the_committed_files(table):
    """All rows pass rules 1-2; rule 3 comparable; rule 4 level although every wr seed is below
    every hybrid seed; rule 5 below tied-topk and the best SAE, above the controls, 0 dead."""
    out = table.evaluate()
    assert out["lines"][0].startswith("Rules 1-2") and "3 of 3" in out["lines"][0]
    r = out["rules"]
    assert r["3_reproduction"]["comparable"] and abs(r["3_reproduction"]["difference"]) < 0.005
    assert r["4_wr_on_hybrid"] == "level"
    by = {s["variant"]: s for s in out["summary"]}
    wr, hy = by["tied-topk-im-3.0-wr"], by["tied-topk-im-3.0"]
    assert wr["seeds"] == hy["seeds"] == 3
    assert wr["mcc"]["max"] < hy["mcc"]["min"]  # the plain statement beside "level"
    assert r["5_beside"]["tied-topk"] == r["5_beside"]["matryoshka-k25-sl-all"] == "below"
    assert r["5_beside"]["above_controls"] and r["5_beside"]["dead_latents_max"] == 0
    assert r["5_beside"]["l0_inside"]


def test_the_check_leaves_out_a_wrong_init_or_a_short_row(table):
    """`checked` keeps a row only at its seed's exact init and the full length; each failing
    row gets its own line naming the rule."""
    row = json.loads((FOLDER / "gpu16k-wr-hybrid/w0.json").read_text())["rows"][0]
    bad_init = copy.deepcopy(row)
    bad_init["untrained"]["mcc"] += 1e-9
    short = copy.deepcopy(row)
    short["steps_done"] = table.STEPS - 1
    lines: list[str] = []
    kept = table.checked([row, bad_init, short], lines)
    assert kept == [row]
    assert len(lines) == 2 and lines[0].startswith("Rule 1") and lines[1].startswith("Rule 2")


def test_the_committed_json_is_what_the_script_writes(table):
    out = json.loads(json.dumps(sys.modules["gpu16k_seeds_table"]._no_nan(table.evaluate())))
    assert out == json.loads((FOLDER / "gpu16k-wr-hybrid.json").read_text())
