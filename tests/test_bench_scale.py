"""benchmarks/bench_scale.py: the encoder's wr metric is out of the timed step unless asked
for (the scale trainer computes it only on logged steps), and every row says which."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

from implicit_em import losses
from implicit_em.config import LossConfig
from implicit_em.models import Encoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
bench_scale = importlib.import_module("bench_scale")


@pytest.mark.parametrize("fused,default,want", [
    (None, "logged", (False, False)), (None, "step", (True, False)),
    ("on", "logged", (False, False)), ("on-stats512s", "step", (True, False)),
    ("on-stats512s+wr", "logged", (True, True)), ("on-stats-wr", "step", (False, True)),
    ("on-stats512s/g256-wr", "logged", (False, True)),
])  # fmt: skip
def test_wr_setting(fused, default, want):
    assert bench_scale.wr_setting(fused, default) == want


@pytest.mark.parametrize("with_wr", [False, True])
def test_step_computes_wr_only_when_asked(monkeypatch, with_wr):
    """make_step(with_wr=False) never calls weight_redundancy_loss; with_wr=True once a step."""
    calls = []
    real = losses.weight_redundancy_loss

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(losses, "weight_redundancy_loss", counted)
    torch.manual_seed(0)
    model = Encoder(8, 32)
    x = [torch.randn(16, 8) for _ in range(2)]
    step = bench_scale.make_step(model, x, LossConfig(tc_probes=4), amp=False, with_wr=with_wr)
    for _ in range(3):
        step()
    assert len(calls) == (3 if with_wr else 0)


def test_rows_and_table_say_whether_wr_is_in_the_step(capsys, tmp_path):
    """A CPU run on the fused path (Triton's interpreter): the default row leaves wr out and
    the bias in the matmul (the fold is off by default since round 6), a +wr variant puts wr
    in, a /b1 variant folds the bias into the kernels; the output says so in a line, in each
    row's JSON and in the closing table."""
    out = tmp_path / "bench.json"
    args = ["--device", "cpu", "--K", "64", "--D", "8", "--B", "32", "--steps", "1",
            "--warmup", "0", "--models", "encoder_sketch,standard_sae", "--probes", "4",
            "--fused", "--skip", "encoder_sketch4+ref", "--stats-variants=+wr,256/b1,512s/mm,512s/mmc",
            "--out", str(out)]  # fmt: skip
    assert bench_scale.main(args) == 0
    text = capsys.readouterr().out
    assert "wr metric (encoder rows unless the row says otherwise): not in the timed step" in text
    res = json.loads(out.read_text())
    assert res["wr"].startswith("not in the timed step")
    rows = res["models"]
    base = rows["encoder_sketch4+fused/eager"]
    assert base["wr_in_step"] is False and base["bias_fold"] is False
    assert "infomax_ms_isolated" in base
    assert rows["encoder_sketch4+fused[stats=+wr]/eager"]["wr_in_step"] is True
    fold = rows["encoder_sketch4+fused[stats=256/b1]/eager"]
    assert fold["bias_fold"] is True and fold["wr_in_step"] is False
    assert fold["stats_pass"] == {"rows": 256, "shift": False}
    assert base["matmul_fold"] is False and fold["matmul_fold"] is False
    assert rows["encoder_sketch4+fused[stats=512s/mm]/eager"]["matmul_fold"] is True
    assert rows["encoder_sketch4+fused[stats=512s/mmc]/eager"]["matmul_fold"] is True
    cells = {s.split("|")[1].strip(): [c.strip() for c in s.split("|")[2:-1]]
             for s in text.splitlines() if s.startswith("| encoder_sketch4")}  # fmt: skip
    assert cells["encoder_sketch4+fused/eager"][4:6] == ["no", "no"]  # wr in step, bias fold
    assert cells["encoder_sketch4+fused[stats=+wr]/eager"][4:6] == ["yes", "no"]
    assert cells["encoder_sketch4+fused[stats=256/b1]/eager"][4:6] == ["no", "yes"]
    assert cells["encoder_sketch4+fused[stats=512s/mm]/eager"][4:6] == ["no", "matmul"]
    assert cells["encoder_sketch4+fused/eager"][2].endswith("x")  # vs L1 SAE
    from implicit_em.kernels.infomax import FOLD

    assert FOLD == {"bias": False, "matmul": False}  # restored after the /b1 row


@pytest.mark.parametrize("var,want", [
    ("512s/g256/b0+wr", ({"rows": 512, "shift": True}, 256, {"bias": False})),
    ("+wr", ({}, None, {})), ("256/b1", ({"rows": 256, "shift": False}, None, {"bias": True})),
    ("64-wr", ({"rows": 64, "shift": False}, None, {})),
    ("512s/mm", ({"rows": 512, "shift": True}, None, {"matmul": "triton"})),
    ("512s/mmc", ({"rows": 512, "shift": True}, None, {"matmul": "cublas"})),
])  # fmt: skip
def test_parse_variant(var, want):
    assert bench_scale.parse_variant(var) == want


@pytest.mark.parametrize("var,problem", [
    ("100", "statistics rows 100 must be a positive multiple of each tile height"),
    ("0s", "statistics rows 0 must be a positive multiple"),
    ("96s/b0", "statistics rows 96 must be"),  # 64-row tiles would reach the next chunk
    ("512s/g-1", "gradient strip rows -1 must be"),
    ("512s/g100+wr", "gradient strip rows 100 must be"),
])  # fmt: skip
def test_impossible_layouts_are_refused_in_one_line(var, problem):
    """Rows the kernels cannot take (`triton_infomax.rows_problem`) stop the run with one line
    naming the rows, the tile heights and the form, before any row is built."""
    with pytest.raises(SystemExit) as exc:
        bench_scale.parse_variant(var)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"--stats-variants: cannot use {var!r}: ")
    assert problem in msg and "(tile heights " in msg and msg.endswith("e.g. 512s/g256/b0+wr")
    with pytest.raises(SystemExit, match="cannot use"):
        bench_scale.main(["--device", "cpu", "--K", "64", "--D", "8", "--B", "32", "--steps",
                          "1", "--warmup", "0", "--models", "encoder_sketch", "--probes", "4",
                          "--fused", f"--stats-variants={var}"])  # fmt: skip


