"""One overcompleteness group: python docs/eval/synthetic/cpu-overcomplete/run_n.py OUT N SEEDS
[ORTHO_STEPS ORTHO_LR]. Recipe mini with N features (D = 64 kept), encoder and topk, the
settings of PLAN.md; writes docs/eval/synthetic/cpu-overcomplete/OUT/."""

import sys

import torch

from implicit_em.eval import synthetic as S

torch.set_num_threads(1)
out, n, seeds = sys.argv[1], int(sys.argv[2]), tuple(int(s) for s in sys.argv[3].split(","))
ortho = (int(sys.argv[4]), float(sys.argv[5])) if len(sys.argv) > 5 else None
S.run(
    S.SyntheticEvalOptions(
        recipe="mini",
        num_features=n,
        ortho=ortho,
        variants=("encoder", "topk"),
        seeds=seeds,
        steps=600,
        batch_size=512,
        eval_samples=20000,
        log_every=50,
        plot=False,
        out_dir=f"docs/eval/synthetic/cpu-overcomplete/{out}",
    )
)
