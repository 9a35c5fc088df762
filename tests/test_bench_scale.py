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
from implicit_em.kernels import fused_mode
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


def test_rows_and_table_say_whether_wr_is_in_the_step(monkeypatch, capsys, tmp_path):
    """A CPU run: the default row leaves wr out, a +wr variant puts it in, the output says so
    in a line, in each row's JSON and in the closing table's column."""
    out = tmp_path / "bench.json"
    args = ["--device", "cpu", "--K", "64", "--D", "8", "--B", "32", "--steps", "1",
            "--warmup", "0", "--models", "encoder_sketch,standard_sae", "--probes", "4",
            "--stats-variants=+wr", "--out", str(out)]  # fmt: skip
    # variant rows need --fused; the reference path stands in for the kernels (quicker)
    monkeypatch.setattr(bench_scale, "fused_mode", lambda mode: fused_mode("off"))
    assert bench_scale.main([*args, "--fused", "--skip", "encoder_sketch4+ref"]) == 0
    text = capsys.readouterr().out
    assert "wr metric (encoder rows unless the row says otherwise): not in the timed step" in text
    res = json.loads(out.read_text())
    assert res["wr"].startswith("not in the timed step")
    rows = res["models"]
    assert rows["encoder_sketch4+fused/eager"]["wr_in_step"] is False
    assert rows["encoder_sketch4+fused[stats=+wr]/eager"]["wr_in_step"] is True
    assert "infomax_ms_isolated" in rows["encoder_sketch4+fused/eager"]
    assert "| encoder_sketch4+fused/eager |" in text and "| wr in step |" in text
    line = next(s for s in text.splitlines() if s.startswith("| encoder_sketch4+fused[stats=+wr]"))
    assert line.split("|")[6].strip() == "yes"
    line = next(s for s in text.splitlines() if s.startswith("| encoder_sketch4+fused/eager"))
    assert line.split("|")[6].strip() == "no"
    assert line.split("|")[4].strip().endswith("x")  # vs L1 SAE

