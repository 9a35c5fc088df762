"""Ideal-filter MCC ceiling per N (the method of ../cpu-why/ideal_filters.py): for every true
feature the least-squares linear filter of its activation (Wiener filter, 100,000 samples),
scored as directions against the true features with sae-lens's MCC. Recipe mini with N
features (D = 64 kept); also how well each filter detects its feature (correlation of
its output with f_j), the dictionary's condition number, the features' coherence, the true L0. Run from the repository
root: python docs/eval/synthetic/cpu-overcomplete/ceiling.py; writes ceiling.json here."""

import json
from pathlib import Path

import torch
from sae_lens.synthetic import mean_correlation_coefficient

from implicit_em.eval.synthetic import _true_l0, build_synthetic_model

torch.set_num_threads(1)
PATH = Path("docs/eval/synthetic/cpu-overcomplete/ceiling.json")
out = {}
for name, n, ortho in (("64", 64, None), ("128", 128, None), ("256", 256, None),
                       ("512", 512, None), ("512-ortho", 512, (200, 1e-2))):  # fmt: skip
    synth = build_synthetic_model("mini", num_features=n, ortho=ortho)
    gt = synth.feature_dict.feature_vectors.detach()  # (N, D)
    cos = (gt @ gt.t()).abs().fill_diagonal_(0)
    torch.manual_seed(0)
    x, f = synth.sample_with_features(100_000)  # (n, D), (n, N)
    xc, fc = (x - x.mean(0)).double(), (f - f.mean(0)).double()
    filt = torch.linalg.solve(xc.t() @ xc, xc.t() @ fc).t().float()  # (N, D)
    own = torch.nn.functional.cosine_similarity(filt, gt, dim=1).abs()
    pred = xc @ filt.t().double()  # (n, N): each filter's output
    corr = (pred * fc).sum(0) / (pred.norm(dim=0) * fc.norm(dim=0))  # detection quality
    sv = torch.linalg.svdvals(gt)
    out[name] = {"N": n, "D": gt.shape[1], "true_l0": _true_l0(synth),
                 "ideal_filter_mcc": mean_correlation_coefficient(filt, gt),
                 "ideal_filter_median_cos_to_own": float(own.median()),
                 "ideal_filter_median_corr_to_feature": float(corr.nanmedian()),  # never-fired: nan
                 "dictionary_condition_number": float(sv.max() / sv.min()),
                 "feature_max_abs_cos": float(cos.max()),
                 "feature_mean_abs_cos": float(cos.sum() / (n * n - n))}  # fmt: skip
    print(name, out[name], flush=True)
PATH.write_text(json.dumps(out, indent=1))
