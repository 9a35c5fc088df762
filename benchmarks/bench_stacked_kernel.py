"""The fused step's block kernel against the default step's closed form, per block, one device.

Issue 19: on one H200 the opt-in fused step (`IMPLICIT_EM_FUSED_STEP=1`) was slower than the
default step in round 3 (docs/benchmarks.md), its first block kernel (v1, one program per model)
taking about 210 us a launch. This script times, side by side in one run, for each block of
the reproduction's encoder stacks (`profile_stacked.STACKS`; MNIST shapes B = 128, K = 64,
random pre-activations):
  reference  `train.stacked.encoder_terms_grad` on ReLU(z) and ReLU's mask (what the default
             step runs), replayed from a CUDA graph (as `StackedTrainer` replays its step);
  v2/pP/wN   `kernels.triton_stacked_v2.block_terms_grad_v2` (one program per model and
             column strip) with strips of P columns and N warps per program, likewise;
and prints microseconds per call and the ratio to the reference. The fused outputs are checked
against the reference (1e-4 relative) before timing. On the CPU the kernel runs only under
TRITON_INTERPRET=1 (slow; the times then mean nothing): the check still runs. Each number is
printed as soon as it is measured.

History: round 4 (30 Nov 2026, one H200) ran this script with `--kernels v1 v2`, v1 beside v2
(log docs/scale/h200_block_kernels_v1_v2.log: v1 36.8 us at 16 warps, 207 at 8, 359 at 4; v2
17.4-21.7 us; the reference 133-143 us). v1 was then removed; `--kernels` still takes v2.

    python benchmarks/bench_stacked_kernel.py --device cuda
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from profile_stacked import BATCH, build  # noqa: E402

from implicit_em import kernels  # noqa: E402
from implicit_em.train.stacked import encoder_terms_grad  # noqa: E402

EPS = 1e-6
K = 64


def reference(z: torch.Tensor, g: int, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s = z.shape[0]
    wts = {t: w[i].view(s, g) for i, t in enumerate(("lse", "var", "tc"))}
    terms, da = encoder_terms_grad(z.relu().view(s, -1, g, K), EPS, wts)
    dz = da.view_as(z).mul_(z > 0)
    return torch.stack([terms[t].reshape(-1) for t in ("lse", "var", "tc")]), dz


def timed(fn, device: torch.device, n: int) -> float:
    """Microseconds per call of fn, replayed from a CUDA graph on GPUs (a plain loop on CPU)."""
    if device.type == "cuda":
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        graph.replay()
        torch.cuda.synchronize()
        tic = time.perf_counter()
        for _ in range(n):
            graph.replay()
        torch.cuda.synchronize()
    else:
        fn()
        tic = time.perf_counter()
        for _ in range(n):
            fn()
    return (time.perf_counter() - tic) / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--kernels", nargs="+", choices=("v2",), default=["v2"],
                   help="block kernels to time beside the reference (v1 was removed)")  # fmt: skip
    p.add_argument("--strips", type=int, nargs="+", default=[16, 32], help="strip widths")
    p.add_argument("--warps", type=int, nargs="+", default=[8, 4], help="warps per program")
    p.add_argument("--calls", type=int, default=500, help="timed calls per row")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    run_kernel = kernels.triton_available() and (device.type == "cuda" or kernels.interpreted())
    variants = []  # (label, kernel as a function of (z, g, w))
    if run_kernel:
        from implicit_em.kernels.triton_stacked_v2 import STRIPS, block_terms_grad_v2

        if bad := sorted(set(args.strips) - set(STRIPS)):
            p.error(f"--strips {bad}: v2's strip widths are {STRIPS}")
        for p_ in args.strips:
            for nw in args.warps:
                variants.append((f"v2/p{p_}/w{nw}", lambda z, g, w, nw=nw, p_=p_:
                                 block_terms_grad_v2(z, g, K, EPS, w, nw, p_)))  # fmt: skip
    print(f"torch {torch.__version__}, device {device}, {args.threads} CPU thread(s), "
          f"B = {BATCH}, K = {K}, {args.calls} calls per row")  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    for name in ("encoder-adam", "encoder-sgd"):
        tr = build(name, torch.device("cpu"))
        for r0, r1, g in tr.blocks:
            s = r1 - r0
            z = torch.randn(s, BATCH, g * K, generator=gen).to(device)
            w = torch.rand(3, s * g, generator=gen).to(device) + 0.5
            t_ref = timed(lambda z=z, g=g, w=w: reference(z, g, w), device, args.calls)
            print(f"{name:13s} block S_b={s} G={g}: reference {t_ref:8.1f} us", end="", flush=True)
            if run_kernel:
                terms_r, dz_r = reference(z, g, w)
                for label, fn in variants:
                    terms_f, dz_f = fn(z, g, w)
                    stacked = torch.stack([terms_f[t].reshape(-1) for t in ("lse", "var", "tc")])
                    torch.testing.assert_close(stacked, terms_r, rtol=1e-4, atol=1e-4)
                    torch.testing.assert_close(dz_f, dz_r, rtol=1e-4, atol=1e-5)
                    t = timed(lambda z=z, g=g, w=w, fn=fn: fn(z, g, w), device, args.calls)
                    print(f" | {label} {t:8.1f} us ({t / t_ref:.2f}x)", end="", flush=True)
            print()


if __name__ == "__main__":
    main()