def test_possible_layouts_pass_and_the_stand_in_checks_signs(monkeypatch):
    for var in ("32s", "64", "512s/g0", "256/g32", "1024s/g256/b1"):
        bench_scale.parse_variant(var)
    from types import SimpleNamespace

    monkeypatch.setattr(bench_scale, "_triton_kernels", lambda: SimpleNamespace(STATS={}, GRAD={}))
    assert bench_scale.parse_variant("100/g0") == ({"rows": 100, "shift": False}, 0, {})
    with pytest.raises(SystemExit, match="cannot use '0s': statistics rows 0 must be > 0"):
        bench_scale.parse_variant("0s")
    with pytest.raises(SystemExit, match="gradient strip rows -1 must be >= 0"):
        bench_scale.parse_variant("512/g-1")


def test_unknown_variant_option_is_one_line():
    with pytest.raises(SystemExit, match="cannot read '256/x2'"):
        bench_scale.main(["--device", "cpu", "--K", "64", "--D", "8", "--B", "32", "--steps",
                          "1", "--warmup", "0", "--models", "encoder_sketch", "--probes", "4",
                          "--fused", "--stats-variants=256/x2"])  # fmt: skip


def test_order_repeats_positions_and_json_row_by_row(tmp_path, monkeypatch):
    """--order runs the rows as named; --repeats times each step that many times (step_ms is
    their median); --no-isolated drops the InfoMax-alone timing; each row records its position
    and the Triton picks; the JSON is written after every row (a stopped process keeps them)."""
    out = tmp_path / "bench.json"
    writes = []
    real_write = bench_scale.atomic_write_bytes

    def write(path, data):
        writes.append(len(json.loads(data)["models"]))
        return real_write(path, data)

    monkeypatch.setattr(bench_scale, "atomic_write_bytes", write)
    order = "encoder_sketch4+fused[stats=256/b0],standard_sae,encoder_sketch4+fused[stats=512s/b1]"
    args = ["--device", "cpu", "--K", "64", "--D", "8", "--B", "32", "--steps", "1",
            "--warmup", "0", "--repeats", "3", "--no-isolated", "--probes", "4",
            "--models", "encoder_sketch,standard_sae", "--fused",
            "--skip", "encoder_sketch4+ref,encoder_sketch4+fused",
            "--stats-variants=256/b0,512s/b1", "--order", order, "--out", str(out)]  # fmt: skip
    assert bench_scale.main(args) == 0
    assert writes == [1, 2, 3, 3]  # after each row, then the whole result
    res = json.loads(out.read_text())
    assert res["row_order"] == order.split(",") and res["repeats"] == 3
    assert list(res["models"]) == [f"{n}/eager" for n in order.split(",")]
    for i, row in enumerate(res["models"].values()):
        reps = row["step_ms_repeats"]
        assert len(reps) == 3 and row["step_ms"] == sorted(reps)[1]
        assert row["position"] == i and "infomax_ms_isolated" not in row
        assert isinstance(row["triton_configs"], dict)


def test_write_json_is_atomic(tmp_path, monkeypatch):
    """write_json replaces the file whole: a write that fails midway (here the flush to disk)
    leaves the previous JSON readable and no temporary file beside it."""
    import os

    out = tmp_path / "bench.json"
    bench_scale.write_json({"models": {"a": 1}}, str(out))
    assert json.loads(out.read_text()) == {"models": {"a": 1}}

    def fail(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        bench_scale.write_json({"models": {"a": 1, "b": 2}}, str(out))
    assert json.loads(out.read_text()) == {"models": {"a": 1}}
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]


def test_order_must_name_every_row_once():
    models = {"a": 1, "b": 2, "c": 3}
    assert list(bench_scale.ordered(models, "c,a,b")) == ["c", "a", "b"]
    for bad in ("a,b", "a,b,c,c", "a,b,d"):
        with pytest.raises(SystemExit, match="^--order: name every row once") as exc:
            bench_scale.ordered(models, bad)
        assert "\n" not in str(exc.value)


def test_autotune_picks_reads_every_autotuner(monkeypatch):
    """Per autotuned kernel: the config picked per key, the last launch's, how many it held and
    the last tuning's timings; objects that are no autotuners or never ran are left out."""
    from types import SimpleNamespace

    import triton

    c1 = triton.Config({"BM": 32}, num_warps=4, num_stages=3)
    c2 = triton.Config({"BM": 64}, num_warps=8, num_stages=2)
    tuned = SimpleNamespace(fn=None, configs=[c1, c2], cache={(4096, 16384, "bf16"): c2},
                            best_config=c2, configs_timings={c1: [0.2, 0.1], c2: 0.05})  # fmt: skip
    idle = SimpleNamespace(fn=None, configs=[c1, c2], cache={})
    one = SimpleNamespace(fn=None, configs=[c1], cache={}, best_config=c1)
    kt = SimpleNamespace(_stats_kernel=tuned, _grad_kernel=idle, _one=one, STATS={"rows": 512})
    monkeypatch.setattr(bench_scale, "_triton_kernels", lambda: kt)
    picks = bench_scale.autotune_picks()
    assert set(picks) == {"_stats_kernel", "_one"}
    s = picks["_stats_kernel"]
    assert s["picked"] == {"(4096, 16384, 'bf16')": {"BM": 64, "num_warps": 8, "num_stages": 2}}
    assert s["last"] == {"BM": 64, "num_warps": 8, "num_stages": 2} and s["held"] == 2
    assert s["timings"] == {'{"BM": 32, "num_warps": 4, "num_stages": 3}': [0.2, 0.1],
                            '{"BM": 64, "num_warps": 8, "num_stages": 2}': 0.05}  # fmt: skip
    assert picks["_one"] == {"picked": {}, "last": {"BM": 32, "num_warps": 4, "num_stages": 3},
                             "held": 1}  # fmt: skip


def _round7_process(folder, name, ms, order, picks=None):
    """A bench_scale JSON as round7_run.sh's process `name` writes it: ms {short row: step ms}."""
    full = {"default 512s/b0": "encoder_sketch32+fused[stats=512s/b0]",
            "256/b0": "encoder_sketch32+fused[stats=256/b0]",
            "512s/b1 (fold)": "encoder_sketch32+fused[stats=512s/b1]", "L1 SAE": "standard_sae"}  # fmt: skip
    models = {}
    for i, short in enumerate(order):
        models[f"{full[short]}/compiled"] = {
            "step_ms": ms[short], "step_ms_repeats": [ms[short] - 0.002, ms[short], ms[short] + 0.003],
            "position": i, "triton_configs": picks or {}}  # fmt: skip
    (folder / f"{name}.json").write_text(json.dumps({"probes": 32, "models": models}))


