"""The OOD study (MNIST in, Fashion-MNIST out) for the theory-guided variants of issue 18.

The library's OOD study (`implicit-em ood`, experiments/ood.py; docs/reproduction/ood/) found
the LSE energy of the decoder-free ReLU encoder below chance (AUROC 0.282 +- 0.104). This
script trains the best variants of the ground-truth harness (docs/eval/synthetic/variants.md,
gpu16k.md) on MNIST train with the same protocol (K, k, batch, lr, epochs, seeds of `ood`'s
defaults) and scores MNIST test against Fashion-MNIST test with:

- lse: logsumexp_j(-a_j), a = ReLU(W x + b) (K,): the encoder's LSE energy, -L_LSE(x), the
  `ood` study's score (DecoderFreeSAE.score_samples);
- recon (tied models and the untrained control): -mean_d (x - x_hat)_d^2 with
  x_hat = TopK_k(a) W + b_dec, the tied TopK reconstruction (`variants.topk_codes`).

A TopK SAE (`topk-pretrained`: decoder-free pre-training for half the steps, then a TopK SAE
started from it; `topk-half`, its control: the same TopK SAE from its random init on the
second half only) is scored the same way on its own ReLU energies before TopK,
a = ReLU(W_enc (x - b_dec) + b_enc) (`TopKSAE.pre_activations`, all K units), and recon is its
own decoder's: x_hat = TopK_k(a) W_dec^T + b_dec (the `ood` table's TopKSAE score). Its
control "untrained topk-half" is the TopK SAE's random init (the encoder's init layer, so the
same LSE energies as "untrained", plus decoder W^T with unit columns and b_dec = 0);
topk-pretrained's start is the encoder's init, the control "untrained".

Models (fixed before the run, docs/reproduction/ood/variants.md): tied-topk-im-3.0, tied-topk,
encoder (each trained by `eval.synthetic.VariantTrainer`, fed MNIST batches), and untrained
(the random init the trainers start from, b_dec = 0). A centred variant (`Variant.centre`,
e.g. encoder-wr-centred) trains and is scored on x - mean, mean (D,) the training images' mean;
its control "untrained centred" is the encoder's init scored on the same centred inputs.
Metrics are `experiments.ood`'s (`evaluate_scores`: AUROC, FPR@95%TPR; higher score = more
in-distribution).

--models takes the variants whose scores are defined above (`supported`): the encoder family
(energies a, tied recon when it has b_dec) and TopK SAEs (pre-activations, own decoder). Other
SAE families (L1, JumpReLU, BatchTopK, hybrid) and variants that need the synthetic model
(init_at_truth, init_at_filters, gaussian) are refused with one line. The recon row's label is
read from the scored model (`recon_label`: a decoder W_dec of its own, or the tied rows).

Legend: N samples, D = 784 pixels, K latents, k kept per sample. x (N, D), a (N, K).

usage: python scripts/ood_variants.py OUT_DIR [--epochs 5] [--seeds 0 1 2] [--train-subset N]
       [--models tied-topk-im-3.0 tied-topk encoder] [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import Tensor, nn

from implicit_em.data.batches import batch_slices
from implicit_em.eval.options import VARIANTS, SyntheticEvalOptions
from implicit_em.eval.synthetic import VariantTrainer, untrained_model
from implicit_em.eval.variants import match_energy, topk_codes
from implicit_em.experiments.ood import evaluate_scores

MODELS = ("tied-topk-im-3.0", "tied-topk", "encoder")  # trained; "untrained" is added
EPOCH_STRIDE = 1000  # shuffling seed = seed * EPOCH_STRIDE + epoch


class ImageSource:
    """What `VariantTrainer` reads from its synthetic model, for a fixed image set.

    cfg.hidden_dim = D, cfg.num_features = K, and the true-L0 cache of `eval.synthetic._true_l0`
    set to k (so no sampling happens; every variant then keeps k latents). Batches are fed to
    `VariantTrainer.step` directly; `sample` is never called.
    """

    def __init__(self, d: int, k_latents: int, k: int) -> None:
        self.cfg = SimpleNamespace(hidden_dim=d, num_features=k_latents)
        self._ie_true_l0 = float(k)

    def sample(self, b: int) -> Tensor:
        raise RuntimeError("ImageSource has no sampler: feed batches to VariantTrainer.step")


def options(n_train: int, args: dict) -> SyntheticEvalOptions:
    """Trainer options for `epochs` passes over n_train images (exact decorrelation penalty)."""
    per_epoch = len(batch_slices(n_train, args["batch_size"]))
    return SyntheticEvalOptions(
        recipe="tiny", steps=per_epoch * args["epochs"], batch_size=args["batch_size"],
        lr=args["lr"], latents=args["n_components"], k=args["topk_k"], tc_probes=None,
        log_every=per_epoch, gradient_shares=False,
    )  # fmt: skip


def untrained(x_train: Tensor, seed: int, args: dict, name: str = "tied-topk") -> nn.Module:
    """The model the trainer of variant `name` starts from for this seed (VariantTrainer
    seeds, then builds), with the tied decoder offset b_dec = 0 when the variant has one. The
    default's init is also the encoder's and tied-topk-im-3.0's (the same Encoder)."""
    src = ImageSource(x_train.shape[1], args["n_components"], args["topk_k"])
    model = untrained_model(VARIANTS[name], src, options(len(x_train), args), seed)
    if VARIANTS[name].tied_recon:
        model.b_dec = nn.Parameter(torch.zeros(x_train.shape[1]))  # (D,)
    return model


