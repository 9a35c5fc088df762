"""benchmarks/round14_summary.py applies round 14's rules (docs/scale/round14-PLAN.md) to
interleaved bench_scale JSONs: rows D (default sketched step), M (matmul fold), L (L1 SAE)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import round14_summary as summary  # noqa: E402


def process(folder: Path, name: str, wall: dict, cycles: int = 12, dirty=()) -> None:
    """An --interleave JSON as round14_run.sh's process `name` writes it (G: whole-step graph,
    compile mode default; P: reduce-overhead); wall: {short row: f(cycle) -> ms per step}."""
    rows = list(summary.ROWS)
    windows = []
    for c in range(cycles):
        for slot, s in enumerate(rows[c % 3 :] + rows[: c % 3]):
            counts = {"frames": int((s, c) in dirty), "graphs": 0, "cudagraphs": 0,
                      "cudagraph_rerecords": 0, "cudagraph_skips": 0}  # fmt: skip
            windows.append({"row": summary.ROWS[s], "cycle": c, "slot": slot,
                            "wall_ms": wall[s](c), "issue_ms": 0.1, "gpu_ms": wall[s](c),
                            "counts": counts})  # fmt: skip
    res = {"probes": 32, "device": "NVIDIA H200", "interleave": {"windows": windows},
           "compile_mode": "reduce-overhead" if name[0] == "P" else "default"}  # fmt: skip
    (folder / f"{name}.json").write_text(json.dumps(res))


def const(x):
    return lambda c: x


def test_faster_in_every_process_decides_and_the_target_reads_the_g_processes(tmp_path):
    """M 0.1 ms under D in every cycle of two G and two P processes -> 'faster'; L / M =
    1.2 / 0.7 = 1.71 in both G -> met; one G at 1.2 / 0.9 -> not met; a process with too few
    clean windows does not count, and then too few count to decide."""
    for p in ("G1", "G2"):
        process(tmp_path, p, {"D": const(0.8), "M": const(0.7), "L": const(1.2)})
    for p in ("P1", "P2"):
        process(tmp_path, p, {"D": const(1.0), "M": const(0.9), "L": const(1.2)})
    text = summary.report(tmp_path)
    assert "- **Decision (M against D):** faster." in text
    assert "- **Target** (L / M >= 1.5 in every G process): met (1.71, 1.71)." in text
    assert "| G1 | 0.800 | 0.700 | 1.200 | -0.100 | faster | 1.50 | 1.71 |" in text
    process(tmp_path, "G2", {"D": const(1.0), "M": const(0.9), "L": const(1.2)})
    assert "not met (1.71, 1.33)" in summary.report(tmp_path)
    process(tmp_path, "P2", {"D": const(1.0), "M": const(0.9), "L": const(1.2)}, cycles=5)
    text = summary.report(tmp_path)
    assert "| P2 |" in text and "too few pairs" in text
    assert "**Decision (M against D):** not decided (fewer than 2 G and 2 P" in text


def test_mixed_or_slower_processes(tmp_path):
    """One process 'neither' -> undecided; M above D by 0.1 everywhere -> slower; a window that
    compiled is dropped from its pair (11 clean pairs still count)."""
    for p in ("G1", "G2", "P1", "P2"):
        process(tmp_path, p, {"D": const(0.8), "M": const(0.9), "L": const(1.2)},
                dirty=[("M", 4)] if p == "P1" else ())  # fmt: skip
    assert "**Decision (M against D):** slower." in summary.report(tmp_path)
    process(tmp_path, "P2", {"D": const(0.8), "M": const(0.8), "L": const(1.2)})
    text = summary.report(tmp_path)
    assert "| P2 | 0.800 | 0.800 | 1.200 | +0.000 | neither |" in text
    assert "**Decision (M against D):** undecided." in text


def test_another_candidate_row(tmp_path):
    """Round 15's candidate (512s/mmc) read by name: its windows are M."""
    summary_rows = summary.rows("512s/mmc")
    assert summary_rows["M"] == "encoder_sketch32+fused[stats=512s/mmc]"
    old = dict(summary.ROWS)
    summary.ROWS.clear()
    summary.ROWS.update(summary_rows)  # the writer below names windows by ROWS
    try:
        for p in ("G1", "G2", "P1", "P2"):
            process(tmp_path, p, {"D": const(0.8), "M": const(0.7), "L": const(1.2)})
    finally:
        summary.ROWS.clear()
        summary.ROWS.update(old)
    text = summary.report(tmp_path, "512s/mmc")
    assert text.startswith("# The matmul fold (M = 512s/mmc)")
    assert "**Decision (M against D):** faster." in text
    assert "| G1 | 0.800 | - |" in summary.report(tmp_path, "512s/mm")
