"""gpu16k-wr-hybrid-PLAN.md rule 1: does `tied-topk-im-3.0-wr` start from the init of
`tied-topk-im-3.0` and `tied-topk` (whose committed untrained MCC the rule uses) at width 4,096?
The untrained model as `eval.synthetic.untrained_model` draws it (torch.manual_seed(seed), then
`make_model`), at the 16k recipe's sizes (D = 768, width 4,096, true L0 34.3), compared
parameter by parameter, seeds 0-2.

Run from the repository root:
PYTHONPATH=src python docs/eval/synthetic/gpu16k-wr-hybrid/cpu-check/init_check.py
"""

import torch

from implicit_em.eval.options import VARIANTS
from implicit_em.eval.synthetic import make_model


def draw(name: str, seed: int) -> dict:
    torch.manual_seed(seed)
    return make_model(VARIANTS[name], 768, 4096, 34.3).state_dict()


for seed in (0, 1, 2):
    ref = draw("tied-topk-im-3.0-wr", seed)
    for name in ("tied-topk-im-3.0", "tied-topk"):
        got = draw(name, seed)
        same = got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)
        print(f"seed {seed}: {name} init == tied-topk-im-3.0-wr init (D 768, width 4,096): {same}")
