"""docs/eval/synthetic/gpu16k_im001_table.py on the committed files: the rules of
gpu16k-im001-PLAN.md (the encoder with a hundredth of the InfoMax weights on the 16k recipe,
3 seeds)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "docs/eval/synthetic"


@pytest.fixture
def table(synthetic_table):
    """gpu16k_im001_table.py as a module (conftest.synthetic_table)."""
    return synthetic_table("gpu16k_im001_table")


def test_rules_on_the_committed_files(table):
    """3 of 3 rows pass rules 1-2; above the encoder and above its controls; L0 12.2 outside the
    target window; 0 dead; above encoder-wr."""
    out = table.evaluate()
    assert "3 of 3 rows pass" in out["lines"][0]
    r = out["rules"]
    assert r["3_against_encoder"] == "above" and r["4_controls"] == "above"
    assert r["5_beside"]["l0"] == pytest.approx(12.2, abs=0.05)
    assert not r["5_beside"]["l0_in_target_window"]
    assert r["5_beside"]["dead_latents_max"] == 0
    assert r["5_beside"]["against_encoder_wr"] == "above"
    assert [d["seed"] for d in out["detection"]] == [0, 1, 2]


def test_a_row_at_another_init_is_left_out(table, monkeypatch, capsys):
    """Rule 1 through `planned_rows`: with seed 1's expected init changed, that row is printed
    and left out, and the summary has 2 seeds."""
    monkeypatch.setitem(table.T.K304_INIT, 1, 0.5)
    out = table.evaluate()
    assert "2 of 3 rows pass" in out["lines"][0]
    assert out["summary"][0]["seeds"] == 2
    assert "encoder-im0.01 seed 1 reported, not added (rule 1" in capsys.readouterr().out


def test_the_committed_json_is_what_the_script_writes(table):
    out = json.loads(json.dumps(sys.modules["gpu16k_seeds_table"]._no_nan(table.evaluate())))
    assert out == json.loads((FOLDER / "gpu16k-im001.json").read_text())
