"""Where the scale trainer's fused step spends its time: a diagnosis of round 9's part B.

Round 9 (docs/benchmarks.md, "Round 9") measured `train_steps` (one rank, eager, bf16
autocast) with the fused InfoMax kernels at 0.33x the tokens/s of the plain formulas. This
script looks for the cause, in two parts:

1. `torch.profiler` over `train_steps` (--steps after --warmup) with the fused mode "auto"
   and "off": the --top operations by total device time (CPU time where there is no device),
   per mode.
2. `losses.infomax_terms` alone, forward and backward, on codes a (B, K) in float32 and in
   bfloat16, fused and reference (`fused=True` / `False`): milliseconds per call (CUDA
   events; wall clock on a CPU), median of --reps after 3 warm-up calls.

    python benchmarks/profile_train_steps.py                                     # a GPU
    TRITON_INTERPRET=1 python benchmarks/profile_train_steps.py --device cpu --K 64 --D 8 \\
        --B 32 --steps 2 --warmup 1 --reps 2                                     # CPU smoke
"""

from __future__ import annotations

import statistics
import time

import torch
from bench_scale import pick_device  # the script's folder is on sys.path
from bench_train_steps import one_rank_terms, scale_data, shape_parser
from torch.profiler import ProfilerActivity, profile

from implicit_em.config import LossConfig
from implicit_em.kernels import fused_active, fused_mode
from implicit_em.losses import infomax_terms
from implicit_em.models import Encoder
from implicit_em.train.distributed import train_steps


def profile_mode(mode: str, args, x: torch.Tensor) -> None:
    """Print the --top operations of `train_steps` in fused mode `mode`."""
    torch.manual_seed(0)
    model = Encoder(args.D, args.K).to(x.device)
    loss = LossConfig(tc_probes=args.probes)
    cuda = x.device.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with fused_mode(mode), one_rank_terms(mode != "off"):
        active = fused_active(torch.empty(1, device=x.device))
        train_steps(model, x, loss, global_batch=args.B, steps=args.warmup, warmup=0, amp=cuda)
        with profile(activities=acts) as prof:
            res = train_steps(model, x, loss, global_batch=args.B, steps=args.steps + 1,
                              warmup=1, amp=cuda)  # fmt: skip
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    print(f"\n## mode {mode} (fused active: {active}): {res['tokens_per_s']:,.0f} tokens/s")
    print(prof.key_averages().table(sort_by=key, row_limit=args.top, max_name_column_width=70))


def time_terms(args, device: torch.device) -> None:
    """Print ms per forward + backward of `infomax_terms`, fused and reference, per dtype."""
    g = torch.Generator(device=device).manual_seed(0)
    probes = torch.randn(args.K, args.probes, device=device, generator=g)
    print("\n| codes | path | ms per forward + backward (median) |\n|---|---|---|")
    for dtype in (torch.float32, torch.bfloat16):
        base = torch.randn(args.B, args.K, device=device, generator=g).relu().to(dtype)
        for fused in (True, False):
            if fused and not fused_active(base, True):
                continue
            times = []
            for i in range(3 + args.reps):
                a = base.detach().requires_grad_(True)
                if device.type == "cuda":
                    start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
                    start.record()
                t0 = time.perf_counter()
                lse, var, tc = infomax_terms(a, probes, fused=fused)
                (lse + var + tc).backward()
                if device.type == "cuda":
                    end.record()
                    torch.cuda.synchronize()
                    ms = start.elapsed_time(end)
                else:
                    ms = 1e3 * (time.perf_counter() - t0)
                if i >= 3:
                    times.append(ms)
            name = "fused" if fused else "reference"
            print(f"| {str(dtype).split('.')[1]} | {name} | {statistics.median(times):.3f} |")


def main(argv: list[str] | None = None) -> int:
    p = shape_parser(__doc__, steps=20)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args(argv)
    device = pick_device(args.device)
    x = scale_data(args, device)
    for mode in ("auto", "off"):
        profile_mode(mode, args, x)
    time_terms(args, device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
