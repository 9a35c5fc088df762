"""Units at a = 0 on every sample against the harness's dead latents (issue 18's first
measurement against the tables' "0 dead"; docs/eval/synthetic/cpu-lr-batch-PLAN.md).

Trains `encoder` seed 0 on `small` (300 x 1,024 samples) and `mini` (600 x 512), lr 1e-3,
then on 20,000 evaluation samples counts: units whose energy a = ReLU(Wx + b) is 0 on every
sample, the mean number of units at a = 0 per sample, the harness's dead_latents and l0
(`evaluate_latents`: sae-lens DeadLatentsCalculator / L0Calculator on a), and the entropy of
the responsibilities softmax(-a) against log K.

Run from the repository root: python docs/eval/synthetic/cpu-lr-batch/zero_units.py OUT.json
"""

import json
import math
import sys

import torch

from implicit_em.eval import synthetic as S
from implicit_em.eval.options import VARIANTS


@torch.no_grad()
def count(model, synth, n: int = 20_000, chunk: int = 4096) -> dict:
    torch.manual_seed(2026)  # the evaluation stream of evaluate_latents
    k = model.W.shape[0]
    nonzero = torch.zeros(k, dtype=torch.long)  # samples where a unit's a != 0
    zeros_per_sample, ent, done = 0.0, 0.0, 0
    while done < n:
        b = min(chunk, n - done)
        a = model.encode(synth.sample_with_features(b)[0])  # (b, K)
        nonzero += (a != 0).sum(dim=0)
        zeros_per_sample += float((a == 0).sum())
        r = torch.softmax(-a, dim=1)
        ent += float(-(r * r.clamp_min(1e-30).log()).sum())
        done += b
    return {"K": k, "units_zero_on_every_sample": int((nonzero == 0).sum()),
            "units_nonzero_on_every_sample": int((nonzero == n).sum()),
            "mean_units_at_zero_per_sample": zeros_per_sample / n,
            "responsibility_entropy": ent / n, "log_K": math.log(k)}  # fmt: skip


def main(out: str) -> None:
    torch.set_num_threads(1)
    res = {}
    for recipe, steps, b in (("small", 300, 1024), ("mini", 600, 512)):
        opts = S.SyntheticEvalOptions(recipe=recipe, variants=("encoder",), seeds=(0,),
                                      steps=steps, batch_size=b, eval_samples=20000,
                                      log_every=steps, plot=False, threads=1)  # fmt: skip
        synth = S.build_synthetic_model(recipe, opts.model_seed, "cpu")
        v = VARIANTS["encoder"]
        model, _ = S.train_variant(v, synth, opts, 0, None)
        model.eval()
        h = S.evaluate_latents(S.directions(model)[0], S.readout(model, v), synth, 20000)
        c = count(model, synth)
        res[recipe] = {**c, "harness_dead_latents": h["dead_latents"], "harness_l0": h["l0"],
                       "mcc": h["mcc"], "steps": steps, "batch_size": b}  # fmt: skip
        print(recipe, json.dumps(res[recipe]), flush=True)
    with open(out, "x") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
