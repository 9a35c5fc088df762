"""docs/eval/synthetic/gpu16k_width16k_im001_table.py on the committed files: the rules of
gpu16k-width16k-im001-PLAN.md (encoder-im0.01 at width 16,384, 3 seeds)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "docs/eval/synthetic"


@pytest.fixture
def table(synthetic_table):
    """gpu16k_width16k_im001_table.py as a module (conftest.synthetic_table)."""
    return synthetic_table("gpu16k_width16k_im001_table")


def test_rules_on_the_committed_files(table):
    """3 of 3 rows pass; every seed above its controls and above encoder and encoder-wr of its
    seed; over the seeds above encoder (the weaker volume control carries) and encoder-wr,
    below the hybrid and tied-topk; L0 52.9, 0 dead."""
    out = table.evaluate()
    assert "3 of 3 encoder-im0.01 rows pass" in out["lines"][0]
    r = out["rules"]
    assert [p["seed"] for p in r["3_per_seed"]] == [0, 1, 2]
    assert all(p["controls"] == p["encoder"]["reading"] == p["encoder-wr"]["reading"] == "above"
               for p in r["3_per_seed"])  # fmt: skip
    assert r["4_over_seeds"] == {"encoder": "above", "encoder-wr": "above",
                                 "tied-topk-im-3.0": "below", "tied-topk": "below"}  # fmt: skip
    assert r["4_reading"] == "the weaker volume control carries to width 16,384"
    assert r["4_above_controls_every_seed"]
    assert r["5_beside"]["l0"] == pytest.approx(52.9, abs=0.05)
    assert r["5_beside"]["dead_latents"] == 0
    assert r["5_beside"]["width_4096"]["l0"] == pytest.approx(12.2, abs=0.05)


def test_a_row_at_another_init_is_left_out(table, monkeypatch, capsys):
    """Rule 1 through `wide_rows`: with seed 1's expected init changed, every seed-1 row is
    printed and left out, and the reading is on seeds 0 and 2."""
    monkeypatch.setitem(table.T.WIDE_INIT, 1, 0.5)
    out = table.evaluate()
    assert "2 of 3 encoder-im0.01 rows pass" in out["lines"][0]
    assert [p["seed"] for p in out["rules"]["3_per_seed"]] == [0, 2]
    out = capsys.readouterr().out
    assert "c7-i1.json: encoder-im0.01 seed 1 reported, not added (rule 2" in out


def test_the_committed_json_is_what_the_script_writes(table):
    out = json.loads(json.dumps(sys.modules["gpu16k_seeds_table"]._no_nan(table.evaluate())))
    assert out == json.loads((FOLDER / "gpu16k-width16k-im001.json").read_text())
