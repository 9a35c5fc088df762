"""Post hoc (written after seeing cpu-feature-f1's table; no rule): where the controls' per-feature
best-latent F1 comes from. For seed 0, the random-directions control and the encoder's untrained
init, both read out at k = 8, on the run's 20,000 evaluation samples (`code_metrics`'s draw:
seed 2026, chunks of 4,096): each feature's best F1 binned by how often the feature fires.

Run from the repository root: python docs/eval/synthetic/cpu_feature_f1_controls.py
"""

import json

import torch

from implicit_em.eval import synthetic as S
from implicit_em.eval.feature_f1 import add_counts, best_latent_f1, empty_counts
from implicit_em.eval.options import VARIANTS

BINS = ((1, 4), (5, 19), (20, 99), (100, 10**9))  # feature firing counts in the 20,000 samples


def counts_of(encode, synth, n=20_000, batch=4096, seed=2026):
    gt = synth.feature_dict.feature_vectors
    counts = empty_counts(2048, gt.shape[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        done = 0
        while done < n:
            b = min(batch, n - done)
            x, f = synth.sample_with_features(b)  # (b, D), (b, N)
            add_counts(counts, encode(x), f)
            done += b
    return counts


def main() -> None:
    torch.set_num_threads(1)
    synth = S.build_synthetic_model("small", 42)
    opts = S.SyntheticEvalOptions(recipe="small", variants=("encoder",), readout_k=8)
    init = S.untrained_model(VARIANTS["encoder"], synth, opts, 0).eval()
    dirs = S.directions(init)[0]
    rand = S.random_directions(dirs.shape, 0, dirs)
    out = {}
    with torch.no_grad():
        for name, enc in (("random@8", S.topk_readout(rand, 8)),
                          ("untrained encoder@8",
                           S.matched_readout(init, VARIANTS["encoder"], 8).encode)):
            c = counts_of(enc, synth)
            best = best_latent_f1(c)
            fired = c.feature > 0
            rows = {"all": {"features": int(fired.sum()), "mean_best_f1": float(best[fired].mean())}}
            for lo, hi in BINS:
                m = (c.feature >= lo) & (c.feature <= hi)
                rows[f"fires {lo}-{hi}"] = {"features": int(m.sum()),
                                             "mean_best_f1": float(best[m].mean()) if m.any() else None}
            out[name] = rows
            print(name, json.dumps(rows))
    with open("docs/eval/synthetic/cpu-feature-f1-controls.json", "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
