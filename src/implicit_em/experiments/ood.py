"""Beyond the paper: the LSE energy as an anomaly score, MNIST (in) vs Fashion-MNIST (out).

The paper's future directions (Sec. 5.7) note that a high LSE loss means no component
explains the input, so the decoder-free model is "an anomaly detector for free". This study
tests that: train on MNIST train, score MNIST test (in-distribution) and Fashion-MNIST test
(out-of-distribution), and compare with reconstruction error of two SAEs, a diagonal
Gaussian mixture and the distance to the nearest k-means centroid.

Convention: every method yields a *normality* score, higher = more in-distribution, and
in-distribution is the positive class. AUROC is then the probability that a random MNIST
test image scores above a random Fashion-MNIST one (0.5 = chance, below 0.5 = the score
prefers the wrong set), and FPR@95%TPR is the fraction of Fashion-MNIST images accepted at
the threshold that keeps 95 % of MNIST (Hendrycks & Gimpel, 2017): lower is better.

Legend: N samples, D = 784 pixels, K components. x (N, D), a (N, K) energies.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from threadpoolctl import threadpool_limits

from implicit_em.estimator import DecoderFreeSAE
from implicit_em.experiments.options import OOD_EPOCHS, OOD_OUT, OOD_SEEDS, OodOptions

RESULT_FILES = {"json": "results.json", "table": "table.md", "roc": "roc.png"}
DEFAULT_OUT, DEFAULT_EPOCHS, DEFAULT_SEEDS = OOD_OUT, OOD_EPOCHS, OOD_SEEDS
TARGET_TPR = 0.95


# ------------------------------------------------------------------------------ metrics


def _check_scores(y_true, score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(
            f"y_true has {y.size} entries but score has {s.size}: pass matching arrays"
        )
    if set(np.unique(y)) != {0, 1}:
        raise ValueError("y_true must contain both classes, 1 (in-distribution) and 0 (OOD)")
    if not np.isfinite(s).all():
        raise ValueError("score contains NaN or Inf: check the model that produced it")
    return y, s


def auroc(y_true, score) -> float:
    """Area under the ROC curve, y_true 1 = in-distribution, score higher = more normal."""
    y, s = _check_scores(y_true, score)
    return float(roc_auc_score(y, s))


def fpr_at_tpr(y_true, score, tpr: float = TARGET_TPR) -> float:
    """False-positive rate at the first threshold whose true-positive rate reaches `tpr`.

    y_true: 1 = in-distribution (positive), 0 = OOD; score: higher = more normal. Returns the
    fraction of OOD samples scoring at or above the highest threshold that keeps at least
    `tpr` of the in-distribution samples. Ties count as accepted.
    """
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    y, s = _check_scores(y_true, score)
    fprs, tprs, _ = roc_curve(y, s, drop_intermediate=False)
    return float(fprs[np.searchsorted(tprs, tpr, side="left")])


def evaluate_scores(score_in, score_out) -> dict:
    """AUROC and FPR@95%TPR from normality scores of in-distribution and OOD samples."""
    s_in, s_out = np.asarray(score_in).ravel(), np.asarray(score_out).ravel()
    y = np.r_[np.ones(s_in.size, dtype=np.int64), np.zeros(s_out.size, dtype=np.int64)]
    s = np.r_[s_in, s_out]
    return {"auroc": auroc(y, s), "fpr95": fpr_at_tpr(y, s)}


# ------------------------------------------------------------------------------ methods


@torch.no_grad()
def reconstruction_error(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """Per-sample mean squared reconstruction error of an SAE. x (N, D) -> (N,)."""
    model.eval()
    x_hat = model.decode(model.encode(x))  # (N, D)
    return (x_hat - x).square().mean(dim=1).double().numpy()


def _train_sae(kind: str, x_train: torch.Tensor, seed: int, args: dict) -> torch.nn.Module:
    """A StandardSAE (L1 0.01) or TopKSAE trained by the library's `train` (paper settings)."""
    from implicit_em.config import LossConfig, ModelConfig, RunConfig, TrainConfig
    from implicit_em.families import family
    from implicit_em.train.loop import train

    D, K = x_train.shape[1], args["n_components"]
    cfg = RunConfig(
        model=ModelConfig(type=kind, input_dim=D, hidden_dim=K, k=args["topk_k"]),
        loss=LossConfig(l1_weight=0.01),
        training=TrainConfig(
            epochs=args["epochs"], batch_size=args["batch_size"], lr=args["lr"], seed=seed
        ),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = family(kind).build(cfg.model)
    train(model, x_train, cfg, x_eval=x_train[:1024], progress=False)
    return model


def _seeded_neural(x_train, x_in, x_out, seeds, args, log) -> tuple[list[dict], dict]:
    """Decoder-free LSE energy, StandardSAE and TopKSAE errors for each seed.

    Returns the method records and the scores of the first seed (for the ROC plot).
    """
    methods = {
        "decoder_free_lse": {
            "label": f"decoder-free, LSE energy logsumexp(-a) (K={args['n_components']})",
            "per_seed": [],
        },
        "standard_sae_recon": {
            "label": "StandardSAE (L1 0.01), -reconstruction MSE",
            "per_seed": [],
        },
        "topk_sae_recon": {
            "label": f"TopKSAE (k={args['topk_k']}), -reconstruction MSE",
            "per_seed": [],
        },
    }
    first: dict = {}
    X_in, X_out = x_in.numpy(), x_out.numpy()
    for seed in seeds:
        tic = time.perf_counter()
        sae = DecoderFreeSAE(
            n_components=args["n_components"],
            lambda_var=1.0,
            lambda_tc=1.0,
            lr=args["lr"],
            batch_size=args["batch_size"],
            max_epochs=args["epochs"],
            device="cpu",
            random_state=seed,
        ).fit(x_train)
        s_in, s_out = sae.score_samples(X_in), sae.score_samples(X_out)
        a_in, a_out = sae.transform(X_in), sae.transform(X_out)
        rec = {
            "seed": seed,
            **evaluate_scores(s_in, s_out),
            "final_loss": sae.history_[-1]["loss"],
            # ReLU energies floor at 0, the best possible match, and each component at the
            # floor adds exp(0) = 1 inside the logsumexp: score >= log(#zero energies).
            "zero_energies_in": float((a_in == 0).sum(axis=1).mean()),
            "zero_energies_out": float((a_out == 0).sum(axis=1).mean()),
            "min_energy_zero_in": float((a_in.min(axis=1) == 0).mean()),
            "min_energy_zero_out": float((a_out.min(axis=1) == 0).mean()),
            "seconds": time.perf_counter() - tic,
        }
        methods["decoder_free_lse"]["per_seed"].append(rec)
        first.setdefault("decoder_free_lse", (s_in, s_out))
        log(f"seed {seed} decoder-free: AUROC {rec['auroc']:.4f} ({rec['seconds']:.0f} s)")
        for kind in ("standard_sae", "topk_sae"):
            tic = time.perf_counter()
            model = _train_sae(kind, x_train, seed, args)
            e_in, e_out = reconstruction_error(model, x_in), reconstruction_error(model, x_out)
            rec = {
                "seed": seed,
                **evaluate_scores(-e_in, -e_out),
                "mse_in": float(e_in.mean()),
                "mse_out": float(e_out.mean()),
                "seconds": time.perf_counter() - tic,
            }
            methods[f"{kind}_recon"]["per_seed"].append(rec)
            first.setdefault(f"{kind}_recon", (-e_in, -e_out))
            log(f"seed {seed} {kind}: AUROC {rec['auroc']:.4f} ({rec['seconds']:.0f} s)")
    return [{"name": k, **v} for k, v in methods.items()], first


def _classical(x_train, x_in, x_out, args, log) -> tuple[list[dict], dict]:
    """GaussianMixture (diag) log-likelihood and nearest k-means centroid distance, seed 0."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    X, X_in, X_out = x_train.numpy(), x_in.numpy(), x_out.numpy()
    K, records, first = args["n_components"], [], {}

    tic = time.perf_counter()
    if args["gmm_space"] == "pca50":
        n_pca = min(50, X.shape[1])
        pca = PCA(n_components=n_pca, random_state=0).fit(X)
        Z, Z_in, Z_out = pca.transform(X), pca.transform(X_in), pca.transform(X_out)
        space = f"PCA-{n_pca} projection (fitted on the training set)"
    else:
        Z, Z_in, Z_out = X, X_in, X_out
        space = "raw pixels"
    gmm = GaussianMixture(
        n_components=K, covariance_type="diag", max_iter=args["gmm_max_iter"], random_state=0
    ).fit(Z)
    s_in, s_out = gmm.score_samples(Z_in), gmm.score_samples(Z_out)
    records.append(
        {
            "name": "gmm_loglik",
            "label": f"GaussianMixture (diag, {K} comp., {args['gmm_space']}), log-likelihood",
            "space": space,
            "per_seed": [
                {
                    "seed": 0,
                    **evaluate_scores(s_in, s_out),
                    "converged": bool(gmm.converged_),
                    "n_iter": int(gmm.n_iter_),
                    "seconds": time.perf_counter() - tic,
                }
            ],
        }
    )
    first["gmm_loglik"] = (s_in, s_out)
    log(f"GMM: AUROC {records[-1]['per_seed'][0]['auroc']:.4f}")

    tic = time.perf_counter()
    km = KMeans(n_clusters=K, n_init=1, max_iter=args["kmeans_max_iter"], random_state=0).fit(X)
    d_in, d_out = km.transform(X_in).min(axis=1), km.transform(X_out).min(axis=1)  # (N,)
    records.append(
        {
            "name": "kmeans_distance",
            "label": f"k-means ({K} centroids, pixels), -distance to nearest centroid",
            "space": "raw pixels",
            "per_seed": [
                {
                    "seed": 0,
                    **evaluate_scores(-d_in, -d_out),
                    "n_iter": int(km.n_iter_),
                    "seconds": time.perf_counter() - tic,
                }
            ],
        }
    )
    first["kmeans_distance"] = (-d_in, -d_out)
    log(f"k-means: AUROC {records[-1]['per_seed'][0]['auroc']:.4f}")
    return records, first


def _summarise(method: dict) -> dict:
    for key in ("auroc", "fpr95"):
        vals = np.array([r[key] for r in method["per_seed"]])
        method[f"{key}_mean"] = float(vals.mean())
        method[f"{key}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    method["n_seeds"] = len(method["per_seed"])
    return method


# ------------------------------------------------------------------------------ outputs


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def _fmt(method: dict, key: str) -> str:
    mean, std = method[f"{key}_mean"], method[f"{key}_std"]
    return f"{mean:.3f} ± {std:.3f}" if method["n_seeds"] > 1 else f"{mean:.3f}"


def markdown_table(results: dict) -> str:
    """The results as a markdown table: one row per method, mean ± sd over seeds."""
    in_name = results["protocol"]["in_name"]
    lines = [
        f"| method (score: higher = more {in_name}-like) | AUROC ↑ | FPR@95%TPR ↓ | seeds |",
        "|---|---|---|---|",
    ]
    for m in results["methods"]:
        lines.append(f"| {m['label']} | {_fmt(m, 'auroc')} | {_fmt(m, 'fpr95')} | {m['n_seeds']} |")
    return "\n".join(lines) + "\n"


def _plot_roc(first: dict, results: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - matplotlib is a dependency
        raise ImportError("the ROC plot needs matplotlib: pip install matplotlib") from err
    labels = {m["name"]: m["label"] for m in results["methods"]}
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    for name, (s_in, s_out) in first.items():
        y = np.r_[np.ones(len(s_in)), np.zeros(len(s_out))]
        fpr, tpr, _ = roc_curve(y, np.r_[s_in, s_out])
        ax.plot(fpr, tpr, label=f"{labels[name]} ({roc_auc_score(y, np.r_[s_in, s_out]):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.axhline(TARGET_TPR, color="grey", linestyle="--", linewidth=0.8)
    p = results["protocol"]
    ax.set(
        xlabel=f"FPR: {p['ood_name']} accepted",
        ylabel=f"TPR: {p['in_name']} accepted",
        title=f"{p['in_name']} vs {p['ood_name']}, {_epochs(p['epochs'])}, seed {p['seeds'][0]}",
    )
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _reading(results: dict, best: dict, lse: dict) -> str:
    """The interpretation paragraph; every claim in it is conditioned on the numbers."""
    p = results["protocol"]
    zero_in, zero_out, min0_in, min0_out = (
        float(np.mean([r[k] for r in lse["per_seed"]]))
        for k in (
            "zero_energies_in",
            "zero_energies_out",
            "min_energy_zero_in",
            "min_energy_zero_out",
        )
    )
    text = (
        f"**Reading.** Best detector here: {best['label']} (AUROC {best['auroc_mean']:.3f}). "
        f"The decoder-free LSE energy reaches AUROC {lse['auroc_mean']:.3f}"
    )
    if lse["auroc_mean"] < 0.5:
        text += (
            f", below chance: it scores {p['ood_name']} images as *better* explained than "
            f"{p['in_name']} test images"
        )
    K = p["n_components"]
    text += (
        f". Why: ReLU energies floor at a = 0, the best possible match, and every component "
        f"at the floor adds exp(0) = 1 inside the logsumexp, so the score is at least "
        f"log(number of zero energies). On average {zero_in:.1f} of {K} energies are exactly "
        f"zero for {p['in_name']} test images and {zero_out:.1f} of {K} for {p['ood_name']} "
        f"test images; the lowest energy is zero for {100 * min0_in:.1f} % and "
        f"{100 * min0_out:.1f} % of them (means over seeds)."
    )
    if zero_out > zero_in:
        text += (
            f" {p['ood_name']} images leave more components silent, and silence reads as a "
            "perfect match: the score counts the components that do *not* respond rather than "
            "measuring how well the best one explains the input. An energy that can rise for "
            "unexplained inputs (no floor at the best match) is the natural next test."
        )
    return text


def write_report_section(results: dict) -> str:
    """A markdown section for the reproduction report, labelled as beyond the paper."""
    p = results["protocol"]
    lse = next(m for m in results["methods"] if m["name"] == "decoder_free_lse")
    best = max(results["methods"], key=lambda m: m["auroc_mean"])
    gmm = next((m for m in results["methods"] if m["name"] == "gmm_loglik"), None)
    lines = [
        f"## Beyond the paper: the LSE energy as an anomaly score ({p['in_name']} vs {p['ood_name']})",
        "",
        "*Not an experiment of the paper.* Its future directions (Sec. 5.7) suggest that a high "
        "LSE loss, no component explaining the input, makes the decoder-free model an anomaly "
        "detector for free. We test that on real out-of-distribution data.",
        "",
        f"**Protocol.** Train on {p['in_name']} train ({p['n_train']:,} images); score "
        f"{p['in_name']} test ({p['n_in']:,}, in-distribution, positive class) and "
        f"{p['ood_name']} test ({p['n_out']:,}, out-of-distribution). Neural models: "
        f"K={p['n_components']}, batch {p['batch_size']}, Adam lr {p['lr']}, "
        f"**{_epochs(p['epochs'])}** (the paper trains 100; CPU budget), seeds {p['seeds']}. "
        "Decoder-free: lambda_var = lambda_tc = 1, LSE summed over the batch, score "
        "logsumexp(-a) = -L_LSE(x). SAEs: score = -per-sample reconstruction MSE. "
        f"GaussianMixture: diagonal, {p['n_components']} components, on the "
        f"{gmm['space'] if gmm else p['gmm_space']}. k-means: {p['n_components']} centroids "
        "on raw pixels. AUROC: 0.5 is chance, below 0.5 the score ranks the wrong set higher. "
        "FPR@95%TPR: fraction of OOD images accepted at the threshold keeping 95 % of "
        "in-distribution images.",
        "",
        markdown_table(results),
        # Relative to the reproduction report, which sits beside the study's ood/ folder.
        f"![ROC curves, first seed](ood/{Path(results['files']['roc']).name})",
        "",
        _reading(results, best, lse),
        "",
        f"Command: `{results['command']}` ({results['seconds'] / 60:.1f} min on "
        f"{results['machine']}).",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ driver


def _load_real(train_subset: int | None, data_root: str | None):
    from implicit_em.data import load_fashion_mnist, load_mnist

    x_train, _ = load_mnist("train", data_root)
    x_in, _ = load_mnist("test", data_root)
    x_out, _ = load_fashion_mnist("test", data_root)
    if train_subset is not None:
        x_train = x_train[:train_subset]
    return x_train, x_in, x_out, "MNIST", "Fashion-MNIST"


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    existing = [out_dir / f for f in RESULT_FILES.values() if (out_dir / f).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds results ({', '.join(p.name for p in existing)}): "
            "pass --overwrite (overwrite=True) to replace them, or choose another --out"
        )


def run_ood(
    out_dir: str | Path = DEFAULT_OUT,
    epochs: int = DEFAULT_EPOCHS,
    seeds: tuple[int, ...] | list[int] = DEFAULT_SEEDS,
    n_components: int = 64,
    topk_k: int = 16,
    batch_size: int = 128,
    lr: float = 1e-3,
    gmm_space: str = "pca50",
    gmm_max_iter: int = 100,
    kmeans_max_iter: int = 100,
    train_subset: int | None = None,
    data_root: str | None = None,
    data: tuple | None = None,
    overwrite: bool = False,
    threads: int = 1,
    command: str | None = None,
    verbose: bool = True,
) -> dict:
    """Run the study; write results.json, table.md and roc.png into out_dir; return results.

    data: optional (x_train, x_in, x_out, in_name, ood_name) with x float32 tensors (N, D),
    replacing MNIST / Fashion-MNIST (tests use it). Raises FileExistsError when out_dir already
    holds results and overwrite is False, before any training.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    if gmm_space not in ("pca50", "pixels"):
        raise ValueError(f"gmm_space must be 'pca50' or 'pixels', got {gmm_space!r}")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, overwrite)

    def log(msg: str) -> None:
        if verbose:
            print(f"[ood] {msg}", flush=True)

    start = time.perf_counter()
    x_train, x_in, x_out, in_name, ood_name = data or _load_real(train_subset, data_root)
    args = {
        "n_components": n_components,
        "topk_k": topk_k,
        "batch_size": batch_size,
        "lr": lr,
        "epochs": epochs,
        "gmm_space": gmm_space,
        "gmm_max_iter": gmm_max_iter,
        "kmeans_max_iter": kmeans_max_iter,
    }
    log(
        f"train {in_name} {tuple(x_train.shape)}, in {tuple(x_in.shape)}, out {ood_name} "
        f"{tuple(x_out.shape)}; {epochs} epochs, seeds {list(seeds)}, {threads} thread(s)"
    )
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            neural, first = _seeded_neural(x_train, x_in, x_out, list(seeds), args, log)
            classical, first_c = _classical(x_train, x_in, x_out, args, log)
    finally:
        torch.set_num_threads(previous_threads)
    first.update(first_c)

    results = {
        "title": f"LSE energy as an anomaly score: {in_name} vs {ood_name} (beyond the paper)",
        "protocol": {
            "in_name": in_name,
            "ood_name": ood_name,
            "n_train": int(len(x_train)),
            "n_in": int(len(x_in)),
            "n_out": int(len(x_out)),
            "seeds": list(seeds),
            "score_convention": "higher = more in-distribution; in-distribution is positive",
            "fpr_at_tpr": TARGET_TPR,
            **args,
        },
        "methods": [_summarise(m) for m in neural + classical],
        "files": {k: str(out_dir / v) for k, v in RESULT_FILES.items()},
        "command": command or "run_ood(...)",
        "machine": f"CPU, {threads} torch thread(s), torch {torch.__version__}",
        "seconds": time.perf_counter() - start,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_out_dir(out_dir, overwrite)  # again: another run may have written meanwhile
    (out_dir / RESULT_FILES["json"]).write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / RESULT_FILES["table"]).write_text(markdown_table(results))
    _plot_roc(first, results, out_dir / RESULT_FILES["roc"])
    log(f"wrote {out_dir} in {results['seconds']:.0f} s\n{markdown_table(results)}")
    return results


# ------------------------------------------------------------------------------ CLI


def run_command(opts: OodOptions) -> int:
    """`implicit-em ood`: the study with the options given."""
    run_ood(
        out_dir=opts.out,
        epochs=opts.epochs,
        seeds=tuple(opts.seeds),
        n_components=opts.n_components,
        topk_k=opts.topk_k,
        gmm_space=opts.gmm_space,
        train_subset=opts.train_subset,
        data_root=opts.data_dir,
        overwrite=opts.overwrite,
        threads=opts.threads,
        command="implicit-em " + " ".join(sys.argv[1:]),
    )
    return 0
