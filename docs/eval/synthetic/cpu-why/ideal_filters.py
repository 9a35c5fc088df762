"""How close can an encoder row (a linear filter) be to its feature, on these recipes?

For every true feature j, the least-squares linear filter w_j = argmin E(f_j - w_j.x - c)^2
(Wiener filter, fitted on 100,000 samples) is the best linear detector of that feature's
activation; MCC of those N filters against the N true features (sae-lens) is what a perfect
decoder-free (filter) model would score with rows-as-directions, against the features
themselves (MCC 1). Also MCC of the filters of a feature's *firing* (f_j > 0). Run from the
repository root: python docs/eval/synthetic/cpu-why/ideal_filters.py [RECIPE ...] (default mini
small); results are merged into ideal_filters.json.
"""

import json
import sys
from pathlib import Path

import torch
from sae_lens.synthetic import mean_correlation_coefficient

from implicit_em.eval.synthetic import build_synthetic_model

torch.set_num_threads(1)
PATH = Path("docs/eval/synthetic/cpu-why/ideal_filters.json")
out = json.loads(PATH.read_text()) if PATH.exists() else {}
for recipe in sys.argv[1:] or ("mini", "small"):
    synth = build_synthetic_model(recipe)
    torch.manual_seed(0)
    x, f = synth.sample_with_features(100_000)  # (n, D), (n, N)
    gt = synth.feature_dict.feature_vectors.detach()  # (N, D)
    xc = (x - x.mean(0)).double()
    res = {}
    for name, target in (("magnitude", f), ("firing", (f > 0).float())):
        tc = (target - target.mean(0)).double()
        filt = torch.linalg.solve(xc.t() @ xc, xc.t() @ tc).t().float()  # (N, D)
        res[name] = mean_correlation_coefficient(filt, gt)
        cos = torch.nn.functional.cosine_similarity(filt, gt, dim=1).abs()
        res[name + "_median_cos_to_own"] = float(cos.median())
    out[recipe] = res
    print(recipe, res, flush=True)
    PATH.write_text(json.dumps(out, indent=1))
