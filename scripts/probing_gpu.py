"""The GPU probing study of issue 18 under its first command line (a thin wrapper).

The study's code lives in `implicit_em.eval.probing_study` and runs from the CLI:

    implicit-em eval-suite probing-study prepare --model M.gguf --out data/probing18
    implicit-em eval-suite probing-study run --data data/probing18 --model M.gguf --out $OUT/res
    implicit-em eval-suite probing-study report --results R1.json R2.json --out DIR
    implicit-em eval-suite probing-study compare --results ... --old gpu/results.json --out DIR
    implicit-em eval-suite probing-study compare3 --results ... --baseline gpu2_compare.json --out DIR

This script keeps the command lines that docs/eval/probing/gpu*.md and the device scripts
(gpu2/run2.sh, gpu3/run3.sh) call, `python scripts/probing_gpu.py run --data ...`: the same
subcommands and flags, passed to those commands. As before, prepare, run, report and compare
replace the files they write and compare3 refuses to (the CLI asks for --overwrite), and report
accepts --plan-json and ignores it. The study's functions stay importable from here
(`from probing_gpu import summarize, row_stats`, docs/eval/probing/gpu3/checks.py).
"""

from __future__ import annotations

import sys

from implicit_em.eval.probing_study import (  # noqa: F401  (the names this script used to define)
    OLD_ROWS,
    SHORT,
    TIED_FAMILIES,
    TINY,
    Fitter,
    Plan,
    compare,
    compare3,
    dataset_mean,
    fit_task,
    harvest_rows,
    load_data,
    log,
    main_run,
    merge_results,
    plan_rows,
    plot,
    prepare,
    render,
    row_id,
    row_stats,
    run_config,
    summarize,
    train_row,
)
from implicit_em.eval.verdict import apart as _apart  # noqa: F401

REPLACES = ("prepare", "run", "report", "compare")
"""Subcommands that replaced their output files before the move (compare3 never did)."""


def cli_argv(argv: list[str]) -> list[str]:
    """This script's command line as `implicit-em`'s."""
    argv = list(argv)
    if argv[:1] == ["report"]:  # report took --plan-json and ignored it
        for i, a in enumerate(argv):
            if a.startswith("--plan-json="):
                del argv[i]
                break
            if a == "--plan-json":
                del argv[i : i + 2]
                break
    if argv[:1] and argv[0] in REPLACES:
        argv.append("--overwrite")
    return ["eval-suite", "probing-study", *argv]


def main(argv: list[str] | None = None) -> int:
    from implicit_em.cli import main as cli_main

    return cli_main(cli_argv(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
