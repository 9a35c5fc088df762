"""The sparsify format (EleutherAI/sparsify `SparseCoder`), both ways.

Legend: D input dim, K latents. Layout, one folder per hook point::

    OUT/<hookpoint>/cfg.json          {"d_in", "num_latents", "k", "activation": "topk", ...}
    OUT/<hookpoint>/sae.safetensors   encoder.weight (K, D), encoder.bias (K,),
                                      W_dec (K, D), b_dec (D,)

sparsify's forward (sparsify/sparse_coder.py): a = TopK_k(ReLU((x - b_dec) W_e^T + b_e)),
x_hat = a W_dec + b_dec. It knows TopK only, so:

- `TopKSAE` exports with its own k; the tensors are those of the SAELens export
  (`implicit_em.interop.saelens.exported_tensors`: normalisation folded in, unit decoder
  rows, code = code_scale * our code).
- The decoder-free `Encoder` and `StandardSAE` export with k = K: TopK over all K latents of
  ReLU codes is ReLU itself, so codes are unchanged. sparsify always subtracts b_dec from the
  input, which these models do not, so the encoder bias absorbs it: b_e = b_enc + b_dec W_enc.
- Hook-point names follow sparsify (module outputs): our `resid_post` of block L is
  `layers.L`, `resid_pre` of block L is `layers.{L-1}` (`embed_tokens` for L = 0).

The `implicit_em` entry of cfg.json (sparsify drops unknown fields when loading) and the
`implicit_em.safetensors` sidecar carry what `load_native` needs to rebuild our model exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from implicit_em.data.lm.activations import Normalization
from implicit_em.interop.imported import SAELensModel
from implicit_em.interop.saelens import READ_OUT, SIDECAR, check_free, exported_tensors

CFG = "cfg.json"
WEIGHTS = "sae.safetensors"


def sparsify_hookpoint(layer: int, hook_point: str) -> str:
    """sparsify's module name for our (layer, hook_point): resid_post L -> `layers.L`."""
    if hook_point == "resid_post":
        return f"layers.{layer}"
    if hook_point == "resid_pre":
        return f"layers.{layer - 1}" if layer > 0 else "embed_tokens"
    raise ValueError(f"no sparsify hook point for {hook_point!r}: use resid_pre or resid_post")


def export_sparsify(
    model: nn.Module,
    out_dir: str | Path,
    hookpoint: str,
    *,
    norm: Normalization | None = None,
    x_fit=None,
    model_config: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write OUT/<hookpoint>/{cfg.json, sae.safetensors, implicit_em.safetensors}.

    Arguments as in `export_saelens`. Returns the hook-point folder. Raises FileExistsError
    rather than overwrite unless overwrite=True.
    """
    folder = Path(out_dir) / hookpoint
    check_free(folder, (CFG, WEIGHTS, SIDECAR), overwrite)
    ex = exported_tensors(model, norm, x_fit)
    if ex.threshold is not None:
        raise ValueError(
            f"a {ex.info['model_type']} model gates its codes by thresholds, which sparsify's "
            "TopK format cannot hold: export it in the saelens format"
        )
    K = int(ex.W_enc.shape[1])
    b_e = ex.b_enc if ex.apply_b_dec_to_input else ex.b_enc + ex.b_dec @ ex.W_enc  # (K,)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            "encoder.weight": ex.W_enc.t().contiguous(),
            "encoder.bias": b_e.contiguous(),
            "W_dec": ex.W_dec,
            "b_dec": ex.b_dec,
        },
        folder / WEIGHTS,
    )
    side = {"code_scale": ex.code_scale}
    side.update({f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()})
    if norm is not None and norm.mean is not None:
        side["norm.mean"] = norm.mean.float().contiguous()
    save_file(side, folder / SIDECAR)
    cfg = {
        "activation": "topk",
        "expansion_factor": max(1, K // int(ex.W_enc.shape[0])),
        "normalize_decoder": True,
        "num_latents": K,
        "k": int(ex.k) if ex.k is not None else K,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": int(ex.W_enc.shape[0]),
        "implicit_em": {
            **ex.info,
            "decoder": ex.decoder,
            "read_out": READ_OUT,
            "code_scale": f"{SIDECAR}:code_scale",
            "model_config": model_config,
            "k_note": "k = num_latents: TopK over all latents of ReLU codes is ReLU"
            if ex.k is None
            else "the model's own k",
        },
    }
    (folder / CFG).write_text(json.dumps(cfg, indent=1))
    return folder


def load_sparsify(path: str | Path) -> SAELensModel:
    """A sparsify SAE folder (cfg.json + sae.safetensors) as a topk `SAELensModel`.

    Raises ValueError for what has no SAELens equivalent here: transcoders, skip
    connections, activations other than topk.
    """
    path = Path(path)
    if not (path / CFG).is_file() or not (path / WEIGHTS).is_file():
        raise FileNotFoundError(
            f"{path} is not a sparsify SAE folder (needs {CFG} and {WEIGHTS}); pass the "
            "hook-point folder, e.g. OUT/layers.14"
        )
    cfg = json.loads((path / CFG).read_text())
    for key, ok in (("transcode", False), ("skip_connection", False)):
        if cfg.get(key, ok) != ok:
            raise ValueError(f"sparsify {key}={cfg[key]} is not supported: load a plain SAE")
    if cfg.get("activation", "topk") != "topk":
        raise ValueError(f"sparsify activation {cfg['activation']!r} is not supported: use topk")
    t = {k: v.float() for k, v in load_file(path / WEIGHTS).items()}
    W_e = t["encoder.weight"]  # (K, D)
    return SAELensModel(
        W_e.t(),
        t["encoder.bias"],
        t["W_dec"],
        t["b_dec"],
        "topk",
        k=int(cfg["k"]),
        apply_b_dec_to_input=True,
    )
