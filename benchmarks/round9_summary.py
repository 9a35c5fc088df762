"""Issue 19, round 9: apply the plan's fixed rules (docs/scale/round9-PLAN.md) to the
processes' interleaved timings of the whole-step CUDA graph against reduce-overhead.

Reads DIR/G<n>.json (bench_scale.py --interleave --whole-graph, the forward and loss compiled
in mode "default", each step captured whole) and DIR/P<n>.json (--compile-mode
reduce-overhead, as round 8), each with the rows D = the sketched encoder's default step and
L = the L1 SAE, DIR/check.txt (benchmarks/round9_check.py's output and exit code) and
DIR/B.json (part B: benchmarks/bench_train_steps.py, the scale trainer's step). Prints
Markdown: the windows per process and row, the whole-graph effect on each row, the target
ratio L / D per process and where the variation lies. Medians, clean windows, the CUDA-graph
recording check and the variation's reading are round 8's (`round8_summary`).

    python benchmarks/round9_summary.py /tmp/r9/r9
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from round8_summary import MEDIANS, clean, fmt, uncounted, variation  # same folder
from round8_summary import load as round8_load

ROWS = {"D": "encoder_sketch32+fused[stats=512s/b0]", "L": "standard_sae"}
MARGIN_MS = 0.05  # every G median must beat every P median by this much (or lose by it)
MIN_WINDOWS = 10  # clean windows a row needs in a process for that process to count
MIN_PROCESSES = 2  # counting processes each side needs for a decision or the target
TARGET = 1.5  # L1 SAE step / the sketched encoder's step


def load(folder: Path) -> tuple[dict[str, dict], list[str]]:
    """(process (G1, ..., P1, ...) -> {"res", "win": {short row: {cycle: window}}}, lines
    naming the files skipped as unreadable): `round8_summary.load` with this round's rows."""
    return round8_load(folder, ROWS, kinds="GP")


def medians(v: dict) -> dict[str, float | None]:
    """Per row, the median wall ms of its clean windows; None with fewer than MIN_WINDOWS, or
    for a P process whose CUDA-graph recordings were not counted (`uncounted`)."""
    out = {}
    for s in ROWS:
        wall = [w["wall_ms"] for w in v["win"].get(s, {}).values() if clean(w)]
        ok = len(wall) >= MIN_WINDOWS and not uncounted(v)
        out[s] = statistics.median(wall) if ok else None
    return out


def effect(g: list[float], p: list[float]) -> str:
    """'faster' when every whole-graph median is more than MARGIN_MS below every
    reduce-overhead one, 'slower' for the mirror, else 'undecided'; 'not decided' with fewer
    than MIN_PROCESSES on either side."""
    if len(g) < MIN_PROCESSES or len(p) < MIN_PROCESSES:
        return f"not decided (fewer than {MIN_PROCESSES} counting processes on a side)"
    if max(g) < min(p) - MARGIN_MS:
        return "faster"
    if min(g) > max(p) + MARGIN_MS:
        return "slower"
    return "undecided"


def check_passed(folder: Path) -> tuple[bool, str]:
    """(whether round9_check.py exited 0, its text): the file's last line is 'rc N'."""
    path = folder / "check.txt"
    if not path.exists():
        return False, "no check.txt: the check did not run"
    text = path.read_text().strip()
    return text.splitlines()[-1:] == ["rc 0"], text


B_MARGIN = 1.03  # part B: fused over plain beyond this factor in every round


