"""Where a StackedTrainer step spends its time: the reproduction's stacks, one device.

For each stack (Adam encoders N=23 on 5 data seeds, SGD encoders N=12, standard SAEs N=5,
TopK SAEs N=5; and the reproduce's own Adam layouts: `encoder-adam-repro`, its Adam stack as
it is by default, 7 models on seeds 1-3 and 1 on seeds 4-5, one learning rate; split as under
IMPLICIT_EM_SPLIT_URGENT=1 into `encoder-ours`, the benchmark's ours on seeds 1-5, and
`encoder-adam-rest`, 6 models on seeds 1-3) prints ms per step three ways, each after a warm-up
(CUDA-graph capture):
  loop    what `fit` does per step: batch gather, `step` (graph replay on GPUs), outputs
          cloned and summed;
  step    `step` alone on a fixed batch;
  device  the GPU's busy time per step from the profiler (kernels and copies; GPU only);
and the top kernels. loop - device is host overhead the GPU waits for.

    python benchmarks/profile_stacked.py --device cuda --steps 200
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from implicit_em.config import from_dict
from implicit_em.data import load_mnist
from implicit_em.train.stacked import StackedTrainer

BATCH = 128
STACKS = {
    "encoder-adam": (23, 5, {"type": "encoder"}, "adam", 1e-3),
    "encoder-sgd": (12, 3, {"type": "encoder"}, "sgd", 1e-3),
    "standard_sae": (5, 5, {"type": "standard_sae"}, "adam", 1e-3),
    "topk_sae": (5, 5, {"type": "topk_sae", "k": 17}, "adam", 1e-3),
    "encoder-adam-repro": (23, [1, 2, 3] * 7 + [4, 5], {"type": "encoder"}, "adam", 1e-3, 4),
    "encoder-ours": (5, [1, 2, 3, 4, 5], {"type": "encoder"}, "adam", 1e-3, 1),
    "encoder-adam-rest": (18, [1, 2, 3] * 6, {"type": "encoder"}, "adam", 1e-3, 4),
}
"""name -> (N, data seeds: a count, model i on seed 1 + i % count, or each model's seed; the
model; the optimizer; the base learning rate; how many rates, model i at lr (1 + i % rates),
3 unless given)."""


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(name: str, device: torch.device) -> StackedTrainer:
    n, seeds, model, opt, lr, *rates = STACKS[name]
    rates = rates[0] if rates else 3
    seed = seeds if isinstance(seeds, list) else [1 + i % seeds for i in range(n)]
    loss = {"l1_weight": 0.01} if name == "standard_sae" else {}
    cfgs = [
        from_dict({"model": {"input_dim": 784, "hidden_dim": 64, **model}, "loss": loss,
                   "training": {"batch_size": BATCH, "optimizer": opt, "lr": lr * (1 + i % rates),
                                "seed": seed[i]}})
        for i in range(n)
    ]  # fmt: skip
    return StackedTrainer(cfgs, device)


def loop(tr: StackedTrainer, x: torch.Tensor, order: torch.Tensor, s0: int, s1: int) -> None:
    """Steps s0..s1 of an epoch as `StackedTrainer.fit` runs them (one host sync at the end)."""
    sums: dict = {}
    for s in range(s0, s1):
        for k, v in tr.step(tr.batch(x, order, s, BATCH)).items():
            sums[k] = sums[k] + v if k in sums else v
    [v.tolist() for v in sums.values()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--stacks", nargs="+", default=list(STACKS), choices=list(STACKS))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x = load_mnist("train")[0].to(device)
    print(f"torch {torch.__version__}, device {device}, {args.steps} steps, batch {BATCH}")
    for name in args.stacks:
        tr = build(name, device)
        order = tr.epoch_order(len(x), 0)
        n_steps = min(args.steps, len(x) // BATCH - 10)

        loop(tr, x, order, 0, 10)  # warm-up and capture
        sync(device)
        tic = time.perf_counter()
        loop(tr, x, order, 10, 10 + n_steps)
        sync(device)
        t_loop = (time.perf_counter() - tic) / n_steps * 1e3
        xb = tr.batch(x, order, 3, BATCH)
        sync(device)
        tic = time.perf_counter()
        for _ in range(n_steps):
            tr.step(xb)
        sync(device)
        t_step = (time.perf_counter() - tic) / n_steps * 1e3
        line = f"{name:13s} N={len(tr.cfgs):<3d} loop {t_loop:.3f} ms/step, step {t_step:.3f}"
        if device.type == "cuda":
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                loop(tr, x, order, 10, 60)
                sync(device)
            events = prof.key_averages()
            busy = sum(e.self_device_time_total for e in events) / 50 / 1e3
            line += f", device {busy:.3f} (kernels: {sum(e.count for e in events) / 50:.0f}/step)"
            print(line)
            print(
                events.table(sort_by="self_cuda_time_total", row_limit=8, max_name_column_width=60)
            )
        else:
            print(line)


if __name__ == "__main__":
    main()
