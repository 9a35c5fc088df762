"""`implicit-em eval-suite`: bad input gets one stderr line naming the flag as typed and the
fix, exit 2, no traceback."""

from __future__ import annotations

from implicit_em.cli import COMMANDS, error_line, main, parser_for
from implicit_em.cli.options import as_flags, build_options, flag_names
from implicit_em.eval.options import ProbingOptions, SyntheticEvalOptions


def one_line(capsys) -> str:
    """The single stderr line of a refused invocation (checked to be the only one)."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    # ours start "implicit-em: error:", argparse's name the command first
    assert line.startswith("implicit-em") and "error: " in line, line
    assert ": " in line.split("error: ", 1)[1], line  # the problem, then the fix
    assert "YAML" not in line and "--set" not in line, line  # eval-suite has neither
    return line


def test_eval_suite_unknown_subcommand_lists_the_groups_commands(capsys):
    assert main(["eval-suite", "nosuch"]) == 2
    line = one_line(capsys)
    assert line == ("implicit-em: error: unknown command 'eval-suite nosuch': choose one of "
                    "eval-suite synthetic, probing, probing-study, verdict (`implicit-em "
                    "eval-suite --help` says what each does)")  # fmt: skip
    assert main(["eval-suite", "probin"]) == 2
    line = one_line(capsys)
    assert "did you mean 'eval-suite probing'? (eval-suite's commands: synthetic, probing, " in line
    assert main(["eval-suite", "probing-study", "nosuch"]) == 2
    line = one_line(capsys)
    assert "choose one of eval-suite probing-study prepare, run, report, compare" in line
    assert main(["trian"]) == 2  # top level: as before
    assert one_line(capsys) == "implicit-em: error: unknown command 'trian': did you mean 'train'?"


# ---------------------------------------------------------------- the field -> flag mapping


def test_as_flags_writes_each_backticked_field_as_typed():
    flags = flag_names(SyntheticEvalOptions)
    assert flags["eval_samples"] == "--eval-samples" and flags["out_dir"] == "--out-dir"
    shown = as_flags("`lr=-1` `gradient_shares=False` `history_mcc=False` `history_mcc=True` "
                     "`steps` `nosuch` `eval.options` plain steps", SyntheticEvalOptions)  # fmt: skip
    assert shown == ("--lr -1 --no-gradient-shares no --history-mcc --history-mcc --steps "
                     "`nosuch` `eval.options` plain steps")  # fmt: skip
    assert as_flags("`overwrite=True` `out_dir`", ProbingOptions) == "--overwrite --out-dir"


def test_a_bare_rule_gets_the_fix_that_fits_the_command():
    """A library rule with no fix of its own: eval-suite has no YAML config or --set."""
    from implicit_em.config import load_config

    try:
        load_config("default", ["training.epochs=0"])
    except ValueError as err:
        e = err
    probing = next(c for c in COMMANDS if c.name == "eval-suite probing")
    train = next(c for c in COMMANDS if c.name == "train")
    assert error_line(e, probing)[0].endswith(
        ": change that flag (`implicit-em eval-suite probing --help` lists them)")  # fmt: skip
    assert error_line(e, train)[0].endswith("(in the YAML config, or with --set / its flag)")
    assert error_line(e)[0].endswith("(in the YAML config, or with --set / its flag)")


def test_a_fixed_length_tuple_flag_takes_each_value_in_its_type():
    """`--ortho STEPS LR` (tuple[int, float]): parsed as (int, float), not int twice."""
    command = next(c for c in COMMANDS if c.name == "eval-suite synthetic")
    ns = parser_for(command).parse_args(["--recipe", "tiny", "--ortho", "50", "3e-4"])
    opts = build_options(SyntheticEvalOptions, ns)
    assert opts.ortho == (50, 3e-4) and isinstance(opts.ortho[0], int)
