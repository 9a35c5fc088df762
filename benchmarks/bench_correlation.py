"""Time correlation_loss forward+backward on CPU through each path: B x B Gram vs K x K.

Each (path, K) case runs in a fresh subprocess so that its peak RSS is its own. Usage:

    python benchmarks/bench_correlation.py [--threads 2] [--batch 4096] [--ks 4096 16384]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from implicit_em.losses import _offdiag_sq_gram, _offdiag_sq_kk, _unit_columns

PATHS = {"gram": _offdiag_sq_gram, "kk": _offdiag_sq_kk}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_case(path: str, batch: int, k: int, threads: int, repeats: int) -> dict:
    """Forward + backward of one path on a (batch, k) float32 input; best of `repeats`."""
    torch.set_num_threads(threads)
    fn = PATHS[path]
    small = torch.randn(64, 128, requires_grad=True)
    fn(_unit_columns(small)).backward()  # warm up kernels and allocator on a small problem
    a = torch.randn(batch, k, generator=torch.Generator().manual_seed(0), requires_grad=True)
    rss_input = peak_rss_mib()
    times = []
    for _ in range(repeats):
        a.grad = None
        t0 = time.perf_counter()
        loss = fn(_unit_columns(a))  # (B, K) -> ()
        loss.backward()
        times.append(time.perf_counter() - t0)
    return {
        "path": path,
        "B": batch,
        "K": k,
        "threads": torch.get_num_threads(),
        "seconds": min(times),
        "loss": float(loss),
        "peak_rss_mib": peak_rss_mib(),
        "rss_after_input_mib": rss_input,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--batch", type=int, default=4096, help="B (default 4096)")
    parser.add_argument("--ks", type=int, nargs="+", default=[4096, 16384], help="K values")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per case; best is kept")
    parser.add_argument("--case", nargs=2, metavar=("PATH", "K"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.case:  # child process: one case, one JSON line
        path, k = args.case[0], int(args.case[1])
        print(json.dumps(run_case(path, args.batch, k, args.threads, args.repeats)))
        return

    torch.set_num_threads(args.threads)
    print(
        f"correlation_loss forward+backward, float32, CPU, B={args.batch}, "
        f"torch {torch.__version__}, torch.set_num_threads({args.threads}) -> "
        f"{torch.get_num_threads()} threads, best of {args.repeats}"
    )
    print(
        f"{'K':>6} {'path':>5} {'seconds':>9} {'peak RSS MiB':>13} {'input RSS MiB':>14} {'loss':>14}"
    )
    results: dict[tuple[int, str], dict] = {}
    for k in args.ks:
        for path in ("gram", "kk"):
            cmd = [sys.executable, __file__, "--case", path, str(k)]
            cmd += ["--threads", str(args.threads), "--batch", str(args.batch)]
            cmd += ["--repeats", str(args.repeats)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            r = results[k, path] = json.loads(out.strip().splitlines()[-1])
            print(
                f"{k:>6} {path:>5} {r['seconds']:>9.2f} {r['peak_rss_mib']:>13.0f} "
                f"{r['rss_after_input_mib']:>14.0f} {r['loss']:>14.6g}"
            )
    for k in args.ks:
        g, kk = results[k, "gram"], results[k, "kk"]
        print(
            f"K={k}: kk/gram time ratio {kk['seconds'] / g['seconds']:.2f}x, "
            f"peak RSS ratio {kk['peak_rss_mib'] / g['peak_rss_mib']:.2f}x, "
            f"losses agree to {abs(kk['loss'] - g['loss']) / abs(kk['loss']):.1e} relative"
        )


if __name__ == "__main__":
    main()
