"""Each piece of the fused InfoMax terms on its own: kernels, the sketch's skinny products
(Triton split-K vs cuBLAS), and the whole terms forward + backward, fused vs reference.

Codes a (B, K) = ReLU(N(0, 1)) in bf16 (as the amp step feeds them) and float32; times in ms
(CUDA events around `--steps` calls after warm-up). Also the bytes of one read of a at the
GPU's measured copy bandwidth, the floor for any pass over the codes.

    python benchmarks/bench_infomax_kernels.py --out kernels.json
"""

from __future__ import annotations

import argparse
import json

import torch

from implicit_em.kernels import fused_mode
from implicit_em.kernels import infomax as fused_impl
from implicit_em.losses import correlation_probes, infomax_terms


def timed_ms(fn, steps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(steps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / steps


def measure_dtype(dtype: torch.dtype, args, copy_gb_per_s: float) -> dict:
    """Times (ms) of each piece on codes of one dtype."""
    from implicit_em.kernels import triton_infomax as tk

    B, K, m = args.B, args.K, args.probes
    a = torch.relu(torch.randn(B, K, device="cuda")).to(dtype)
    v = correlation_probes(K, m, a).float()
    pm = torch.randn(B, m, device="cuda")
    row: dict = {"one_read_ms_at_copy_bw": a.numel() * a.element_size() / copy_gb_per_s / 1e6}
    row["stats_pass"] = timed_ms(lambda a=a: tk.stats_partials(a), args.steps)
    row_lse, mean, _ = fused_impl.combine_stats(a)
    g, al, be = row_lse.clone(), mean.clone(), mean.clone()
    low = torch.randn(B, 2 * m, device="cuda")
    high_t = torch.randn(2 * m, K, device="cuda")
    row["grad_pass"] = timed_ms(
        lambda a=a: tk.grad(a, row_lse, g, al, be, mean, (low @ high_t).to(a.dtype)), args.steps
    )
    row["grad_pass_no_lowrank"] = timed_ms(
        lambda a=a: tk.grad(a, row_lse, g, al, be, mean), args.steps
    )
    vd, pd = v.to(dtype), pm.to(dtype)
    row["cublas_a_v"] = timed_ms(lambda a=a: a @ vd, args.steps)
    row["cublas_at_p"] = timed_ms(lambda a=a: a.mT @ pd, args.steps)
    for chunk in (512, 1024, 2048):
        row[f"triton_a_v_chunk{chunk}"] = timed_ms(
            lambda a=a, c=chunk: tk.skinny(a, v, False, c), args.steps
        )
        row[f"triton_at_p_chunk{chunk}"] = timed_ms(
            lambda a=a, c=chunk: tk.skinny(a, pm, True, c), args.steps
        )
    for probes in (v, None):
        tag = "sketch" if probes is not None else "exact"
        x = a.clone().requires_grad_(True)
        for path in ("on", "off"):
            with fused_mode(path):

                def step(x=x, probes=probes) -> None:
                    sum(infomax_terms(x, probes, 1e-6)).backward()
                    x.grad = None

                row[f"terms_{tag}_{'fused' if path == 'on' else 'reference'}_eager"] = timed_ms(
                    step, args.steps
                )
                torch._dynamo.reset()  # the mode is read at trace time
                comp = torch.compile(lambda x, probes=probes: sum(infomax_terms(x, probes)))

                def cstep(x=x, comp=comp) -> None:
                    comp(x).backward()
                    x.grad = None

                row[f"terms_{tag}_{'fused' if path == 'on' else 'reference'}_compiled"] = timed_ms(
                    cstep, args.steps
                )
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--K", type=int, default=16384)
    p.add_argument("--B", type=int, default=4096)
    p.add_argument("--probes", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--dtypes", default="bfloat16", help="comma-separated: bfloat16, float32")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = True
    B, K, m = args.B, args.K, args.probes
    res: dict = {"shape": {"B": B, "K": K, "m": m}, "device": torch.cuda.get_device_name()}
    src = torch.empty(B * K * 2, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    t_copy = timed_ms(lambda: dst.copy_(src), args.steps)
    res["copy_gb_per_s"] = 2 * src.numel() / t_copy / 1e6  # read + write
    for name in args.dtypes.split(","):
        row = measure_dtype(getattr(torch, name), args, res["copy_gb_per_s"])
        res[name] = row
        print(name, json.dumps(row, indent=1), flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
