"""The matmul fold's forward against the two passes it replaces (issue 19, round 14).

One workload (default B = 4096, K = 16384, D = 576, bf16 operands as autocast casts them):
- `matmul`: F.linear(x, W) alone (cuBLAS), the bound of any forward;
- `default_forward`: F.linear(x, W, b) then the statistics pass on z writing a = ReLU(z)
  (the sketched step's forward today, `infomax_relu_stats`);
- `bias_fold_forward`: F.linear(x, W) then the statistics pass adding b (the bias fold);
- `mm_stats[i]`: the one Triton GEMM with the statistics in its epilogue, for each tile i of
  `triton_matmul_stats.MM_CONFIGS`; `best_config` is the fastest i;
- `cublas_fold_forward`: cuBLAS writes a = ReLU(x W^T + b) with its ReLU epilogue, then the
  statistics pass reads a and writes nothing (`infomax.linear_relu_stats`, round 15);
- `terms_fwd_bwd_*`: the sketched InfoMax terms forward and backward down to dW and db,
  the default path (F.linear + `fused_terms(preact=z)`) against the matmul fold
  (`fused_encoder_terms`: "fold" with the best tile, "cublas_fold" with cuBLAS's epilogue);
- `agreement`: at full size, the fold's codes, statistics and dW against the default path's.

Times in ms per call, replayed from one CUDA graph of --steps calls (`bench_infomax_kernels
.graph_ms`: the kernels' own time, as a reduce-overhead step sees it); the terms also
with CUDA events around eager calls. Ratios are taken within this one run.

    python benchmarks/bench_matmul_fold.py --out fold.json
    IMPLICIT_EM_MM_CONFIG=$(python -c "import json; print(json.load(open('fold.json'))['best_config'])")

On the CPU (Triton's interpreter, TRITON_INTERPRET=1) a smoke run at tiny shapes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_infomax_kernels import DEVICE, graph_ms, timed_ms  # noqa: E402

from implicit_em.atomic import atomic_write_bytes  # noqa: E402
from implicit_em.kernels import infomax as fused_impl  # noqa: E402
from implicit_em.kernels import triton_infomax as tk  # noqa: E402
from implicit_em.kernels import triton_matmul_stats as tm  # noqa: E402

WEIGHTS = (1.0, 0.7, 1.3)  # lse, var, tc
# --diagnose (round 14b): more tiles, each timed with W's tile loaded as W^T or as stored and
# transposed (WT), with the epilogue and without it (the matmul alone, writing z)
DIAG_CONFIGS = [
    {"BM": 128, "BN": 128, "BD": 64, "GROUP": 8, "num_warps": 8, "num_stages": 4},
    {"BM": 128, "BN": 128, "BD": 128, "GROUP": 8, "num_warps": 8, "num_stages": 3},
    {"BM": 128, "BN": 256, "BD": 64, "GROUP": 8, "num_warps": 8, "num_stages": 4},
    {"BM": 64, "BN": 256, "BD": 64, "GROUP": 8, "num_warps": 4, "num_stages": 4},
]


def operands(b: int, k: int, d: int, dtype: torch.dtype):
    """x (B, D) and W (K, D) in dtype, b (K,) float32, probes V (K, 32) float32: an
    encoder at its random init on N(0, 1) inputs (bias 0.1, so about half the codes fire)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, d, generator=g).to(DEVICE, dtype)
    w = (torch.randn(k, d, generator=g) / d**0.5).to(DEVICE, dtype)
    bias = torch.full((k,), 0.1, device=DEVICE)
    v = torch.randn(k, 32, generator=g).to(DEVICE)
    return x, w, bias, v


