"""Issue 19, round 8: apply the plan's fixed rules to the processes' interleaved timings.

Reads DIR/P<n>.json and DIR/C<n>.json (bench_scale.py --interleave JSONs written by
docs/scale/round8_run.sh: one process each, the four rows D = 512s/b0 (the default), X =
256/b0, F = 512s/b1 (the bias fold) and L = the L1 SAE built once, then timed in W-step
windows in turn; P: reduce-overhead, the decisions' processes; C: compile mode "default", no
CUDA graphs, reported beside them only) and DIR/smi.txt; prints Markdown: the windows per row and process, the paired differences F - D
and X - D within each cycle, the two decisions, the headline ratio L / D and where the
window-to-window variation lies (wall against GPU time). The rules are
docs/scale/round8-PLAN.md's, fixed before the call; this file only computes them.

    python benchmarks/round8_summary.py /tmp/r8/r8
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ROWS = {  # short name -> bench_scale row name (compile mode stripped)
    "D": "encoder_sketch32+fused[stats=512s/b0]",
    "X": "encoder_sketch32+fused[stats=256/b0]",
    "F": "encoder_sketch32+fused[stats=512s/b1]",
    "L": "standard_sae",
}
MARGIN_MS = 0.05  # a process's median paired difference must pass -0.05 (or +0.05) ms
MIN_PAIRS = 10  # clean pairs a process needs to count for a decision
MAX_AGAINST = 2  # of a process's clean pairs, at most this many on the other side (10 of 12)
MIN_PROCESSES = 3  # counting processes a decision needs; every one must agree
TARGET = 1.5  # L1 SAE step / default step
HOST_PACED = 0.9  # median issue / wall at or above this: the host set the pace
GPU_SHARE = 0.5  # GPU-time sd below this share of the wall sd: variation outside the events
MEDIANS = ("Medians here are Python's statistics.median: with an even count, the mean of the two "
           "middle values (12 pairs: the mean of the 6th and 7th). bench_scale's own step_ms "
           "(each process's closing table and JSON) takes the upper middle value instead; it "
           "decides nothing.")  # fmt: skip


def load(folder: Path, rows: dict[str, str] | None = None,
         kinds: str = "PC") -> tuple[dict[str, dict], list[str]]:  # fmt: skip
    """(process (P1, ..., then C1, ...) -> {"res": the JSON, "win": {short row: {cycle:
    window}}}, one line per file skipped): the timed windows of the rows in `rows` (default
    ROWS; sketched rows' probe count read as 32). kinds: the processes' letters, in the order
    they are listed (round 9: "GP"). A file that cannot be read or parsed (e.g. truncated) is
    skipped, named in its line, and the others are read on."""
    rows = ROWS if rows is None else rows
    out, skipped = {}, []
    paths = [p for k in kinds for p in folder.glob(f"{k}[0-9]*.json")]
    for path in sorted(paths, key=lambda p: (kinds.index(p.stem[0]), int(p.stem[1:]))):
        try:
            res = json.loads(path.read_text())
            win: dict[str, dict[int, dict]] = {}
            for w in res.get("interleave", {}).get("windows", []):
                name = w["row"].replace(f"sketch{res['probes']}", "sketch32")
                short = next((s for s, n in rows.items() if n == name), None)
                if short:
                    win.setdefault(short, {})[w["cycle"]] = w
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            skipped.append(f"- skipped {path.name}: not readable ({type(e).__name__}: {e}); "
                           f"process {path.stem} is left out of everything below")  # fmt: skip
            continue
        out[path.stem] = {"res": res, "win": win}
    return out, skipped


def clean(w: dict) -> bool:
    """Whether nothing was compiled, recorded or run without CUDA graphs during the window
    (counts this torch does not keep, None, are not held against it here: `uncounted` keeps a
    process whose CUDA-graph recordings were not counted out of the decisions)."""
    return all(not v for v in w.get("counts", {}).values() if v is not None)


def uncounted(v: dict) -> str | None:
    """'recordings not counted' when the process ran under reduce-overhead on a GPU and a
    window's `cudagraphs` count is null (this torch's cudagraph trees lack what
    bench_scale.compile_counts reads): a re-recording could have gone unseen, so its windows
    cannot be shown clean and the process does not count toward a decision. None otherwise
    (on the CPU and in compile mode default nothing records, and a null count is expected)."""
    res = v["res"]
    if res.get("compile_mode") != "reduce-overhead" or res.get("device", "cpu") == "cpu":
        return None
    wins = [w for ws in v["win"].values() for w in ws.values()]
    if any(w.get("counts", {}).get("cudagraphs") is None for w in wins):
        return "recordings not counted"
    return None


def paired(win: dict, cand: str, key: str = "wall_ms") -> list[float]:
    """cand - D per cycle where both have a clean window with a value for key (ms per step)."""
    a, d = win.get(cand, {}), win.get("D", {})
    return [a[c][key] - d[c][key] for c in sorted(set(a) & set(d))
            if clean(a[c]) and clean(d[c]) and a[c][key] is not None and d[c][key] is not None]  # fmt: skip


def process_verdict(diffs: list[float]) -> str:
    """'faster' (median < -MARGIN_MS and at most MAX_AGAINST pairs >= 0), 'slower' (the
    mirror), 'neither', or 'too few pairs' (fewer than MIN_PAIRS)."""
    if len(diffs) < MIN_PAIRS:
        return "too few pairs"
    med = statistics.median(diffs)
    if med < -MARGIN_MS and sum(d >= 0 for d in diffs) <= MAX_AGAINST:
        return "faster"
    if med > MARGIN_MS and sum(d <= 0 for d in diffs) <= MAX_AGAINST:
        return "slower"
    return "neither"


def decide(procs: dict[str, dict], cand: str) -> tuple[str, dict[str, str], float | None]:
    """(decision, per-process verdict, mean of the counting processes' median differences):
    'faster' / 'slower' when at least MIN_PROCESSES processes have MIN_PAIRS clean pairs and
    every one of them says so; else 'undecided' or 'not decided (...)'. Only the P processes
    (reduce-overhead) decide, and only those whose recordings were counted (`uncounted`)."""
    per = {p: uncounted(v) or process_verdict(paired(v["win"], cand))
           for p, v in procs.items() if p[0] == "P"}  # fmt: skip
    counting = [p for p, v in per.items() if v in ("faster", "slower", "neither")]
    meds = [statistics.median(paired(procs[p]["win"], cand)) for p in counting]
    mean = sum(meds) / len(meds) if meds else None
    if len(counting) < MIN_PROCESSES:
        return (f"not decided (fewer than {MIN_PROCESSES} processes with {MIN_PAIRS} clean "
                f"pairs and their recordings counted)", per, mean)  # fmt: skip
    for verdict in ("faster", "slower"):
        if all(per[p] == verdict for p in counting):
            return verdict, per, mean
    return "undecided", per, mean


def sd(xs: list[float]) -> float | None:
    return statistics.stdev(xs) if len(xs) > 1 else None


def variation(wins: list[dict]) -> tuple[str, float | None, float | None, float | None]:
    """(reading, sd of wall_ms, sd of gpu_ms, median issue_ms / wall_ms) over a row's windows:
    the GPU-time sd below GPU_SHARE of the wall sd -> outside the event span; else a median
    issue / wall >= HOST_PACED -> host-paced; else GPU-side."""
    wall = [w["wall_ms"] for w in wins]
    gpu = [w["gpu_ms"] for w in wins if w.get("gpu_ms") is not None]
    issue = statistics.median(w["issue_ms"] / w["wall_ms"] for w in wins) if wins else None
    s_wall, s_gpu = sd(wall), sd(gpu) if len(gpu) == len(wall) else None
    if s_wall is None or s_gpu is None:
        return "no GPU times", s_wall, s_gpu, issue
    if s_gpu < GPU_SHARE * s_wall:
        return "outside the GPU's event span (host, around the events)", s_wall, s_gpu, issue
    if issue >= HOST_PACED:
        return "host-paced (the host issued the last step about when the GPU finished)", s_wall, s_gpu, issue  # fmt: skip
    return "GPU-side (the host ran ahead; the GPU's own time varied)", s_wall, s_gpu, issue


def fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def report(folder: Path) -> str:
    procs, skipped = load(folder)
    if not procs:
        return "\n".join([f"no {'readable ' if skipped else ''}process JSON in {folder}",
                          *skipped])  # fmt: skip
    lines = [*skipped, *([""] if skipped else []), MEDIANS, "", "## Windows per process (ms per step; clean windows: nothing compiled or recorded)",
             "", "| process | row | windows (clean) | wall median | wall min-max | GPU median "
             "| issue / wall |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for p, v in procs.items():
        for s in ROWS:
            wins = list(v["win"].get(s, {}).values())
            if not wins:
                lines.append(f"| {p} | {s} | 0 | - | - | - | - |")
                continue
            ok = [w for w in wins if clean(w)]
            note = "" if ok else f"; no clean window, medians over all {len(wins)}"
            ok = ok or wins
            wall = [w["wall_ms"] for w in ok]
            gpu = [w["gpu_ms"] for w in ok if w.get("gpu_ms") is not None]
            ratio = statistics.median(w["issue_ms"] / w["wall_ms"] for w in ok)
            why = uncounted(v)
            lines.append(f"| {p} | {s} | {len(wins)} ({sum(map(clean, wins))}"
                         f"{', ' + why if why else ''}{note}) | "
                         f"{statistics.median(wall):.3f} | {min(wall):.3f}-{max(wall):.3f} | "
                         f"{fmt(statistics.median(gpu) if gpu else None)} | {ratio:.2f} |")  # fmt: skip
    lines += ["", "(rows: D = 512s/b0, the default; X = 256/b0; F = 512s/b1, the fold; "
              "L = the L1 SAE. Processes: P reduce-overhead, they decide; C compile mode "
              "default, no CUDA graphs, reported only)", "",
              "## Compiles and CUDA-graph recordings", ""]  # fmt: skip
    for p, v in procs.items():
        it = v["res"].get("interleave", {})
        dirty = [f"{s} cycle {c}: {json.dumps(w['counts'])}"
                 for s, ws in v["win"].items() for c, w in ws.items() if not clean(w)]  # fmt: skip
        gcs = sum(w.get("gc_collections", 0) for ws in v["win"].values() for w in ws.values())
        lines.append(f"- {p}: after the build {json.dumps(it.get('counts_after_build'))}, at the "
                     f"end {json.dumps(it.get('counts_end'))}; windows with a compile or "
                     f"recording: {len(dirty)}{': ' + '; '.join(dirty) if dirty else ''}; "
                     f"garbage collections in timed windows: {gcs}"
                     + (f"; **{uncounted(v)}**: the cudagraphs count is null, so re-recordings "
                        f"could go unseen; this process does not count toward a decision"
                        if uncounted(v) else ""))  # fmt: skip
    lines += ["", "## Paired differences within a cycle (candidate - D, ms per step)", ""]
    for cand, what in (("F", "fold (F - D)"), ("X", "layout (X - D)")):
        for p, v in procs.items():
            for key, label in (("wall_ms", "wall"), ("gpu_ms", "GPU")):
                d = paired(v["win"], cand, key)
                if not d:
                    continue
                neg = sum(x < 0 for x in d)
                decides = key == "wall_ms" and p[0] == "P"
                verdict = (f" -> {uncounted(v) or process_verdict(d)}" if decides
                           else " (reported only)")  # fmt: skip
                lines.append(f"- {what}, {p}, {label}: median {statistics.median(d):+.3f}, "
                             f"{neg} of {len(d)} negative [{', '.join(f'{x:+.3f}' for x in d)}]"
                             f"{verdict}")  # fmt: skip
    lines += ["", "## Where the variation lies (per row: sd of the windows' wall and GPU "
              "times, median issue / wall)", ""]  # fmt: skip
    for p, v in procs.items():
        for s in ROWS:
            wins = [w for w in v["win"].get(s, {}).values() if clean(w)]
            if wins:
                reading, s_wall, s_gpu, issue = variation(wins)
                lines.append(f"- {p} {s}: sd wall {fmt(s_wall)}, sd GPU {fmt(s_gpu)}, issue / "
                             f"wall {fmt(issue, '.2f')} -> {reading}")  # fmt: skip
    smi = folder / "smi.txt"
    if smi.exists():
        lines += ["", "## GPU clocks (sm MHz, mem MHz, temp C, power W, pstate)", "", "```",
                  smi.read_text().rstrip(), "```"]  # fmt: skip
    lines += ["", "## Decisions (wall time; the plan's rules)", ""]
    fold, fold_per, fold_mean = decide(procs, "F")
    layout, layout_per, layout_mean = decide(procs, "X")
    for what, dec, per, act in (
        ("bias fold (F = 512s/b1 against D = 512s/b0)", fold, fold_per,
         {"faster": "fold on: FOLD['bias'] = True", "slower": "fold off, confirmed"}),
        ("layout (X = 256/b0 against D = 512s/b0)", layout, layout_per,
         {"faster": "STATS = {'rows': 256, 'shift': False}",
          "slower": "512-row shifted layout stays, confirmed"}),
    ):  # fmt: skip
        then = act.get(dec, "nothing changes (the default stays; no tie-break call)")
        lines.append(f"- {what}: per process {', '.join(f'{p} {v}' for p, v in per.items())} "
                     f"-> **{dec}**: {then}")  # fmt: skip
    if fold == "faster" and layout == "faster":  # only the measured combinations: one applies
        pick = "fold" if fold_mean <= layout_mean else "layout"
        lines.append(f"- both faster than D: mean median difference F - D {fold_mean:+.3f}, "
                     f"X - D {layout_mean:+.3f} -> only the {pick} change applies (256/b1, "
                     f"both together, was not measured)")  # fmt: skip
    ratios = {}  # P process -> (L / D, L / F or None), medians of the clean windows' wall_ms
    for p, v in procs.items():
        walls = {s: [w["wall_ms"] for w in v["win"].get(s, {}).values() if clean(w)]
                 for s in ("D", "F", "L")}  # fmt: skip
        if p[0] == "P" and walls["L"] and walls["D"]:
            lw = statistics.median(walls["L"])
            f = lw / statistics.median(walls["F"]) if walls["F"] else None
            ratios[p] = (lw / statistics.median(walls["D"]), f)
    counted = {p: r for p, r in ratios.items() if not uncounted(procs[p])}
    met = len(counted) >= MIN_PROCESSES and all(r >= TARGET for r, _ in counted.values())
    lines.append(f"- target L1 SAE / D >= {TARGET}x (median wall of each, every process, at "
                 f"least {MIN_PROCESSES}): "
                 + ", ".join(f"{p} {r:.2f}x" + (f" ({uncounted(procs[p])}, left out)"
                                                if p not in counted else "")
                             for p, (r, _) in ratios.items())
                 + f" -> **{'met' if met else 'not met'}**; L1 SAE / F (reported): "
                 + ", ".join(f"{p} {fmt(f, '.2f')}x" for p, (_, f) in ratios.items()))  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        raise SystemExit("usage: round8_summary.py DIR (the folder of P1.json, ...)")
    print(report(Path(args[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
