"""`implicit-em harvest`, `llm-train` and `llm-eval`: SAEs on language-model activations.

    implicit-em harvest --out ACTS                       # SmolLM2-135M (4-bit GGUF), layer 15, SOTU
    implicit-em llm-train --acts ACTS --out RUN --type encoder --hidden-dim 1024
    implicit-em llm-train --acts ACTS --out RUN2 --type topk_sae --hidden-dim 1024 --k 32
    implicit-em llm-eval --acts ACTS --runs RUN RUN2 --out metrics.json

Training uses `implicit_em.train.loop.train` on the train split held in memory (fine for the
~1e5-token CPU demo; `ActivationReader` streams larger harvests). Each run directory gets an
`llm.json` next to the usual files naming the harvest and the input normalization, because
the run config's `data` section describes image datasets only.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from implicit_em import tracking
from implicit_em.data.lm.activations import (
    HarvestConfig,
    ManifestMismatchError,
    Normalization,
    check_same_model,
    harvest,
    load_manifest,
    norm_outliers,
    read_split,
)
from implicit_em.data.lm.harvest_config import stored_tokens_note
from implicit_em.experiments.options import (  # noqa: F401  (their old home)
    LLM_TRAIN_BASE,
    HarvestOptions,
    LlmEvalOptions,
    LlmTrainOptions,
    _Compute,
)
from implicit_em.options import set_threads

LLM_META = "llm.json"
LLM_METRICS = "llm_metrics.json"


def run_harvest(opts: HarvestOptions) -> int:
    """Harvest (or resume) into opts.out and print what was stored."""
    set_threads(opts.threads)
    cfg = HarvestConfig(**{f.name: getattr(opts, f.name) for f in fields(HarvestConfig)})
    m = harvest(cfg, opts.out, progress=not opts.no_progress)
    info = m["model_info"]
    quant = f", {info['quantization']}-quantized weights" if info.get("quantization") else ""
    stored = stored_tokens_note(cfg.n_tokens, m["splits"]["train"]["n_tokens"],
                                m["splits"]["heldout"]["n_tokens"], cfg.tokens_per_context)  # fmt: skip
    print(
        f"{opts.out}: {stored}; model {info['model_id']}{quant}, "
        f"layer {cfg.layer} {cfg.hook_point}; {m['throughput']}"
    )
    return 0


def run_train(opts: LlmTrainOptions) -> int:
    """Train on the harvest's train split; write the run and its llm.json."""
    import dataclasses

    from implicit_em import runs
    from implicit_em.config import RunConfig, override
    from implicit_em.train.loop import train

    set_threads(opts.threads)
    cfg = override(RunConfig(), [*LLM_TRAIN_BASE, *opts.set])  # validates before any reading
    manifest = load_manifest(opts.acts)
    norm = Normalization.from_manifest(opts.acts, opts.normalize, opts.center)
    x_train, _ = read_split(opts.acts, "train", norm=norm)
    x_eval, _ = read_split(opts.acts, "heldout", max_tokens=4096, norm=norm)
    n_dropped, median = 0, None
    if opts.max_norm_ratio > 0:
        raw_norms = x_train.norm(dim=1) / norm.scale
        median = float(raw_norms.median())
        out_train = norm_outliers(x_train, opts.max_norm_ratio, median * norm.scale)
        out_eval = norm_outliers(x_eval, opts.max_norm_ratio, median * norm.scale)
        n_dropped = int(out_train.sum())
        x_train, x_eval = x_train[~out_train], x_eval[~out_eval]
    d = x_train.shape[1]
    if cfg.model.input_dim not in (None, d):
        raise ValueError(f"model.input_dim={cfg.model.input_dim} but the activations have "
                         f"{d} features: leave model.input_dim unset")  # fmt: skip
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, input_dim=d))
    model = runs.build_model(cfg)
    out = Path(opts.out)
    tracker = tracking.make_tracker(opts)
    try:
        history = train(
            model,
            x_train,
            cfg,
            x_eval=x_eval,
            run_dir=out,
            resume=opts.resume,
            overwrite=opts.overwrite,
            progress=not opts.no_progress,
            tracker=tracker,
        )
    finally:
        if tracker is not None:
            tracker.close()
    meta = {
        "harvest_dir": str(Path(opts.acts).resolve()),
        "harvest_identity": manifest["identity"],
        "normalization": norm.to_dict(),
        "outliers": {
            "max_norm_ratio": opts.max_norm_ratio,
            "median_norm_model_units": median,
            "train_tokens_dropped": n_dropped,
            "train_tokens_used": int(x_train.shape[0]),
        },
        "note": "inputs are LM activations; config.json's data section is unused",
    }
    (out / LLM_META).write_text(json.dumps(meta, indent=1))
    last = history[-1] if history else {}
    print(
        f"{out}: {len(history)} epochs; last: "
        + json.dumps({k: round(v, 4) for k, v in last.items() if isinstance(v, float)})
    )
    return 0


