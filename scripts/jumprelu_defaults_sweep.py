"""Why the JumpReLU SAE's defaults are what they are (docs/eval/synthetic/baselines.md, "Library
defaults"). A sweep fixed before any result: the mini recipe, 600 steps x 512, K = 512, seed 0,
l0_coef in {1.0, 0.1} x (theta0, eps) in {(0.001, 0.001) the old library default and the
paper's, (0.01, 0.05) sae-lens 6.54's, (1.0, 0.1) the harness's}. One JSON line per setting:
L0, dead latents, MCC (20,000 evaluation samples). CPU, one thread, about 1-2 min per setting.

    PYTHONPATH=src python scripts/jumprelu_defaults_sweep.py [INDEX ...]
"""

import json
import sys
import time

import torch

from implicit_em.eval import synthetic as S
from implicit_em.eval.options import SyntheticEvalOptions, Variant

torch.set_num_threads(1)
opts = SyntheticEvalOptions(
    recipe="mini", steps=600, batch_size=512, eval_samples=20000, log_every=100, plot=False
)
synth = S.build_synthetic_model("mini", 42)
true_l0 = S._true_l0(synth)
grid = [(c, th, eps) for c in (1.0, 0.1) for th, eps in ((0.001, 0.001), (0.01, 0.05), (1.0, 0.1))]
if len(sys.argv) > 1:
    grid = [grid[int(i)] for i in sys.argv[1:]]
for c, th, eps in grid:
    v = Variant(family="jumprelu_sae", l0_coef=c, jump_threshold=th, jump_bandwidth=eps)
    t = time.time()
    model, _ = S.train_variant(v, synth, opts, 0, None)
    r = S.score_model(model, v, synth, opts, None, 0)
    print(
        json.dumps(
            {
                "l0_coef": c,
                "theta0": th,
                "eps": eps,
                "L0": round(r["l0"], 2),
                "dead": r.get("dead_latents"),
                "mcc": round(r["mcc"], 3),
                "true_l0": round(true_l0, 2),
                "s": round(time.time() - t, 1),
            }
        ),
        flush=True,
    )
