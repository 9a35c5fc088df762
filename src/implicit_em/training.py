"""Training engine for one model: train_epoch, evaluate, train (with run directories and resume).

Legend: B batch, D input dim, K components. x (B, D), a (B, K), W (K, D).
`train` is the plain reference loop; `implicit_em.stacked` trains many models at once and is
tested against it.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from implicit_em import metrics, runs
from implicit_em.config import LossConfig, RunConfig
from implicit_em.data.batches import TensorBatches
from implicit_em.losses import combined_loss, correlation_probes, sae_loss, topk_loss
from implicit_em.models import Encoder, TopKSAE

# Terms each model family reports, in order; "total" is the weighted sum that is minimized.
TERMS = {
    "encoder": ("lse", "var", "tc", "wr"),
    "standard_sae": ("mse", "l1"),
    "topk_sae": ("mse", "aux"),
}


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def model_type(model: nn.Module) -> str:
    if isinstance(model, Encoder):
        return "encoder"
    if isinstance(model, TopKSAE):
        return "topk_sae"
    return "standard_sae"


def term_weights(kind: str, loss: LossConfig, k: int) -> dict[str, float]:
    """Weight of each reported term in the total, for a model family with k components.

    Encoder: var sums over K units and tc over K(K-1) pairs, so with loss.reference_k = R
    their lambdas are scaled by R / K and R(R-1) / (K(K-1)) (see LossConfig.reference_k).
    """
    if kind == "encoder":
        var_scale = tc_scale = 1.0
        if loss.reference_k is not None:
            r = loss.reference_k
            var_scale = r / k
            tc_scale = r * (r - 1) / (k * (k - 1)) if k > 1 else 1.0
        return {
            "lse": loss.lambda_lse,
            "var": loss.lambda_var * var_scale,
            "tc": loss.lambda_tc * tc_scale,
            "wr": loss.lambda_wr,
        }
    if kind == "standard_sae":
        return {"mse": 1.0, "l1": loss.l1_weight}
    return {"mse": 1.0, "aux": loss.aux_coef}


def loss_terms(
    model: nn.Module,
    x: Tensor,
    loss: LossConfig,
    dead: Tensor | None = None,
    amp: bool = False,
) -> dict:
    """Unweighted loss terms (scalars) and the activations a (B, K) for one batch x (B, D).

    dead: (K,) bool mask of TopK latents that have not fired recently (AuxK); else ignored.
    amp: run the model under bf16 autocast and cast its outputs to float32 before the losses
    (log Var and the correlation's sums of squares lose too much in bf16).
    """
    kind = model_type(model)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(x)
    if amp:
        out = tuple(t.float() for t in out)
    if kind == "encoder":
        a, _ = out  # (B, K)
        # lambda_wr only decides whether wr carries gradient; weights are applied by the caller.
        probes = None
        if loss.tc_probes is not None:
            probes = correlation_probes(a.shape[1], loss.tc_probes, a)
        terms = combined_loss(a, model.W, loss, validate=False, probes=probes,
                              responsibilities=False)  # fmt: skip
        terms.pop("total")
    else:
        x_hat, a = out  # (B, D), (B, K)
        terms = reconstruction_terms(model, x, x_hat, a, loss, dead, amp)
    terms["a"] = a
    return terms


def reconstruction_terms(
    model: nn.Module,
    x: Tensor,
    x_hat: Tensor,
    a: Tensor,
    loss: LossConfig,
    dead: Tensor | None = None,
    amp: bool = False,
) -> dict:
    """Unweighted terms of the encoder-decoder baselines from one forward's outputs.

    x, x_hat: (B, D); a: (B, K). StandardSAE: mse, l1. TopKSAE: mse, aux (AuxK on the
    latents in `dead`, zero when none are dead). No "total": weights are the caller's.
    """
    if model_type(model) == "standard_sae":
        terms = sae_loss(x, x_hat, a, loss.l1_weight)
    else:
        aux_hat = None
        if dead is not None and loss.aux_coef > 0:
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
                aux_hat = model.aux_reconstruction(x, dead, loss.aux_k)  # (B, D)
            aux_hat = aux_hat.float() if amp else aux_hat
        terms = topk_loss(x, x_hat, aux_hat, loss.aux_coef)
        if dead is not None:
            terms["aux"] = terms["aux"] * dead.any()  # no dead latents: no AuxK loss
    terms.pop("total")
    return terms


def make_optimizer(model: nn.Module, name: str, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, foreach=False)
    return torch.optim.SGD(model.parameters(), lr=lr, foreach=False)


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, total: Tensor) -> None:
    """Backward `total` and take one optimizer step, with the TopK SAE's decoder housekeeping:
    the gradient parallel to each unit-norm decoder column is removed before the step and the
    columns are renormalized after it (for DDP, `model` is the wrapped module)."""
    topk = model_type(model) == "topk_sae"
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if topk:
        model.remove_parallel_grads_()
    optimizer.step()
    if topk:
        model.normalize_decoder_()


def train_epoch(
    model: nn.Module,
    batches: TensorBatches,
    optimizer: torch.optim.Optimizer,
    loss: LossConfig,
    state: dict | None = None,
    progress: tqdm | None = None,
    amp: bool = False,
) -> dict:
    """One pass over `batches`. Returns the mean of each term and of the total over steps.

    state: mutable trainer state (TopK: `since_fired` (K,) steps since each latent fired).
    amp: bf16 autocast for the model, float32 losses (see `loss_terms`).
    No host synchronisation inside the loop; the means are read once at the end.
    """
    kind = model_type(model)
    weights = term_weights(kind, loss, model.hidden_dim)
    sums = {name: torch.zeros((), device=batches.x.device) for name in (*weights, "total")}
    steps = 0
    model.train()
    for x, _ in batches:
        dead = None
        if kind == "topk_sae":
            dead = state["since_fired"] >= loss.dead_steps
        terms = loss_terms(model, x, loss, dead, amp)
        a = terms.pop("a")
        total = sum(weights[k] * terms[k] for k in weights)
        optimizer_step(model, optimizer, total)
        if kind == "topk_sae":
            fired = (a > 0).any(dim=0)  # (K,)
            state["since_fired"] = torch.where(fired, 0, state["since_fired"] + 1)
        for k in weights:
            sums[k] += terms[k].detach()
        sums["total"] += total.detach()
        steps += 1
        if progress is not None:
            progress.update(1)
    return {k: float(v) / steps for k, v in sums.items()}


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, threshold: float = 0.01) -> dict:
    """Metrics of a model on data x (N, D), in one pass.

    All models: dead units (variance < threshold), redundancy, L0, mean row norm of W.
    Decoder-free encoder: responsibility entropy and W^T reconstruction MSE (raw and
    scale-normalized). SAEs: reconstruction MSE through their decoder.
    """
    model.eval()
    kind = model_type(model)
    a = model.encode(x)  # (N, K)
    l0, density = metrics.sparsity_l0(a, threshold)
    out = {
        "dead_units": metrics.dead_units(a, threshold),
        "redundancy": metrics.redundancy_score(a),
        "l0": l0,
        "density": density,
        "w_row_norm": float(model.W.norm(dim=1).mean()),
    }
    if kind == "encoder":
        r = torch.softmax(-a, dim=1)
        out["resp_entropy"] = metrics.responsibility_entropy(r)
        out["recon_mse"] = metrics.reconstruction_mse(x, a, model.W)
        out["recon_mse_normalized"] = metrics.reconstruction_mse(x, a, model.W, normalize=True)
        out["lse_per_sample"] = float(-torch.logsumexp(-a, dim=1).mean())
    else:
        out["recon_mse"] = float((model.decode(a) - x).square().mean())
    return out


def finite_record(rec: dict) -> bool:
    """True when every float in a history record is finite (a diverged run is not)."""
    return all(np.isfinite(v) for v in rec.values() if isinstance(v, float))


def train(
    model: nn.Module,
    x_train: Tensor,
    cfg: RunConfig,
    *,
    x_eval: Tensor | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> list[dict]:
    """Train `model` on x_train (N, D) for cfg.training.epochs; return per-epoch history.

    Each history record holds the mean of every loss term over the epoch's steps and
    `evaluate(model, x_eval)` (default: x_train). With run_dir, writes config.json,
    model.safetensors, history.jsonl and a checkpoint every epoch, and metrics.json at the end;
    resume=True continues from the last checkpoint and ends where an uninterrupted run would.
    stop_after: stop after this many epochs in this call (to simulate a kill in tests).
    """
    t = cfg.training
    device = x_train.device
    model.to(device)
    x_eval = x_train if x_eval is None else x_eval
    optimizer = make_optimizer(model, t.optimizer, t.lr)
    batches = TensorBatches(x_train, None, t.batch_size, shuffle=True, seed=t.seed)
    state: dict = {}
    if model_type(model) == "topk_sae":
        state["since_fired"] = torch.zeros(model.hidden_dim, dtype=torch.long, device=device)
    history: list[dict] = []
    start = 0
    if run_dir is not None:
        run_dir = runs.prepare_run_dir(run_dir, resume, overwrite)
        ckpt_path = run_dir / runs.CHECKPOINT
        if resume:
            runs.check_same_config(run_dir, cfg)
        if resume and runs.is_complete(run_dir):
            done = len(runs.read_history(run_dir))
            if t.epochs < done:
                raise ValueError(f"cannot resume {run_dir} at training.epochs={t.epochs}: it has "
                                 f"already trained {done} epochs; pass at least that many")  # fmt: skip
            if t.epochs == done:
                model.load_state_dict(runs.load_weights(run_dir, device))
                return runs.read_history(run_dir)
            runs.load_checkpoint(run_dir, device)  # extending needs it intact; fail before any change
            for name in (runs.MANIFEST, runs.METRICS):  # unfinished again until the new end
                (run_dir / name).unlink(missing_ok=True)
        if resume and ckpt_path.is_file():
            ckpt = runs.load_checkpoint(run_dir, device)
            if ckpt["epoch"] > t.epochs:
                raise ValueError(f"cannot resume {run_dir} at training.epochs={t.epochs}: it has "
                                 f"already trained {ckpt['epoch']} epochs; pass at least that many")  # fmt: skip
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            state = ckpt["state"]
            start = ckpt["epoch"]
            history = runs.read_history(run_dir)[:start]
        runs.save_model(model, cfg, run_dir)
    bar = tqdm(
        total=(t.epochs - start) * len(batches), disable=not progress, desc="train", unit="step"
    )
    for epoch in range(start, t.epochs):
        if stop_after is not None and epoch - start >= stop_after:
            break
        tic = time.perf_counter()
        batches.set_epoch(epoch)
        rec = {
            "epoch": epoch + 1,
            **train_epoch(model, batches, optimizer, cfg.loss, state, bar, amp=t.amp),
        }
        rec.update(evaluate(model, x_eval))
        rec["seconds"] = time.perf_counter() - tic
        history.append(rec)
        bar.set_postfix(loss=f"{rec['total']:.4g}", dead=rec["dead_units"])
        if run_dir is not None:
            runs.write_history(run_dir, history)
            runs.save_model(model, cfg, run_dir)
            snapshot = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "state": state,
                "epoch": epoch + 1,
            }
            runs.atomic_save(lambda p, s=snapshot: torch.save(s, p), run_dir / runs.CHECKPOINT)
        if not finite_record(rec):
            tqdm.write(f"epoch {epoch + 1}: non-finite loss or metric, stopping this run")
            break
    bar.close()
    if run_dir is not None and (stop_after is None or len(history) >= t.epochs):
        final = dict(history[-1]) if history else {}
        final["epochs_completed"] = len(history)
        runs.atomic_write_json(run_dir / runs.METRICS, final)
        runs.write_manifest(run_dir)
    return history