def run_eval(opts: LlmEvalOptions) -> int:
    """Evaluate each run; print one summary line per run; write the JSON / markdown asked for."""
    from implicit_em import runs
    from implicit_em.data.lm import load_lm
    from implicit_em.lm_eval import evaluate_model

    set_threads(opts.threads)
    manifest = load_manifest(opts.acts)
    ident = manifest["identity"]["config"]
    lm, _, info = load_lm(ident["model"], ident["revision"])
    check_same_model(manifest, info)
    raw_train, _ = read_split(opts.acts, "train")
    raw_held, tokens = read_split(opts.acts, "heldout", max_tokens=opts.budget)
    results = {
        "harvest": {
            "dir": str(opts.acts),
            "model": manifest["model_info"],
            "layer": ident["layer"],
            "hook_point": ident["hook_point"],
            "n_train_tokens": raw_train.shape[0],
            "n_heldout_tokens": raw_held.shape[0],
            "throughput": manifest.get("throughput"),
        },
        "runs": {},
    }
    for run_dir in opts.runs:
        model, cfg = runs.load_run(run_dir)
        meta = json.loads((Path(run_dir) / LLM_META).read_text())
        if meta["harvest_identity"] != manifest["identity"]:
            raise ManifestMismatchError(
                f"run {run_dir} was trained on another harvest "
                f"({meta['harvest_dir']}): evaluate it with that --acts"
            )
        norm = Normalization.from_manifest(
            opts.acts, meta["normalization"]["scale"] != 1.0, meta["normalization"]["center"]
        )
        ratio = meta.get("outliers", {}).get("max_norm_ratio") or 0.0
        typical = None
        if ratio > 0:
            median = float(raw_train.norm(dim=1).median())
            typical = ~norm_outliers(raw_held, ratio, median)
        res = evaluate_model(
            model,
            norm.apply(raw_train),
            norm.apply(raw_held),
            invert=norm.invert,
            apply=norm.apply,
            lm=lm,
            tokens=tokens[: opts.ce_contexts],
            layer=ident["layer"],
            hook_point=ident["hook_point"],
            drop_bos=ident["drop_bos"],
            batch_size=opts.batch_size,
            typical=typical,
        )
        res["model"] = cfg.model.__dict__
        res["normalization"] = meta["normalization"]
        (Path(run_dir) / LLM_METRICS).write_text(json.dumps(res, indent=1))
        results["runs"][str(run_dir)] = res
        print(summary_line(run_dir, res))
    if opts.out:
        Path(opts.out).write_text(json.dumps(results, indent=1))
    if opts.markdown:
        Path(opts.markdown).write_text(render_markdown(results))
    return 0


def render_markdown(results: dict) -> str:
    """One table row per (run, reconstruction): FVU, EV, CE, KL, CE recovered; codes below."""
    h = results["harvest"]
    model = h["model"]
    quant = f" ({model['quantization']}-quantized weights)" if model.get("quantization") else ""
    lines = [
        f"Activations: {model['model_id']}{quant}, layer {h['layer']} {h['hook_point']}; "
        f"{h['n_train_tokens']} train tokens, {h['n_heldout_tokens']} held-out tokens "
        "(held-out documents).",
        "",
        "| run | reconstruction | FVU | FVU typical | FVU per-dim | EV | CE | KL | CE recovered |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results["runs"].items():
        ce = res.get("ce", {})
        for k, v in res["fvu"].items():
            c = ce.get(k, {})
            rec = res.get("ce_loss_recovered", {}).get(k)
            lines.append(
                f"| {Path(name).name} | {k} | {v:.4f} | "
                f"{res.get('fvu_typical', {}).get(k, float('nan')):.4f} | "
                f"{res['fvu_per_dim'][k]:.4f} | "
                f"{1 - v:.4f} | {c.get('ce', float('nan')):.4f} | "
                f"{c.get('kl', float('nan')):.4f} | "
                + (f"{rec:.4f} |" if rec is not None else "- |")
            )
    any_ce = next((r["ce"] for r in results["runs"].values() if "ce" in r), None)
    if any_ce:
        lines += [
            "",
            f"CE original {any_ce['orig']['ce']:.4f}, zero-ablated {any_ce['zero']['ce']:.4f} "
            f"(KL {any_ce['zero']['kl']:.4f}) nats/token.",
        ]
    lines += [
        "",
        "| run | L0 | L0 / K | dead fraction | resp. entropy (max) | usage perplexity |",
        "|---|---|---|---|---|---|",
    ]
    for name, res in results["runs"].items():
        c = res["codes"]
        lines.append(
            f"| {Path(name).name} | {c['l0']:.2f} | {c['l0_fraction']:.4f} | "
            f"{c['dead_fraction']:.4f} | {c['responsibility_entropy']:.3f} "
            f"({c['max_entropy']:.3f}) | {c['usage_perplexity']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def summary_line(name: str, res: dict) -> str:
    c = res["codes"]
    parts = [
        f"{name}: L0 {c['l0']:.1f}, dead {c['dead_fraction']:.3f}, "
        f"H(r) {c['responsibility_entropy']:.3f}"
    ]
    for k, v in res["fvu"].items():
        rec = res.get("ce_loss_recovered", {}).get(k)
        kl = res.get("ce", {}).get(k, {}).get("kl")
        extra = f", CE rec {rec:.3f}, KL {kl:.3f}" if rec is not None else ""
        parts.append(f"{k}: FVU {v:.3f}{extra}")
    return "; ".join(parts)
