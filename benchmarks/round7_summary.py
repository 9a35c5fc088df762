"""Issue 19, round 7: apply the plan's fixed rules to the processes' bench_scale JSONs.

Reads DIR/<block><n>.json (A1.json ... C2.json, written by docs/scale/round7_run.sh: block A
= reduce-overhead with autotuning, B = the same with IMPLICIT_EM_AUTOTUNE=0, C = compile mode
"default", no CUDA graphs) and DIR/smi.txt; prints Markdown: the rows per process, the
spreads, the Triton tile picks, the cause readings and the two default decisions. The rules
are docs/scale/round7-PLAN.md's, fixed before the call; this file only computes them.

    python benchmarks/round7_summary.py /tmp/r7/r7
"""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

ROWS = {  # short name -> bench_scale row name (compile mode stripped)
    "default 512s/b0": "encoder_sketch32+fused[stats=512s/b0]",
    "256/b0": "encoder_sketch32+fused[stats=256/b0]",
    "512s/b1 (fold)": "encoder_sketch32+fused[stats=512s/b1]",
    "L1 SAE": "standard_sae",
}
DEFAULT, LAYOUT, FOLD, L1 = ROWS
FLOOR_MS = 0.03  # the decision threshold never falls below this (rounds 6/6b's N)
SWING_MS = 0.05  # a range below max(3 R, this) is not called a swing


def load(folder: Path) -> dict[str, dict]:
    """process name (A1, ...) -> {short row name: row dict}, rows found in the JSON only."""
    out = {}
    for path in sorted(folder.glob("[A-Z][0-9]*.json")):
        res = json.loads(path.read_text())
        rows = {}
        for key, row in res["models"].items():
            name = key.rsplit("/", 1)[0].replace(f"sketch{res['probes']}", "sketch32")
            short = next((s for s, n in ROWS.items() if n == name), None)
            if short:
                rows[short] = row
        out[path.stem] = rows
    return out


def inductor_picks(folder: Path) -> dict[str, dict[str, str]]:
    """process -> {kernel file (by source hash) -> its .best_config JSON text}, from the
    <process>.inductor_best.tar files round7_run.sh writes; processes without one left out."""
    out = {}
    for path in sorted(folder.glob("[A-Z][0-9]*.inductor_best.tar")):
        with tarfile.open(path) as tar:
            out[path.name.split(".")[0]] = {
                Path(m.name).name: tar.extractfile(m).read().decode()
                for m in tar.getmembers() if m.isfile()}  # fmt: skip
    return out


def spread(values: list[float]) -> float | None:
    return max(values) - min(values) if len(values) > 1 else None


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def decide(procs: dict[str, dict], cand: str, S: float) -> tuple[str, list[float]]:
    """'faster' if cand is below the default by more than S in every block-A process (at
    least three), 'slower' if above by more than S in every one, else 'undecided'."""
    a = [p for p in procs if p.startswith("A") and cand in procs[p] and DEFAULT in procs[p]]
    d = [procs[p][cand]["step_ms"] - procs[p][DEFAULT]["step_ms"] for p in a]
    if len(d) < 3:
        return "not decided (fewer than three block-A processes)", d
    if all(x < -S for x in d):
        return "faster", d
    if all(x > S for x in d):
        return "slower", d
    return "undecided", d