def test_round7_summary_applies_the_plans_rules(tmp_path):
    """Spreads, the matched-pair cause readings and both decisions, on made-up processes: 256/b0
    faster than the default by 0.2 ms in every A process with a 0.08 ms spread -> 'faster';
    the fold faster in three processes only -> 'undecided'; a swing of the default only in the
    autotuned pair (A1/A3) -> autotuning implicated; one with and without CUDA graphs -> not
    needed."""
    summary = importlib.import_module("round7_summary")
    rows = ["default 512s/b0", "256/b0", "512s/b1 (fold)", "L1 SAE"]
    a = {"A1": (1.00, 0.80, 0.95), "A2": (1.02, 0.82, 1.05), "A3": (1.08, 0.88, 1.00),
         "A4": (1.04, 0.84, 0.99)}  # fmt: skip
    for i, (p, (d, x, f)) in enumerate(a.items()):
        order = rows[i:] + rows[:i]
        _round7_process(tmp_path, p, dict(zip(rows, (d, x, f, 1.15), strict=True)), order)
    for p, d in (("B1", 1.00), ("B2", 1.001)):  # autotuning off: no swing
        _round7_process(tmp_path, p, dict(zip(rows[:3], (d, 0.8, 0.95), strict=True)), rows[:3])
    for p, x in (("C1", 0.80), ("C2", 0.95)):  # no CUDA graphs: 256/b0 still swings
        _round7_process(tmp_path, p, dict(zip(rows[:3], (1.0, x, 0.95), strict=True)), rows[:3])
    import io
    import tarfile

    for p, pick in (("A1", '{"XBLOCK": 64}'), ("A2", '{"XBLOCK": 128}')):
        with tarfile.open(tmp_path / f"{p}.inductor_best.tar", "w") as tar:
            for kernel, text in (("ab/cab12.best_config", pick), ("cd/ccd34.best_config", "{}")):
                info = tarfile.TarInfo(kernel)
                info.size = len(text)
                tar.addfile(info, io.BytesIO(text.encode()))
    text = summary.report(tmp_path)
    assert "kernels with a pick per process: A1 2, A2 2" in text
    assert (
        "differs between block-A processes (or is missing in one): 1 of 2: cab12.best_config"
        in text
    )
    assert "R (largest range of one row's repeats within a process): 0.005 ms" in text
    assert "S (the largest of those, at least 0.03): 0.100 ms" in text  # 512s/b1: 1.05 - 0.95
    assert "swing reproduced in block A: default 512s/b0, 256/b0, 512s/b1 (fold)" in text
    assert ("Triton autotuning, default 512s/b0: range A1/A3 0.080, B1/B2 0.001 -> swing with "
            "Triton autotuning only: implicated") in text  # fmt: skip
    assert ("CUDA graphs (reduce-overhead), 256/b0: range A2/A4 0.020, C1/C2 0.150 -> swing "
            "without CUDA graphs (reduce-overhead): not needed for it") in text  # fmt: skip
    assert ("-0.200, -0.200, -0.200, -0.200 ms -> faster: STATS back to 256 rows, Chan merges"
            in text)  # fmt: skip
    assert "-0.050, +0.030, -0.080, -0.050 ms -> undecided: fold stays off (undecided)" in text
    assert "1.15x, 1.13x, 1.06x, 1.11x -> not met" in text
    assert summary.decide({"A1": {}}, "256/b0", 0.03)[0].startswith("not decided")
    with pytest.raises(SystemExit, match="usage"):
        summary.main([str(tmp_path / "missing")])


def _interleave_args(out, windows=3, extra=()):
    """A tiny CPU run of --interleave on round 8's four rows (D X F L), eager, 1-step windows."""
    s = "encoder_sketch4+fused"
    order = f"{s}[stats=512s/b0],{s}[stats=256/b0],{s}[stats=512s/b1],standard_sae"
    return ["--device", "cpu", "--K", "64", "--D", "8", "--B", "32", "--warmup", "0",
            "--probes", "4", "--models", "encoder_sketch,standard_sae", "--fused",
            "--skip", f"{s},{s.replace('fused', 'ref')}",
            "--stats-variants=512s/b0,256/b0,512s/b1", "--order", order,
            "--interleave", "1", "--windows", str(windows), "--out", str(out), *extra]  # fmt: skip


def test_interleave_rotates_the_rows_under_their_own_settings(tmp_path, monkeypatch):
    """--interleave: every row built once, one untimed cycle, then --windows cycles in which the
    rows' order turns by one (D X F L, X F L D, F L D X); each window ran under its own row's
    layout and fold (read while it ran), has a positive wall time, no GPU time on the CPU and
    nothing compiled during it; the JSON is written after the build and every cycle; the
    settings are the defaults again afterwards."""
    from implicit_em.kernels.infomax import FOLD
    from implicit_em.kernels.triton_infomax import STATS

    defaults = dict(FOLD), dict(STATS)
    out = tmp_path / "interleave.json"
    writes = []
    real_write = bench_scale.atomic_write_bytes

    def write(path, data):
        obj = json.loads(data)
        writes.append(len(obj["interleave"]["windows"]) if "interleave" in obj else None)
        return real_write(path, data)

    monkeypatch.setattr(bench_scale, "atomic_write_bytes", write)
    assert bench_scale.main(_interleave_args(out)) == 0
    assert writes == [0, 0, 4, 8, 12, 12]  # build, untimed cycle, 3 cycles, the end
    res = json.loads(out.read_text())
    it = res["interleave"]
    s = "encoder_sketch4+fused"
    D, X, F, L = f"{s}[stats=512s/b0]", f"{s}[stats=256/b0]", f"{s}[stats=512s/b1]", "standard_sae"
    assert it["cycles"] == [[D, X, F, L], [X, F, L, D], [F, L, D, X]]
    assert it["window_steps"] == 1 and it["windows_per_row"] == 3
    assert list(it["rows"]) == [D, X, F, L]
    assert [w["row"] for w in it["untimed"]] == [D, X, F, L]
    wins = it["windows"]
    assert [w["row"] for w in wins] == [r for c in it["cycles"] for r in c]
    assert [(w["cycle"], w["slot"]) for w in wins] == [(c, i) for c in range(3) for i in range(4)]
    want = {D: ({"rows": 512, "shift": True}, False), X: ({"rows": 256, "shift": False}, False),
            F: ({"rows": 512, "shift": True}, True)}  # fmt: skip
    for w in wins:
        assert w["wall_ms"] > 0 and w["issue_ms"] > 0 and w["gpu_ms"] is None
        assert w["counts"]["frames"] == 0 and w["counts"]["cudagraphs"] is None
        got = w["settings"]
        if w["row"] == L:
            assert got["fused_active"] is False and "bias_fold" not in got
            continue
        stats, fold = want[w["row"]]
        assert got["stats_pass"] == stats and got["fold"] == {"bias": fold, "matmul": False}
        assert got["bias_fold"] is fold and got["fused_active"] is True
    for name in (D, X, F, L):
        row = res["models"][f"{name}/eager"]
        walls = [w["wall_ms"] for w in wins if w["row"] == name]
        assert row["windows"] == 3 and row["step_ms_windows"] == walls
        assert row["step_ms"] == sorted(walls)[1] and row["gpu_ms"] is None
    assert res["models"][f"{F}/eager"]["bias_fold"] is True
    assert (FOLD, STATS) == defaults  # restored


