"""benchmarks/bench_matmul_fold.py on the CPU (Triton's interpreter, tiny shapes): every
piece it times is there, the best tile is one of MM_CONFIGS, the ratios are the ones its
times give, and the fold agrees with the default path."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load():
    spec = importlib.util.spec_from_file_location("bench_matmul_fold",
                                                  ROOT / "benchmarks/bench_matmul_fold.py")  # fmt: skip
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_matmul_fold_smoke(tmp_path):
    bench = load()
    from implicit_em.kernels import triton_matmul_stats as tm

    before = dict(tm.MM)
    out = tmp_path / "fold.json"
    try:
        assert bench.main(["--out", str(out), "--diagnose"]) == 0
    finally:
        tm.MM.clear()
        tm.MM.update(before)
    res = json.loads(out.read_text())
    n = len(tm.MM_CONFIGS)
    times = [res[f"mm_stats[{i}]"] for i in range(n)]
    assert 0 <= res["best_config"] < n and times[res["best_config"]] == min(times)
    assert res["default_over_fold"] == res["default_forward"] / min(times)
    for kind in ("events", "graph"):
        for name in ("fold", "cublas_fold"):
            want = res[f"terms_fwd_bwd_default_{kind}"] / res[f"terms_fwd_bwd_{name}_{kind}"]
            assert res[f"terms_default_over_{name}_{kind}"] == want
    assert res["default_over_cublas_fold"] == res["default_forward"] / res["cublas_fold_forward"]
    diag = [k for k in res if k.startswith("diag[")]
    assert len(diag) == 4 * (1 + len(bench.DIAG_CONFIGS)) and res["diag_configs"][0] == tm.MM_CONFIGS[res["best_config"]]
    agree = res["agreement"]
    assert agree["codes_max_diff_in_eps"] <= 1.0  # one rounding of a sum in another order
    assert agree["row_lse_rel"] < 1e-4 and agree["dW_rel"] < 5e-2


def test_a_piece_that_fails_is_recorded_not_fatal():
    bench = load()
    row = {}

    def broken():
        raise RuntimeError("out of resource: shared memory\nsecond line")

    assert bench.graph_ms_or_error(row, "mm_stats[9]", broken, 1) is None
    assert row == {"mm_stats[9]_error": "RuntimeError: out of resource: shared memory\nsecond line"}
    assert bench.graph_ms_or_error(row, "ok", lambda: None, 1) == row["ok"] >= 0
