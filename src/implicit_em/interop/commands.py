"""`implicit-em export` and `implicit-em import`: `run(opts)` for their options dataclasses.

The options live in `implicit_em.interop.options` (light: the CLI builds --help from them
without importing torch) and are re-exported here; `run_export` / `run_import` are what the
commands call. Both return a JSON-able summary.

    implicit-em export RUN_DIR --format saelens --out DIR [--fit-tokens 20000]
    implicit-em import DIR --format saelens [--acts HARVEST] [--out metrics.json]
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from implicit_em.data.lm.activations import STATS, Normalization, read_split
from implicit_em.interop.options import FORMATS, ExportOptions, ImportOptions  # noqa: F401

LLM_META = "llm.json"  # written by `implicit-em llm-train` beside the run's config.json


def run_metadata(run_dir: Path) -> tuple[Normalization, dict, dict | None]:
    """(normalisation, SAELens metadata, llm.json) of a run; identity for non-LM runs."""
    meta_path = run_dir / LLM_META
    if not meta_path.is_file():
        return Normalization(), {"model_name": None, "hook_name": None}, None
    llm = json.loads(meta_path.read_text())
    nd, ident = llm["normalization"], llm["harvest_identity"]
    mean = None
    if nd["center"]:
        stats = Path(llm["harvest_dir"]) / STATS
        if not stats.is_file():
            raise FileNotFoundError(
                f"the run was trained on centred inputs but {stats} is missing: export on the "
                "machine that holds its harvest"
            )
        mean = load_file(stats)["mean"]
    c = ident["config"]
    meta = {
        "model_name": ident["model"]["model_id"],
        "model_revision": ident["model"].get("revision"),
        "model_weights_sha256": ident["model"].get("weights_sha256"),
        "hook_name": c.get("hook") or f"blocks.{c['layer']}.hook_{c['hook_point']}",
        "hook_layer": c["layer"],
        "context_size": c["ctx_len"],
        "dataset_path": c["corpus"],
        "prepend_bos": True,
        "exclude_special_tokens": ["bos"] if c.get("drop_bos", True) else [],
        "implicit_em_harvest": str(llm["harvest_dir"]),
    }
    return Normalization(scale=nd["scale"], mean=mean), meta, llm


def run_export(opts: ExportOptions) -> dict:
    """Export a run directory; returns {"out", "format", "decoder", "architecture", ...}."""
    from implicit_em.interop.saelens import export_saelens
    from implicit_em.interop.sparsify import export_sparsify, sparsify_hookpoint
    from implicit_em.runs import load_run

    run_dir = Path(opts.run)
    model, cfg = load_run(run_dir)
    model.eval()
    norm, meta, llm = run_metadata(run_dir)
    x_fit = None
    if cfg.model.type == "encoder" and opts.fit_tokens > 0 and llm is not None:
        x_fit, _ = read_split(llm["harvest_dir"], "train", max_tokens=opts.fit_tokens, norm=norm)
    if opts.format == "saelens":
        out = export_saelens(
            model,
            opts.out,
            norm=norm,
            x_fit=x_fit,
            model_config=cfg.to_dict(),
            metadata=meta,
            overwrite=opts.overwrite,
        )
        written = json.loads((out / "cfg.json").read_text())
        arch, decoder = written["architecture"], written["metadata"]["implicit_em"]["decoder"]
    else:
        hook = opts.hookpoint
        if hook is None:
            if llm is None:
                raise ValueError("not an LM run: name the sparsify folder with --hookpoint")
            c = llm["harvest_identity"]["config"]
            if c.get("layer") is None:  # a module-name hook is already sparsify's name
                hook = c["hook"]
            else:
                hook = sparsify_hookpoint(c["layer"], c["hook_point"])
        out = export_sparsify(
            model,
            opts.out,
            hook,
            norm=norm,
            x_fit=x_fit,
            model_config=cfg.to_dict(),
            overwrite=opts.overwrite,
        )
        written = json.loads((out / "cfg.json").read_text())
        arch, decoder = "topk", written["implicit_em"]["decoder"]
    return {
        "out": str(out),
        "format": opts.format,
        "architecture": arch,
        "decoder": decoder,
        "fit_tokens": 0 if x_fit is None else int(x_fit.shape[0]),
        "hook_name": meta.get("hook_name"),
    }


def run_import(opts: ImportOptions) -> dict:
    """Load an SAE of the field's formats; with --acts, evaluate it like our own runs."""
    from implicit_em.interop.saelens import load_saelens
    from implicit_em.interop.sparsify import load_sparsify

    model = (load_saelens if opts.format == "saelens" else load_sparsify)(opts.path).eval()
    res: dict = {
        "path": str(opts.path),
        "format": opts.format,
        "architecture": model.architecture,
        "d_in": model.input_dim,
        "d_sae": model.hidden_dim,
        "k": model.k,
    }
    if opts.acts is not None:
        from implicit_em.lm_eval import evaluate_model

        x_train, _ = read_split(opts.acts, "train", max_tokens=opts.fit_tokens)
        x_held, _ = read_split(opts.acts, "heldout", max_tokens=opts.budget)
        if x_train.shape[1] != model.input_dim:
            raise ValueError(
                f"the SAE reads d_in={model.input_dim} but {opts.acts} holds D="
                f"{x_train.shape[1]}: evaluate it on activations of its own model and hook"
            )
        with torch.no_grad():
            res["metrics"] = evaluate_model(model, x_train, x_held)
    if opts.out:
        Path(opts.out).write_text(json.dumps(res, indent=1, default=float))
    return res
