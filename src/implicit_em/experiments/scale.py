"""`implicit-em scale`: decoder-free models vs TopK and L1 SAEs at K in the thousands, on a GPU.

    implicit-em scale --model path/to/SmolLM2-135M-Instruct.Q4_1.gguf --out docs/scale

Steps, each skipped when its result already exists (so an interrupted study resumes):

1. Harvest SmolLM2 layer-15 `resid_pre` activations of the corpus (--corpus, default the
   union sotu,moby,spam,pydoc,perldoc: about 9.7 M tokens) with the LM on the GPU, once per
   window offset (default: one harvest; offset o drops the first o words of every document,
   so that a small corpus can be seen in other 127-token windows). Documents are split into
   train / held-out by name, identically for every offset.
2. Train, on the concatenated train splits (inputs scaled to mean squared norm D, massive
   activations above 10x the median norm dropped), one pass at batch B with Adam:
   Encoder (LSE + var + tc, lambdas K-normalized, tc sketched with --tc-probes probes; an
   exact-penalty encoder too at each K in --exact-check), TopKSAE (k in --topk), StandardSAE
   (l1_weight = c * K / D for c in --l1), at each K in --hidden-dims.
3. Evaluate each on held-out documents of offset 0 (`implicit_em.lm_eval.evaluate_model`):
   FVU variants, L0, dead fraction, entropy, and CE / KL with the reconstruction spliced in.
4. Write results.json, results.csv, frontier.png and table.md into --out.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from implicit_em import runs, tracking
from implicit_em.config import LossConfig, ModelConfig, RunConfig, TrainConfig
from implicit_em.data.lm.activations import (
    HarvestConfig,
    Normalization,
    harvest,
    load_manifest,
    norm_outliers,
    read_split,
)
from implicit_em.experiments.options import SCALE_CORPUS as CORPUS
from implicit_em.experiments.options import ScaleOptions


def shifted_docs(offset: int, corpus: str = CORPUS) -> list:
    """The corpus's documents without their first `offset` words (names unchanged: same
    split)."""
    from implicit_em.data.lm.corpus import Document, load_corpus

    docs = load_corpus(corpus)
    return docs if not offset else [Document(d.name, " ".join(d.text.split(" ")[offset:]))
                                    for d in docs]  # fmt: skip


@dataclass
class TrainingData:
    """The scale study's training inputs (`prepare_training_data`). D: the LM's width."""

    norm: Normalization
    """The first harvest's scaling (inputs to mean squared norm D)."""
    median: float
    """Median token norm of the train split, in model units (of its first 200,000 rows)."""
    x_train: Tensor
    """(N, D) float16 on the device: the train tokens kept, scaled."""
    x_fit: Tensor
    """(F, D) float32 on the device: a seeded random subset of them (post-hoc decoders)."""
    dropped: int
    """Train tokens dropped as massive activations."""
    max_norm_ratio: float
    """Massive activation: norm above this times `median`."""


def prepare_training_data(
    dirs: list[Path], fit_tokens: int, device: torch.device | str, max_norm_ratio: float = 10.0
) -> TrainingData:
    """Read the train splits of the harvests in dirs, drop massive activations (norm above
    max_norm_ratio times the median, `norm_outliers`), scale by the first harvest's
    `Normalization`; the one preparation of `implicit-em scale` and scripts/scale_dashboards.py."""
    norm = Normalization.from_manifest(dirs[0])
    x = torch.cat([read_split(h, "train")[0] for h in dirs])  # (N, D) model units
    median = float(x[:200_000].norm(dim=1).median())
    keep = ~norm_outliers(x, max_norm_ratio, median)
    x = norm.apply(x[keep])
    gen = torch.Generator().manual_seed(0)
    x_fit = x[torch.randperm(x.shape[0], generator=gen)[:fit_tokens]].to(device)
    return TrainingData(norm, median, x.to(device, torch.float16), x_fit, int((~keep).sum()),
                        max_norm_ratio)  # fmt: skip


