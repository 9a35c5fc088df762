"""gpu16k-k304-PLAN.md rule 1: does TopK's init depend on k? The untrained model as
`eval.synthetic.untrained_model` draws it (torch.manual_seed(seed), then `make_model`), at the
16k recipe's sizes (D = 768, width 4,096, true L0 34.3), compared parameter by parameter.

Run from the repository root: PYTHONPATH=src python docs/eval/synthetic/gpu16k-k304/cpu-check/init_check.py
"""

import torch

from implicit_em.eval.options import VARIANTS
from implicit_em.eval.synthetic import make_model


def draw(name: str, seed: int) -> dict:
    torch.manual_seed(seed)
    return make_model(VARIANTS[name], 768, 4096, 34.3).state_dict()


for seed in (0, 1, 2):
    ref = draw("topk-k304", seed)
    for name in ("topk-k214", "topk-k25"):
        got = draw(name, seed)
        same = got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)
        print(f"seed {seed}: {name} init == topk-k304 init (D 768, width 4,096): {same}")
