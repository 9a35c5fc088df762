"""Training-step throughput at SAE scale: decoder-free Encoder vs TopKSAE vs StandardSAE.

One workload for every line: K latents, D inputs, batch B (default K = 16384, D = 576,
B = 4096, SmolLM2-135M's residual width), Adam, the library's own step (`training.loss_terms`
weighted by `training.term_weights`, as `train_epoch` runs it). Random N(0, 1) inputs unless
--acts names a harvest. Reports per model: tokens/s, step time, counted matmul FLOPs and the
achieved TFLOP/s next to a plain torch.matmul of the (B, D) @ (D, K) shape, and peak GPU memory;
for the Encoder also the share of the step spent in the InfoMax penalties (variance +
correlation), measured two ways: the step minus an LSE-only step, and the penalties' own
forward + backward on fixed codes.

    python benchmarks/bench_scale.py                       # GPU if present, else a tiny CPU smoke run
    python benchmarks/bench_scale.py --amp bf16 --out bench.json

Matmul FLOPs counted (2 m n k each; elementwise work not counted):
  Encoder: linear fwd + grad W = 4BDK; Gram U U^T fwd + its one-matmul bwd = 4 B^2 K (B < K).
  TopKSAE: encoder fwd + grad W + grad x (b_dec) = 6BDK; dense decode fwd + bwd = 6BDK;
           AuxK decode of the dead latents, dense, = 6BDK (computed every step).
  StandardSAE: encoder 4BDK + decoder 6BDK.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from implicit_em.config import LossConfig
from implicit_em.losses import (
    correlation_loss,
    correlation_probes,
    sketched_correlation_loss,
    variance_loss,
)
from implicit_em.models import Encoder, StandardSAE, TopKSAE
from implicit_em.train.loop import loss_terms, model_type, optimizer_step, term_weights


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of fn() after `warmup` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    tic = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - tic) / steps


def make_step(model, x_batches, loss: LossConfig, amp: bool, lse_only: bool = False,
              compile: str | None = None):  # fmt: skip
    """A closure running one training step of the library's trainer on the next batch.

    compile: a torch.compile mode ("default", "reduce-overhead", ...) for the forward and
    loss (everything before backward); None runs them eagerly.
    """
    kind = model_type(model)
    weights = term_weights(kind, loss, model.hidden_dim)
    device = x_batches[0].device  # fused Adam on GPUs, as distributed.train_steps runs it
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    dead = torch.zeros(model.hidden_dim, dtype=torch.bool, device=x_batches[0].device)
    it = {"i": 0}

    def objective(x):
        if lse_only:
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
                a = model(x)[0]  # (B, K)
            return -torch.logsumexp(-a.float(), dim=1).sum()
        terms = loss_terms(model, x, loss, dead if kind == "topk_sae" else None, amp)
        return sum(weights[k] * terms[k] for k in weights)

    fn = torch.compile(objective, mode=compile) if compile else objective

    def step() -> None:
        x = x_batches[it["i"] % len(x_batches)]
        it["i"] += 1
        optimizer_step(model, opt, fn(x))

    return step


def penalty_fn(loss: LossConfig, k: int):
    """The InfoMax penalties (variance + correlation, exact or sketched) of codes a (B, K)."""

    def pen(a):
        if loss.tc_probes is None:
            return variance_loss(a, validate=False) + correlation_loss(a, validate=False)
        probes = correlation_probes(k, loss.tc_probes, a)
        return variance_loss(a, validate=False) + sketched_correlation_loss(
            a, probes, validate=False
        )

    return pen


def matmul_flops(kind: str, B: int, D: int, K: int, probes: int | None = None) -> float:
    if kind == "encoder":
        if probes is not None:  # a V and a^T P forward, their gradients backward
            return 4 * B * D * K + 10 * B * K * probes
        return 4 * B * D * K + (4 * B * B * K if B < K else 6 * B * K * K)
    if kind == "topk_sae":
        return 18 * B * D * K
    return 10 * B * D * K


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--K", type=int, default=16384)
    p.add_argument("--D", type=int, default=576)
    p.add_argument("--B", type=int, default=4096)
    p.add_argument("--topk", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--amp", choices=("none", "bf16"), default="none")
    p.add_argument("--probes", type=int, default=32, help="tc_probes of the sketched encoder")
    p.add_argument("--compile", choices=("eager", "compiled", "both"), default="eager",
                   help="torch.compile the forward + loss of every model")  # fmt: skip
    p.add_argument("--compile-mode", default="default", help="torch.compile mode")
    p.add_argument("--device", default="auto")
    p.add_argument("--acts", default=None, help="harvest directory to draw batches from")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    if device.type == "cpu" and args.K == 16384:  # smoke-sized shapes on CPU
        args.K, args.D, args.B, args.steps, args.warmup = 512, 64, 128, 3, 1
    torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls on tensor cores (all models)
    amp = args.amp == "bf16"
    B, D, K = args.B, args.D, args.K
    torch.manual_seed(0)
    if args.acts:
        from implicit_em.data.activations import Normalization, read_split

        x, _ = read_split(args.acts, "train", max_tokens=8 * B,
                          norm=Normalization.from_manifest(args.acts))  # fmt: skip
        x_batches = [c.to(device) for c in x.split(B) if len(c) == B]
        D = x.shape[1]
    else:
        x_batches = [torch.randn(B, D, device=device) for _ in range(4)]
    exact, sketch = LossConfig(), LossConfig(tc_probes=args.probes)
    models = {  # name -> (builder, loss)
        "encoder": (lambda: Encoder(D, K), exact),
        f"encoder_sketch{args.probes}": (lambda: Encoder(D, K), sketch),
        f"topk_sae_k{args.topk}": (lambda: TopKSAE(D, K, args.topk), exact),
        "standard_sae": (lambda: StandardSAE(D, K), exact),
    }
    dtype = torch.bfloat16 if amp else torch.float32
    xa, wa = torch.randn(B, D, device=device, dtype=dtype), torch.randn(D, K, device=device,
                                                                        dtype=dtype)  # fmt: skip
    t_mm = timed(lambda: xa @ wa, args.steps * 5, args.warmup, device)
    mm_tflops = 2 * B * D * K / t_mm / 1e12
    res = {
        "compile_mode": args.compile_mode,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "shape": {"B": B, "D": D, "K": K},
        "amp": args.amp,
        "tf32": True,
        "probes": args.probes,
        "data": args.acts or "random N(0,1)",
        "matmul_tflops": mm_tflops,
        "models": {},
    }
    modes = {"eager": None, "compiled": args.compile_mode}
    if args.compile != "both":
        modes = {args.compile: modes[args.compile]}
    for mode, comp in modes.items():
        for name, (build, loss) in models.items():
            model = build().to(device)
            kind = model_type(model)
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            step = make_step(model, x_batches, loss, amp, compile=comp)
            t = timed(step, args.steps, args.warmup, device)
            flops = matmul_flops(kind, B, D, K, loss.tc_probes)
            row = {
                "tokens_per_s": B / t,
                "step_ms": 1e3 * t,
                "matmul_gflop_per_step": flops / 1e9,
                "achieved_tflops": flops / t / 1e12,
                "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30
                if device.type == "cuda"
                else None,
            }
            if kind == "encoder":
                lse_step = make_step(model, x_batches, loss, amp, lse_only=True, compile=comp)
                t_lse = timed(lse_step, args.steps, args.warmup, device)
                a = model(x_batches[0])[0].detach().float().requires_grad_(True)  # (B, K)
                pen = penalty_fn(loss, K)
                pen = torch.compile(pen, mode=comp) if comp else pen

                def penalties(a=a, pen=pen) -> None:
                    pen(a).backward()
                    a.grad = None

                t_pen = timed(penalties, args.steps, args.warmup, device)
                row["lse_only_step_ms"] = 1e3 * t_lse
                row["penalty_fraction_by_difference"] = (t - t_lse) / t
                row["penalty_fraction_isolated"] = t_pen / t
            res["models"][f"{name}/{mode}"] = row
            print(f"{name}/{mode}: {json.dumps(row)}", flush=True)
            del model
    res["encoder_speedup"] = {}
    for mode in modes:
        for enc in ("encoder", f"encoder_sketch{args.probes}"):
            e = res["models"][f"{enc}/{mode}"]["tokens_per_s"]
            res["encoder_speedup"][f"{enc}/{mode}"] = {
                n: e / r["tokens_per_s"]
                for n, r in res["models"].items()
                if n.endswith(f"/{mode}") and not n.startswith("encoder")
            }
    print(json.dumps(res, indent=1))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