def report(folder: Path) -> str:
    procs = load(folder)
    if not procs:
        return f"no process JSON in {folder}"
    lines = ["## Rows per process (step ms: median of the repeats; repeats in brackets)", ""]
    lines += ["| process | order | " + " | ".join(ROWS) + " |", "|---" * (len(ROWS) + 2) + "|"]
    for p, rows in procs.items():
        order = sorted(rows, key=lambda s: rows[s]["position"])
        cells = [f"{rows[s]['step_ms']:.3f} ({', '.join(f'{r:.3f}' for r in rows[s]['step_ms_repeats'])})"
                 if s in rows else "-" for s in ROWS]  # fmt: skip
        lines.append(f"| {p} | {' > '.join(str(list(ROWS).index(s)) for s in order)} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    lines.append("\n(order: row indices in the order run, 0 = the default, as the columns)")
    R = max((spread(r["step_ms_repeats"]) or 0.0) for rows in procs.values() for r in rows.values())
    T = max(3 * R, SWING_MS)
    a = {p: r for p, r in procs.items() if p.startswith("A")}
    rng = {s: spread([r[s]["step_ms"] for r in a.values() if s in r]) for s in ROWS}
    S = max([FLOOR_MS] + [v for v in rng.values() if v is not None])
    lines += ["", "## Spreads", "",
              f"- R (largest range of one row's repeats within a process): {R:.3f} ms",
              f"- swing threshold T = max(3 R, {SWING_MS}) = {T:.3f} ms",
              "- across block-A processes, per row (max - min): "
              + ", ".join(f"{s} {fmt(v)}" for s, v in rng.items()),
              f"- S (the largest of those, at least {FLOOR_MS}): {S:.3f} ms",
              "- swing reproduced in block A: "
              + (", ".join(s for s, v in rng.items() if v is not None and v > T) or "no row")]  # fmt: skip
    # the order: each row's value minus its block-A mean, averaged by position
    by_pos: dict[int, list[float]] = {}
    for s in ROWS:
        vals = [r[s] for r in a.values() if s in r]
        if len(vals) > 1:
            mean = sum(v["step_ms"] for v in vals) / len(vals)
            for v in vals:
                by_pos.setdefault(v["position"], []).append(v["step_ms"] - mean)
    pos = {k: sum(v) / len(v) for k, v in sorted(by_pos.items())}
    lines.append("- block A, mean deviation from the row's mean by position run (0 = first): "
                 + ", ".join(f"{k}: {v:+.3f}" for k, v in pos.items()))  # fmt: skip
    order_named = bool(pos) and max(pos.values()) - min(pos.values()) > max(T, S / 2)
    lines.append(f"- the order named a cause (position means differ by > max(T, S/2) = "
                 f"{max(T, S / 2):.3f}): {'yes' if order_named else 'no'}")  # fmt: skip
    # matched pairs: B1/B2 against A1/A3 (autotuning off), C1/C2 against A2/A4 (no CUDA graphs)
    lines += ["", "## Causes by matched pairs (same row orders, one factor changed)", ""]
    for block, ref, what in (("B", ("A1", "A3"), "Triton autotuning"),
                             ("C", ("A2", "A4"), "CUDA graphs (reduce-overhead)")):  # fmt: skip
        off = [f"{block}1", f"{block}2"]
        for s in (DEFAULT, LAYOUT, FOLD):  # blocks B and C run the sketched rows only
            r_on = spread([procs[p][s]["step_ms"] for p in ref if p in procs and s in procs[p]])
            r_off = spread([procs[p][s]["step_ms"] for p in off if p in procs and s in procs[p]])
            if r_on is None or r_off is None:
                verdict = "not determined (the row is not in all four processes)"
            elif r_off > T:
                verdict = f"swing without {what}: not needed for it"
            elif r_on > T:
                verdict = f"swing with {what} only: implicated"
            else:
                verdict = "no swing in either pair: not determined"
            lines.append(f"- {what}, {s}: range {'/'.join(ref)} {fmt(r_on)}, "
                         f"{'/'.join(off)} {fmt(r_off)} -> {verdict}")  # fmt: skip
    lines += ["", "## Triton tile picks (kernel: config per autotuning key)", ""]
    for p, rows in procs.items():
        last = max(rows.values(), key=lambda r: r["position"], default=None)
        if last is None:
            continue
        picks = {k: {key: c for key, c in v["picked"].items()} or {"(one held)": v["last"]}
                 for k, v in last.get("triton_configs", {}).items()}  # fmt: skip
        lines.append(f"- {p}: {json.dumps(picks, sort_keys=True)}")
    ind = inductor_picks(folder)
    if ind:
        a_ind = {p: v for p, v in ind.items() if p.startswith("A")}
        kernels = set().union(*a_ind.values()) if a_ind else set()
        differ = sorted(k for k in kernels if len({a_ind[p].get(k) for p in a_ind}) > 1)
        lines += ["", "## TorchInductor's own tile picks (.best_config files)", "",
                  "- kernels with a pick per process: "
                  + ", ".join(f"{p} {len(v)}" for p, v in ind.items()),
                  f"- kernels whose pick differs between block-A processes (or is missing in "
                  f"one): {len(differ)} of {len(kernels)}"
                  + (f": {', '.join(differ[:8])}" if differ else "")]  # fmt: skip
    smi = folder / "smi.txt"
    if smi.exists():
        lines += ["", "## GPU clocks (sm MHz, mem MHz, temp C, power W, pstate)", "", "```",
                  smi.read_text().rstrip(), "```"]  # fmt: skip
    lines += ["", "## Decisions (block A only; S as above)", ""]
    for cand, what, fast, slow, none in (
        (LAYOUT, "layout: 256-row Chan (256/b0) against the default 512-row shifted",
         "STATS back to 256 rows, Chan merges", "512-row shifted stays, confirmed",
         "512-row shifted stays (undecided: rests on round 6b)"),
        (FOLD, "bias fold (512s/b1) against the default without it",
         "FOLD['bias'] on", "fold stays off, confirmed", "fold stays off (undecided)"),
    ):  # fmt: skip
        verdict, d = decide(procs, cand, S)
        act = {"faster": fast, "slower": slow, "undecided": none}.get(verdict, "nothing changes")
        lines.append(f"- {what}: candidate - default per A process "
                     f"{', '.join(f'{x:+.3f}' for x in d)} ms -> {verdict}: {act}")  # fmt: skip
    ratios = [
        r[L1]["step_ms"] / r[DEFAULT]["step_ms"] for r in a.values() if L1 in r and DEFAULT in r
    ]
    met = "met" if ratios and len(ratios) >= 3 and all(x >= 1.5 for x in ratios) else "not met"
    lines.append(f"- target sketched step >= 1.5x the L1 SAE (default row, every A process): "
                 f"{', '.join(f'{x:.2f}x' for x in ratios)} -> {met}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        raise SystemExit("usage: round7_summary.py DIR (the folder of A1.json, ...)")
    print(report(Path(args[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
