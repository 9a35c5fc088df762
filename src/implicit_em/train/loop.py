"""Training engine for one model: train_epoch, evaluate, train (with run directories and resume).

Legend: B batch, D input dim, K components. x (B, D), a (B, K), W (K, D).
`train` is the plain reference loop; `implicit_em.train.stacked` trains many models at once and is
tested against it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from implicit_em import metrics, runs
from implicit_em.config import LossConfig, RunConfig
from implicit_em.data.batches import MIN_BATCH_ROWS, TensorBatches
from implicit_em.families import family, family_of
from implicit_em.families import names as family_names
from implicit_em.tracking import Tracker

# Terms each model family reports, in order; "total" is the weighted sum that is minimized.
TERMS = {name: family(name).term_names for name in family_names()}


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def model_type(model: nn.Module) -> str:
    """The registry name of the model's family (`families.family_of`)."""
    return family_of(model).name


def term_weights(kind: str, loss: LossConfig, k: int) -> dict[str, float]:
    """Weight of each reported term in the total, for family `kind` with k components
    (`Family.weights`; the encoder's lambdas are rescaled from loss.reference_k to K)."""
    return family(kind).weights(loss, k)


def loss_terms(
    model: nn.Module,
    x: Tensor,
    loss: LossConfig,
    dead: Tensor | None = None,
    amp: bool = False,
    with_wr: bool = True,
) -> dict:
    """Unweighted loss terms (scalars) and the activations a (B, K) for one batch x (B, D).

    dead: (K,) bool mask of latents that have not fired recently (TopK's AuxK); else ignored.
    amp: run the model under bf16 autocast and cast its outputs to float32 before the losses
    (log Var and the correlation's sums of squares lose too much in bf16).
    with_wr=False: leave out the encoder's wr metric at lambda_wr = 0 (it carries no gradient;
    a trainer that logs it only now and then computes it apart, as `distributed.Trainer`).
    """
    return family_of(model).loss_terms(model, x, loss, dead, amp, with_wr=with_wr)


def reconstruction_terms(
    model: nn.Module,
    x: Tensor,
    x_hat: Tensor,
    a: Tensor,
    loss: LossConfig,
    dead: Tensor | None = None,
    amp: bool = False,
) -> dict:
    """Unweighted terms of an encoder-decoder family from one forward's outputs.

    x, x_hat: (B, D); a: (B, K). No "total": weights are the caller's.
    """
    return family_of(model).terms_from_outputs(model, x, (x_hat, a), loss, dead, amp)[0]


def make_optimizer(model: nn.Module, name: str, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, foreach=False)
    return torch.optim.SGD(model.parameters(), lr=lr, foreach=False)


def optimizer_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    total: Tensor,
    after_backward: Callable[[], None] | None = None,
) -> None:
    """Backward `total` and take one optimizer step, with the family's housekeeping around it
    (TopK: the gradient parallel to each unit-norm decoder column is removed before the step
    and the columns are renormalized after it). For DDP, `model` is the wrapped module.
    after_backward: called right after backward, before the housekeeping (data parallel:
    `distributed.GradAverage`, the gradients averaged over the ranks)."""
    fam = family_of(model)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if after_backward is not None:
        after_backward()
    fam.before_step(model)
    optimizer.step()
    fam.after_step(model)


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

    state: the family's mutable trainer state (`Family.init_state`; TopK: `since_fired` (K,)
    steps since each latent fired); None or {} for none.
    amp: bf16 autocast for the model, float32 losses (see `loss_terms`).
    No host synchronisation inside the loop; the means are read once at the end.
    """
    fam = family_of(model)
    weights = fam.weights(loss, model.hidden_dim)
    sums = {name: torch.zeros((), device=batches.x.device) for name in (*weights, "total")}
    steps = 0
    model.train()
    for x, _ in batches:
        dead = fam.dead_mask(state, loss) if state else None
        terms = fam.loss_terms(model, x, loss, dead, amp)
        a = terms.pop("a")
        total = sum(weights[k] * terms[k] for k in weights)
        optimizer_step(model, optimizer, total)
        if state:
            fam.track(state, (a > 0).any(dim=0))  # fired latents, (K,)
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
    a = model.encode(x)  # (N, K)
    l0, density = metrics.sparsity_l0(a, threshold)
    out = {
        "dead_units": metrics.dead_units(a, threshold),
        "redundancy": metrics.redundancy_score(a),
        "l0": l0,
        "density": density,
        "w_row_norm": float(model.W.norm(dim=1).mean()),
    }
    out.update(family_of(model).readout(model, x, a))
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
    tracker: Tracker | None = None,
) -> list[dict]:
    """Train `model` on x_train (N, D), N >= 2, for cfg.training.epochs; return the history.

    Batches follow `data.batches.batch_slices`: a final batch of one row joins the batch
    before it (N = 129 at batch size 128 trains on one batch of 129 rows per epoch).

    Each history record holds the mean of every loss term over the epoch's steps and
    `evaluate(model, x_eval)` (default: x_train). With run_dir, writes config.json,
    model.safetensors, history.jsonl and a checkpoint every epoch, and metrics.json at the end;
    resume=True continues from the last checkpoint and ends where an uninterrupted run would.
    stop_after: stop after this many epochs in this call (to simulate a kill in tests).
    tracker: an `implicit_em.tracking` tracker given the config, each epoch's record and the
    last record as final metrics (the caller closes it).
    """
    t = cfg.training
    if len(x_train) < MIN_BATCH_ROWS:
        raise ValueError(
            f"x_train has {len(x_train)} rows, but batch statistics need at least "
            f"{MIN_BATCH_ROWS}: pass more samples"
        )
    device = x_train.device
    model.to(device)
    x_eval = x_train if x_eval is None else x_eval
    optimizer = make_optimizer(model, t.optimizer, t.lr)
    batches = TensorBatches(x_train, None, t.batch_size, shuffle=True, seed=t.seed)
    state = family_of(model).init_state(model)
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
    if tracker is not None:
        tracker.log_config(cfg.to_dict())
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
        if tracker is not None:
            tracker.log(rec, step=epoch + 1)
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
    if tracker is not None and history:
        tracker.log_final({**history[-1], "epochs_completed": len(history)})
    if run_dir is not None and (stop_after is None or len(history) >= t.epochs):
        final = dict(history[-1]) if history else {}
        final["epochs_completed"] = len(history)
        runs.atomic_write_json(run_dir / runs.METRICS, final)
        runs.write_manifest(run_dir)
    return history
