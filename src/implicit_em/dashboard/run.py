"""Build a feature dashboard for a trained run on a harvested activation set.

Legend: N tokens, D input dim, K latents, V vocabulary. `DashboardOptions` holds what a user
chooses (one docstring per field, ready to become `--help`); `run(opts)` loads the run and the
harvest, makes one streaming pass (`stats.collect_stats`), and writes the site
(`site.write_site`). Programmatic callers may pass the model, the read-out, the tokenizer, the
unembedding and a decoder directly.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from implicit_em.dashboard.options import DashboardOptions
from implicit_em.dashboard.site import write_site
from implicit_em.dashboard.stats import (
    Codes,
    StatsConfig,
    collect_stats,
    logit_effects,
    nearest_by_cosine,
)
from implicit_em.data.lm.activations import Normalization, load_manifest
from implicit_em.options import set_threads

LLM_META = "llm.json"  # written by `implicit-em llm-train` beside the run files


def decoder_weight(model: nn.Module) -> Tensor | None:
    """W_dec (D, K) of a model with a decoder (TopKSAE.W_dec, StandardSAE.decoder), else None."""
    if isinstance(getattr(model, "W_dec", None), Tensor):
        return model.W_dec.detach()
    dec = getattr(model, "decoder", None)
    if isinstance(dec, nn.Linear):
        return dec.weight.detach()  # (D, K)
    return None


def encoder_weight(model: nn.Module) -> Tensor:
    """Encoder rows W (K, D) (every family here exposes `.W`)."""
    W = getattr(model, "W", None)
    if not isinstance(W, Tensor):
        raise ValueError(
            f"{type(model).__name__} has no encoder matrix `.W` (K, D): pass the model's "
            "encoder rows as `encoder=` to run()"
        )
    return W.detach()


def lm_unembedding(lm: nn.Module) -> Tensor:
    """W_U diag(g) (V, D): the output matrix with the final norm's gain folded in.

    The final RMSNorm/LayerNorm divides by a positive per-token scale, which does not change
    which tokens a direction promotes, so the logit lens of a direction d is W_U (g * d).
    """
    W_U = lm.get_output_embeddings().weight.detach().float()  # (V, D)
    norm = getattr(getattr(lm, "model", lm), "norm", None)
    if norm is not None and getattr(norm, "weight", None) is not None:
        W_U = W_U * norm.weight.detach().float()  # (V, D) * (D,)
    return W_U


def _choose_latents(spec: str, K: int, seed: int) -> list[int]:
    spec = spec.strip()
    if spec == "all":
        return list(range(K))
    if spec.startswith("sample:") and spec[7:].isdigit():
        n = min(int(spec[7:]), K)
        g = torch.Generator().manual_seed(seed)
        return sorted(torch.randperm(K, generator=g)[:n].tolist())
    try:
        ids = sorted({int(s) for s in spec.split(",") if s.strip()})
    except ValueError as e:
        raise ValueError(
            f"latents must be `all`, `sample:N`, or a comma list of indices; got {spec!r}"
        ) from e
    bad = [j for j in ids if not 0 <= j < K]
    if bad:
        raise ValueError(f"latents {bad} are out of range [0, {K}): pick indices below K")
    return ids


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


def _flat(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = _fmt(v)
    return out


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _load_tensor(path: str, key: str) -> Tensor:
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found: pass a .safetensors file holding {key}")
    tensors = load_file(p)
    if key not in tensors:
        raise ValueError(f"{p} holds {sorted(tensors)}, not {key}: save the matrix under {key!r}")
    return tensors[key]


def run(
    opts: DashboardOptions,
    *,
    model: nn.Module | None = None,
    codes: Codes | None = None,
    tokenizer: Any = None,
    W_U: Tensor | None = None,
    W_dec: Tensor | None = None,
    encoder: Tensor | None = None,
) -> Path:
    """Build the dashboard; return the path of its index.html.

    model: default `implicit_em.runs.load_run(opts.run_dir)`. codes: the read-out x (B, D)
    -> (B, K), largest = strongest; default `model.encode` (for the decoder-free Encoder,
    its ReLU energies a). tokenizer: any object with `decode(list[int]) -> str`. W_U (V, D),
    W_dec (D, K), encoder (K, D): override the files and defaults of `opts`.
    """
    from implicit_em.runs import load_run

    set_threads(opts.threads)
    device = opts.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    run_dir = Path(opts.run_dir)
    cfg_dict: dict = _read_json(run_dir / "config.json")
    if model is None:
        model, _ = load_run(run_dir)
    model = model.to(device).eval()
    llm_meta = _read_json(run_dir / LLM_META)
    acts = opts.acts or llm_meta.get("harvest_dir")
    if not acts:
        raise ValueError(
            f"{run_dir} names no harvest (no {LLM_META}): pass the harvest folder as acts"
        )
    manifest = load_manifest(acts)

    norm, norm_note = None, "none (activations as stored)"
    if llm_meta.get("normalization"):
        nm = llm_meta["normalization"]
        norm = Normalization.from_manifest(acts, nm["scale"] != 1.0, nm["center"])
        if abs(norm.scale - nm["scale"]) > 1e-6 * max(1.0, nm["scale"]):
            raise ValueError(
                f"the run was trained with norm scale {nm['scale']} but {acts} gives "
                f"{norm.scale}: pass the harvest the run was trained on"
            )
        norm_note = f"x * {norm.scale:.4g}" + (" after centring" if nm["center"] else "")
    max_norm, ratio = None, opts.max_norm_ratio
    outl = llm_meta.get("outliers", {})
    if ratio is None:
        ratio = outl.get("max_norm_ratio") or None
    if ratio:
        median = outl.get("median_norm_model_units")
        if median is None:
            raise ValueError(
                "max_norm_ratio needs the run's median token norm (llm.json); set it to 0 to keep all tokens"
            )
        max_norm = ratio * median

    has_decoder = hasattr(model, "decode")
    with_r = opts.responsibilities == "on" or (opts.responsibilities == "auto" and not has_decoder)
    read = codes or model.encode
    K = int(encoder.shape[0]) if encoder is not None else int(encoder_weight(model).shape[0])
    scfg = StatsConfig(opts.top_k, opts.n_samples, opts.context, with_r, opts.seed)

    chunk = opts.chunk_entries or (1 << 28 if str(device).startswith("cuda") else 1 << 24)
    t0 = time.perf_counter()
    stats, tokens = collect_stats(
        acts, read, K, scfg, split=opts.split, max_tokens=opts.max_tokens, norm=norm,
        max_norm=max_norm, device=device, chunk_entries=chunk, progress=opts.progress,
    )  # fmt: skip
    t_pass = time.perf_counter() - t0

    enc = (encoder if encoder is not None else encoder_weight(model)).to(device)
    near = {"encoder": nearest_by_cosine(enc, opts.n_nearest)}
    dec_label = opts.decoder_label
    if W_dec is None and opts.decoder:
        W_dec = _load_tensor(opts.decoder, "W_dec")
    if W_dec is None:
        W_dec = decoder_weight(model)
        dec_label = dec_label or ("the model's decoder" if W_dec is not None else "")
    if W_dec is not None:
        if W_dec.shape[1] != K:
            raise ValueError(f"W_dec has shape {tuple(W_dec.shape)}; expected (D, {K})")
        near["decoder"] = nearest_by_cosine(W_dec.t().to(device), opts.n_nearest)

    lm = None
    if tokenizer is None:
        tokenizer, lm = _load_tokenizer(
            opts.tokenizer,
            manifest,
            want_lm=opts.unembed == "auto" and W_dec is not None and W_U is None,
            progress=opts.progress,
        )
    if W_U is None and W_dec is not None and opts.unembed not in ("auto", "none"):
        W_U = _load_tensor(opts.unembed, "W_U")
    if W_U is None and W_dec is not None and lm is not None:
        W_U = lm_unembedding(lm)
    logits = None
    if W_U is not None and W_dec is not None:
        logits = logit_effects(W_dec.to(device), W_U.to(device), opts.n_logits)
    t_extra = time.perf_counter() - t0 - t_pass

    latents = _choose_latents(opts.latents, K, opts.seed)
    ident = manifest.get("identity", {}).get("config", {})
    summary = {
        "model": {
            "family": type(model).__name__,
            "K (latents)": K,
            "read-out": "custom callable" if codes is not None else "model.encode",
            "decoder for output tokens": dec_label or "none",
        },
        "config": _flat(cfg_dict) if cfg_dict else {"(none)": ""},
        "training, last epoch": _flat((_read_history(run_dir) or [{}])[-1]) or {"(none)": ""},
        "metrics": {
            **_flat(_read_json(run_dir / "metrics.json")),
            **_flat(_read_json(run_dir / "llm_metrics.json")),
        }
        or {"(none)": ""},
        "activations": {
            "harvest": str(acts),
            "language model": str(ident.get("model")),
            "layer / hook": f"{ident.get('layer')} / {ident.get('hook_point')}",
            "split": opts.split,
            "tokens used": stats["n_tokens"],
            "normalization": norm_note,
            "tokens left out (norm > ratio x median)": f"ratio {ratio}" if ratio else "none",
        },
        "dashboard": {
            "top examples": opts.top_k,
            "sampled firing events": opts.n_samples,
            "context tokens each side": opts.context,
            "device": str(device),
            "streaming pass (s)": f"{t_pass:.1f}",
            "neighbours + output tokens (s)": f"{t_extra:.1f}",
            "options": json.dumps(asdict(opts)),
        },
    }
    meta = {
        "title": opts.title or run_dir.name,
        "family": type(model).__name__,
        "split": opts.split,
        "decoder_label": dec_label,
        "language_model": str(ident.get("model")),
        "layer": ident.get("layer"),
        "dataset": str(ident.get("corpus", "")),
        "n_contexts": int(stats["n_contexts"]),
        "per_context": int(stats["per_context"]),
        "quantile_groups": opts.quantile_groups,
        "summary": summary,
    }

    def decode(t: int) -> str:
        s = tokenizer.decode([t])
        if "\ufffd" in s and hasattr(tokenizer, "convert_ids_to_tokens"):
            s = str(tokenizer.convert_ids_to_tokens(t))  # a partial UTF-8 byte: show its token
        return s

    index = write_site(
        opts.out, stats, tokens, decode, latents, meta, near=near, logits=logits,
        context=opts.context, n_groups=opts.quantile_groups, per_group=opts.per_group,
        block_size=opts.block_size, overwrite=opts.overwrite, workers=opts.site_workers,
    )  # fmt: skip
    if opts.neuronpedia:
        from implicit_em.dashboard.neuronpedia import export_neuronpedia

        export_neuronpedia(opts.out, Path(opts.out) / "neuronpedia")
    return index


def _read_history(run_dir: Path) -> list[dict]:
    from implicit_em.runs import read_history

    return read_history(run_dir)


def _auto_tokenizer(name: str) -> Any:
    try:
        from transformers import AutoTokenizer
    except ImportError as e:
        raise ImportError(
            "decoding tokens needs transformers: pip install 'implicit-em[llm]'"
        ) from e
    return AutoTokenizer.from_pretrained(name)


def _load_tokenizer(
    name: str | None, manifest: dict, want_lm: bool, progress: bool = True
) -> tuple[Any, nn.Module | None]:
    """The tokenizer (and, when asked, the LM for its unembedding) of the harvested model.

    Without want_lm only the tokenizer is read (`data.lm.load_tokenizer`), not the weights.
    """
    if name is not None and not want_lm:
        return _auto_tokenizer(name), None
    ident = manifest["identity"]["config"]
    if not want_lm:
        from implicit_em.data.lm import load_tokenizer

        return load_tokenizer(ident["model"], ident.get("revision")), None
    from implicit_em.data.lm import load_lm

    lm, tok, _ = load_lm(ident["model"], ident.get("revision"), progress=progress)
    return (_auto_tokenizer(name) if name is not None else tok), lm
