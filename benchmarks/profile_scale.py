"""Where a training step's GPU time goes: the top CUDA kernels of one model's step.

Uses bench_scale's step (the library's loss terms, Adam), after warm-up, under
torch.profiler; prints the kernel table sorted by CUDA time.

    python benchmarks/profile_scale.py --model encoder_sketch --amp bf16 --compile
"""

from __future__ import annotations

import argparse

import torch
from bench_scale import make_step
from torch.profiler import ProfilerActivity, profile

from implicit_em.config import LossConfig
from implicit_em.kernels import set_fused_mode
from implicit_em.kernels.infomax import FOLD
from implicit_em.models import Encoder, StandardSAE, TopKSAE


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="encoder_sketch",
                   choices=["encoder", "encoder_sketch", "encoder_lse", "topk_sae", "standard_sae"])  # fmt: skip
    p.add_argument("--K", type=int, default=16384)
    p.add_argument("--D", type=int, default=576)
    p.add_argument("--B", type=int, default=4096)
    p.add_argument("--probes", type=int, default=32)
    p.add_argument("--amp", choices=("none", "bf16"), default="bf16")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--compile-mode", default="default", help="torch.compile mode with --compile")
    p.add_argument("--fused", choices=("auto", "on", "off"), default="auto",
                   help="the InfoMax path of the encoders (implicit_em.kernels.fused_mode)")  # fmt: skip
    p.add_argument("--wr", choices=("logged", "step"), default="logged",
                   help="the encoder's wr metric: out of the step ('logged', as "
                        "distributed.train_steps) or in every step ('step', as "
                        "train_epoch)")  # fmt: skip
    p.add_argument("--bias-fold", choices=("on", "off"), default="on",
                   help="the fused sketched step's bias fold (kernels.infomax.FOLD)")  # fmt: skip
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rows", type=int, default=25)
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    B, D, K = args.B, args.D, args.K
    if device.type == "cpu" and K == 16384:
        B, D, K = 128, 64, 512
    x = [torch.randn(B, D, device=device) for _ in range(2)]
    loss = LossConfig(tc_probes=args.probes if args.model == "encoder_sketch" else None)
    model = {"topk_sae": lambda: TopKSAE(D, K, 32), "standard_sae": lambda: StandardSAE(D, K)}.get(
        args.model, lambda: Encoder(D, K)
    )().to(device)
    set_fused_mode(args.fused)  # read when the step is traced
    FOLD.update(bias=args.bias_fold == "on")
    step = make_step(model, x, loss, args.amp == "bf16", lse_only=args.model == "encoder_lse",
                     compile=args.compile_mode if args.compile else None,
                     with_wr=args.wr == "step")  # fmt: skip
    print(f"wr metric: {'in' if args.wr == 'step' else 'not in'} the profiled step; "
          f"bias fold {args.bias_fold} (taken on the fused sketched step only)")
    for _ in range(5):
        step()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(args.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows, max_name_column_width=70))
    if device.type == "cuda":  # GPU kernels per step and their summed time
        kern = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        print(f"GPU kernels per step: {len(kern) / args.steps:.1f}, GPU time per step: "
              f"{sum(e.device_time for e in kern) / args.steps / 1e3:.3f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
