"""What a larger global batch changes in the results (issue 20): the data-parallel trainer
(`distributed.train_steps`, one process: parity with R ranks is tested) on MNIST at global
batch B, 2B and 4B for the same number of training rows, Adam at a fixed learning rate and
at lr * sqrt(batch / B). Held-out (10k test rows) metrics: the encoder's objective terms on the
whole test set (exact correlation), dead units, and the TopK SAE's FVU; an untrained model of
each family as the control. Settings fixed before any run.

    PYTHONPATH=src python benchmarks/batch_scaling.py --out docs/scale/ddp/batch_scaling_mnist_cpu.json
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from implicit_em import runs
from implicit_em.config import DataConfig, LossConfig, ModelConfig, RunConfig
from implicit_em.data import load_dataset
from implicit_em.losses import combined_loss
from implicit_em.metrics import dead_units
from implicit_em.train.distributed import train_steps

BATCHES = [512, 1024, 2048]  # B, 2B, 4B
SEEDS = [0, 1, 2]
FAMILIES = {"encoder": ModelConfig(type="encoder", input_dim=784, hidden_dim=256),
            "topk_sae": ModelConfig(type="topk_sae", input_dim=784, hidden_dim=256, k=16)}  # fmt: skip
LR, EPOCHS = 1e-3, 4


@torch.no_grad()
def held_out(model: torch.nn.Module, kind: str, x: torch.Tensor, loss: LossConfig) -> dict:
    if kind == "encoder":
        a = model(x)[0]  # (N, K)
        t = combined_loss(a, model.W, loss, responsibilities=False)
        return {k: float(v) for k, v in t.items()} | {"dead_units": dead_units(a)}
    x_hat, a = model(x)  # (N, D), (N, K)
    fvu = float((x - x_hat).square().sum() / (x - x.mean(0)).square().sum())
    return {"fvu": fvu, "dead_units": dead_units(a)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    ds = load_dataset(DataConfig(dataset="mnist"))
    loss = LossConfig()
    rows = []
    for kind, mcfg in FAMILIES.items():
        cfg = RunConfig(model=mcfg, loss=loss)
        for seed in SEEDS:
            init = runs.build_model(cfg, seed=seed)
            rows.append({"family": kind, "seed": seed, "batch": 0, "lr_rule": "untrained",
                         **held_out(init, kind, ds.x_test, loss)})  # fmt: skip
            for batch in BATCHES:
                for rule in ("fixed", "sqrt"):
                    if rule == "sqrt" and batch == BATCHES[0]:
                        continue  # the same run as "fixed"
                    lr = LR * (math.sqrt(batch / BATCHES[0]) if rule == "sqrt" else 1.0)
                    steps = EPOCHS * len(ds.x_train) // batch
                    model = runs.build_model(cfg, seed=seed)
                    tic = time.perf_counter()
                    train_steps(model, ds.x_train, loss, global_batch=batch, steps=steps, lr=lr,
                                seed=seed)  # fmt: skip
                    rows.append({"family": kind, "seed": seed, "batch": batch, "lr_rule": rule,
                                 "lr": lr, "steps": steps, "seconds": time.perf_counter() - tic,
                                 **held_out(model, kind, ds.x_test, loss)})  # fmt: skip
                    print(json.dumps(rows[-1]), flush=True)
    out = {"command": "PYTHONPATH=src python benchmarks/batch_scaling.py", "batches": BATCHES,
           "seeds": SEEDS, "epochs": EPOCHS, "base_lr": LR, "device": "cpu (1 thread)",
           "families": {k: v.__dict__ for k, v in FAMILIES.items()}, "rows": rows}  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