def test_interleave_refuses_both_compile_modes():
    with pytest.raises(SystemExit, match="one --compile mode"):
        bench_scale.main(_interleave_args("unused.json", extra=("--compile", "both")))


def test_compile_counts_without_counters_or_cuda(monkeypatch):
    """Off CUDA the CUDA-graph counts are None; TorchDynamo's come from its counters (0 before
    anything compiled), and are None when this torch keeps no such counters."""
    import collections

    import torch._dynamo.utils as dynamo_utils

    fresh = collections.defaultdict(collections.Counter)
    monkeypatch.setattr(dynamo_utils, "counters", fresh)
    got = bench_scale.compile_counts(torch.device("cpu"))
    assert got == {"frames": 0, "graphs": 0, "cudagraphs": None, "cudagraph_rerecords": None,
                   "cudagraph_skips": None}  # fmt: skip
    fresh["frames"]["total"] = 3
    assert bench_scale.compile_counts(torch.device("cpu"))["frames"] == 3
    monkeypatch.delattr(dynamo_utils, "counters")
    assert set(bench_scale.compile_counts(torch.device("cpu")).values()) == {None}
    assert bench_scale.diff_counts({"a": 1, "b": None}, {"a": 4, "b": 2}) == {"a": 3, "b": None}


def test_rotation_puts_every_row_in_every_position():
    assert bench_scale.rotation(["D", "X", "F", "L"], 5) == [
        ["D", "X", "F", "L"], ["X", "F", "L", "D"], ["F", "L", "D", "X"], ["L", "D", "X", "F"],
        ["D", "X", "F", "L"]]  # fmt: skip


def _round8_process(folder, name, wall, gpu=None, issue=0.5, dirty=(), cycles=12,
                    cudagraphs=0, device="NVIDIA H200"):  # fmt: skip
    """An --interleave JSON as round8_run.sh's process `name` writes it (P: reduce-overhead, C:
    compile mode default). wall / gpu: {short row: f(cycle) -> ms per step}; issue: issue_ms /
    wall_ms; dirty: (row, cycle) windows during which something was compiled; cudagraphs: the
    windows' CUDA-graph recordings (None: not counted by this torch)."""
    full = {"D": "encoder_sketch32+fused[stats=512s/b0]", "X": "encoder_sketch32+fused[stats=256/b0]",
            "F": "encoder_sketch32+fused[stats=512s/b1]", "L": "standard_sae"}  # fmt: skip
    names = list(full)
    windows = []
    for c in range(cycles):
        for slot, s in enumerate(names[c % 4 :] + names[: c % 4]):
            counts = {"frames": int((s, c) in dirty), "graphs": 0, "cudagraphs": cudagraphs,
                      "cudagraph_rerecords": 0, "cudagraph_skips": 0}  # fmt: skip
            windows.append({"row": full[s], "cycle": c, "slot": slot, "wall_ms": wall[s](c),
                            "issue_ms": issue * wall[s](c),
                            "gpu_ms": gpu[s](c) if gpu else None, "counts": counts,
                            "gc_collections": 0})  # fmt: skip
    mode = "reduce-overhead" if name[0] == "P" else "default"
    res = {"probes": 32, "compile_mode": mode, "device": device,
           "interleave": {"windows": windows, "counts_after_build": {}, "counts_end": {}}}  # fmt: skip
    (folder / f"{name}.json").write_text(json.dumps(res))


def _const(x):
    return lambda c: x


def test_round8_summary_applies_the_plans_rules(tmp_path):
    """The fold 0.1 ms faster than D in 11 of 12 cycles (one +0.02) in three processes, one of
    them with a window that compiled (its pair dropped: 11 clean pairs still count) -> 'fold
    on'; the layout faster in two processes only -> 'undecided'; a fourth process killed after
    five cycles does not count; L1 SAE / D 1.2x -> not met."""
    summary = importlib.import_module("round8_summary")

    def fold(c):
        return 0.92 if c == 3 else 1.0 - 0.1  # D is 1.0 except in cycle 3 (0.9)

    for p, x in (("P1", 0.8), ("P2", 0.85), ("P3", 1.1)):
        wall = {"D": lambda c: 0.9 if c == 3 else 1.0, "F": fold, "X": _const(x), "L": _const(1.2)}
        _round8_process(tmp_path, p, wall, dirty=[("F", 5)] if p == "P2" else ())
    _round8_process(tmp_path, "P4", {"D": _const(1.0), "F": _const(1.2), "X": _const(1.0),
                                     "L": _const(1.2)}, cycles=5)  # fmt: skip
    slower = {"D": _const(2.0), "F": _const(2.3), "X": _const(2.0), "L": _const(2.0)}
    _round8_process(tmp_path, "C1", slower)  # no CUDA graphs: reported, decides nothing
    text = summary.report(tmp_path)
    assert "fold (F - D), C1, wall: median +0.300, 0 of 12 negative" in text
    assert "| C1 | F | 12 (12) | 2.300 |" in text
    assert ("- bias fold (F = 512s/b1 against D = 512s/b0): per process P1 faster, P2 faster, "
            "P3 faster, P4 too few pairs -> **faster**: fold on: FOLD['bias'] = True") in text  # fmt: skip
    assert "fold (F - D), P2, wall: median -0.100, 10 of 11 negative" in text
    assert "fold (F - D), P1, wall: median -0.100, 11 of 12 negative" in text
    assert ("- layout (X = 256/b0 against D = 512s/b0): per process P1 faster, P2 faster, "
            "P3 slower, P4 too few pairs -> **undecided**: nothing changes") in text  # fmt: skip
    assert "P1 1.20x, P2 1.20x, P3 1.20x, P4 1.20x -> **not met**" in text
    assert 'windows with a compile or recording: 1: F cycle 5: {"frames": 1, "graphs": 0' in text
    assert "| P4 | D | 5 (5) | 1.000 |" in text


