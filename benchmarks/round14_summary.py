"""Issue 19, round 14: apply the plan's fixed rules (docs/scale/round14-PLAN.md) to the
interleaved timings of the matmul fold (row M) against the default sketched step (row D),
beside the L1 SAE (row L).

Reads DIR/G<n>.json (bench_scale.py --interleave --whole-graph: each row's whole step in one
CUDA graph, forward and loss compiled in mode "default") and DIR/P<n>.json (--compile-mode
reduce-overhead). Windows, clean windows and per-process verdicts are round 8's
(`round8_summary`: a process says "faster" when the median of M - D over the cycles, paired
in the same cycle, is below -0.05 ms with at most 2 of its clean pairs on the other side).
Prints Markdown: per process and row the median wall ms, M - D's verdict, L / D and L / M.

    python benchmarks/round14_summary.py /tmp/r14/r14
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from round8_summary import MIN_PAIRS, clean, fmt, paired, process_verdict, uncounted  # same folder
from round8_summary import load as round8_load


def rows(candidate: str = "512s/mm") -> dict[str, str]:
    """Short name -> bench_scale row: D the default step, M the candidate variant (round 14:
    512s/mm, the Triton GEMM; round 15: 512s/mmc, cuBLAS's ReLU epilogue), L the L1 SAE."""
    return {"D": "encoder_sketch32+fused[stats=512s/b0]",
            "M": f"encoder_sketch32+fused[stats={candidate}]", "L": "standard_sae"}  # fmt: skip


ROWS = rows()
MIN_PROCESSES = 2  # counting processes of each kind (G, P) a decision needs
TARGET = 1.5  # L1 SAE step / the sketched encoder's step


def median_ms(wins: dict) -> float | None:
    """Median wall ms per step over a row's clean windows; None with fewer than MIN_PAIRS."""
    ok = [w["wall_ms"] for w in wins.values() if clean(w)]
    return statistics.median(ok) if len(ok) >= MIN_PAIRS else None


def decide(procs: dict[str, dict]) -> tuple[str, dict[str, str]]:
    """('faster' / 'slower' when at least MIN_PROCESSES G and MIN_PROCESSES P processes count
    and every counting process says so; else 'undecided' or 'not decided (...)', per-process
    verdicts). A reduce-overhead process whose CUDA-graph recordings were not counted does
    not count (`uncounted`)."""
    per = {p: uncounted(v) or process_verdict(paired(v["win"], "M")) for p, v in procs.items()}
    counting = [p for p, v in per.items() if v in ("faster", "slower", "neither")]
    if min(sum(p[0] == k for p in counting) for k in "GP") < MIN_PROCESSES:
        return (f"not decided (fewer than {MIN_PROCESSES} G and {MIN_PROCESSES} P processes "
                f"with {MIN_PAIRS} clean pairs)", per)  # fmt: skip
    for verdict in ("faster", "slower"):
        if all(per[p] == verdict for p in counting):
            return verdict, per
    return "undecided", per


def report(folder: Path, candidate: str = "512s/mm") -> str:
    names = rows(candidate)
    procs, skipped = round8_load(folder, names, kinds="GP")
    lines = [f"# The matmul fold (M = {candidate}) against the default sketched step (D)", "",
             *skipped, "| process | D ms | M ms | L ms | M - D (median of pairs) | verdict "
             "| L / D | L / M |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    decision, per = decide(procs)
    ratios = {}
    for p, v in procs.items():
        med = {r: median_ms(v["win"].get(r, {})) for r in names}
        diffs = paired(v["win"], "M")
        ld = med["L"] / med["D"] if med["L"] and med["D"] else None
        lm = med["L"] / med["M"] if med["L"] and med["M"] else None
        ratios[p] = lm
        lines.append(f"| {p} | {fmt(med['D'])} | {fmt(med['M'])} | {fmt(med['L'])} | "
                     f"{fmt(statistics.median(diffs) if diffs else None, '+.3f')} | {per[p]} | "
                     f"{fmt(ld, '.2f')} | {fmt(lm, '.2f')} |")  # fmt: skip
    g = [r for p, r in ratios.items() if p[0] == "G"]
    met = bool(g) and all(r is not None and r >= TARGET for r in g)
    lines += ["", f"- **Decision (M against D):** {decision}. FOLD['matmul'] becomes the default "
              "only on 'faster'.",
              f"- **Target** (L / M >= {TARGET} in every G process): "
              f"{'met' if met else 'not met'} ({', '.join(fmt(r, '.2f') for r in g) or 'no G'})."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        raise SystemExit("usage: python benchmarks/round14_summary.py DIR [VARIANT] (DIR: the "
                         "G*.json, P*.json; VARIANT: the candidate row, default 512s/mm)")  # fmt: skip
    print(report(Path(args[0]), *args[1:]), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