def graph_ms_or_error(row: dict, name: str, fn, steps: int) -> float | None:
    """row[name] = `graph_ms(fn, steps)`, returned; if fn fails to compile, launch or be
    captured, row[name + "_error"] = one line naming the exception, and None (the other
    pieces run on)."""
    try:
        row[name] = graph_ms(fn, steps)
        return row[name]
    except Exception as exc:  # noqa: BLE001 - recorded, not fatal
        row[f"{name}_error"] = f"{type(exc).__name__}: {exc}"[:300]
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return None


def forward_pieces(x, w, bias, steps: int) -> dict:
    """ms per call of each forward (module doc), and the fastest tile."""
    b_dt = bias.to(x.dtype)
    row = {
        "matmul": graph_ms(lambda: F.linear(x, w), steps),
        "default_forward": graph_ms(lambda: tk.stats_partials(F.linear(x, w, b_dt), relu=True),
                                    steps),  # fmt: skip
        "bias_fold_forward": graph_ms(
            lambda: tk.stats_partials(F.linear(x, w), relu=True, bias=bias), steps),  # fmt: skip
    }
    times = {}
    row["cublas_fold_forward"] = graph_ms(lambda: fused_impl.linear_relu_stats(x, w, bias), steps)
    row["default_over_cublas_fold"] = row["default_forward"] / row["cublas_fold_forward"]
    for i, cfg in enumerate(tm.MM_CONFIGS):
        t = graph_ms_or_error(row, f"mm_stats[{i}]",
                              lambda c=cfg: tm.mm_stats(x, w, bias, config=c), steps)  # fmt: skip
        if t is not None:
            times[i] = t
    if not times:
        first = next(v for k, v in row.items() if k.endswith("_error"))
        raise SystemExit(f"bench_matmul_fold: no tile of MM_CONFIGS ran; the first: {first}")
    best = min(times, key=times.__getitem__)
    row["best_config"] = best
    row["default_over_fold"] = row["default_forward"] / times[best]
    row["bias_fold_over_fold"] = row["bias_fold_forward"] / times[best]
    row["fold_over_matmul"] = times[best] / row["matmul"]
    return row


def diagnose(x, w, bias, steps: int, best: dict) -> dict:
    """ms per call of mm_stats for the best tile and DIAG_CONFIGS, each with WT off / on and
    the epilogue on / off (module doc)."""
    row = {}
    for i, cfg in enumerate([best, *DIAG_CONFIGS]):
        for wt in (False, True):
            for epi in (True, False):
                name = f"diag[{i}]{'/wt' if wt else ''}{'' if epi else '/no-epilogue'}"
                c = {**cfg, "WT": wt, "EPILOGUE": epi}
                graph_ms_or_error(row, name, lambda c=c: tm.mm_stats(x, w, bias, config=c),
                                  steps)  # fmt: skip
    row["diag_configs"] = [best, *DIAG_CONFIGS]
    return row


def terms_functions(x, w, bias, v, forward: str = "triton"):
    """(default, fold): each computes the weighted sketched terms and returns (dW, db); the
    fold with the forward `forward` ("triton" or "cublas")."""
    wp = w.detach().clone().requires_grad_(True)
    bp = bias.detach().clone().requires_grad_(True)

    def default():
        z = F.linear(x, wp, bp.to(x.dtype))  # (B, K)
        out = fused_impl.fused_terms(torch.relu(z), v, 1e-6, preact=z)
        loss = sum(c * t for c, t in zip(WEIGHTS, out, strict=True))
        return torch.autograd.grad(loss, (wp, bp))

    def fold():
        out = fused_impl.fused_encoder_terms(x, wp, bp, v, 1e-6, forward)
        loss = sum(c * t for c, t in zip(WEIGHTS, out[:3], strict=True))
        return torch.autograd.grad(loss, (wp, bp))

    return default, fold


