"""Progress on stderr: stage lines, a meter per stack (also from CPU worker processes), quiet."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from implicit_em import progress
from implicit_em.config import from_dict
from implicit_em.data import load_digits
from implicit_em.experiments.common import Settings, ensure_runs, load_data, training_line
from implicit_em.train.stacked import StackedTrainer

METER = re.compile(
    r"(\w+) x(\d) \| epoch (\d+)/(\d+): +(\d+)%.*\[[\d:]+<[\d:?]+, +[\d.]+k?samples/s"
)


def cfg(model_type: str, seed: int, epochs: int = 3):
    return from_dict({
        "model": {"type": model_type, "input_dim": 64, "hidden_dim": 8, "k": 2},
        "data": {"dataset": "digits"},
        "training": {"seed": seed, "epochs": epochs, "batch_size": 256},
    })  # fmt: skip


def test_a_stack_writes_epoch_rate_and_eta_lines_off_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)  # a line after every epoch
    StackedTrainer([cfg("encoder", 1), cfg("encoder", 2)]).fit(load_digits()[0])
    err = capsys.readouterr().err
    assert "\r" not in err  # stderr is not a terminal: plain lines, no redrawing
    meters = [METER.search(line) for line in err.splitlines()]
    assert all(meters), err
    epochs = [int(m.group(3)) for m in meters]
    assert epochs == [1, 2, 3, 3]  # each epoch, then the final meter
    assert {m.group(1, 2, 4) for m in meters} == {("encoder", "2", "3")}
    assert meters[-1].group(5) == "100"


def test_quiet_fit_writes_nothing(capsys):
    StackedTrainer([cfg("encoder", 1)]).fit(load_digits()[0], progress=False)
    assert capsys.readouterr().err == ""


def test_worker_processes_report_their_stacks_and_stage_lines(tmp_path: Path, capfd):
    cfgs = [cfg("encoder", 1), cfg("encoder", 2), cfg("standard_sae", 1)]
    s = Settings(base={}, out=tmp_path, progress=True, jobs=2, threads=2)
    ensure_runs(s, cfgs, load_data(cfgs[0]), "ablation")
    err = capfd.readouterr().err
    assert "implicit-em: training ablation: 3 runs in 2 stacks on 2 worker processes" in err
    finals = {m.group(1, 2, 3, 4) for m in map(METER.search, err.splitlines()) if m}
    assert {("encoder", "2", "3", "3"), ("standard_sae", "1", "3", "3")} <= finals, err
    ensure_runs(s, cfgs, load_data(cfgs[0]), "ablation")
    again = capfd.readouterr().err  # in this process: trained by this command
    loading = "loading ablation: 3 runs trained earlier by this command (none trained again)"
    assert f"implicit-em: {loading}" in again
    assert "training" not in again.replace("trained", "")  # no line reads as a second training
    quiet = Settings(base={}, out=tmp_path, progress=False)
    ensure_runs(quiet, cfgs, load_data(cfgs[0]))
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("", 4, 0, 0, 1, 1), "training 4 runs in 1 stack"),
        (
            ("dynamics", 1, 0, 3, 0, 1),
            "training dynamics: 1 run one by one; 3 finished by an earlier command, loaded",
        ),
        (
            ("x", 0, 2, 1, 0, 1),
            "loading x: 2 runs trained earlier by this command and 1 finished by an earlier "
            "command (none trained again)",
        ),
        (("", 0, 0, 1, 1, 1), "loading 1 run finished by an earlier command (none trained again)"),
    ],
)
def test_training_line(args, line):
    assert training_line(*args) == line
