"""Hostile invocations of `implicit-em`: each ends with ONE stderr line naming the problem and
the fix, exit 2 (the invocation must change) or 1 (a run-time failure), and no traceback.

The table below is also the source of docs/errors.md: `python tests/cli/test_hostile.py`
runs every case and rewrites that page; the test checks that each observed line is on it.
"""

from __future__ import annotations

import errno
import sys
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from implicit_em.cli import main
from implicit_em.eval.verdict import PROBING_STUDIES

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "errors.md"
TINY = ["--set", "data.dataset=digits", "--set", "model.hidden_dim=8", "--set", "training.epochs=1",
        "--set", "data.train_subset=200", "--set", "data.test_subset=100", "--quiet"]  # fmt: skip


@dataclass(frozen=True)
class Case:
    what: str
    """the mistake, in words (a row of docs/errors.md)"""
    argv: Callable[[Path], list[str]]
    """the command line, given a fresh scratch directory T"""
    status: int
    """the exit status it must give"""
    says: str
    """a piece of the one line it must print"""
    setup: Callable[[Path, pytest.MonkeyPatch], None] | None = None
    """prepares T (and may patch the process) before the command runs"""


def finished(t: Path, mp=None, name: str = "run") -> Path:
    """A complete tiny run in t/name."""
    assert main(["train", "--out", str(t / name), *TINY]) == 0
    return t / name


def write(name: str, text: str):
    return lambda t, mp: (t / name).write_text(text)


