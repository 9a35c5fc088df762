"""Stacks trained side by side on CUDA streams (train_many) vs one after another: same
parameters, and the wall time of each way. GPU only; the CPU path has no streams.

    python benchmarks/check_concurrent_stacks.py --epochs 3
"""

from __future__ import annotations

import argparse
import time

import torch

from implicit_em.config import from_dict
from implicit_em.data import load_mnist
from implicit_em.train.stacked import train_many

KINDS = (("encoder", "adam"), ("encoder", "sgd"), ("standard_sae", "adam"), ("topk_sae", "adam"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--n-train", type=int, default=60000)
    args = p.parse_args()
    x = load_mnist("train")[0][: args.n_train].cuda()
    cfgs = [
        from_dict({"model": {"type": t, "input_dim": 784, "hidden_dim": 64, "k": 17},
                   "training": {"epochs": args.epochs, "seed": s, "optimizer": o,
                                "device": "cuda"}})
        for t, o in KINDS for s in (1, 2, 3)
    ]  # fmt: skip
    train_many(cfgs[:3], x[:2048], device="cuda", progress=False)  # warm-up (cuBLAS, kernels)
    torch.cuda.synchronize()
    tic = time.perf_counter()
    together = train_many(cfgs, x, device="cuda", progress=False)
    torch.cuda.synchronize()
    t_together = time.perf_counter() - tic
    tic = time.perf_counter()
    alone = [
        r
        for i in range(0, len(cfgs), 3)
        for r in train_many(cfgs[i : i + 3], x, device="cuda", progress=False)
    ]
    torch.cuda.synchronize()
    t_alone = time.perf_counter() - tic
    worst = 0.0
    for (ma, _), (mb, _) in zip(together, alone, strict=True):
        for p, q in zip(ma.state_dict().values(), mb.state_dict().values(), strict=True):
            worst = max(worst, float((p - q).abs().max()))
    print(f"{len(cfgs)} models in {len(KINDS)} stacks, {args.epochs} epochs of {len(x)} samples: "
          f"side by side {t_together:.2f} s, one after another {t_alone:.2f} s, "
          f"ratio {t_alone / t_together:.2f}x; max |parameter difference| {worst:.3g}")  # fmt: skip


if __name__ == "__main__":
    main()
