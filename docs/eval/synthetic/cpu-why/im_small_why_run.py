"""The runs of docs/eval/synthetic/cpu-why/im-small-why-PLAN.md and im-small-combined-PLAN.md
(each fixed before any of its runs).

Run from the repository root, one arm per process (one thread each):
    PYTHONPATH=src TQDM_DISABLE=1 .venv/bin/python docs/eval/synthetic/cpu-why/im_small_why_run.py A
Arm A: lr 1e-3; arm B: lr 3e-4. Each trains encoder-im0.01, then encoder, at K = 2,048 for
4,500 steps (MCC recorded every 250), then both at K = 512 for 1,500 steps; one S.run per
output folder, so that a finished folder is kept whatever happens to the next.
Arms A-combined / B-combined (im-small-combined-PLAN.md): the same two variants at K = 512 for
6,000 steps at lr 1e-3 / 3e-4, MCC recorded every 500; one S.run, which writes each row as it
is scored.
"""

import sys

import torch

from implicit_em.eval import synthetic as S

ROOT = "docs/eval/synthetic/cpu-why"
LR = {"A": (1e-3, "lr1e-3"), "B": (3e-4, "lr3e-4")}
COMBINED_STEPS = 6000


def main(arm: str) -> None:
    torch.set_num_threads(1)
    base, _, cell = arm.partition("-")
    lr, tag = LR[base]
    common = dict(recipe="small", seeds=(0,), batch_size=1024, lr=lr, eval_samples=20000,
                  plot=False, history_mcc=True)  # fmt: skip
    variants = ("encoder-im0.01", "encoder")
    if cell == "combined":
        S.run(S.SyntheticEvalOptions(variants=variants, steps=COMBINED_STEPS, latents=512,
                                     log_every=500, out_dir=f"{ROOT}/imwhy-combined-{tag}",
                                     **common))  # fmt: skip
        return
    if cell:
        raise SystemExit(f"unknown arm {arm!r}: choose A, B, A-combined or B-combined")
    for v in variants:
        S.run(S.SyntheticEvalOptions(variants=(v,), steps=4500, log_every=250,
                                     out_dir=f"{ROOT}/imwhy-long-{tag}-{v}", **common))  # fmt: skip
    S.run(S.SyntheticEvalOptions(variants=variants, steps=1500, latents=512, log_every=250,
                                 out_dir=f"{ROOT}/imwhy-k512-{tag}", **common))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1])
