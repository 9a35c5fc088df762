"""Which read-out of the energy model makes "largest = strongest match" true? (issue 16)

    python scripts/readout_study.py --json docs/interop_readout.json

SAE tools rank a latent's examples by its largest activation. The decoder-free Encoder gives
energies a = ReLU(Wx + b) (paper: lower = better match, r = softmax(-a)). For each unit we
ask how well three read-outs single out the ground-truth feature the unit is matched to, by
per-unit AUROC (feature present vs absent; 0.5 = chance, < 0.5 = reversed):

- `energy` a_j (what SAELens' standard architecture computes from the exported weights),
- `neg_energy` -a_j (per unit the same order as E_max - a_j: lower energy = better match),
- `s` = max_k a_k - a_j (the distance below the worst component, per input),
- `resp` = softmax(-a)_j (the responsibility).

Data 1, synthetic sparse features: F = 48 random unit directions in D = 32; each feature
present with probability 0.06 at magnitude U(0.5, 1.5); x = c F + N(0, 0.05^2). A unit's
feature is the one its row W_j is most aligned with (largest |cos|), independent of the
read-out. Data 2, MNIST: a unit's "feature" is the digit class with the largest AUROC of
the read-out itself (so every read-out gets its best class).

Controls: the same Encoder untrained (its random init) beside the trained one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from implicit_em.config import ModelConfig, RunConfig, TrainConfig
from implicit_em.interop.saelens import readout_auroc
from implicit_em.runs import build_model
from implicit_em.train.loop import train


def synthetic(n: int, seed: int, d: int = 32, f: int = 48, p: float = 0.06):
    g = torch.Generator().manual_seed(0)  # the same features for every split
    F = torch.randn(f, d, generator=g)
    F = F / F.norm(dim=1, keepdim=True)  # (F, D)
    g = torch.Generator().manual_seed(seed)
    present = torch.rand(n, f, generator=g) < p  # (N, F)
    mags = 0.5 + torch.rand(n, f, generator=g)
    x = (present * mags) @ F + 0.05 * torch.randn(n, d, generator=g)  # (N, D)
    return x, present, F


def summarise(auc: dict[str, torch.Tensor]) -> dict:
    out = {}
    for name, v in auc.items():
        v = v[~torch.isnan(v)]
        out[name] = {
            "median_auroc": round(float(v.median()), 4),
            "mean_auroc": round(float(v.mean()), 4),
            "frac_units_above_0.5": round(float((v > 0.5).float().mean()), 4),
            "n_units": int(v.numel()),
        }
    return out


def per_feature(model, x, present, F):
    with torch.no_grad():
        a = model.encode(x)  # (N, K)
    cos = torch.nn.functional.normalize(model.W.detach(), dim=1) @ F.t()  # (K, F)
    match = cos.abs().argmax(dim=1)  # (K,)
    sign = torch.gather(cos, 1, match[:, None]).squeeze(1)
    alive = (a > 0).any(0)
    auc = readout_auroc(a[:, alive], present[:, match[alive]])
    res = summarise(auc)
    res["frac_matched_cos_positive"] = round(float((sign[alive] > 0).float().mean()), 4)
    res["median_abs_cos"] = round(float(sign[alive].abs().median()), 4)
    res["alive_units"] = int(alive.sum())
    return res


def best_class(model, x, y, n_classes=10):
    with torch.no_grad():
        a = model.encode(x)
    alive = (a > 0).any(0)
    a = a[:, alive]
    onehot = torch.nn.functional.one_hot(y, n_classes).bool()  # (N, C)
    best: dict[str, torch.Tensor] = {}
    for c in range(n_classes):
        auc = readout_auroc(a, onehot[:, c : c + 1].expand_as(a))
        for name, v in auc.items():
            best[name] = v if name not in best else torch.maximum(best[name], v)
    res = summarise(best)
    res["alive_units"] = int(alive.sum())
    return res


def main() -> None:
    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--mnist", type=int, default=10_000, help="MNIST train images (0: skip)")
    args = p.parse_args()
    results: dict = {"synthetic": {}, "mnist": {}}

    x, _, F = synthetic(20_000, seed=1)
    xt, pt, _ = synthetic(5_000, seed=2)
    cfg = RunConfig(
        model=ModelConfig(type="encoder", input_dim=32, hidden_dim=48),
        training=TrainConfig(epochs=args.epochs, batch_size=256, lr=1e-3, seed=0),
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    results["synthetic"]["untrained"] = per_feature(model, xt, pt, F)
    train(model, x, cfg, progress=False)
    results["synthetic"]["trained"] = per_feature(model, xt, pt, F)
    print(json.dumps(results["synthetic"], indent=1))

    if args.mnist:
        from implicit_em.data.images.mnist import load_mnist

        xm, ym = load_mnist("train")
        xm = xm.reshape(len(xm), -1).float()
        xm = xm / xm.max() if xm.max() > 1 else xm
        xtr, xte, yte = xm[: args.mnist], xm[-5_000:], ym[-5_000:]
        cfg = RunConfig(
            model=ModelConfig(type="encoder", input_dim=784, hidden_dim=64),
            training=TrainConfig(epochs=10, batch_size=128, lr=1e-3, seed=0),
        )
        torch.manual_seed(0)
        model = build_model(cfg)
        results["mnist"]["untrained"] = best_class(model, xte, yte)
        train(model, xtr, cfg, progress=False)
        results["mnist"]["trained"] = best_class(model, xte, yte)
        print(json.dumps(results["mnist"], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