def part_b(folder: Path) -> list[str]:
    """Part B (bench_train_steps.py's B.json): the scale trainer's step with the fused
    kernels ("+auto") against the plain formulas ("+off"): "faster" when the fused row's
    tokens/s exceeds the plain row's by more than B_MARGIN in every round, "slower" for the
    mirror, else "undecided"; "not measured" when the file is missing or unreadable, or the
    kernels were not active. The encoder's tokens/s over the L1 SAE's is reported beside."""
    path = folder / "B.json"
    out = ["", "## Part B: the scale trainer's step (train_steps, one rank, eager)", ""]
    try:
        rows = json.loads(path.read_text())["rows"]
        fused = next(r for n, r in rows.items() if n.endswith("+auto"))
        plain = next(r for n, r in rows.items() if n.endswith("+off"))
        sae = rows["standard_sae"]
        pairs = list(zip(fused["tokens_per_s"], plain["tokens_per_s"], strict=True))
    except StopIteration:
        return [*out, f"- **not measured**: {path.name} has no +auto and +off encoder rows"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [*out, f"- **not measured**: {path.name} missing or unreadable "
                      f"({type(e).__name__}: {e})"]  # fmt: skip
    ratios = [f / q for f, q in pairs]
    if not fused["fused_active"]:
        word = "not measured (the kernels were not active)"
    elif all(r > B_MARGIN for r in ratios):
        word = "faster"
    elif all(r < 1 / B_MARGIN for r in ratios):
        word = "slower"
    else:
        word = "undecided"
    return [*out, f"- fused over plain, per round: {', '.join(f'{r:.2f}x' for r in ratios)} "
                  f"-> **{word}**",
            f"- encoder (fused) tokens/s over the L1 SAE's (reported): "
            f"{fused['median'] / sae['median']:.2f}x (plain: "
            f"{plain['median'] / sae['median']:.2f}x)"]  # fmt: skip


def report(folder: Path) -> str:
    procs, skipped = load(folder)
    ok, check = check_passed(folder)
    lines = [*skipped, "## The check (benchmarks/round9_check.py)", "", "```", check, "```", "",
             "the whole-step graph trains as the plain step does" if ok else
             "**the check did not pass: the G rows are reported, nothing is decided from "
             "them**", "", MEDIANS.replace("12 pairs: the mean of the 6th and 7th",
                                           "12 windows: the mean of the 6th and 7th"), "",
             "## Windows per process (ms per step, clean windows)", "",
             "| process | row | windows (clean) | wall median | wall min-max | GPU median | "
             "issue / wall |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for p, v in procs.items():
        for s in ROWS:
            wins = [w for w in v["win"].get(s, {}).values() if clean(w)]
            if not wins:
                lines.append(f"| {p} | {s} | 0 | - | - | - | - |")
                continue
            wall = [w["wall_ms"] for w in wins]
            gpu = [w["gpu_ms"] for w in wins if w.get("gpu_ms") is not None]
            issue = statistics.median(w["issue_ms"] / w["wall_ms"] for w in wins)
            lines.append(f"| {p} | {s} | {len(v['win'].get(s, {}))} ({len(wins)}) | "
                         f"{statistics.median(wall):.3f} | {min(wall):.3f}-{max(wall):.3f} | "
                         f"{fmt(statistics.median(gpu) if gpu else None)} | {issue:.2f} |")  # fmt: skip
    lines += ["", "(rows: D = the sketched encoder's default step, L = the L1 SAE; processes: "
              "G whole-step CUDA graph, P reduce-overhead)", "",
              "## Where the variation lies", ""]  # fmt: skip
    for p, v in procs.items():
        for s in ROWS:
            wins = [w for w in v["win"].get(s, {}).values() if clean(w)]
            if wins:
                reading, s_wall, s_gpu, issue = variation(wins)
                lines.append(f"- {p} {s}: sd wall {fmt(s_wall)}, sd GPU {fmt(s_gpu)}, issue / "
                             f"wall {fmt(issue, '.2f')} -> {reading}")  # fmt: skip
    meds = {p: medians(v) for p, v in procs.items()}
    lines += ["", "## Decisions (wall time; the plan's rules)", ""]
    for s, what in (("D", "the sketched encoder"), ("L", "the L1 SAE")):
        g = [m[s] for p, m in meds.items() if p[0] == "G" and m[s] is not None]
        q = [m[s] for p, m in meds.items() if p[0] == "P" and m[s] is not None]
        dec = effect(g, q) if ok else "not decided (the check did not pass)"
        gs = ", ".join(f"{x:.3f}" for x in g) or "none"
        qs = ", ".join(f"{x:.3f}" for x in q) or "none"
        lines.append(f"- whole-step graph on {what} ({s}): G {gs} ms against P {qs} ms -> "
                     f"**{dec}**")  # fmt: skip
    ratios = {p: m["L"] / m["D"] for p, m in meds.items() if m["L"] and m["D"]}
    g_ratios = [r for p, r in ratios.items() if p[0] == "G"]
    met = ok and len(g_ratios) >= MIN_PROCESSES and all(r >= TARGET for r in g_ratios)
    lines.append(f"- target L1 SAE / D >= {TARGET}x under the whole-step graph (every G "
                 f"process, at least {MIN_PROCESSES}; the check passed): "
                 + (", ".join(f"{p} {r:.2f}x" for p, r in ratios.items() if p[0] == "G")
                    or "no G process")
                 + f" -> **{'met' if met else 'not met'}**; under reduce-overhead (reported): "
                 + ", ".join(f"{p} {r:.2f}x" for p, r in ratios.items() if p[0] == "P"))  # fmt: skip
    lines += part_b(folder)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        raise SystemExit("usage: round9_summary.py DIR (the folder of G1.json, P1.json, ...)")
    print(report(Path(args[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
