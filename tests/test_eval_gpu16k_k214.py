"""docs/eval/synthetic/gpu16k_k214_table.py on the committed files: the rules of
gpu16k-k214-PLAN.md (BatchTopK and Matryoshka with sae-lens's protocol at k = 214, 3 seeds)
and the rows gpu16k_seeds_table.py adds to gpu16k-seeds.json (the plan's rule 6)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "docs/eval/synthetic"
ROWS = ("batchtopk-k214-sl-all", "matryoshka-k214-sl-all")


@pytest.fixture
def table(synthetic_table):
    """gpu16k_k214_table.py as a module (conftest.synthetic_table)."""
    return synthetic_table("gpu16k_k214_table")


def test_rules_on_the_committed_files(table):
    """Rules 1-3 pass for all six rows; rule 4 'above' the encoder, rule 5 'below' topk-k214
    for both, Matryoshka level with BatchTopK: the order at L0 25 does not hold at L0 214."""
    out = table.evaluate()
    rules = out["rules"]
    assert len(rules["1_init"]) == 6 and all(c["passed"] for c in rules["1_init"])
    assert rules["2_short"] == []
    assert all(rules["3_l0"][n]["inside"] for n in ROWS)
    assert {n: out["seeds"][n] for n in ROWS} == {n: [0, 1, 2] for n in ROWS}
    assert out["seeds"]["encoder"] == out["seeds"]["topk-k214"] == [0, 1, 2]
    enc = rules["4_against_encoder"]
    assert {n: enc[n]["apart"] for n in ROWS} == {n: "above" for n in ROWS}
    assert all(enc[n]["above_controls"] for n in ROWS)
    assert enc["batchtopk-k214-sl-all"]["mcc"]["min"] == pytest.approx(0.5511, abs=1e-4)
    assert enc["matryoshka-k214-sl-all"]["mcc"]["max"] == pytest.approx(0.5421, abs=1e-4)
    assert (enc["batchtopk-k214-sl-all"]["dead_latents"]["min"],
            enc["matryoshka-k214-sl-all"]["dead_latents"]["max"]) == (661, 797)  # fmt: skip
    order = rules["5_order"]
    assert order["at_214"] == {
        "batchtopk-k214-sl-all vs topk-k214": "below",
        "matryoshka-k214-sl-all vs topk-k214": "below",
        "matryoshka-k214-sl-all vs batchtopk-k214-sl-all": "level"}  # fmt: skip
    assert set(order["at_25"].values()) == {"above"} and order["holds"] is False


def test_the_committed_json_is_what_the_script_writes(table):
    out = json.loads(json.dumps(sys.modules["gpu16k_seeds_table"]._no_nan(table.evaluate())))
    assert out == json.loads((FOLDER / "gpu16k-k214.json").read_text())


def test_a_failed_init_check_leaves_the_row_out(table, monkeypatch):
    """Rule 1: a row whose untrained MCC is not its seed's committed value is reported, not
    compared (here seed 2 of both rows)."""
    monkeypatch.setitem(table.INIT, 2, 0.5)
    out = table.evaluate()
    assert {n: out["seeds"][n] for n in ROWS} == {n: [0, 1] for n in ROWS}
    assert sum("seed 2" in x and "FAILED" in x for x in out["lines"]) == 2


def test_the_seeds_table_holds_the_k214_rows(table):
    """Rule 6: gpu16k-seeds.json (the verdict's ground-truth table) holds both rows on 3 seeds,
    summarised as the k214 script summarises them."""
    gt = json.loads((FOLDER / "gpu16k-seeds.json").read_text())
    got = {s["variant"]: s for s in gt["summary"]}
    want = {s["variant"]: s for s in table.evaluate()["summary"]}
    for n in ROWS:
        assert got[n]["seeds"] == 3
        assert got[n]["mcc"] == pytest.approx(want[n]["mcc"])
        assert got[n]["l0"] == pytest.approx(want[n]["l0"])
        assert got[n]["dead_latents"] == pytest.approx(want[n]["dead_latents"])
