"""The learning-rate x batch-size grid of docs/eval/synthetic/cpu-lr-batch-PLAN.md (issue 18),
CPU, one thread. Each cell is one `eval.synthetic.run` at a fixed 307,200 training samples.

Run from the repository root: python docs/eval/synthetic/cpu-lr-batch/run_grid.py PART
with PART = A (B = 256 cells, B = 4096 at lr 3e-4 and 3e-3, the reproduction check) or
B (B = 1024 cells, B = 4096 at lr 1e-3); the two parts run side by side.
"""

import sys
from pathlib import Path

import torch

from implicit_em.eval import synthetic as S

SAMPLES = 307_200
OUT = Path("docs/eval/synthetic/cpu-lr-batch")
LRS, BATCHES = (3e-4, 1e-3, 3e-3), (256, 1024, 4096)
PARTS = {
    "A": [(lr, 256) for lr in LRS] + [(3e-4, 4096), (3e-3, 4096)],
    "B": [(lr, 1024) for lr in LRS] + [(1e-3, 4096)],
}


def variants(lr: float, b: int) -> tuple[str, ...]:
    v = ("encoder", "encoder-wr")
    if lr == 1e-3:
        v += ("topk",)
        if b != 1024:
            v += ("encoder-lse-b1024",)
    return v


def cell(lr: float, b: int, names: tuple[str, ...], seeds: tuple[int, ...], out: Path,
         samples: int = SAMPLES) -> None:  # fmt: skip
    steps = samples // b
    S.run(S.SyntheticEvalOptions(recipe="mini", variants=names, seeds=seeds, steps=steps,
                                 batch_size=b, lr=lr, eval_samples=20000,
                                 log_every=steps // 5, plot=False, threads=1,
                                 out_dir=str(out)))  # fmt: skip


def main(part: str) -> None:
    torch.set_num_threads(1)
    if part == "A":
        cell(1e-3, 512, ("encoder",), (0,), OUT / "check-b512")
    for lr, b in PARTS[part]:
        cell(lr, b, variants(lr, b), (0, 1, 2), OUT / f"lr{lr:g}-b{b}")


if __name__ == "__main__":
    main(sys.argv[1])
