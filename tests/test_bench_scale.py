"""benchmarks/bench_scale.py: the encoder's wr metric is out of the timed step unless asked
for (the scale trainer computes it only on logged steps), and every row says which."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

from implicit_em import losses
from implicit_em.config import LossConfig
from implicit_em.models import Encoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
bench_scale = importlib.import_module("bench_scale")


@pytest.mark.parametrize("fused,default,want", [
    (None, "logged", (False, False)), (None, "step", (True, False)),
    ("on", "logged", (False, False)), ("on-stats512s", "step", (True, False)),
    ("on-stats512s+wr", "logged", (True, True)), ("on-stats-wr", "step", (False, True)),
    ("on-stats512s/g256-wr", "logged", (False, True)),
])  # fmt: skip
def test_wr_setting(fused, default, want):
    assert bench_scale.wr_setting(fused, default) == want


@pytest.mark.parametrize("with_wr", [False, True])
def test_step_computes_wr_only_when_asked(monkeypatch, with_wr):
    """make_step(with_wr=False) never calls weight_redundancy_loss; with_wr=True once a step."""
    calls = []
    real = losses.weight_redundancy_loss

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(losses, "weight_redundancy_loss", counted)
    torch.manual_seed(0)
    model = Encoder(8, 32)
    x = [torch.randn(16, 8) for _ in range(2)]
    step = bench_scale.make_step(model, x, LossConfig(tc_probes=4), amp=False, with_wr=with_wr)
    for _ in range(3):
        step()
    assert len(calls) == (3 if with_wr else 0)


def test_rows_and_table_say_whether_wr_is_in_the_step(capsys, tmp_path):
    """A CPU run on the fused path (Triton's interpreter): the default row leaves wr out and
    the bias in the matmul (the fold is off by default since round 6), a +wr variant puts wr
    in, a /b1 variant folds the bias into the kernels; the output says so in a line, in each
    row's JSON and in the closing table."""
    out = tmp_path / "bench.json"
    args = ["--device", "cpu", "--K", "64", "--D", "8", "--B", "32", "--steps", "1",
            "--warmup", "0", "--models", "encoder_sketch,standard_sae", "--probes", "4",
            "--fused", "--skip", "encoder_sketch4+ref", "--stats-variants=+wr,256/b1",
            "--out", str(out)]  # fmt: skip
    assert bench_scale.main(args) == 0
    text = capsys.readouterr().out
    assert "wr metric (encoder rows unless the row says otherwise): not in the timed step" in text
    res = json.loads(out.read_text())
    assert res["wr"].startswith("not in the timed step")
    rows = res["models"]
    base = rows["encoder_sketch4+fused/eager"]
    assert base["wr_in_step"] is False and base["bias_fold"] is False
    assert "infomax_ms_isolated" in base
    assert rows["encoder_sketch4+fused[stats=+wr]/eager"]["wr_in_step"] is True
    fold = rows["encoder_sketch4+fused[stats=256/b1]/eager"]
    assert fold["bias_fold"] is True and fold["wr_in_step"] is False
    assert fold["stats_pass"] == {"rows": 256, "shift": False}
    cells = {s.split("|")[1].strip(): [c.strip() for c in s.split("|")[2:-1]]
             for s in text.splitlines() if s.startswith("| encoder_sketch4")}  # fmt: skip
    assert cells["encoder_sketch4+fused/eager"][4:6] == ["no", "no"]  # wr in step, bias fold
    assert cells["encoder_sketch4+fused[stats=+wr]/eager"][4:6] == ["yes", "no"]
    assert cells["encoder_sketch4+fused[stats=256/b1]/eager"][4:6] == ["no", "yes"]
    assert cells["encoder_sketch4+fused/eager"][2].endswith("x")  # vs L1 SAE
    from implicit_em.kernels.infomax import FOLD

    assert FOLD == {"bias": False}  # restored after the /b1 row


@pytest.mark.parametrize("var,want", [
    ("512s/g256/b0+wr", ({"rows": 512, "shift": True}, 256, False)),
    ("+wr", ({}, None, None)), ("256/b1", ({"rows": 256, "shift": False}, None, True)),
    ("64-wr", ({"rows": 64, "shift": False}, None, None)),
])  # fmt: skip
def test_parse_variant(var, want):
    assert bench_scale.parse_variant(var) == want


@pytest.mark.parametrize("var,problem", [
    ("100", "statistics rows 100 must be a positive multiple of each tile height"),
    ("0s", "statistics rows 0 must be a positive multiple"),
    ("96s/b0", "statistics rows 96 must be"),  # 64-row tiles would reach the next chunk
    ("512s/g-1", "gradient strip rows -1 must be"),
    ("512s/g100+wr", "gradient strip rows 100 must be"),
])  # fmt: skip
def test_impossible_layouts_are_refused_in_one_line(var, problem):
    """Rows the kernels cannot take (`triton_infomax.rows_problem`) stop the run with one line
    naming the rows, the tile heights and the form, before any row is built."""
    with pytest.raises(SystemExit) as exc:
        bench_scale.parse_variant(var)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"--stats-variants: cannot use {var!r}: ")
    assert problem in msg and "(tile heights " in msg and msg.endswith("e.g. 512s/g256/b0+wr")
    with pytest.raises(SystemExit, match="cannot use"):
        bench_scale.main(["--device", "cpu", "--K", "64", "--D", "8", "--B", "32", "--steps",
                          "1", "--warmup", "0", "--models", "encoder_sketch", "--probes", "4",
                          "--fused", f"--stats-variants={var}"])  # fmt: skip


def test_possible_layouts_pass_and_the_stand_in_checks_signs(monkeypatch):
    for var in ("32s", "64", "512s/g0", "256/g32", "1024s/g256/b1"):
        bench_scale.parse_variant(var)
    from types import SimpleNamespace

    monkeypatch.setattr(bench_scale, "_triton_kernels", lambda: SimpleNamespace(STATS={}, GRAD={}))
    assert bench_scale.parse_variant("100/g0") == ({"rows": 100, "shift": False}, 0, None)
    with pytest.raises(SystemExit, match="cannot use '0s': statistics rows 0 must be > 0"):
        bench_scale.parse_variant("0s")
    with pytest.raises(SystemExit, match="gradient strip rows -1 must be >= 0"):
        bench_scale.parse_variant("512/g-1")


def test_unknown_variant_option_is_one_line():
    with pytest.raises(SystemExit, match="cannot read '256/x2'"):
        bench_scale.main(["--device", "cpu", "--K", "64", "--D", "8", "--B", "32", "--steps",
                          "1", "--warmup", "0", "--models", "encoder_sketch", "--probes", "4",
                          "--fused", "--stats-variants=256/x2"])  # fmt: skip