def terms_pieces(x, w, bias, v, steps: int) -> dict:
    default, fold = terms_functions(x, w, bias, v)
    cublas_fold = terms_functions(x, w, bias, v, "cublas")[1]
    row = {}
    for name, fn in (("default", default), ("fold", fold), ("cublas_fold", cublas_fold)):
        row[f"terms_fwd_bwd_{name}_events"] = timed_ms(fn, steps)
        graph_ms_or_error(row, f"terms_fwd_bwd_{name}_graph", fn, steps)  # events' time stands
    for kind in ("events", "graph"):
        d = row.get(f"terms_fwd_bwd_default_{kind}")
        for name in ("fold", "cublas_fold"):
            f = row.get(f"terms_fwd_bwd_{name}_{kind}")
            if d and f:
                row[f"terms_default_over_{name}_{kind}"] = d / f
    return row


def agreement(x, w, bias, v) -> dict:
    """The fold against the default path on the same operands: codes (share of entries that
    differ, largest difference in units of bf16's eps times the entry), the merged
    statistics (largest relative difference) and dW, db (relative Frobenius norm)."""
    codes, *parts = tm.mm_stats(x, w, bias)
    want = torch.relu(F.linear(x, w, bias.to(x.dtype)))
    diff = (codes.float() - want.float()).abs()
    eps = torch.finfo(x.dtype).eps
    lse, mean, ss = fused_impl.merge_partials(*parts, x.shape[0], tm.MM["BM"])
    _, lse_w, mean_w, ss_w = fused_impl.combine_stats(want)
    default, fold = terms_functions(x, w, bias, v)
    gd, gf = default(), fold()

    def rel(a, b):
        return float((a.float() - b.float()).norm() / b.float().norm())

    return {
        "codes_differ_share": float((diff > 0).float().mean()),
        "codes_max_diff_in_eps": float((diff / (eps * want.float().abs().clamp(min=1e-2))).max()),
        "row_lse_rel": float(((lse - lse_w).abs() / lse_w.abs().clamp(min=1e-6)).max()),
        "mean_rel": rel(mean, mean_w), "ss_rel": rel(ss, ss_w),
        "dW_rel": rel(gf[0], gd[0]), "db_rel": rel(gf[1], gd[1]),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--B", type=int, default=4096)
    p.add_argument("--K", type=int, default=16384)
    p.add_argument("--D", type=int, default=576)
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    p.add_argument("--steps", type=int, default=50, help="calls per CUDA graph / timing")
    p.add_argument("--diagnose", action="store_true",
                   help="also time DIAG_CONFIGS and the best tile with W's tile transposed in "
                        "registers and without the epilogue (round 14b)")  # fmt: skip
    p.add_argument("--out", default=None, help="write the results here as JSON")
    args = p.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = True
    if DEVICE == "cpu":  # smoke-sized (Triton's interpreter)
        args.B, args.K, args.D, args.steps = 96, 200, 40, 1
    x, w, bias, v = operands(args.B, args.K, args.D, getattr(torch, args.dtype))
    res = {"shape": {"B": args.B, "K": args.K, "D": args.D}, "dtype": args.dtype,
           "device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu",
           "torch": torch.__version__, "configs": tm.MM_CONFIGS, "steps": args.steps}  # fmt: skip
    res.update(forward_pieces(x, w, bias, args.steps))
    print(json.dumps({k: v for k, v in res.items() if k != "configs"}, indent=1), flush=True)
    tm.MM.clear()
    tm.MM.update(tm.MM_CONFIGS[res["best_config"]])
    if args.diagnose:
        res.update(diagnose(x, w, bias, args.steps, dict(tm.MM)))
        print(json.dumps({k: v for k, v in res.items() if k.startswith("diag[")}, indent=1),
              flush=True)  # fmt: skip
    res.update(terms_pieces(x, w, bias, v, args.steps))
    res["agreement"] = agreement(x, w, bias, v)
    print(json.dumps({k: res[k] for k in res if k.startswith("terms") or k == "agreement"},
                     indent=1), flush=True)  # fmt: skip
    if args.out:
        atomic_write_bytes(args.out, json.dumps(res, indent=1).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
