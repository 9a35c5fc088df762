"""Bitwise comparison of two `implicit-em reproduce` output directories (same seeds).

Compares every experiment JSON (<out>/<experiment>/*.json), every run's history (the
wall-clock `seconds` of each record dropped), weights (model.safetensors) and probe cache
(probe.json), and the report's tables (report.md from "## Experiment 1" on). Prints one line;
exit status 1 when anything differs.

    python3 benchmarks/compare_reproductions.py /tmp/before /tmp/after

With --seed-spread C (reproductions of a's code with other seeds; repeat it for several),
the tables are compared against the seeds' spread instead: every number of every table cell
of b must lie within max_C |C - a| of a's (a number equal in a and every C must be equal in
b). Prints each cell that is not, and the largest |b - a| / max_C |C - a|; exit status 1 when
a cell is outside.

    python3 benchmarks/compare_reproductions.py /tmp/default /tmp/fused \
        --seed-spread /tmp/seed2 --seed-spread /tmp/seed3

With --within-std (reproductions of several seeds, whose cells read "mean ± std"), every mean
of b must lie within a's std of a's mean; other numbers that differ are listed, not failed.
"""

from __future__ import annotations

import argparse
import json
import re
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


NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:e[+-]?\d+)?")


def table_cells(out: Path) -> list[tuple[str, list[float]]]:
    """("row: first two cells | column index", the numbers in the cell) of every table cell of
    the report (from "## Experiment 1" on)."""
    text = (out / "report.md").read_text().partition("## Experiment 1")[2]
    cells = []
    for line in text.splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        parts = [p.strip() for p in line.strip("|").split("|")]
        for j, cell in enumerate(parts[1:], 1):
            nums = [float(n.replace(",", "")) for n in NUMBER.findall(cell)]
            cells.append((f"{' '.join(parts[:2])} | col {j}", nums))
    return cells


def outside_spread(a: Path, b: Path, others: list[Path]) -> tuple[list[str], float]:
    """(cells of b outside the seeds' spread max_C |C - a| around a, the largest |b - a| over
    that spread inside it)."""
    bad, worst = [], 0.0
    rows = zip(table_cells(a), table_cells(b), *(table_cells(c) for c in others), strict=True)
    for (label, xa), (_, xb), *xcs in rows:
        for va, vb, *vcs in zip(xa, xb, *(x for _, x in xcs), strict=True):
            spread, diff = max(abs(vc - va) for vc in vcs), abs(vb - va)
            if diff > spread + 1e-9 * max(abs(va), 1.0):  # printed numbers: decimal round-off
                bad.append(f"{label}: {vb} (a {va}, other seeds {vcs})")
            elif spread:
                worst = max(worst, diff / spread)
    return bad, worst


PM = re.compile(r"(-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)\s*±\s*(\d+(?:\.\d+)?(?:e[+-]?\d+)?)")


def outside_std(a: Path, b: Path) -> tuple[list[str], list[str], int]:
    """(cells of b whose mean is farther than a's std from a's mean, other cells that differ,
    number of "mean ± std" pairs compared). Paper columns hold equal numbers in a and b."""
    texts = [(x / "report.md").read_text().partition("## Experiment 1")[2] for x in (a, b)]
    bad, other, n = [], [], 0
    lines = [t.splitlines() for t in texts]
    if len(lines[0]) != len(lines[1]):
        other.append(f"the reports differ in length ({len(lines[0])} and {len(lines[1])} lines)")
    for la, lb in zip(*lines, strict=False):
        if not la.startswith("|"):
            continue
        pa, pb = la.strip("|").split("|"), lb.strip("|").split("|")
        if len(pa) != len(pb):
            other.append(f"row {pa[0].strip()!r}: other columns")
            continue
        for j, (ca, cb) in enumerate(zip(pa, pb, strict=True)):
            ma, mb = PM.findall(ca), PM.findall(cb)
            if ma and len(ma) == len(mb):
                for (m1, s1), (m2, _) in zip(ma, mb, strict=True):
                    n += 1
                    if abs(float(m2) - float(m1)) > float(s1) + 1e-9 * max(abs(float(m1)), 1.0):
                        bad.append(f"{pa[0].strip()} | col {j}: {cb.strip()} (a {ca.strip()})")
            elif ca != cb:
                other.append(f"{pa[0].strip()} | col {j}: {cb.strip()} (a {ca.strip()})")
    return bad, other, n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("a", type=Path, help="one reproduction's --out directory")
    p.add_argument("b", type=Path, help="the other's")
    p.add_argument("--seed-spread", type=Path, action="append", default=[],
                   help="a reproduction of a's code with other seeds (repeatable): compare "
                        "the tables with the seeds' spread")  # fmt: skip
    p.add_argument(
        "--within-std",
        action="store_true",
        help="compare b's table means with a's 'mean ± std' cells",
    )
    args = p.parse_args()
    if args.within_std:
        bad, other, n = outside_std(args.a, args.b)
        print(f"compared {n} 'mean ± std' cells: {len(bad)} of b's means outside a's std; "
              f"{len(other)} other cells differ")  # fmt: skip
        for line in bad:
            print("  outside: " + line)
        for line in other:
            print("  differs: " + line)
        return 1 if bad else 0
    if args.seed_spread:
        bad, worst = outside_spread(args.a, args.b, args.seed_spread)
        n = len(table_cells(args.a))
        print(f"compared {n} table cells against the seeds' spread: {len(bad)} outside; "
              f"largest |b - a| / |other seeds - a| inside it {worst:.2f}")  # fmt: skip
        for line in bad:
            print("  " + line)
        return 1 if bad else 0
    bad, n_runs = differences(args.a, args.b)
    print(f"compared {n_runs} runs, the experiment JSONs and the report tables: "
          f"{len(bad)} differ{': ' + ', '.join(bad) if bad else ''}")  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
