"""Start-up time of `implicit-em --help` and of every subcommand's --help (issue 15).

    python benchmarks/bench_startup.py [--exe PATH/TO/implicit-em] [--repeats 5]

Each measurement is a fresh process (Python start-up and every import the CLI does before it
prints help). Prints the median wall time and the median user+sys CPU time of the child: on
a machine shared with other work, wall time grows with the load, CPU time much less. Target:
under 0.5 s each. The subcommands are read from `implicit_em.cli.commands` (the old CLI, which
has none, gets the same list by name).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import time

NAMES = ["reproduce", "theorem", "ablation", "benchmark", "features", "dynamics", "train",
         "evaluate", "data fetch", "data pack-corpora", "harvest", "llm-train", "llm-eval", "ood",
         "scale"]  # fmt: skip
"""The subcommands (fixed here so that old and new CLIs are measured on the same list); the
commands of `implicit_em.cli.commands` that are not in it are measured after them."""


def names() -> list[str]:
    try:
        from implicit_em.cli.commands import COMMANDS
    except ImportError:  # the old CLI
        return NAMES
    return NAMES + [c.name for c in COMMANDS if c.name not in NAMES]


def measure(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, user+sys CPU seconds of the child) of one run of cmd."""
    before = os.times()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--exe", default=shutil.which("implicit-em") or "implicit-em")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    worst = 0.0
    print(f"{args.exe}: median of {args.repeats} fresh processes")
    print(f"{'command':<34} {'wall s':>7} {'cpu s':>7}")
    for words in [[], *(n.split() for n in names())]:
        runs = [measure([args.exe, *words, "--help"]) for _ in range(args.repeats)]
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        worst = max(worst, cpu)
        print(f"{' '.join(['implicit-em', *words, '--help']):<34} {wall:7.3f} {cpu:7.3f}")
    print(f"slowest median CPU time {worst:.3f} s (target < 0.5 s)")


if __name__ == "__main__":
    main()
