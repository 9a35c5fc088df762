"""docs/eval/synthetic/gpu16k_im_cliff_table.py on the committed files: the rules of
gpu16k-im-cliff-PLAN.md (the InfoMax weights at 0.005 and 0.007 on the 16k recipe, seeds 0-2,
and im-low's seed 2 beside), and its checks on rows that fail them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "docs/eval/synthetic"


@pytest.fixture
def table(synthetic_table):
    """gpu16k_im_cliff_table.py as a module (conftest.synthetic_table)."""
    return synthetic_table("gpu16k_im_cliff_table")


def test_rules_on_the_committed_files(table):
    """All 6 rows pass and nothing is owed; both weights are below encoder-im0.01, so 0.01
    stays the best weight measured; 0.005 and 0.007 are above their controls and 0.003 is
    level, so the cliff lies between 0.003 and 0.005; each new row is below every SAE at its
    L0; im-low reads on 3 seeds; the best decoder-free row stays encoder-im0.01, a pick among
    nine weights."""
    out = table.evaluate()
    assert "6 of 6 rows pass" in out["lines"][0]
    assert out["owed"] == {}
    r = out["rules"]
    turn = r["3_where_mcc_turns"]
    assert turn["apart"] == {"encoder-im0.005": "below", "encoder-im0.007": "below"}
    assert turn["reading"] == "0.01 stays the best weight measured; MCC falls on both sides of it"
    assert turn["encoder-im0.007"]["gap"] == pytest.approx(0.3978 - 0.3771, abs=2e-4)
    assert turn["encoder-im0.005"]["gap"] == pytest.approx(0.3978 - 0.2694, abs=2e-4)
    assert {w: turn[w]["seeds"] for w in table.WEIGHTS} == {w: 3 for w in table.WEIGHTS}
    cliff = r["4_cliff"]
    assert {w: c["reading"] for w, c in cliff["controls"].items()} == {
        "encoder-im0.01": "above", "encoder-im0.007": "above", "encoder-im0.005": "above",
        "encoder-im0.003": "level"}  # fmt: skip
    assert cliff["reading"] == "the cliff lies between 0.003 and 0.005"
    own = {w: [(s["name"], s["apart"]) for s in v] for w, v in r["5_own_l0"].items()}
    assert own == {
        "encoder-im0.005": [("jumprelu-0.003", "below"), ("jumprelu-0.01", "below")],
        "encoder-im0.007": [("topk-k12", "below"), ("jumprelu-0.003", "below"),
                            ("jumprelu-0.01", "below")]}  # fmt: skip
    low = r["6_im_low"]
    assert low["seeds"] == {"encoder-im0.003": 3, "encoder-im0.001": 3, "encoder-im0": 3}
    assert low["owed"] == {}
    assert low["4_lse_alone"] == "the LSE alone does not learn the features"
    assert low["5_controls"] == {"encoder-im0.003": "level", "encoder-im0.001": "below",
                                 "encoder-im0": "below"}  # fmt: skip
    v = r["7_verdict"]
    assert v["beats_im0.01"] == [] and v["best_decoder_free_within_margin"] == ["encoder-im0.01"]
    assert v["own_l0"] == {"encoder-im0.005": "jumprelu-0.003", "encoder-im0.007": "topk-k12"}
    assert [s["weight"] for s in out["sweep"]] == [1.0, 0.05, 0.03, 0.02, 0.01, 0.007, 0.005,
                                                   0.003, 0.001, 0.0]  # fmt: skip
    by = {s["variant"]: s for s in out["summary"]}
    assert by["encoder-im0.005"]["l0"]["mean"] == pytest.approx(8.729, abs=1e-3)
    assert by["encoder-im0.007"]["l0"]["mean"] == pytest.approx(10.020, abs=1e-3)
    assert {by[w]["dead_latents"]["max"] for w in table.WEIGHTS} == {0}


def test_rule_3_words(table):
    """Rule 3's words: any weight above encoder-im0.01 -> 'MCC peaks below 0.01' with the
    best weight (of two above, the higher mean MCC); both below -> '0.01 stays the best';
    otherwise weight by weight, 'level' said to mean equal weights."""
    words = table.where_mcc_turns
    a, b = table.WEIGHTS  # 0.005, 0.007
    mcc = {a: 0.41, b: 0.42}
    assert words({a: "below", b: "above"}, mcc) == (
        "MCC peaks below 0.01: the best weight measured is 0.007")  # fmt: skip
    assert words({a: "above", b: "above"}, {a: 0.43, b: 0.42}).endswith("is 0.005")
    assert words({a: "below", b: "below"}, mcc) == (
        "0.01 stays the best weight measured; MCC falls on both sides of it")  # fmt: skip
    got = words({a: "below", b: "level"}, mcc)
    assert got.startswith(f"{a}: below; {b}: level") and "equal weights" in got
    assert words({a: "below", b: None}, mcc) == f"{a}: below; {b}: not measured (owed)"


def test_rule_4_words(table):
    """Rule 4: the cliff lies between the two adjacent weights where a row stops being above
    its controls; with 0.005 not measured, between 0.003 and 0.007."""
    up, lv = "above", "level"
    w01, w007, w005, w003 = table.CLIFF
    cliff, at = table.cliff, "the cliff lies between"
    assert cliff({w01: up, w007: up, w005: up, w003: lv}) == f"{at} 0.003 and 0.005"
    assert cliff({w01: up, w007: up, w005: lv, w003: lv}) == f"{at} 0.005 and 0.007"
    assert cliff({w01: up, w007: up, w003: lv}) == f"{at} 0.003 and 0.007"
    assert cliff({w01: up, w007: up, w005: up, w003: up}) == (
        "every weight from 0.003 to 0.01 is above its controls")  # fmt: skip


def test_a_row_at_another_init_or_short_is_left_out(table, monkeypatch, edit_rows):
    """Rule 1 (seed 2's expected init changed: both seed-2 rows out, and im-low's seed-2 rows
    with them) and rule 2 (encoder-im0.005 seed 0 short of 47,927 steps: out); each failing row gets
    a line, the rows left out are owed, and the readings use the seeds left."""
    monkeypatch.setitem(table.T.K304_INIT, 2, 0.1478)

    def short(r: dict) -> None:
        if (r["variant"], r["seed"]) == ("encoder-im0.005", 0):
            r["steps_done"] = 47926

    edit_rows(table.T, table.T.IMC, short)
    out = table.evaluate()
    assert "3 of 6 rows pass" in out["lines"][0]
    failed = [x for x in out["lines"] if "seed 2: rule 1: untrained MCC" in x]
    assert [x.split(" seed")[0] for x in failed] == [
        "encoder-im0.005", "encoder-im0.007", "Rule 6 (gpu16k_im_low_table.py): encoder-im0.003",
        "Rule 6 (gpu16k_im_low_table.py): encoder-im0",
        "Rule 6 (gpu16k_im_low_table.py): encoder-im0.001",  # m2.json, cut by the clock too
        "Rule 6 (gpu16k_im_low_table.py): encoder-im0.001"]  # fmt: skip
    assert "encoder-im0.005 seed 0: rule 2: 47926 steps, not 47927" in "".join(out["lines"])
    assert out["owed"] == {"encoder-im0.005": [0, 2], "encoder-im0.007": [2]}
    turn = out["rules"]["3_where_mcc_turns"]
    assert (turn["encoder-im0.005"]["seeds"], turn["encoder-im0.007"]["seeds"]) == (1, 2)
    assert out["rules"]["6_im_low"]["owed"]["encoder-im0"] == [2]


def test_a_weight_above_im001_is_the_best(table, edit_rows):
    """Rule 3's other words on the table: with encoder-im0.007's trained MCC moved to 0.45 it
    is above encoder-im0.01, the best weight measured, and the verdict's candidate."""

    def lift(r: dict) -> None:
        if r["variant"] == "encoder-im0.007":
            r["trained"]["mcc"] = 0.45

    edit_rows(table.T, table.T.IMC, lift)
    r = table.evaluate()["rules"]
    assert r["3_where_mcc_turns"]["reading"] == (
        "MCC peaks below 0.01: the best weight measured is 0.007")  # fmt: skip
    assert r["7_verdict"]["beats_im0.01"] == ["encoder-im0.007"]
    assert r["7_verdict"]["best_decoder_free_within_margin"] == ["encoder-im0.007"]


def test_the_committed_json_is_what_the_script_writes(table):
    out = json.loads(json.dumps(sys.modules["gpu16k_seeds_table"]._no_nan(table.evaluate())))
    assert out == json.loads((FOLDER / "gpu16k-im-cliff.json").read_text())
