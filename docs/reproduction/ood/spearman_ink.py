"""Spearman correlation of a trained variant's LSE score with the ink ||x||_1 (variants.md).

The diagnostic of docs/reproduction/ood/variants.md ("added after the run", seed 0): train each
named variant of `eval.options.VARIANTS` on MNIST train exactly as `scripts/ood_variants.py`
does (the `ood` defaults: K = 64, k = 16, batch 128, Adam 1e-3, 5 epochs; a centred variant on
x - the training images' mean), score MNIST test + Fashion-MNIST test (20,000 images) with
`ood_variants.scores(...)["lse"]` = logsumexp(-a), and print the Spearman rank correlation
(`scipy.stats.spearmanr`) of that score with the ink ||x||_1 = x.sum(1) of the uncentred
images, and the mean number of zero energies per image on each test set.

Run from the repository root (CPU, about a minute per variant):
    PYTHONPATH=src python docs/reproduction/ood/spearman_ink.py encoder-wr encoder-wr-centred
"""

import argparse
import importlib.util
from pathlib import Path

import torch
from scipy.stats import spearmanr

from implicit_em.data import load_fashion_mnist, load_mnist
from implicit_em.eval.options import VARIANTS

ROOT = Path(__file__).resolve().parents[3]  # the repository root


def _ood_variants():
    """scripts/ood_variants.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "ood_variants", ROOT / "scripts" / "ood_variants.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("variants", nargs="+", choices=sorted(VARIANTS))
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(1)
    m = _ood_variants()
    args = {"n_components": 64, "topk_k": 16, "batch_size": 128, "lr": 1e-3, "epochs": 5}
    x_train, _ = load_mnist("train")
    x_in, _ = load_mnist("test")
    x_out, _ = load_fashion_mnist("test")
    x = torch.cat([x_in, x_out])  # (20000, 784): MNIST test, then Fashion-MNIST test
    mu = x_train.mean(dim=0)  # (784,), as ood_variants.run centres
    for name in a.variants:
        mean = mu if VARIANTS[name].centre else None
        model, _ = m.train(name, x_train, a.seed, args, mean)
        s = m.scores(model, x, args["topk_k"], VARIANTS[name].match, mean)
        rho = spearmanr(s["lse"], x.sum(dim=1).double().numpy()).statistic
        zeros_in, zeros_out = s["zeros"][: len(x_in)].mean(), s["zeros"][len(x_in) :].mean()
        print(f"{name} seed {a.seed}: Spearman(lse, ||x||_1) {rho:+.3f}; zero energies "
              f"MNIST {zeros_in:.1f}, Fashion {zeros_out:.1f} of {args['n_components']}")  # fmt: skip


if __name__ == "__main__":
    main()
