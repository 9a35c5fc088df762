"""gpu16k-width16k-4-PLAN.md rule 2: do encoder, encoder-wr, tied-topk and tied-topk-im-3.0
share their seed's init at width 16,384? The untrained model as `eval.synthetic.untrained_model`
draws it (torch.manual_seed(seed), then `make_model`: the same `Encoder` for all four; the
tied rows' b_dec is zeros added by the trainer after the draw), at the 16k recipe's sizes
(D = 768, width 16,384, true L0 34.3), compared parameter by parameter.

Run from the repository root:
PYTHONPATH=src python docs/eval/synthetic/gpu16k-width16k/cpu-check-4/init_check.py
"""

import torch

from implicit_em.eval.options import VARIANTS
from implicit_em.eval.synthetic import make_model


def draw(name: str, seed: int) -> dict:
    torch.manual_seed(seed)
    return make_model(VARIANTS[name], 768, 16384, 34.3).state_dict()


for seed in (0, 1, 2):
    ref = draw("encoder", seed)
    for name in ("encoder-wr", "tied-topk", "tied-topk-im-3.0"):
        got = draw(name, seed)
        same = got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)
        print(f"seed {seed}: {name} init == encoder init (D 768, width 16,384): {same}")
