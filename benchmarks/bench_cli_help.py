"""Wall time of `implicit-em --help` (and one subcommand's --help), median of N fresh processes.

    python benchmarks/bench_cli_help.py [--exe PATH/TO/implicit-em] [--repeats 7]

Each run is a new interpreter, so the time includes Python start-up and every import the CLI
does before printing help (issue 14: lazy imports keep `--help` fast).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import time


def time_command(cmd: list[str], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--exe", default=shutil.which("implicit-em") or "implicit-em")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    for extra in (["--help"], ["train", "--help"], ["reproduce", "--help"]):
        times = time_command([args.exe, *extra], args.repeats)
        print(
            f"implicit-em {' '.join(extra):<18} median {statistics.median(times):.3f} s "
            f"(min {min(times):.3f}, max {max(times):.3f}, n={len(times)})"
        )


if __name__ == "__main__":
    main()