def train(name: str, x_train: Tensor, seed: int, args: dict,
          mean: Tensor | None = None) -> tuple[nn.Module, list[dict]]:  # fmt: skip
    """Train variant `name` on x_train (N, D) for args["epochs"] shuffled epochs; mean (D,)
    or None: the trainer centres every batch on it (`VariantTrainer`'s mean).

    Batches follow `data.batches.batch_slices` (a trailing batch of one joins the one before);
    the order of epoch e is torch.randperm(N) under seed * EPOCH_STRIDE + e. Returns (model,
    the trainer's history: one record per epoch with the mean loss terms).
    """
    src = ImageSource(x_train.shape[1], args["n_components"], args["topk_k"])
    opts = options(len(x_train), args)
    tr = VariantTrainer(VARIANTS[name], src, opts, seed, mean)
    for epoch in range(args["epochs"]):
        gen = torch.Generator().manual_seed(seed * EPOCH_STRIDE + epoch)
        order = torch.randperm(len(x_train), generator=gen)  # (N,)
        for lo, hi in batch_slices(len(x_train), args["batch_size"]):
            tr.step(x_train[order[lo:hi]])  # (B, D)
    return tr.model, tr.history


@torch.no_grad()
def scores(model: nn.Module, x: Tensor, k: int, match: str | None = None,
           mean: Tensor | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Normality scores of x (N, D): lse = logsumexp(-a) with a = ReLU(W x + b) (N, K); recon
    = -mean_d (x - TopK_k(a) W - b_dec)^2 when the model has b_dec. Also the per-sample count
    of zero energies (the floor that drove the encoder below chance in `ood`). match (a
    `Variant.match` form): the energies are E = `variants.match_energy(W x + b, match)` instead,
    zero where a unit is active, the energies such a variant is trained on. mean (D,) or None:
    x - mean is scored (a centred variant; recon is then in centred units). A TopK SAE (it has
    W_dec): a = its pre-activations ReLU(W_enc (x - b_dec) + b_enc) (N, K), all K units before
    TopK, and recon = -mean_d (x - x_hat)^2 with its own decoder, x_hat = TopK_k(a) W_dec^T +
    b_dec (`TopKSAE.decode(encode(x))`, k = the model's own k)."""
    x = x if mean is None else x - mean  # (N, D)
    sae = hasattr(model, "W_dec")
    if sae:
        a = model.pre_activations(x)  # (N, K), before TopK
    else:
        a = match_energy(model.linear(x), match) if match else model.encode(x)  # (N, K)
    out = {"lse": torch.logsumexp(-a, dim=1).double().numpy(),
           "zeros": (a == 0).sum(dim=1).double().numpy()}  # fmt: skip
    if sae:
        x_hat = model.decode(model.encode(x))  # (N, D)
        out["recon"] = -(x - x_hat).square().mean(dim=1).double().numpy()
    elif hasattr(model, "b_dec"):
        x_hat = topk_codes(a, k) @ model.W + model.b_dec  # (N, K) @ (K, D) -> (N, D)
        out["recon"] = -(x - x_hat).square().mean(dim=1).double().numpy()
    return out


def evaluate(model: nn.Module, x_in: Tensor, x_out: Tensor, k: int, match: str | None = None,
             mean: Tensor | None = None) -> dict:  # fmt: skip
    """AUROC / FPR@95%TPR of each score (MNIST test positive), plus diagnostics."""
    s_in, s_out = scores(model, x_in, k, match, mean), scores(model, x_out, k, match, mean)
    rec = {name: evaluate_scores(s_in[name], s_out[name]) for name in s_in if name != "zeros"}
    rec["zero_energies_in"] = float(s_in["zeros"].mean())
    rec["zero_energies_out"] = float(s_out["zeros"].mean())
    if "recon" in s_in:
        rec["mse_in"], rec["mse_out"] = float(-s_in["recon"].mean()), float(-s_out["recon"].mean())
    return rec


def summarise(per_seed: list[dict]) -> dict:
    """mean, sd (ddof 1), min, max over seeds of every score's AUROC and FPR@95%TPR."""
    out = {}
    for score in ("lse", "recon"):
        if score not in per_seed[0]:
            continue
        for key in ("auroc", "fpr95"):
            v = np.array([r[score][key] for r in per_seed])
            out[f"{score}_{key}"] = {"mean": float(v.mean()),
                                     "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                                     "min": float(v.min()), "max": float(v.max())}  # fmt: skip
    return out


def pixel_controls(x_in: Tensor, x_out: Tensor) -> dict:
    """Scores with no model (added after the first full run, to read the untrained control):
    -||x||_2 and -||x||_1 (the total ink of an image in [0, 1] pixels)."""
    return {
        "neg_l2_norm": evaluate_scores(-x_in.norm(dim=1).numpy(), -x_out.norm(dim=1).numpy()),
        "neg_l1_norm": evaluate_scores(-x_in.abs().sum(1).numpy(), -x_out.abs().sum(1).numpy()),
    }


def run(x_train: Tensor, x_in: Tensor, x_out: Tensor, seeds: list[int], args: dict,
        log=print, models: tuple[str, ...] = MODELS) -> dict:  # fmt: skip
    """Every variant of `models` and the untrained control ("untrained": the tied-topk init,
    which the encoder and tied-topk-im share, and topk-pretrained's pre-training starts from;
    "untrained NAME" for a variant whose init or energies differ (`own_init`: a match-energy,
    softplus or unit-rows variant, or an SAE that trains from its own init, topk-half);
    "untrained centred": the encoder's init scored on x - mean, when a variant is centred),
    for every seed: {name: {per_seed, summary, recon_label}} (recon_label: `recon_label` of
    the scored model, None without a recon score). Centred variants use mean = x_train.mean(0) (D,) in training and scoring.
    ValueError when a name of `models` is not `supported`."""
    for name in models:
        if (why := supported(name)) is not None:
            raise ValueError(why)
    mu = x_train.mean(dim=0)  # (D,), used by centred variants only
    controls = {"untrained": ("tied-topk", None)}
    controls.update({f"untrained {n}": (n, None) for n in models if own_init(n)})
    if any(VARIANTS[n].centre for n in models):
        controls["untrained centred"] = ("encoder", mu)
    results = {name: {"per_seed": [], "recon_label": None} for name in (*models, *controls)}
    for seed in seeds:
        for ctrl, (base, mean) in controls.items():
            init = untrained(x_train, seed, args, base)
            rec = {"seed": seed, **evaluate(init, x_in, x_out, args["topk_k"],
                                            VARIANTS[base].match, mean)}  # fmt: skip
            results[ctrl]["per_seed"].append(rec)
            results[ctrl]["recon_label"] = recon_label(init) if "recon" in rec else None
            log(f"seed {seed} {ctrl}: {_brief(rec)}")
        for name in models:
            tic = time.perf_counter()
            mean = mu if VARIANTS[name].centre else None
            model, history = train(name, x_train, seed, args, mean)
            rec = {"seed": seed, **evaluate(model, x_in, x_out, args["topk_k"],
                                            VARIANTS[name].match, mean),
                   "last_epoch": history[-1] if history else None,
                   "seconds": time.perf_counter() - tic}  # fmt: skip
            results[name]["per_seed"].append(rec)
            results[name]["recon_label"] = recon_label(model) if "recon" in rec else None
            log(f"seed {seed} {name}: {_brief(rec)} ({rec['seconds']:.0f} s)")
    for r in results.values():
        r["summary"] = summarise(r["per_seed"])
    return results


def own_init(name: str) -> bool:
    """Whether variant `name` trains from a model other than the encoder's init ("untrained"),
    or scores other energies on it: a match-energy variant (its own init); softplus energies
    (the same W, b, scored as softplus(W x + b)); unit-norm rows (the init's rows rescaled to
    norm 1); or a non-encoder family not started from a pre-trained encoder (its own model:
    for the TopK SAE the same encoder layer as the encoder's init, so the same LSE energies,
    plus a decoder W^T with unit columns, b_dec = 0, whose reconstruction the control adds).
    Such a variant gets its own control, "untrained NAME"."""
    v = VARIANTS[name]
    pretrained = v.pretrain_fraction > 0 and v.pretrain == "encoder"
    energies = v.activation != "relu" or v.unit_norm_rows
    return bool(v.match) or energies or (v.family != "encoder" and not pretrained)


SCORED_FAMILIES = ("encoder", "topk_sae")
"""Families whose scores `scores` defines: the decoder-free encoder (energies a = ReLU(W x +
b), or a match energy; tied recon through its rows when it has b_dec) and the TopK SAE (its
pre-activations before TopK; recon through its own decoder, per-sample TopK_k)."""


def supported(name: str) -> str | None:
    """None when variant `name` can be trained and scored here, else the one-line reason with
    the fix. Refused: an unknown name; a family outside SCORED_FAMILIES (an L1 SAE's codes are
    not energies and it has no TopK; JumpReLU / BatchTopK / the hybrid select latents by
    other rules than the per-sample TopK_k of `scores`); a variant that reads the synthetic
    model (init_at_truth, init_at_filters: its true features; gaussian: its samples), which
    this image source has not."""
    fix = "choose an encoder-family variant or a TopK SAE (e.g. encoder, tied-topk, topk-half)"
    if name not in VARIANTS:
        return f"unknown variant {name!r} (eval.options.VARIANTS): {fix}"
    v = VARIANTS[name]
    if v.family not in SCORED_FAMILIES:
        return (f"variant {name!r} is a {v.family} model, which this study does not score "
                f"(no LSE energies or TopK recon defined for it): {fix}")  # fmt: skip
    if v.init_at_truth is not None or v.init_at_filters is not None or v.gaussian:
        return f"variant {name!r} needs the synthetic model's features or samples: {fix}"
    return None


def model_name(name: str) -> str:
    """argparse type of --models: `name` when `supported`, else ArgumentTypeError (one line)."""
    if (why := supported(name)) is not None:
        raise argparse.ArgumentTypeError(why)
    return name


def recon_label(model: nn.Module) -> str:
    """The table's label of the recon score of `model`, read from the model itself: an SAE
    with a decoder of its own (W_dec; here a TopK SAE, the one such family `supported`) or the
    encoder's tied TopK reconstruction through its rows (b_dec only)."""
    if hasattr(model, "W_dec"):
        return "-TopK SAE reconstruction MSE (own decoder)"
    return "-tied TopK reconstruction MSE"


def _brief(rec: dict) -> str:
    parts = [f"{s} AUROC {rec[s]['auroc']:.3f} FPR95 {rec[s]['fpr95']:.3f}"
             for s in ("lse", "recon") if s in rec]  # fmt: skip
    return (
        "; ".join(parts)
        + f"; zeros in/out {rec['zero_energies_in']:.1f}/{rec['zero_energies_out']:.1f}"
    )


def markdown_table(results: dict) -> str:
    """One row per (model, score): AUROC and FPR@95%TPR, mean +- sd [min, max] over seeds."""
    lines = ["| model | score (higher = more MNIST-like) | AUROC ↑ | FPR@95%TPR ↓ | seeds |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name, r in results.items():
        labels = {"lse": "LSE energy logsumexp(-a)", "recon": r["recon_label"]}
        for score, label in labels.items():
            if f"{score}_auroc" not in r["summary"]:
                continue
            cells = []
            for key in ("auroc", "fpr95"):
                s = r["summary"][f"{score}_{key}"]
                cells.append(f"{s['mean']:.3f} ± {s['sd']:.3f} [{s['min']:.3f}, {s['max']:.3f}]")
            lines.append(f"| {name} | {label} | {cells[0]} | {cells[1]} | {len(r['per_seed'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train-subset", type=int, default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--models", nargs="+", default=list(MODELS), type=model_name,
                   metavar="VARIANT",
                   help="Variants of eval.options.VARIANTS of the encoder family or TopK "
                        "SAEs (e.g. topk-pretrained, topk-half); others are refused "
                        "(`supported`)")  # fmt: skip
    a = p.parse_args(argv)
    out = a.out_dir / "variants.json"
    if out.exists() and not a.overwrite:
        p.error(f"{out} exists: pass --overwrite or choose another OUT_DIR")
    torch.set_num_threads(1)
    from implicit_em.data import load_fashion_mnist, load_mnist

    x_train, _ = load_mnist("train")
    x_in, _ = load_mnist("test")
    x_out, _ = load_fashion_mnist("test")
    if a.train_subset:
        x_train = x_train[: a.train_subset]
    # `implicit-em ood`'s defaults (experiments/ood.py run_ood, options.OOD_*).
    args = {"n_components": 64, "topk_k": 16, "batch_size": 128, "lr": 1e-3, "epochs": a.epochs}
    tic = time.perf_counter()
    results = run(x_train, x_in, x_out, a.seeds, args, models=tuple(a.models))
    a.out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"protocol": {**args, "seeds": a.seeds, "models": a.models, "n_train": len(x_train),
                        "n_in": len(x_in), "n_out": len(x_out), "in": "MNIST test",
                        "out": "Fashion-MNIST test",
                        "centring": "centred variants: x - the training images' mean"},
           "command": "python " + " ".join(sys.argv), "seconds": time.perf_counter() - tic,
           "machine": f"CPU, 1 torch thread, torch {torch.__version__}",
           "models": results, "pixel_controls": pixel_controls(x_in, x_out)}  # fmt: skip
    out.write_text(json.dumps(doc, indent=2) + "\n")
    (a.out_dir / "variants_table.md").write_text(markdown_table(results))
    print(markdown_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
