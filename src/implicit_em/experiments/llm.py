"""`implicit-em harvest`, `llm-train` and `llm-eval`: SAEs on language-model activations.

    implicit-em harvest --out ACTS                       # SmolLM2-135M (4-bit GGUF), layer 15, SOTU
    implicit-em llm-train --acts ACTS --out RUN --type encoder --hidden-dim 1024
    implicit-em llm-train --acts ACTS --out RUN2 --type topk_sae --hidden-dim 1024 --k 32
    implicit-em llm-eval --acts ACTS --runs RUN RUN2 --out metrics.json

Training uses `implicit_em.training.train` on the train split held in memory (fine for the
~1e5-token CPU demo; `ActivationReader` streams larger harvests). Each run directory gets an
`llm.json` next to the usual files naming the harvest and the input normalization, because
the run config's `data` section describes image datasets only.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

import torch

from implicit_em import tracking
from implicit_em.data.activations import (
    HarvestConfig,
    ManifestMismatchError,
    Normalization,
    ShardCorruptedError,
    check_same_model,
    harvest,
    load_manifest,
    norm_outliers,
    read_split,
)

LLM_META = "llm.json"
LLM_METRICS = "llm_metrics.json"
USER_ERRORS = (ValueError, FileNotFoundError, ShardCorruptedError, ManifestMismatchError)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `harvest`, `llm-train` and `llm-eval` on the top-level CLI."""
    h = subparsers.add_parser(
        "harvest", help="harvest LM residual-stream activations to fp16 shards (resumable)"
    )
    defaults, docs = HarvestConfig(), field_docs(HarvestConfig)
    for f in fields(HarvestConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            h.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=docs[f.name]
            )
        else:
            typ = type(default) if default is not None else str
            h.add_argument(flag, type=typ, default=default, help=f"{docs[f.name]} ({default})")
    h.add_argument("--out", required=True, help="harvest directory (resumed if it exists)")
    _common(h)
    h.set_defaults(func=run_harvest)

    t = subparsers.add_parser("llm-train", help="train an encoder or SAE on harvested activations")
    t.add_argument("--acts", required=True, help="harvest directory")
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--type", default="encoder", choices=["encoder", "topk_sae", "standard_sae"])
    t.add_argument("--hidden-dim", type=int, default=1024, help="K latents (default 1024)")
    t.add_argument("--k", type=int, default=32, help="active latents of topk_sae (default 32)")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=1024)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--lambda-lse", type=float, default=1.0)
    t.add_argument("--lambda-var", type=float, default=1.0)
    t.add_argument("--lambda-tc", type=float, default=1.0)
    t.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="scale inputs by the manifest's norm_scale (mean squared norm D)",
    )
    t.add_argument("--center", action="store_true", help="also subtract the train mean")
    t.add_argument(
        "--max-norm-ratio",
        type=float,
        default=10.0,
        help="drop train tokens whose norm exceeds this times the median (massive "
        "activations); 0 keeps all (default 10)",
    )
    t.add_argument("--resume", action="store_true")
    t.add_argument("--overwrite", action="store_true")
    _common(t)
    tracking.add_arguments(t)
    t.set_defaults(func=run_train)

    e = subparsers.add_parser(
        "llm-eval", help="FVU, codes, and CE/KL with reconstructions spliced into the LM"
    )
    e.add_argument("--acts", required=True, help="harvest directory")
    e.add_argument("--runs", nargs="+", required=True, help="run directories from llm-train")
    e.add_argument("--out", default=None, help="write all metrics to this JSON file")
    e.add_argument(
        "--budget", type=int, default=10_000, help="held-out tokens for FVU and code stats"
    )
    e.add_argument(
        "--ce-contexts", type=int, default=40, help="held-out contexts spliced for CE/KL"
    )
    e.add_argument("--batch-size", type=int, default=8, help="contexts per LM forward")
    e.add_argument("--markdown", default=None, help="also write a markdown table here")
    _common(e)
    e.set_defaults(func=run_eval)


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each dataclass field (they double as --help)."""
    import ast
    import inspect
    import textwrap

    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    out: dict[str, str] = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr):
            out[node.target.id] = str(nxt.value.value).replace("%", "%%")
    return {f.name: out.get(f.name, "") for f in fields(cls)}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--no-progress", action="store_true")


def _threads(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)


def _fail(e: Exception) -> int:
    print(f"error: {e}", file=sys.stderr)
    return 2


def run_harvest(args: argparse.Namespace) -> int:
    _threads(args)
    try:
        cfg = HarvestConfig(**{f.name: getattr(args, f.name) for f in fields(HarvestConfig)})
        m = harvest(cfg, args.out, progress=not args.no_progress)
    except USER_ERRORS as e:
        return _fail(e)
    info = m["model_info"]
    quant = f", {info['quantization']}-quantized weights" if info.get("quantization") else ""
    print(
        f"{args.out}: {m['splits']['train']['n_tokens']} train + "
        f"{m['splits']['heldout']['n_tokens']} held-out tokens of {info['model_id']}{quant}, "
        f"layer {cfg.layer} {cfg.hook_point}; {m['throughput']}"
    )
    return 0


def run_train(args: argparse.Namespace) -> int:
    from implicit_em import runs
    from implicit_em.config import LossConfig, ModelConfig, RunConfig, TrainConfig
    from implicit_em.training import train

    _threads(args)
    tracker = None
    try:
        manifest = load_manifest(args.acts)
        norm = Normalization.from_manifest(args.acts, args.normalize, args.center)
        x_train, _ = read_split(args.acts, "train", norm=norm)
        x_eval, _ = read_split(args.acts, "heldout", max_tokens=4096, norm=norm)
        n_dropped, median = 0, None
        if args.max_norm_ratio > 0:
            raw_norms = x_train.norm(dim=1) / norm.scale
            median = float(raw_norms.median())
            out_train = norm_outliers(x_train, args.max_norm_ratio, median * norm.scale)
            out_eval = norm_outliers(x_eval, args.max_norm_ratio, median * norm.scale)
            n_dropped = int(out_train.sum())
            x_train, x_eval = x_train[~out_train], x_eval[~out_eval]
        cfg = RunConfig(
            model=ModelConfig(
                type=args.type, input_dim=x_train.shape[1], hidden_dim=args.hidden_dim, k=args.k
            ),
            loss=LossConfig(
                lambda_lse=args.lambda_lse, lambda_var=args.lambda_var, lambda_tc=args.lambda_tc
            ),
            training=TrainConfig(
                epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed
            ),
        )
        model = runs.build_model(cfg)
        out = Path(args.out)
        tracker = tracking.from_args(args)
        history = train(
            model,
            x_train,
            cfg,
            x_eval=x_eval,
            run_dir=out,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            tracker=tracker,
        )
    except USER_ERRORS as e:
        return _fail(e)
    finally:
        if tracker is not None:
            tracker.close()
    meta = {
        "harvest_dir": str(Path(args.acts).resolve()),
        "harvest_identity": manifest["identity"],
        "normalization": norm.to_dict(),
        "outliers": {
            "max_norm_ratio": args.max_norm_ratio,
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


def run_eval(args: argparse.Namespace) -> int:
    from implicit_em import runs
    from implicit_em.data.lm import load_lm
    from implicit_em.evaluate import evaluate_model

    _threads(args)
    try:
        manifest = load_manifest(args.acts)
        ident = manifest["identity"]["config"]
        lm, _, info = load_lm(ident["model"], ident["revision"])
        check_same_model(manifest, info)
        raw_train, _ = read_split(args.acts, "train")
        raw_held, tokens = read_split(args.acts, "heldout", max_tokens=args.budget)
        results = {
            "harvest": {
                "dir": str(args.acts),
                "model": manifest["model_info"],
                "layer": ident["layer"],
                "hook_point": ident["hook_point"],
                "n_train_tokens": raw_train.shape[0],
                "n_heldout_tokens": raw_held.shape[0],
                "throughput": manifest.get("throughput"),
            },
            "runs": {},
        }
        for run_dir in args.runs:
            model, cfg = runs.load_run(run_dir)
            meta = json.loads((Path(run_dir) / LLM_META).read_text())
            if meta["harvest_identity"] != manifest["identity"]:
                raise ManifestMismatchError(
                    f"run {run_dir} was trained on another harvest "
                    f"({meta['harvest_dir']}): evaluate it with that --acts"
                )
            norm = Normalization.from_manifest(
                args.acts, meta["normalization"]["scale"] != 1.0, meta["normalization"]["center"]
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
                tokens=tokens[: args.ce_contexts],
                layer=ident["layer"],
                hook_point=ident["hook_point"],
                drop_bos=ident["drop_bos"],
                batch_size=args.batch_size,
                typical=typical,
            )
            res["model"] = cfg.model.__dict__
            res["normalization"] = meta["normalization"]
            (Path(run_dir) / LLM_METRICS).write_text(json.dumps(res, indent=1))
            results["runs"][str(run_dir)] = res
            print(summary_line(run_dir, res))
    except USER_ERRORS as e:
        return _fail(e)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(render_markdown(results))
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


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry: `python -m implicit_em.experiments.llm harvest ...`."""
    from implicit_em.cli import standalone

    return standalone(add_parser, argv, prog="implicit-em")


if __name__ == "__main__":
    sys.exit(main())
