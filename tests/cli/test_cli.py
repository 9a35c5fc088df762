"""`implicit_em.cli.main`: train, resume, evaluate, and configuration errors that name the key."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import torch

from implicit_em import runs
from implicit_em.cli import main
from implicit_em.cli.options import add_options, build_options
from implicit_em.config import load_config
from implicit_em.experiments.common import load_data
from implicit_em.options import flag
from implicit_em.train.loop import train

CONFIG = "default"  # the config shipped with the package
SMALL = ["--set", "data.dataset=digits", "--set", "model.input_dim=64",
         "--set", "model.hidden_dim=16", "--set", "training.epochs=2", "--set", "training.seed=4"]  # fmt: skip


def cli_train(out, *extra) -> int:
    return main(["train", "--config", CONFIG, *SMALL, "--out", str(out), "--quiet", *extra])


def snapshot(run_dir: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(run_dir.iterdir())}


def test_train_writes_a_run_dir_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_train(out) == 0
    final = json.loads(capsys.readouterr().out)
    assert final["epoch"] == 2
    assert {"config.json", "model.safetensors", "history.jsonl", "metrics.json"} <= {
        p.name for p in out.iterdir()
    }
    cfg = runs.load_run(out)[1]
    assert (cfg.data.dataset, cfg.model.input_dim, cfg.training.epochs) == ("digits", 64, 2)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 2
    assert metrics["total"] == final["total"]

    before = snapshot(out)
    assert cli_train(out) == 2  # no --resume / --overwrite: refused, nothing touched
    err = capsys.readouterr().err
    assert "already holds a complete run" in err and "--overwrite" in err
    assert snapshot(out) == before
    assert cli_train(out, "--resume") == 0  # complete: returns its history, writes nothing
    assert json.loads(capsys.readouterr().out)["total"] == final["total"]
    assert snapshot(out) == before
    assert cli_train(out, "--resume", "--set", "training.lr=0.01") == 2
    assert "training.lr" in capsys.readouterr().err
    assert snapshot(out) == before
    assert cli_train(out, "--overwrite", "--set", "training.epochs=1") == 0
    assert json.loads((out / "metrics.json").read_text())["epochs_completed"] == 1


def test_resume_via_cli_ends_where_an_uninterrupted_run_does(tmp_path, capsys):
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert cli_train(full) == 0
    cfg = load_config(CONFIG, [s for s in SMALL if s != "--set"])
    data = load_data(cfg)
    train(runs.build_model(cfg), data.x_train, cfg, x_eval=data.x_test, run_dir=killed,
          progress=False, stop_after=1)  # fmt: skip
    assert not runs.is_complete(killed)
    assert cli_train(killed) == 2
    assert cli_train(killed, "--resume") == 0
    a, b = runs.load_run(full)[0], runs.load_run(killed)[0]
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(p, q), name


def test_evaluate_reproduces_recorded_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_train(out) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    got = json.loads(capsys.readouterr().out)
    recorded = json.loads((out / "metrics.json").read_text())
    for key in ("dead_units", "redundancy", "l0", "w_row_norm", "recon_mse", "resp_entropy"):
        assert got[key] == recorded[key], key
    assert 0.5 < got["probe_accuracy"] <= 1.0


def test_evaluate_of_a_missing_run_dir_is_an_error(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope")]) == 2
    assert "not a run directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--set", "training.lrr=0.1"], "training.lrr"),
        (["--set", "training.lr=fast"], "training.lr"),
        (["--set", "training.lr=-1"], "training.lr"),
        (["--set", "optim.lr=0.1"], "'optim'"),
        (["--set", "training.optimizer=rmsprop"], "training.optimizer"),
        (["--set", "model.type=vae"], "model.type"),
        (["--set", "training.epochs=true"], "training.epochs"),
        (["--set", "lr=0.1"], "section.field=value"),
    ],
)
def test_config_errors_name_the_key(tmp_path, capsys, extra, named):
    out = tmp_path / "run"
    assert cli_train(out, *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("implicit-em: error:")
    assert named in err
    assert not out.exists() or not any(out.iterdir())


def test_config_file_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  hidden_dims: 32\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "model.hidden_dims" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.yaml"), "--out", "x"]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_dataset_alone_sets_the_input_size(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--set", "data.dataset=digits", "--hidden-dim", "8", "--epochs", "1",
            "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == 0
    cfg = runs.load_run(out)[1]
    assert (cfg.model.input_dim, cfg.model.hidden_dim, cfg.training.epochs) == (64, 8, 1)
    capsys.readouterr()
    bad = ["train", "--dataset", "digits", "--input-dim", "784", "--out", str(tmp_path / "b")]
    assert main(bad) == 2
    assert "model.input_dim=784 but data.dataset=digits has 64 features" in capsys.readouterr().err


def test_exit_codes_and_one_line_errors(tmp_path, capsys):
    assert main(["trian"]) == 2
    assert "did you mean 'train'?" in capsys.readouterr().err
    assert main(["train"]) == 2  # --out is required: argparse's usage error
    assert "--out" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r"), "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "training.epochs must be >= 1" in err
    assert main(["--help"]) == 0
    assert "reproduce" in capsys.readouterr().out
    with pytest.raises(Exception, match="training.epochs"):  # --debug: the exception itself
        main(["train", "--out", str(tmp_path / "r"), "--epochs", "0", "--debug"])


@dataclass(frozen=True)
class Opts:
    path: str = flag(positional=True)
    """where"""
    n: int = 3
    """how many"""
    rate: float | None = None
    """how fast"""
    mode: Literal["a", "b"] = "a"
    """which"""
    ks: list[int] = flag(factory=lambda: [1, 2])
    """several"""
    fast: bool = False
    """go fast"""
    safe: bool = True
    """stay safe"""


def test_flags_come_from_the_dataclass_fields():
    p = argparse.ArgumentParser()
    add_options(p, Opts)
    o = build_options(Opts, p.parse_args(["x", "--n", "5", "--ks", "7", "8", "--fast",
                                          "--no-safe", "--mode", "b"]))  # fmt: skip
    assert o == Opts("x", 5, None, "b", [7, 8], True, False)
    assert build_options(Opts, p.parse_args(["y"])) == Opts("y")
    text = p.format_help()
    assert "how many (default: 3)" in text and "{a,b}" in text
    with pytest.raises(SystemExit):
        p.parse_args(["x", "--mode", "c"])


def test_every_command_builds_its_parser():
    from implicit_em.cli import COMMANDS, parser_for, resolve

    for command in COMMANDS:
        assert callable(resolve(command.run)), command.name
        parser_for(command).format_help()


def test_exit_status_of_library_results(capsys):
    """A library `run` returning what it wrote is a command as it is: success (0), shown on
    one line; an int is the status itself."""
    from pathlib import Path

    from implicit_em.cli import exit_status

    assert exit_status(None) == 0 and exit_status(3) == 3
    assert exit_status(Path("out/index.html")) == 0
    assert exit_status({"true_l0": 2.5, "rows": [1, 2]}) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["out/index.html", '{"true_l0": 2.5}']


def test_a_library_value_error_is_not_a_usage_error():
    """A ValueError raised inside a library (here torch.distributed-like code in another module)
    is a failure of the program: exit 1 and the --debug hint, never 'change that value'; one
    raised by this package stays a usage error (exit 2)."""
    import types

    from implicit_em.cli import error_line

    lib = types.ModuleType("somelib")
    exec("def broadcast(t):\n    raise ValueError('Tensors must be contiguous')\n", lib.__dict__)
    try:
        lib.broadcast(None)
    except ValueError as e:
        msg, status = error_line(e)
    assert status == 1 and "unexpected failure" in msg and "change that value" not in msg, msg

    try:  # raised by the package's own validation
        load_config(CONFIG, ["training.epochs=0"])
    except ValueError as e:
        msg, status = error_line(e)
    assert status == 2 and "training.epochs" in msg, msg