def test_round8_summary_mirror_tie_break_and_too_few(tmp_path):
    """The fold 0.08 slower in every cycle of three processes -> 'fold off, confirmed'; with
    the fold and the layout both faster, the one with the lower mean median difference is the
    only change; two counting processes decide nothing; a median beyond the margin with three
    pairs against is 'neither'."""
    summary = importlib.import_module("round8_summary")
    base = {"D": _const(1.0), "L": _const(1.6)}
    for p in ("P1", "P2", "P3"):
        _round8_process(tmp_path, p, {**base, "F": _const(1.08), "X": _const(1.0)})
    text = summary.report(tmp_path)
    assert "P3 slower -> **slower**: fold off, confirmed" in text
    assert "P3 neither -> **undecided**: nothing changes" in text  # X - D all 0.0
    assert "P1 1.60x, P2 1.60x, P3 1.60x -> **met**" in text
    for p, (f, x) in {"P1": (0.9, 0.8), "P2": (0.9, 0.85), "P3": (0.85, 0.9)}.items():
        _round8_process(tmp_path, p, {**base, "F": _const(f), "X": _const(x)})
    text = summary.report(tmp_path)
    assert ("both faster than D: mean median difference F - D -0.117, X - D -0.150 -> only "
            "the layout change applies") in text  # fmt: skip
    (tmp_path / "P3.json").unlink()
    assert ("not decided (fewer than 3 processes with 10 clean pairs and their recordings "
            "counted)") in summary.report(tmp_path)  # fmt: skip
    assert summary.process_verdict([-0.1] * 9 + [0.01] * 3) == "neither"
    assert summary.process_verdict([-0.1] * 10 + [0.0] * 2) == "faster"
    assert summary.process_verdict([-0.04] * 12) == "neither"  # within the 0.05 margin
    assert summary.process_verdict([-0.1] * 9) == "too few pairs"
    with pytest.raises(SystemExit, match="usage"):
        summary.main([str(tmp_path / "missing")])