def truncate(*names: str):
    def setup(t: Path, mp) -> None:
        run = finished(t)
        for n in names:
            data = (run / n).read_bytes()
            (run / n).write_bytes(data[: len(data) // 2])

    return setup


def cut_history(t: Path, mp) -> None:
    run = finished(t)
    text = (run / "history.jsonl").read_text()
    (run / "history.jsonl").write_text(text[: len(text) // 2])


def raise_on_write(code: int):
    def setup(t: Path, mp) -> None:
        def refuse(path, tmp):
            raise OSError(code, __import__("os").strerror(code), str(path))

        mp.setattr("implicit_em.atomic._create_beside", refuse)

    return setup


def offline(t: Path, mp) -> None:
    def no_network(*a, **k):
        raise urllib.error.URLError("no network (test)")

    mp.setenv("IMPLICIT_EM_CACHE", str(t / "empty-cache"))
    mp.delenv("IMPLICIT_EM_DATA", raising=False)
    mp.setenv("PATH", str(t / "no-bin"))
    mp.setattr("urllib.request.urlopen", no_network)


STUDY = ["eval-suite", "probing-study"]


def verdict(out: str = "v", **inputs: str) -> Callable[[Path], list[str]]:
    """`eval-suite verdict` with every input "none" (not measured) but the ones given (in T)."""

    def argv(t: Path) -> list[str]:
        flags = [
            [f"--{k.replace('_', '-')}", str(t / inputs[k]) if k in inputs else "none"]
            for k in ("ground_truth", *PROBING_STUDIES, "ood")
        ]
        return ["eval-suite", "verdict", *sum(flags, []), "--out", str(t / out)]

    return argv


def train(*extra: str, out: str = "out") -> Callable[[Path], list[str]]:
    return lambda t: ["train", "--out", str(t / out), *TINY, *extra]


CASES: list[Case] = [
    Case("unknown command", lambda t: ["frobnicate"], 2, "unknown command 'frobnicate'"),
    Case("mistyped command", lambda t: ["trian"], 2, "did you mean 'train'?"),
    Case("unknown flag", train("--frob"), 2, "unrecognized arguments: --frob"),
    Case("required flag missing", lambda t: ["train"], 2, "required: --out"),
    Case("flag value of the wrong type", train("--threads", "many"), 2, "invalid int value"),
    Case("--threads -1", train("--threads", "-1"), 2, "--threads must be >= 1"),
    Case("--jobs 0", lambda t: ["theorem", "--jobs", "0", "--out", str(t / "r")], 2, "--jobs must be >= 1"),
    Case("bad --set syntax", train("--set", "lr"), 2, "must look like section.field=value"),
    Case("unknown config key", train("--set", "model.foo=1"), 2, "unknown key model.foo"),
    Case("unknown config section", train("--set", "foo.bar=1"), 2, "unknown section 'foo'"),
    Case("lr=inf", train("--set", "training.lr=inf"), 2, "training.lr must be a finite number"),
    Case("lr=nan", train("--set", "training.lr=nan"), 2, "training.lr must be a finite number"),
    Case("epochs not a number", train("--set", "training.epochs=abc"), 2, "invalid value 'abc' for training.epochs"),
    Case("epochs 0", train("--set", "training.epochs=0"), 2, "training.epochs must be >= 1"),
    Case("device=cuda on a CPU-only torch", train("--set", "training.device=cuda"), 2, "built without CUDA"),
    Case("reproduce --device cuda on a CPU-only torch",
         lambda t: ["reproduce", "--quick", "--device", "cuda", "--out", str(t / "r")], 2, "built without CUDA"),
    Case("dataset=digits alone (input size follows the data)", train("--set", "data.dataset=digits"), 0, ""),
    Case("dataset=digits with a contradicting input_dim", train("--set", "model.input_dim=784"), 2, "model.input_dim"),
    Case("malformed YAML", lambda t: ["train", "--out", str(t / "o"), "--config", str(t / "bad.yaml")], 2,
         "is not valid YAML at line 2", write("bad.yaml", "model: [1, 2\n")),
    Case("YAML that is not a mapping", lambda t: ["train", "--out", str(t / "o"), "--config", str(t / "list.yaml")],
         2, "must hold a mapping", write("list.yaml", "- 1\n- 2\n")),
    Case("config file missing", lambda t: ["train", "--out", str(t / "o"), "--config", str(t / "nope.yaml")],
         2, "not found: pass an existing YAML file"),
    Case("unknown shipped config", lambda t: ["train", "--out", str(t / "o"), "--config", "defualt"], 2,
         "no shipped config named 'defualt'"),
    Case("--out names an existing file", train(out="file"), 2, "is a file, not a directory", write("file", "x")),
    Case("--out below a file", train(out="file/run"), 2, "Not a directory", write("file", "x")),
    Case("unwritable output directory", train(), 2, "Permission denied", raise_on_write(errno.EACCES)),
    Case("full disk", train(), 1, "No space left on device", raise_on_write(errno.ENOSPC)),
    Case("data missing and no network", lambda t: ["train", "--out", str(t / "o"), "--quiet",
         "--set", "data.train_subset=100"], 1, "could not obtain MNIST", offline),
    Case("run exists, no --resume/--overwrite", train(out="run"), 2, "already holds a complete run", finished),
    Case("--resume on a path that does not exist", train("--resume", out="nope"), 2, "is not a run directory"),
    Case("--resume on a directory that is not a run", train("--resume", out="notrun"), 2,
         "is not a run directory", lambda t, mp: (t / "notrun").mkdir()),
    Case("--resume with another config", train("--resume", "--set", "training.lr=0.5", out="run"), 2,
         "its config differs in training.lr", finished),
    Case("--resume with fewer epochs than done", lambda t: ["train", "--out", str(t / "run"), *TINY,
         "--resume", "--set", "training.epochs=1"], 2, "already trained 2 epochs",
         lambda t, mp: main(["train", "--out", str(t / "run"), *TINY, "--set", "training.epochs=2"])),
    Case("evaluate a directory that is not a run", lambda t: ["evaluate", str(t)], 2, "not a run directory"),
    Case("evaluate a path that does not exist", lambda t: ["evaluate", str(t / "nope")], 2, "not a run directory"),
    Case("truncated model.safetensors (checkpoint intact)", lambda t: ["evaluate", str(t / "run")], 0,
         "restored from its twin checkpoint.pt", truncate("model.safetensors")),
    Case("truncated model.safetensors and checkpoint.pt", lambda t: ["evaluate", str(t / "run")], 1,
         "model.safetensors is damaged", truncate("model.safetensors", "checkpoint.pt")),
    Case("truncated checkpoint.pt, extending the run", train("--resume", "--set", "training.epochs=2", out="run"),
         1, "checkpoint.pt is damaged", truncate("checkpoint.pt")),
    Case("damaged config.json", lambda t: ["evaluate", str(t / "run")], 1, "config.json is damaged",
         truncate("config.json")),
    Case("history.jsonl cut mid-line", train("--resume", out="run"), 1, "history.jsonl line 1 is cut", cut_history),
    Case("unknown data set to fetch", lambda t: ["data", "fetch", "svhn"], 2, "svhn"),
    Case("probing study: a plan file that does not exist", lambda t: [*STUDY, "run", "--data", str(t / "d"),
         "--model", "m", "--out", str(t / "o"), "--plan-json", f"@{t / 'nope.json'}"], 2, "nope.json not found"),
    Case("probing study: a plan that sets an unknown field", lambda t: [*STUDY, "prepare", "--model", "m",
         "--out", str(t / "d"), "--plan-json", '{"K": [4096]}'], 2, "sets unknown Plan field(s) K"),
    Case("probing study: a plan row with an unknown key (read_out)", lambda t: [*STUDY, "run", "--data",
         str(t / "d"), "--model", "m", "--out", str(t / "o"), "--plan-json",
         '{"rows": [{"family": "encoder"}, {"family": "encoder", "read_out": "topk"}]}'], 2,
         "row 2 (encoder) has unknown key(s) read_out"),
    Case("probing study: a plan row with an unknown read-out", lambda t: [*STUDY, "run", "--data",
         str(t / "d"), "--model", "m", "--out", str(t / "o"), "--plan-json",
         '{"rows": [{"family": "encoder"}, {"family": "encoder", "readout": "top-k"}]}'], 2,
         "readout 'top-k' is not known"),
    Case("probing study: a plan with 0 epochs", lambda t: [*STUDY, "run", "--data", str(t / "d"),
         "--model", "m", "--out", str(t / "o"), "--plan-json", '{"epochs": 0}'], 2,
         "epochs must be a whole number of passes >= 1"),
    Case("probing study: a plan row that takes the weights of a row trained otherwise", lambda t: [*STUDY,
         "run", "--data", str(t / "d"), "--model", "m", "--out", str(t / "o"), "--plan-json",
         '{"rows": [{"family": "encoder"}, {"family": "encoder", "label": "e-wr", "loss": {"lambda_wr": 1.0}, '
         '"weights_of": "encoder"}]}'], 2, "weights_of 'encoder': this row differs from it in loss"),
    Case("probing study: data that `prepare` did not write", lambda t: [*STUDY, "run", "--data", str(t / "d"),
         "--model", "m", "--out", str(t / "o")], 2, "d.json not found"),
    Case("probing study: a results file that does not exist", lambda t: [*STUDY, "report", "--results",
         str(t / "nope.json"), "--out", str(t / "r")], 2, "results file T/nope.json not found"),
    Case("probing study: a results file of something else", lambda t: [*STUDY, "report", "--results",
         str(t / "other.json"), "--out", str(t / "r")], 2, "is not a results.json of the probing study",
         write("other.json", '{"rows": []}')),
    Case("probing study: a group without its step", lambda t: STUDY, 2, "arguments are required: COMMAND"),
    Case("verdict: a study file that does not exist", verdict(ground_truth="nope.json"), 2,
         "ground truth file T/nope.json not found"),
    Case("verdict: a file of another study", verdict(probing2="gpu3.json"), 2, "is not a gpu2_compare.json",
         write("gpu3.json", '{"K4096": {"rows": {}, "topk_ce": 0.98}}')),
    Case("verdict: gpu5's compare file without gpu4's", verdict(probing5="gpu5.json"), 2,
         "pass --probing4 too, or --probing5 none",
         write("gpu5.json", '{"gpu5": {"4096": {"rows": {"encoder": {"l0": 50.0, "dead": [0], '
               '"probing": 0.72, "probing_range": [0.72, 0.72], "beats_controls": false}}}}, '
               '"gpu4": {}, "changes": {}}')),
    Case("verdict: a gpu6 compare file of another shape", verdict(probing6="gpu6.json"), 2,
         "is not a gpu6_compare.json", write("gpu6.json", '{"K4096": {"verdict": {}}}')),
    Case("verdict: a gpu5 compare file whose rows lack what is read", verdict(probing5="gpu5.json"),
         2, "is not a gpu5_compare.json",
         write("gpu5.json", '{"gpu5": {"4096": {"rows": {"encoder": {}}}}, "gpu4": {}, "changes": {}}')),
    Case("verdict: verdict.md already there, no --overwrite", verdict(), 2,
         "exists: move it away, choose another --out, or pass --overwrite",
         lambda t, mp: ((t / "v").mkdir(), (t / "v" / "verdict.md").write_text("x"))),
    Case("synthetic: a matched-L0 read-out at k 0", lambda t: ["eval-suite", "synthetic", "--recipe", "tiny",
         "--readout-k", "0"], 2, "readout_k (--readout-k) must be >= 1, got 0"),
    Case("synthetic: no evaluation samples", lambda t: ["eval-suite", "synthetic", "--recipe", "tiny",
         "--eval-samples", "0"], 2, "--eval-samples must be >= 1, got 0"),
    Case("synthetic: a negative learning rate", lambda t: ["eval-suite", "synthetic", "--recipe",
         "tiny", "--lr", "-1"], 2, "--lr must be a finite number > 0"),
    Case("synthetic: a mistyped variant", lambda t: ["eval-suite", "synthetic", "--recipe", "tiny",
         "--variants", "encodr"], 2, "closest: 'encoder'"),
    Case("synthetic: --out-dir is a file", lambda t: ["eval-suite", "synthetic", "--recipe", "tiny",
         "--out-dir", str(t / "f.txt")], 2, "is a file, not a directory", write("f.txt", "x")),
    Case("probing: zero epochs", lambda t: ["eval-suite", "probing", "--epochs", "0"], 2,
         "--epochs must be >= 1, got 0"),
    Case("probing: a negative number of latents", lambda t: ["eval-suite", "probing",
         "--hidden-dim", "-4"], 2, "--hidden-dim must be >= 1, got -4"),
    Case("eval-suite: unknown subcommand", lambda t: ["eval-suite", "nosuch"], 2,
         "choose one of eval-suite synthetic"),
]  # fmt: skip


def observe(case: Case, t: Path, mp: pytest.MonkeyPatch, capsys) -> tuple[int, str]:
    """Run one case in-process; (exit status, stderr lines other than progress)."""
    if case.setup is not None:
        case.setup(t, mp)
    capsys.readouterr()
    status = main(case.argv(t))
    err = capsys.readouterr().err
    return status, err.replace(str(t), "T").strip()


@pytest.mark.parametrize("case", CASES, ids=[c.what for c in CASES])
def test_hostile_invocation(case, tmp_path, monkeypatch, capsys):
    status, err = observe(case, tmp_path, monkeypatch, capsys)
    assert "Traceback" not in err
    assert status == case.status, err
    assert case.says in err
    if status != 0:
        lines = err.splitlines()  # stage messages (data sources tried) may come before it
        assert sum("error:" in x for x in lines) == 1 and lines[-1].startswith("implicit-em"), err
        line = lines[-1]
        assert ": " in line.split("error: ", 1)[-1], err  # the problem, then the fix
        assert f"| {line.replace('|', '&#124;')} |" in DOC.read_text(), "run python tests/cli/test_hostile.py"


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="finite number"):
        main(["train", "--out", str(tmp_path / "o"), "--set", "training.lr=inf", "--debug"])


def test_at_least_25_cases():
    assert sum(c.status != 0 for c in CASES) >= 25


if __name__ == "__main__":  # regenerate docs/errors.md from the table
    import tempfile

    import torch

    torch.set_num_threads(1)
    rows = []
    for case in CASES:
        with tempfile.TemporaryDirectory() as d, pytest.MonkeyPatch.context() as mp:
            import contextlib
            import io

            buf = io.StringIO()
            if case.setup is not None:
                with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                    case.setup(Path(d), mp)
            with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(io.StringIO()):
                status = main(case.argv(Path(d)))
            argv = " ".join(case.argv(Path("T"))).replace(" ".join(TINY), "TINY")
            line = buf.getvalue().replace(d, "T").strip().splitlines()[-1:] or [""]
            line = line[0].replace("|", "&#124;")
        rows.append(f"| {case.what} | `implicit-em {argv}` | {status} | {line or '(works)'} |")
        print(rows[-1], file=sys.stderr)
    DOC.write_text(
        "# What `implicit-em` says when something is wrong\n\n"
        "Every failure is one line on stderr, `implicit-em: error: <problem>: <fix>`; exit 2 means the\n"
        "command line must change, 1 a failure at run time, 130 Ctrl-C (SIGINT), 143 SIGTERM. Add\n"
        "`--debug` for the traceback. Generated by `python tests/cli/test_hostile.py` from the table\n"
        "that `tests/cli/test_hostile.py` runs (T is a scratch directory; TINY is\n"
        f"`{' '.join(TINY)}`).\n\n"
        "| mistake | command | exit | what it prints |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
