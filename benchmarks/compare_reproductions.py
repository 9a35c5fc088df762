"""Bitwise comparison of two `implicit-em reproduce` output directories (same seeds).

Compares every experiment JSON (<out>/<experiment>/*.json), every run's history (the
wall-clock `seconds` of each record dropped), weights (model.safetensors) and probe cache
(probe.json), and the report's tables (report.md from "## Experiment 1" on). Prints one line;
exit status 1 when anything differs.

    python3 benchmarks/compare_reproductions.py /tmp/before /tmp/after
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def history(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def differences(a: Path, b: Path) -> tuple[list[str], int]:
    """(paths under a whose counterpart in b differs, number of runs compared)."""
    bad = []
    for f in sorted(a.glob("*/*.json")):
        g = b / f.relative_to(a)
        if f.parent.name != "runs" and (not g.is_file() or f.read_bytes() != g.read_bytes()):
            bad.append(str(f.relative_to(a)))
    run_dirs = [d for d in sorted((a / "runs").iterdir()) if d.is_dir() and d.name[0] != "."]
    for d in run_dirs:
        e = b / "runs" / d.name
        if not (e / "history.jsonl").is_file() or history(d / "history.jsonl") != history(
            e / "history.jsonl"
        ):
            bad.append(f"runs/{d.name}/history.jsonl")
        for name in ("model.safetensors", "probe.json"):
            if (d / name).is_file() and (d / name).read_bytes() != (e / name).read_bytes():
                bad.append(f"runs/{d.name}/{name}")
    tables = [(x / "report.md").read_text().partition("## Experiment 1")[2] for x in (a, b)]
    if tables[0] != tables[1]:
        bad.append("report.md tables")
    return bad, len(run_dirs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("a", type=Path, help="one reproduction's --out directory")
    p.add_argument("b", type=Path, help="the other's")
    args = p.parse_args()
    bad, n_runs = differences(args.a, args.b)
    print(f"compared {n_runs} runs, the experiment JSONs and the report tables: "
          f"{len(bad)} differ{': ' + ', '.join(bad) if bad else ''}")  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