def test_round8_summary_skips_a_truncated_json(tmp_path):
    """A process JSON cut short (a kill mid-write) is skipped with one line naming it; the
    other processes still decide (three faster -> fold on); with every file unreadable the
    summary says so and names each."""
    summary = importlib.import_module("round8_summary")
    base = {"D": _const(1.0), "X": _const(1.0), "L": _const(1.6)}
    for p in ("P1", "P2", "P3", "P4"):
        _round8_process(tmp_path, p, {**base, "F": _const(0.9)})
    p4 = tmp_path / "P4.json"
    p4.write_text(p4.read_text()[: len(p4.read_text()) // 2])
    text = summary.report(tmp_path)
    assert text.splitlines()[0].startswith("- skipped P4.json: not readable (JSONDecodeError")
    assert "| P4 |" not in text and "| P3 | F | 12 (12) | 0.900 |" in text
    assert "per process P1 faster, P2 faster, P3 faster -> **faster**: fold on" in text
    for p in ("P1", "P2", "P3"):
        (tmp_path / f"{p}.json").write_text("")
    lines = summary.report(tmp_path).splitlines()
    assert lines[0] == f"no readable process JSON in {tmp_path}"
    assert [line.split(":")[0] for line in lines[1:]] == [
        f"- skipped P{i}.json" for i in range(1, 5)]  # fmt: skip


def test_round8_summary_leaves_out_processes_whose_recordings_were_not_counted(tmp_path):
    """Under reduce-overhead on a GPU, a process whose windows have null CUDA-graph counts
    (this torch lacks the trees' internals) is reported and counts toward no decision and not
    toward the target; null is fine on the CPU and in compile mode default."""
    summary = importlib.import_module("round8_summary")
    rows = {"D": _const(1.0), "X": _const(1.0), "F": _const(0.9), "L": _const(1.6)}
    for p in ("P1", "P2", "P3"):
        _round8_process(tmp_path, p, rows)
    _round8_process(tmp_path, "P4", {**rows, "F": _const(1.2), "L": _const(1.0)},
                    cudagraphs=None)  # fmt: skip
    _round8_process(tmp_path, "C1", rows, cudagraphs=None)  # default mode: null expected
    text = summary.report(tmp_path)
    assert ("per process P1 faster, P2 faster, P3 faster, P4 recordings not counted -> "
            "**faster**: fold on") in text  # fmt: skip
    assert "| P4 | F | 12 (12, recordings not counted) | 1.200 |" in text
    assert "| C1 | F | 12 (12) |" in text and "C1 recordings" not in text
    line = next(x for x in text.splitlines() if x.startswith("- fold (F - D), P4, wall"))
    assert "median +0.200, 0 of 12 negative [" in line
    assert line.endswith("] -> recordings not counted")
    assert "- P4: after the build" in text and "**recordings not counted**" in text
    assert ("P3 1.60x, P4 1.00x (recordings not counted, left out) -> **met**") in text
    _round8_process(tmp_path, "P3", rows, cudagraphs=None)
    assert "P3 recordings not counted, P4 recordings not counted -> **not decided" in (
        summary.report(tmp_path))  # fmt: skip
    for p in ("P3", "P4"):  # the same nulls on the CPU: nothing records there, they count
        _round8_process(tmp_path, p, rows, cudagraphs=None, device="cpu")
    text = summary.report(tmp_path)
    assert "P3 faster, P4 faster -> **faster**" in text and "recordings not" not in text


def test_round8_summary_says_its_median_and_when_no_window_is_clean(tmp_path):
    """summary.md states its median (the mean of the two middle values, unlike step_ms's upper
    middle) and uses it: D 1.0 / 1.2 alternating -> 1.100; a row whose windows all compiled is
    shown over all its windows, and the table says so."""
    summary = importlib.import_module("round8_summary")
    rows = {"D": lambda c: 1.0 + 0.2 * (c % 2), "X": _const(1.0), "F": _const(0.9),
            "L": _const(1.6)}  # fmt: skip
    _round8_process(tmp_path, "P1", rows, dirty=[("X", c) for c in range(12)])
    text = summary.report(tmp_path)
    assert "the mean of the two middle values (12 pairs: the mean of the 6th and 7th)" in text
    assert "| P1 | D | 12 (12) | 1.100 | 1.000-1.200 |" in text
    assert "| P1 | X | 12 (0; no clean window, medians over all 12) | 1.000 |" in text
    assert "| P1 | F | 12 (12) | 0.900 |" in text


@pytest.mark.parametrize("gpu_sd,issue,want", [
    (0.1, 0.5, "outside the GPU's event span"), (1.0, 0.95, "host-paced"),
    (1.0, 0.5, "GPU-side"), (None, 0.5, "no GPU times"),
])  # fmt: skip
def test_round8_summary_reads_where_the_variation_lies(gpu_sd, issue, want):
    """The wall time alternates 1.0 / 1.2 ms; the GPU time with it (sd ratio 1.0) or by a
    tenth of it (0.1); the host's issue time a share of the wall time."""
    summary = importlib.import_module("round8_summary")
    wins = [{"wall_ms": 1.0 + 0.2 * (c % 2), "issue_ms": issue * (1.0 + 0.2 * (c % 2)),
             "gpu_ms": None if gpu_sd is None else 0.9 + gpu_sd * 0.2 * (c % 2)}
            for c in range(12)]  # fmt: skip
    reading, s_wall, s_gpu, ratio = summary.variation(wins)
    assert reading.startswith(want) and s_wall == pytest.approx(0.1044, abs=1e-4)
    assert ratio == pytest.approx(issue)


def test_compile_counts_reads_the_cudagraph_trees(monkeypatch):
    """On CUDA: the trees' nodes (every recording, a re-recording included, counted through
    roots and children), the re-recordings counted as unexpected and the skips; 0s before any
    tree exists; None where this torch's manager lacks the attributes read."""
    from types import SimpleNamespace

    from torch._inductor import cudagraph_trees

    leaf = SimpleNamespace(children={})
    mid = SimpleNamespace(children={"f": [leaf, SimpleNamespace(children={})]})
    mgr = SimpleNamespace(roots={"f": [mid], "g": [SimpleNamespace(children={})]},
                          num_rerecord={None: {"f": 1}, "n1": {"g": 2}})  # fmt: skip
    asked = []

    def get_manager(index, create_if_none_exists=True):
        asked.append((index, create_if_none_exists))
        return mgr

    monkeypatch.setattr(cudagraph_trees, "get_manager", get_manager)
    got = bench_scale.compile_counts(torch.device("cuda", 1))
    assert got["cudagraphs"] == 4 and got["cudagraph_rerecords"] == 3
    assert got["cudagraph_skips"] == 0 and asked == [(1, False)]  # never creates a manager
    mgr = None
    assert bench_scale.compile_counts(torch.device("cuda"))["cudagraphs"] == 0
    mgr = SimpleNamespace()
    got = bench_scale.compile_counts(torch.device("cuda"))
    assert got["cudagraphs"] is None and got["cudagraph_rerecords"] is None


def test_time_window_reads_cuda_events(monkeypatch):
    """On CUDA, gpu_ms is the events' elapsed time per step; wall_ms and issue_ms come from the
    host clock, issue_ms before the final synchronization."""

    class Event:
        made = []

        def __init__(self, enable_timing=False):
            assert enable_timing
            Event.made.append(self)

        def record(self):
            self.at = len(calls)

        def elapsed_time(self, other):
            return 10.0 * (other.at - self.at)  # 10 ms per recorded call

    calls, syncs = [], []
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(bench_scale, "sync", lambda device: syncs.append(len(calls)))
    win = bench_scale.time_window(lambda: calls.append(1), 4, torch.device("cuda"))
    assert win["gpu_ms"] == 10.0 and syncs == [0, 4] and len(Event.made) == 2
    assert win["wall_ms"] >= win["issue_ms"] > 0
    assert bench_scale.time_window(lambda: None, 2, torch.device("cpu"))["gpu_ms"] is None


class _FakeCuda:
    """torch.cuda's graph API as `bench_scale.GraphStep` uses it, on the CPU: streams that do
    nothing, and a graph whose capture records the step instead of running it (as a CUDA
    capture does) and whose replay runs what it recorded on the static input as it is then."""

    class _Stream:
        def wait_stream(self, other) -> None:
            pass

    class _Graph:
        def replay(self) -> None:
            self.recorded()

    def __init__(self) -> None:
        self.capturing = None
        self.captures = 0

    def Stream(self):  # noqa: N802 (torch.cuda's name)
        return self._Stream()

    def current_stream(self):
        return self._Stream()

    def stream(self, s):
        import contextlib

        return contextlib.nullcontext()

    def CUDAGraph(self):  # noqa: N802
        return self._Graph()

    def graph(self, g):
        import contextlib

        @contextlib.contextmanager
        def ctx():
            self.capturing, self.captures = g, self.captures + 1
            yield
            self.capturing = None

        return ctx()


def test_graph_step_warms_up_captures_once_and_replays_on_each_next_batch():
    """GraphStep copies each next batch into its static input before a replay: after 5 calls
    the model has taken exactly the plain steps on batch 0 (warm-up + 1 times), then on
    batches 1, 2, 0, 1, with one capture in all."""
    from implicit_em.train.loop import optimizer_step

    torch.manual_seed(0)
    x = [torch.randn(16, 8) for _ in range(3)]
    loss = LossConfig()
    weights = bench_scale.term_weights("encoder", loss, 32)

    def plain_step(model, opt, xb) -> None:
        terms = bench_scale.loss_terms(model, xb, loss, None, False, with_wr=False)
        optimizer_step(model, opt, sum(weights[k] * terms[k] for k in weights if k in terms))

    ref, graphed = Encoder(8, 32), Encoder(8, 32)
    graphed.load_state_dict(ref.state_dict())
    start = [p.detach().clone() for p in graphed.parameters()]
    opt_ref = torch.optim.Adam(ref.parameters(), lr=1e-4)
    opt_g = torch.optim.Adam(graphed.parameters(), lr=1e-4)
    fake = _FakeCuda()

    def once(xb) -> None:
        if fake.capturing is not None:  # a capture records the work without running it
            fake.capturing.recorded = lambda: plain_step(graphed, opt_g, xb)
        else:
            plain_step(graphed, opt_g, xb)

    g = bench_scale.GraphStep(once, x, cuda=fake)
    for _ in range(5):
        g()
    assert fake.captures == 1
    for xb in [x[0]] * (bench_scale.WHOLE_GRAPH_WARMUP + 1) + [x[1], x[2], x[0], x[1]]:
        plain_step(ref, opt_ref, xb)
    for a, b, s0 in zip(ref.parameters(), graphed.parameters(), start, strict=True):
        assert torch.equal(a, b)
        assert not torch.equal(b, s0)  # it trained


def test_whole_graph_is_refused_in_one_line_off_cuda_and_with_reduce_overhead():
    """--whole-graph needs CUDA and its own capture: each wrong use stops with one line naming
    the fix, before any row is built."""
    base = ["--device", "cpu", "--K", "64", "--D", "8", "--B", "32", "--steps", "1",
            "--models", "standard_sae", "--whole-graph"]  # fmt: skip
    with pytest.raises(SystemExit, match="needs a CUDA device, not cpu; leave it out") as e:
        bench_scale.main(base)
    assert "\n" not in str(e.value)
    with pytest.raises(SystemExit, match="use --compile-mode default"):
        bench_scale.main([*base, "--compile", "compiled", "--compile-mode", "reduce-overhead"])
    x = [torch.randn(16, 8)]
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        bench_scale.make_step(Encoder(8, 32), x, LossConfig(), amp=False, whole_graph=True)
    with pytest.raises(ValueError, match="use --compile-mode default"):
        bench_scale.make_step(Encoder(8, 32), x, LossConfig(), amp=False, whole_graph=True,
                              compile="reduce-overhead")  # fmt: skip


def test_round9_summary_applies_the_plans_rules(tmp_path):
    """Round 9 (docs/scale/round9-PLAN.md): D 0.6 ms graphed in three G processes against 0.9
    under reduce-overhead in three P processes -> 'faster'; L 1.15 on both sides ->
    'undecided'; L / D 1.92x in every G process -> met. A failed check decides nothing and
    meets nothing; a P process whose recordings were not counted, or one with too few clean
    windows, does not count."""
    summary = importlib.import_module("round9_summary")
    for p, d in (("G1", 0.6), ("G2", 0.6), ("G3", 0.62), ("P1", 0.9), ("P2", 0.88), ("P3", 0.9)):
        _round8_process(tmp_path, p, {"D": _const(d), "L": _const(1.15), "X": _const(9.0),
                                      "F": _const(9.0)})  # fmt: skip
    (tmp_path / "check.txt").write_text("round9_check encoder (exact): ... same\nrc 0\n")
    text = summary.report(tmp_path)
    assert ("whole-step graph on the sketched encoder (D): G 0.600, 0.600, 0.620 ms against P "
            "0.900, 0.880, 0.900 ms -> **faster**") in text  # fmt: skip
    assert "on the L1 SAE (L): G 1.150, 1.150, 1.150 ms against P 1.150" in text
    assert "-> **undecided**" in text
    want = "G1 1.92x, G2 1.92x, G3 1.85x -> **met**; under reduce-overhead (reported): P1 1.28x"
    assert want in text
    assert "| G1 | D | 12 (12) | 0.600 |" in text
    (tmp_path / "check.txt").write_text("round9_check encoder (exact): ... DIFFERENT\nrc 1\n")
    text = summary.report(tmp_path)
    assert "**the check did not pass" in text
    assert text.count("not decided (the check did not pass)") == 2 and "-> **not met**" in text
    (tmp_path / "check.txt").write_text("rc 0\n")
    _round8_process(tmp_path, "P1", {"D": _const(0.5), "L": _const(1.15), "X": _const(9.0),
                                     "F": _const(9.0)}, cudagraphs=None)  # fmt: skip
    _round8_process(tmp_path, "P2", {"D": _const(0.5), "L": _const(1.15), "X": _const(9.0),
                                     "F": _const(9.0)}, cycles=9)  # fmt: skip
    text = summary.report(tmp_path)
    assert "against P 0.900 ms -> **not decided (fewer than 2 counting processes" in text
    assert "## Part B" in text and "**not measured**: B.json missing" in text

    def b_json(fused, plain, active=True):
        rows = {"encoder_sketch32+auto": {"tokens_per_s": fused, "median": fused[1],
                                          "fused_active": active},
                "encoder_sketch32+off": {"tokens_per_s": plain, "median": plain[1],
                                         "fused_active": False},
                "standard_sae": {"tokens_per_s": [1e6] * 3, "median": 1e6,
                                 "fused_active": False}}  # fmt: skip
        (tmp_path / "B.json").write_text(json.dumps({"rows": rows}))
        return summary.report(tmp_path)

    text = b_json([2.0e6, 2.1e6, 2.2e6], [1.0e6, 1.0e6, 1.0e6])
    assert "fused over plain, per round: 2.00x, 2.10x, 2.20x -> **faster**" in text
    assert "over the L1 SAE's (reported): 2.10x (plain: 1.00x)" in text
    assert "-> **undecided**" in b_json([1.02e6, 2e6, 2e6], [1e6, 1e6, 1e6]).split("Part B")[1]
    assert "-> **slower**" in b_json([0.5e6] * 3, [1e6] * 3)
    assert "kernels were not active" in b_json([2e6] * 3, [1e6] * 3, active=False)
    assert summary.effect([0.6, 0.6], [0.64, 0.9]) == "undecided"  # within the margin
    assert summary.effect([1.0, 1.1], [0.9, 0.94]) == "slower"
    with pytest.raises(SystemExit, match="usage"):
        summary.main([str(tmp_path / "missing")])


def test_bench_train_steps_times_the_scale_trainer_with_and_without_the_kernels(tmp_path):
    """benchmarks/bench_train_steps.py on the CPU (Triton's interpreter, fused path forced
    on): one row per fused mode and the L1 SAE, each timed once per round; the "on" row ran
    with the kernels active and carries its ratio to "off" per round; a bad mode stops with
    one line."""
    bts = importlib.import_module("bench_train_steps")
    out = tmp_path / "r.json"
    bts.main(["--device", "cpu", "--K", "32", "--D", "8", "--B", "32", "--probes", "4",
              "--steps", "2", "--warmup", "1", "--repeats", "2", "--fused-modes", "on,off",
              "--out", str(out)])  # fmt: skip
    res = json.loads(out.read_text())
    assert list(res["rows"]) == ["encoder_sketch4+on", "encoder_sketch4+off", "standard_sae"]
    assert len(res["rounds"]) == 2 and all(len(r) == 3 for r in res["rounds"])
    on, off = res["rows"]["encoder_sketch4+on"], res["rows"]["encoder_sketch4+off"]
    assert on["fused_active"] and not off["fused_active"]
    want = [a / b for a, b in zip(on["tokens_per_s"], off["tokens_per_s"], strict=True)]
    assert on["over_off"] == pytest.approx(want)
    assert all(t > 0 for r in res["rows"].values() for t in r["tokens_per_s"])
    with pytest.raises(SystemExit, match="give auto, on or off") as e:
        bts.main(["--device", "cpu", "--fused-modes", "fast"])
    assert "\n" not in str(e.value)


def test_bench_train_steps_bf16_codes_rows_and_their_refusal(tmp_path, monkeypatch):
    """--bf16-codes adds a "+MODE/bf16" row per fused mode, run with TERMS["amp_codes"] =
    "bf16" (and TERMS restored after each row); without --amp bf16 it stops with one line."""
    from implicit_em.train import distributed

    bts = importlib.import_module("bench_train_steps")
    seen = []
    real = bts.train_steps
    monkeypatch.setattr(bts, "train_steps",
                        lambda *a, **k: seen.append(dict(distributed.TERMS)) or real(*a, **k))  # fmt: skip
    before = dict(distributed.TERMS)
    out = tmp_path / "r.json"
    bts.main(["--device", "cpu", "--K", "32", "--D", "8", "--B", "32", "--probes", "4",
              "--steps", "2", "--warmup", "1", "--repeats", "1", "--fused-modes", "on,off",
              "--amp", "bf16", "--bf16-codes", "--out", str(out)])  # fmt: skip
    got = json.loads(out.read_text())["rows"]
    assert list(got) == ["encoder_sketch4+on", "encoder_sketch4+off", "encoder_sketch4+on/bf16",
                         "standard_sae"]  # fmt: skip
    bf16, f32 = got["encoder_sketch4+on/bf16"], got["encoder_sketch4+on"]
    want = [a / b for a, b in zip(bf16["tokens_per_s"], f32["tokens_per_s"], strict=True)]
    assert bf16["over_float32_codes"] == pytest.approx(want)
    assert [t["amp_codes"] for t in seen] == ["float32", "float32", "bf16", "float32"]
    assert [t["fused_one_rank"] for t in seen] == [True, False, True, False]
    assert [t["fused_compiled"] for t in seen] == [True, False, True, False]  # fused rows, compiled too
    assert distributed.TERMS == before
    with pytest.raises(SystemExit, match="--bf16-codes needs --amp bf16") as e:
        bts.main(["--device", "cpu", "--bf16-codes"])
    assert "\n" not in str(e.value)


def test_bench_train_steps_triton_ops_rows_and_a_row_that_fails(tmp_path, monkeypatch, capsys):
    """--triton-ops adds a "+MODE/triton" row per fused mode, run with `kernels.infomax.OPS`
    "triton" (restored after each row) and carrying its ratio to the custom-ops row per round;
    a row that raises is recorded (NaN tokens/s, its error) and the other rows go on."""
    import math

    from implicit_em.kernels import infomax as fused_impl

    bts = importlib.import_module("bench_train_steps")
    seen = []
    real = bts.train_steps

    def spy(*a, **k):
        seen.append(fused_impl.OPS["kind"])
        if fused_impl.OPS["kind"] == "triton" and len(seen) > 4:  # the second round's
            raise RuntimeError("no triton op here")
        return real(*a, **k)

    monkeypatch.setattr(bts, "train_steps", spy)
    out = tmp_path / "r.json"
    bts.main(["--device", "cpu", "--K", "32", "--D", "8", "--B", "32", "--probes", "4",
              "--steps", "2", "--warmup", "1", "--repeats", "2", "--fused-modes", "on,off",
              "--triton-ops", "--out", str(out)])  # fmt: skip
    got = json.loads(out.read_text())["rows"]
    assert list(got) == ["encoder_sketch4+on", "encoder_sketch4+off", "encoder_sketch4+on/triton",
                         "standard_sae"]  # fmt: skip
    assert seen[:4] == ["custom", "custom", "triton", "custom"] and seen.count("triton") == 2
    assert fused_impl.OPS["kind"] == "custom"  # restored after every row
    tri, cus = got["encoder_sketch4+on/triton"], got["encoder_sketch4+on"]
    assert tri["over_custom_ops"][0] == pytest.approx(tri["tokens_per_s"][0] / cus["tokens_per_s"][0])
    assert math.isnan(tri["tokens_per_s"][1]) and tri["errors"] == ["RuntimeError: no triton op here"]
    assert all(t > 0 for n, r in got.items() if n != "encoder_sketch4+on/triton"
               for t in r["tokens_per_s"])  # fmt: skip
    assert "encoder_sketch4+on/triton FAILED in 1 of 2 rounds" in capsys.readouterr().out


def test_profile_train_steps_prints_both_modes_and_the_terms_table(capsys):
    """benchmarks/profile_train_steps.py on the CPU (tiny shapes): a profiler table per fused
    mode and the infomax_terms timing table, fused (interpreter) and reference, per dtype."""
    pts = importlib.import_module("profile_train_steps")
    pts.main(["--device", "cpu", "--K", "32", "--D", "8", "--B", "32", "--probes", "4",
              "--steps", "1", "--warmup", "1", "--reps", "1", "--top", "3"])  # fmt: skip
    text = capsys.readouterr().out
    assert "## mode auto" in text and "## mode off" in text
    for dtype in ("float32", "bfloat16"):
        for path in ("fused", "reference"):
            assert f"| {dtype} | {path} |" in text