def prepare_heldout(
    hdir: Path, data: TrainingData, device: torch.device | str, max_tokens: int | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """The held-out split of hdir (up to max_tokens, whole contexts), scaled as the train
    data: (x_held (M, D) on the device, typical (M,) bool: not a massive activation by the
    train median and ratio, tokens (C, T))."""
    raw, tokens = read_split(hdir, "heldout", max_tokens=max_tokens)  # (M, D) model units
    typical = ~norm_outliers(raw, data.max_norm_ratio, data.median)
    return data.norm.apply(raw).to(device), typical, tokens


def run_specs(
    hidden_dims: list[int],
    topk: list[int],
    l1: list[float],
    d: int,
    tc_probes: int | None = None,
    exact_check: tuple[int, ...] = (),
    batchtopk: tuple[int, ...] = (),
    jumprelu: tuple[float, ...] = (),
    centre: bool = False,
) -> list[dict]:
    """One spec per run. Encoders use the sketched correlation with `tc_probes` probes
    (None: exact); at each K in exact_check an exact-penalty encoder is added. batchtopk:
    k of BatchTopK SAEs; jumprelu: L0 coefficients of JumpReLU SAEs; centre: each SAE spec
    also gets a mean-centred twin (name suffix -centred)."""
    specs = []
    for k_dim in hidden_dims:
        specs.append({"name": f"encoder-K{k_dim}", "type": "encoder", "K": k_dim,
                      "tc_probes": tc_probes})  # fmt: skip
        if tc_probes is not None and k_dim in exact_check:
            specs.append({"name": f"encoder-K{k_dim}-exact", "type": "encoder", "K": k_dim,
                          "tc_probes": None})  # fmt: skip
        specs += [{"name": f"topk-K{k_dim}-k{k}", "type": "topk_sae", "K": k_dim, "k": k}
                  for k in topk]  # fmt: skip
        specs += [{"name": f"l1-K{k_dim}-c{c:g}", "type": "standard_sae", "K": k_dim,
                   "l1_weight": c * k_dim / d, "c": c} for c in l1]  # fmt: skip
        specs += [{"name": f"batchtopk-K{k_dim}-k{k}", "type": "batchtopk_sae", "K": k_dim,
                   "k": k} for k in batchtopk]  # fmt: skip
        specs += [{"name": f"jumprelu-K{k_dim}-l0c{c:g}", "type": "jumprelu_sae", "K": k_dim,
                   "l0_coef": c} for c in jumprelu]  # fmt: skip
    if centre:
        specs += [{**s, "name": f"{s['name']}-centred", "centre": True}
                  for s in specs if s["type"] != "encoder"]  # fmt: skip
    return specs


def spec_config(spec: dict, d: int, args: ScaleOptions) -> RunConfig:
    loss = LossConfig(l1_weight=spec.get("l1_weight", 0.01), dead_steps=250,
                      tc_probes=spec.get("tc_probes"), l0_coef=spec.get("l0_coef", 1.0))  # fmt: skip
    return RunConfig(
        model=ModelConfig(
            type=spec["type"], input_dim=d, hidden_dim=spec["K"], k=spec.get("k", 16),
            centre=spec.get("centre", False),
        ),  # fmt: skip
        loss=loss,
        training=TrainConfig(
            epochs=1, batch_size=args.batch_size, lr=args.lr, seed=1, device="cuda", amp=args.amp
        ),  # fmt: skip
    )


def run_scale(args: ScaleOptions) -> int:
    """`implicit-em scale`: harvest, train, evaluate, write the report files."""
    from implicit_em.data.lm import load_lm
    from implicit_em.lm_eval import evaluate_model
    from implicit_em.train.distributed import train_steps

    t0 = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lm, tok, info = load_lm(args.model)
    lm.to(device)
    dirs = []
    for off in args.offsets:
        hdir = work / "acts" / f"off{off}"
        cfg = HarvestConfig(model=args.model, layer=args.layer, n_tokens=args.harvest_tokens,
                            batch_size=128, shard_contexts=1024)  # fmt: skip
        m = harvest(cfg, hdir, lm, tok, info, docs=shifted_docs(off, args.corpus),
                    progress=False)  # fmt: skip
        print(f"harvest off{off}: {m['splits']['train']['n_tokens']} train, "
              f"{m['splits']['heldout']['n_tokens']} held-out; {m.get('throughput')}", flush=True)  # fmt: skip
        dirs.append(hdir)
    if args.harvest_only:
        return 0

    data = prepare_training_data(dirs, args.fit_tokens, device)  # whole set on the GPU
    norm, x_fit, x_train = data.norm, data.x_fit, data.x_train
    n_train, d = x_train.shape
    x_held, typical, _ = prepare_heldout(dirs[0], data, device, args.eval_tokens)
    _, ce_tokens = read_split(dirs[0], "heldout")
    ce_tokens = ce_tokens[: args.ce_contexts]
    print(f"train tokens {n_train} ({data.dropped} outliers dropped); held-out "
          f"{x_held.shape[0]}; CE contexts {len(ce_tokens)}", flush=True)  # fmt: skip

    results = []
    specs = run_specs(args.hidden_dims, args.topk, args.l1, d, args.tc_probes or None,
                      tuple(args.exact_check), tuple(args.batchtopk), tuple(args.jumprelu),
                      args.centre)  # fmt: skip
    for spec in specs:
        if args.time_limit and time.perf_counter() - t0 > args.time_limit:
            print(f"time limit reached: {spec['name']} and later runs not run", flush=True)
            break
        run_dir = work / "runs" / spec["name"]
        cfg = spec_config(spec, d, args)
        metrics_path = run_dir / "llm_metrics.json"
        if runs.is_complete(run_dir):
            model, _ = runs.load_run(run_dir, str(device))
            train_info = json.loads((run_dir / runs.METRICS).read_text())
        else:
            model = runs.build_model(cfg).to(device)
            steps = int(args.epochs * n_train // args.batch_size)
            tracker = tracking.make_tracker(replace(args, run_name=spec["name"]))
            if tracker is not None:
                tracker.log_config({**cfg.to_dict(), "spec": spec})
            try:
                res = train_steps(model, x_train, cfg.loss, global_batch=args.batch_size,
                                  steps=steps, lr=args.lr, seed=1, amp=args.amp,
                                  log_every=max(1, steps // 10), warmup=5,
                                  compile=args.compile, tracker=tracker)  # fmt: skip
            finally:
                if tracker is not None:
                    tracker.close()
            run_dir = runs.prepare_run_dir(run_dir, resume=False, overwrite=True)
            runs.save_model(model, cfg, run_dir)
            runs.write_history(run_dir, res["history"])
            train_info = {"steps": steps, "tokens": steps * args.batch_size,
                          "tokens_per_s": res["tokens_per_s"], "seconds": res["seconds"],
                          "last": res["history"][-1] if res["history"] else None}  # fmt: skip
            runs.atomic_write_json(run_dir / runs.METRICS, train_info)
        if metrics_path.is_file():
            ev = json.loads(metrics_path.read_text())
        else:
            ev = evaluate_model(model, x_fit, x_held, invert=norm.invert, apply=norm.apply,
                                lm=lm, tokens=ce_tokens, layer=args.layer, batch_size=64,
                                typical=typical.to(device))  # fmt: skip
            metrics_path.write_text(json.dumps(ev, indent=1))
        results.append({"spec": spec, "train": train_info, "eval": ev})
        print(summary(spec, train_info, ev), flush=True)
        del model
        torch.cuda.empty_cache() if device.type == "cuda" else None

    write_report(out, results, args, info, dirs, n_train, time.perf_counter() - t0)
    return 0


def summary(spec: dict, train: dict, ev: dict) -> str:
    c = ev["codes"]
    best = min(ev["fvu"], key=ev["fvu"].get)
    return (f"{spec['name']}: {train['tokens_per_s']:.0f} tok/s, L0 {c['l0']:.1f}, dead "
            f"{c['dead_fraction']:.3f}, FVU[{best}] {ev['fvu'][best]:.3f}, CE rec "
            f"{ev['ce_loss_recovered'][best]:.3f}")  # fmt: skip


def rows(results: list[dict]) -> list[dict]:
    """One row per (run, reconstruction)."""
    out = []
    for r in results:
        s, ev, c = r["spec"], r["eval"], r["eval"]["codes"]
        for recon, fvu in ev["fvu"].items():
            out.append({
                "run": s["name"], "type": s["type"], "K": s["K"], "k": s.get("k", ""),
                "l1_weight": round(s["l1_weight"], 4) if "l1_weight" in s else "",
                "reconstruction": recon,
                "fvu": fvu, "fvu_typical": ev.get("fvu_typical", {}).get(recon, math.nan),
                "fvu_per_dim": ev["fvu_per_dim"][recon],
                "ce": ev["ce"][recon]["ce"], "kl": ev["ce"][recon]["kl"],
                "ce_recovered": ev["ce_loss_recovered"][recon],
                "l0": c["l0"], "dead_fraction": c["dead_fraction"],
                "resp_entropy": c["responsibility_entropy"], "max_entropy": c["max_entropy"],
                "train_tokens": r["train"]["tokens"], "train_tokens_per_s": r["train"]["tokens_per_s"],
            })  # fmt: skip
    return out


def frontier_plot(table: list[dict], path: Path, corpus: str = CORPUS) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    style = {"encoder": "o", "topk_sae": "s", "standard_sae": "^"}
    colors = {4096: "tab:blue", 16384: "tab:red", 32768: "tab:green"}
    for row in table:
        post_hoc = row["reconstruction"] == "lstsq"
        if post_hoc and row["type"] != "encoder":
            continue  # SAEs are shown through their own decoder
        if row["reconstruction"] == "wt_scalar":
            continue  # scalar + offset is always at least as good
        color = colors.get(row["K"], "k")
        for ax, key in zip(axes, ("fvu", "ce_recovered"), strict=True):
            ax.scatter(row["l0"], row[key], marker=style.get(row["type"], "D"),
                       facecolors="none" if post_hoc else color, edgecolors=color, s=45)  # fmt: skip
    for ax, label in zip(axes, ("FVU (held-out)", "CE loss recovered"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("L0 (active latents per token)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    handles = [plt.Line2D([], [], marker=m, ls="", color="gray", label=t)
               for t, m in style.items()]  # fmt: skip
    handles += [plt.Line2D([], [], marker="o", ls="", color=c, label=f"K={k}")
                for k, c in colors.items() if any(r["K"] == k for r in table)]  # fmt: skip
    handles.append(plt.Line2D([], [], marker="o", ls="", mfc="none", color="gray",
                              label="encoder, post-hoc lstsq decoder"))  # fmt: skip
    axes[1].legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"SmolLM2-135M (4-bit GGUF) layer 15 resid_pre, held-out documents of {corpus}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(out: Path, results: list[dict], args, info: dict, dirs: list[Path],
                 n_train: int, seconds: float) -> None:  # fmt: skip
    table = rows(results)
    harvests = {str(h.name): load_manifest(h)["throughput"] for h in dirs}
    meta = {"command": " ".join(sys.argv), "lm": info, "harvests": harvests,
            "train_tokens": n_train, "seconds": seconds,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "args": {k: v for k, v in vars(args).items() if k != "func"}}  # fmt: skip
    (out / "results.json").write_text(json.dumps({"meta": meta, "runs": results}, indent=1))
    if table:
        with open(out / "results.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(table[0]))
            w.writeheader()
            w.writerows(table)
        frontier_plot(table, out / "frontier.png", getattr(args, "corpus", CORPUS))
    lines = [
        "| run | recon | L0 | dead | FVU | FVU typ. | CE rec. | KL | H(r)/log K | train tok/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['run']} | {r['reconstruction']} | {r['l0']:.1f} | {r['dead_fraction']:.3f} | "
            f"{r['fvu']:.4f} | {r['fvu_typical']:.4f} | {r['ce_recovered']:.4f} | "
            f"{r['kl']:.4f} | {r['resp_entropy'] / r['max_entropy']:.3f} | "
            f"{r['train_tokens_per_s']:.0f} |"
        )
    (out / "table.md").write_text("\n".join(lines) + "\n")
