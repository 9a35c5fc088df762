"""The SAELens on-disk format, both ways: `cfg.json` + `sae_weights.safetensors`.

Legend: B batch, D input dim, K latents. Our models see normalised inputs
x_n = (x - m) * s (`implicit_em.data.activations.Normalization`: s = norm_scale, m the train
mean or 0); SAELens tensors act on the LM's raw activations x:
W_enc (D, K), b_enc (K,), W_dec (K, D), b_dec (D,) [, threshold (K,)].

Export (`export_saelens`). What `sae_lens.SAE.load_from_disk` loads, unchanged:

- the family's `saelens_architecture`: "standard" for the decoder-free `Encoder` and for
  `StandardSAE` (apply_b_dec_to_input = False: neither subtracts a decoder bias before
  encoding), "topk" for `TopKSAE` (apply_b_dec_to_input = True, rescale_acts_by_decoder_norm
  = True, which is a no-op on unit rows and lets SAELens fold them), "jumprelu" for the
  JumpReLU SAE and for the BatchTopK SAE at inference (its one threshold per latent, as
  sae-lens saves BatchTopK SAEs), with a `threshold` tensor.
- A centred SAE's own input mean (model.centre) is folded into the biases.
- The normalisation is folded into the weights (normalize_activations = "none"), so the
  exported SAE takes the LM's activations as they are.
- Every row of W_dec has unit norm, so `fold_W_dec_norm()` (SAEDashboard, SAEBench) changes
  nothing. The decoder direction of latent j, d_j (D,) in model units, has norm n_j; the
  exported code is our code times n_j, so decode() still reconstructs exactly:
  sum_j (n_j a_j) (d_j / n_j) = sum_j a_j d_j. `code_scale` (K,) = n_j is stored in
  `implicit_em.safetensors` beside the SAELens files and named in the metadata.
- Which decoder (metadata `implicit_em.decoder`): an SAE's own (`own`); for the decoder-free
  Encoder, which has none, either the post-hoc least-squares decoder fitted on given
  activations (`lstsq`, `implicit_em.lm_eval.fit_linear_decoder`: decode() is then that
  decoder's reconstruction) or, without fitting data, W's rows normalised (`w_rows`:
  decode() is not a reconstruction, code_scale = 1, codes are the energies themselves).

Read-out of an exported latent of the energy model. SAELens' standard architecture computes
ReLU(x W_enc + b_enc), which equals our energies a = ReLU(W x_n + b) (times code_scale > 0)
exactly; the paper's ordering s = E_max - E and the responsibilities softmax(-a) are not
expressible there. We export a, so every tool's "largest activation = strongest match"
means "largest energy". Measured (scripts/readout_study.py, docs/interop.md): on synthetic
sparse features a trained Encoder unit's energy RISES when its matched ground-truth feature
is present (median per-unit AUROC 0.95 for a; 0.05 for -a, 0.18 for s = max_k a_k - a_j,
0.06 for softmax(-a)). On MNIST classes a single unit's a is a weak class signal (0.65,
below the untrained control's 0.70) and s is better (0.84) but needs all units. Recorded
in the metadata (`implicit_em.read_out`).

Import (`load_saelens`): any SAELens-format SAE of architecture standard, topk or jumprelu
as an `SAELensModel` (raw units, SAELens semantics) for our evaluation code, and
`load_native` rebuilds our own exported model exactly (bitwise) from the sidecar.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from implicit_em.data.lm.activations import Normalization
from implicit_em.interop.imported import ARCHITECTURES, SAELensModel

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
SIDECAR = "implicit_em.safetensors"
SAELENS_VERSION = "6.0.0"  # the cfg layout we write (SAELens >= 6 reads it without conversion)
READ_OUT = (
    "energy: exported latent j = code_scale[j] * a_j, a = ReLU(W x_n + b) the model's "
    "energies (for SAEs their codes); code_scale > 0 is the model-unit norm of latent j's "
    "decoder row (1 for the w_rows decoder); larger = stronger match: the energy rises when "
    "the unit's feature is present (synthetic features, AUROC 0.95); on MNIST classes a "
    "weak signal (0.65) and s = max_k a_k - a_j (0.84) is better (docs/interop.md)"
)


@dataclass
class Exported:
    """SAELens tensors of one model (raw units) and what they mean."""

    W_enc: Tensor  # (D, K)
    b_enc: Tensor  # (K,)
    W_dec: Tensor  # (K, D), unit rows
    b_dec: Tensor  # (D,)
    code_scale: Tensor  # (K,): exported code = code_scale * our code
    architecture: str
    apply_b_dec_to_input: bool
    decoder: str
    k: int | None = None
    threshold: Tensor | None = None  # (K,), jumprelu only
    info: dict = field(default_factory=dict)

    def as_model(self) -> SAELensModel:
        return SAELensModel(
            self.W_enc,
            self.b_enc,
            self.W_dec,
            self.b_dec,
            self.architecture,
            k=self.k,
            threshold=self.threshold,
            apply_b_dec_to_input=self.apply_b_dec_to_input,
            rescale_acts_by_decoder_norm=self.architecture == "topk",
        )


def _family(model: nn.Module):
    from implicit_em.families import family_of

    try:
        fam = family_of(model)
    except TypeError:
        fam = None
    if fam is None or fam.saelens_architecture is None:
        raise TypeError(
            f"cannot export a {type(model).__name__}: export a model of a family with a SAELens "
            "architecture (the encoder and the SAE families)"
        )
    return fam


@torch.no_grad()
def exported_tensors(
    model: nn.Module,
    norm: Normalization | None = None,
    x_fit: Tensor | None = None,
) -> Exported:
    """Fold normalisation, the model's own input mean and decoder norms into SAELens tensors
    (float64 arithmetic).

    model: a model of a family with `Family.saelens_architecture`, trained on
    x_n = (x - m) * s. norm: that normalisation (identity when None). A centred SAE
    (`models._Centring`) sees x_n - mu and adds mu to x_hat: mu is folded into b_dec (and,
    for an SAE that does not subtract b_dec, into b_enc). x_fit (N, D), normalised units:
    fitting data of the least-squares decoder of a decoder-free Encoder (ignored for SAEs).
    JumpReLU-form SAEs (thresholds theta) export threshold = code_scale * theta (a BatchTopK
    SAE's one threshold, repeated per latent, as sae-lens saves BatchTopK SAEs). Raises
    ValueError if a decoder row is exactly zero (its direction is undefined).
    """
    from implicit_em.models import Encoder

    fam = _family(model)
    arch = fam.saelens_architecture
    is_encoder = isinstance(model, Encoder)
    if is_encoder and model.activation != "relu":
        raise ValueError(
            f"only ReLU encoders map onto SAELens (this one uses {model.activation!r})"
        )
    norm = norm or Normalization()
    s = float(norm.scale)
    d = model.W.shape[1]
    m = norm.mean.double() if norm.mean is not None else torch.zeros(d, dtype=torch.float64)
    W = model.W.detach().double()  # (K, D)
    b = (model.b if is_encoder else model.encoder.bias).detach().double()  # (K,)
    mu = torch.zeros(d, dtype=torch.float64)
    if getattr(model, "centre", False):
        mu = model.x_mean.detach().double()  # (D,) in normalised units
    has_b_dec = hasattr(model, "b_dec")  # the encoder sees x - b_dec
    if is_encoder and x_fit is not None:
        from implicit_em.lm_eval import encode, fit_linear_decoder

        V, v = fit_linear_decoder(encode(model, x_fit), x_fit)  # (K, D), (D,)
        dec, dec_bias, decoder = V.double(), v.double(), "lstsq"
    elif is_encoder:
        dec, dec_bias, decoder = W, torch.zeros(d, dtype=torch.float64), "w_rows"
    else:
        dec = model.decoder_matrix().detach().double().t()  # (K, D)
        bias = model.b_dec if has_b_dec else model.decoder.bias
        dec_bias, decoder = bias.detach().double() + mu, "own"
    raw_dec = dec / s  # (K, D): x = x_n / s + m, so a direction of x_n is 1/s as long in x
    n = raw_dec.norm(dim=1)  # (K,)
    if bool((n == 0).any()):
        raise ValueError(
            f"{int((n == 0).sum())} decoder rows are zero, so they have no direction: prune "
            "those latents or export with another decoder"
        )
    c = torch.ones_like(n) if decoder == "w_rows" else n  # (K,)
    W_dec = raw_dec / n[:, None]  # (K, D) unit rows
    b_dec = dec_bias / s + m  # (D,) raw-unit decoder bias
    W_enc = (s * W * c[:, None]).t()  # (D, K)
    if has_b_dec:
        # z = W((x - m) s - mu - b_dec_n) + b = s W (x - b_dec) + b, b_dec = (b_dec_n + mu) / s + m
        b_enc, apply = c * b, True
    else:
        # z = s W (x - m) - W mu + b; the sidecar's b_dec is a pure decoder bias
        b_enc, apply = c * (b - W @ mu - s * (W @ m)), False
    threshold = None
    if arch == "jumprelu":
        theta = model.threshold.detach().double()  # (K,) or () for BatchTopK
        threshold = (c * theta.expand_as(c)).float().contiguous()  # gate z > theta, scaled by c
    return Exported(
        W_enc=W_enc.float().contiguous(),
        b_enc=b_enc.float().contiguous(),
        W_dec=W_dec.float().contiguous(),
        b_dec=b_dec.float().contiguous(),
        code_scale=c.float().contiguous(),
        architecture=arch,
        apply_b_dec_to_input=apply,
        decoder=decoder,
        k=getattr(model, "k", None) if arch == "topk" else None,
        threshold=threshold,
        info={"model_type": fam.name, "normalization": norm.to_dict()},
    )


def check_free(out_dir: Path, names: tuple[str, ...], overwrite: bool) -> None:
    taken = [n for n in names if (out_dir / n).exists()]
    if taken and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds {taken}: choose another --out or pass overwrite"
        )


def export_saelens(
    model: nn.Module,
    out_dir: str | Path,
    *,
    norm: Normalization | None = None,
    x_fit: Tensor | None = None,
    model_config: dict | None = None,
    metadata: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `cfg.json`, `sae_weights.safetensors` and the `implicit_em.safetensors` sidecar.

    model, norm, x_fit: as in `exported_tensors`. model_config: our RunConfig as a dict (lets
    `load_native` rebuild the model). metadata: SAELens metadata fields (model_name,
    hook_name, context_size, dataset_path, ...), merged over ours. Returns out_dir.
    Raises FileExistsError rather than overwrite files unless overwrite=True.
    """
    out_dir = Path(out_dir)
    check_free(out_dir, (CFG, WEIGHTS, SIDECAR), overwrite)
    ex = exported_tensors(model, norm, x_fit)
    out_dir.mkdir(parents=True, exist_ok=True)
    ours = {
        **ex.info,
        "decoder": ex.decoder,
        "decoder_note": {
            "own": "the SAE's own decoder, rows normalised, norms folded into the codes",
            "lstsq": "post-hoc least-squares decoder (fit_linear_decoder) on given "
            "activations, rows normalised, norms folded into the codes",
            "w_rows": "the encoder's rows W normalised (no decoder exists; decode() is not a "
            "reconstruction)",
        }[ex.decoder],
        "read_out": READ_OUT,
        "code_scale": f"{SIDECAR}:code_scale",
        "model_config": model_config,
    }
    meta = {"sae_lens_version": SAELENS_VERSION, "sae_lens_training_version": None}
    meta.update(metadata or {})
    meta["implicit_em"] = ours
    cfg = {
        "architecture": ex.architecture,
        "d_in": int(ex.W_enc.shape[0]),
        "d_sae": int(ex.W_enc.shape[1]),
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": ex.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": meta,
    }
    if ex.architecture == "topk":
        cfg.update(k=int(ex.k), rescale_acts_by_decoder_norm=True)
    tensors = {"W_enc": ex.W_enc, "b_enc": ex.b_enc, "W_dec": ex.W_dec, "b_dec": ex.b_dec}
    if ex.threshold is not None:
        tensors["threshold"] = ex.threshold
    save_file(tensors, out_dir / WEIGHTS)
    side = {"code_scale": ex.code_scale}
    side.update({f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()})
    if norm is not None and norm.mean is not None:
        side["norm.mean"] = norm.mean.float().contiguous()
    save_file(side, out_dir / SIDECAR)
    (out_dir / CFG).write_text(json.dumps(cfg, indent=1))
    return out_dir


def read_cfg(path: str | Path) -> dict:
    """cfg.json of an SAELens directory, with a clear error when it is not one."""
    p = Path(path) / CFG
    if not p.is_file() or not (Path(path) / WEIGHTS).is_file():
        raise FileNotFoundError(
            f"{path} is not an SAELens SAE directory (needs {CFG} and {WEIGHTS})"
        )
    return json.loads(p.read_text())


def load_saelens(path: str | Path) -> SAELensModel:
    """An SAELens-format SAE (standard, topk, jumprelu) as an `SAELensModel`, raw units.

    Raises ValueError for other architectures or for run-time normalisation / hook_z
    reshaping (fold them into the weights first, e.g. with SAELens'
    `fold_activation_norm_scaling_factor`).
    """
    cfg = read_cfg(path)
    arch = cfg.get("architecture", "standard")
    if arch not in ARCHITECTURES:
        raise ValueError(f"architecture {arch!r} is not supported: use one of {ARCHITECTURES}")
    if cfg.get("normalize_activations", "none") != "none":
        raise ValueError(
            f"normalize_activations={cfg['normalize_activations']!r} is applied at run time: "
            "fold the normalisation into the weights and set it to 'none' first"
        )
    if cfg.get("reshape_activations", "none") != "none":
        raise ValueError("hook_z reshaping is not supported: load an SAE on flat activations")
    t = {k: v.float() for k, v in load_file(Path(path) / WEIGHTS).items()}
    return SAELensModel(
        t["W_enc"],
        t["b_enc"],
        t["W_dec"],
        t["b_dec"],
        arch,
        k=cfg.get("k"),
        threshold=t.get("threshold"),
        apply_b_dec_to_input=cfg.get("apply_b_dec_to_input", True),
        rescale_acts_by_decoder_norm=cfg.get("rescale_acts_by_decoder_norm", False),
    )


def load_native(path: str | Path) -> tuple[nn.Module, Normalization, Tensor]:
    """Our exported model rebuilt exactly from the sidecar: (model, normalisation, code_scale).

    The model sees normalised inputs, as in training. Raises FileNotFoundError when the
    directory was not written by `export_saelens` / `export_sparsify` of implicit-em.
    """
    path = Path(path)
    cfg_path = path / CFG
    side_path = path / SIDECAR
    if not side_path.is_file() or not cfg_path.is_file():
        raise FileNotFoundError(
            f"{path} has no {SIDECAR}: it was not exported by implicit-em; use load_saelens"
        )
    cfg = json.loads(cfg_path.read_text())
    ours = (cfg.get("metadata") or {}).get("implicit_em") or cfg.get("implicit_em") or {}
    if not ours.get("model_config"):
        raise ValueError(f"{cfg_path} records no model_config: cannot rebuild the model")
    from implicit_em.config import from_dict
    from implicit_em.runs import build_model

    side = load_file(side_path)
    model = build_model(from_dict(ours["model_config"]))
    model.load_state_dict({k[6:]: v for k, v in side.items() if k.startswith("model.")})
    nd = ours["normalization"]
    norm = Normalization(scale=nd["scale"], mean=side.get("norm.mean") if nd["center"] else None)
    return model.eval(), norm, side["code_scale"]


def readout_auroc(a: Tensor, present: Tensor) -> dict[str, Tensor]:
    """Per-unit AUROC of three read-outs of energies for detecting a binary feature.

    a: (N, K) energies; present: (N, K) bool, whether unit j's matched feature is present
    on sample i. Read-outs: `energy` a, `neg_energy` -a (= E_max - a_j for any constant
    E_max: lower energy = better match, per unit), `s` = max_k a_k - a_j (the distance
    below the worst component of the same sample), `resp` = softmax(-a). AUROC is the
    Mann-Whitney probability that a random positive scores above a random negative (ties
    half). Returns {name: (K,) AUROC}, NaN where a unit's feature is always or never present.
    """
    scores = {
        "energy": a,
        "neg_energy": -a,
        "s": a.max(dim=1, keepdim=True).values - a,  # (N, K)
        "resp": torch.softmax(-a, dim=1),  # (N, K)
    }
    return {name: _auroc(v, present) for name, v in scores.items()}


def _auroc(score: Tensor, pos: Tensor) -> Tensor:
    """(N, K) scores, (N, K) bool labels -> (K,) AUROC with average ranks for ties."""
    from scipy.stats import rankdata

    ranks = torch.as_tensor(rankdata(score.double().numpy(), axis=0))  # (N, K)
    n_pos = pos.sum(0).double()  # (K,)
    n_neg = pos.shape[0] - n_pos
    u = (ranks * pos).sum(0) - n_pos * (n_pos + 1) / 2  # Mann-Whitney U of the positives
    auc = u / (n_pos * n_neg)
    return torch.where((n_pos > 0) & (n_neg > 0), auc, torch.full_like(auc, float("nan")))
