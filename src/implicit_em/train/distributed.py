"""Data-parallel training (PyTorch DDP, launched by `torchrun`) with global-batch InfoMax terms.

Legend: R ranks, b rows per rank, B = R b the global batch, D input dim, K components.
a_r (b, K) the codes of rank r's shard, A (B, K) all ranks' codes, W (K, D).

The variance and correlation penalties are statistics of the global batch, so each rank
gathers A with a differentiable all-gather (as VICReg does) whose backward sums the gradient
over ranks. Each rank then computes a *share* L_r of the global loss, with sum_r L_r = L:

- LSE, a sum over samples: rank r sums over its own rows only;
- correlation, through the B x B Gram (B < K): rank r owns the rows U_r of
  ||U U^T||_F^2 = sum_r ||U_r U^T||_F^2, so no rank forms the whole B x B matrix, and its
  backward returns only rows r of the gradient 4 (U U^T) U;
- variance and weight redundancy: identical on every rank, divided by R.

The gather's backward gives rank r the gradient dL/da_r of the *whole* loss; DDP then
averages parameter gradients over ranks, dividing by R, so each rank back-propagates R * L_r.
The test (tests/test_distributed.py) checks loss and gradients against one process on the
concatenated batch.

    torchrun --nproc-per-node 2 -m implicit_em.train.distributed --random-tokens 1000000 \\
        --hidden-dim 16384 --batch-size 4096 --steps 50 --amp
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP

from implicit_em import tracking
from implicit_em.config import LossConfig
from implicit_em.data.batches import MIN_BATCH_ROWS
from implicit_em.families import family, family_of
from implicit_em.families.registry import DEFAULT_FAMILY
from implicit_em.losses import (
    _unit_columns,
    column_stats,
    constant_columns,
    correlation_loss,
    correlation_probes,
    sketch_cross,
    sketch_penalty,
    variance_from_stats,
    variance_loss,
    weight_redundancy_loss,
)
from implicit_em.tracking import Tracker, TrackingOptions
from implicit_em.train.loop import optimizer_step


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialized."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherRows(torch.autograd.Function):
    """(b, K) on each rank -> (R b, K) on every rank; backward sums dL/dA over ranks and
    returns this rank's rows (FullGatherLayer of facebookresearch/vicreg)."""

    @staticmethod
    def forward(ctx, a: Tensor) -> Tensor:
        parts = [torch.empty_like(a) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, a.contiguous())
        return torch.cat(parts)  # (R b, K)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # sum over ranks of each rank's dL_r/dA
        b = grad.shape[0] // dist.get_world_size()
        r = dist.get_rank()
        return grad[r * b : (r + 1) * b]  # (b, K)


class _GramRowsSquareSum(torch.autograd.Function):
    """This rank's share ||U_r U^T||_F^2 of ||U U^T||_F^2 (U_r: rows r b .. (r+1) b of U).

    The gradient of the whole sum is 4 (U U^T) U; its rows r are 4 (U_r U^T) U, which this rank
    returns (zeros elsewhere). The shares' gradients then add up to the whole gradient once
    the gather's backward sums over ranks: 2 b B K multiply-adds forward and 2 b B K backward,
    half of the one-process cost per rank at R = 2.
    """

    @staticmethod
    def forward(ctx, u: Tensor, rank: int, b: int) -> Tensor:
        rows = u[rank * b : (rank + 1) * b] @ u.t()  # (b, B)
        ctx.save_for_backward(u, rows)
        ctx.rank, ctx.b = rank, b
        return rows.square().sum()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        u, rows = ctx.saved_tensors
        out = torch.zeros_like(u)  # (B, K)
        out[ctx.rank * ctx.b : (ctx.rank + 1) * ctx.b] = (4 * grad) * (rows @ u)  # (b, K)
        return out, None, None


class _AllReduceSum(torch.autograd.Function):
    """Sum of x over ranks, on every rank; backward sums dL/dx over ranks likewise."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(x: Tensor) -> Tensor:
    """Differentiable sum over ranks; x itself when R = 1."""
    return x if world()[1] == 1 else _AllReduceSum.apply(x)


def global_column_stats(a: Tensor) -> tuple[Tensor, Tensor]:
    """(mean, centred sum of squares) of every column over the global batch, differentiably.

    Each rank gathers the others' (mean, ss) (2 K numbers each) and combines them as Chan et
    al.'s parallel variance does (equal shard sizes): no (B, K) tensor crosses ranks. Columns
    constant over the global batch (`losses.constant_columns`, judged again after combining:
    the shards' means differ by round-off) get ss = 0, as in `losses.column_stats`.
    """
    mean, ss = column_stats(a)  # (K,), (K,)
    _, n = world()
    if n == 1:
        return mean, ss
    parts = gather_rows(torch.stack([mean, ss]))  # (2 R, K)
    means, sss = parts[0::2], parts[1::2]  # (R, K) each
    g_mean = means.mean(dim=0)
    g_ss = sss.sum(dim=0) + a.shape[0] * (means - g_mean).square().sum(dim=0)
    return g_mean, g_ss * ~constant_columns(g_mean, g_ss, n * a.shape[0])


def gather_rows(a: Tensor) -> Tensor:
    """Differentiable all-gather of a (b, K) along rows -> (R b, K); a itself when R = 1."""
    _, n = world()
    return a if n == 1 else _GatherRows.apply(a)


def sketched_terms_share(a: Tensor, loss: LossConfig, probes: Tensor) -> tuple[Tensor, Tensor]:
    """This rank's share (var, tc) with the sketched correlation (`loss.tc_probes`).

    Only sufficient statistics cross ranks: the columns' (mean, ss) (2 K numbers per rank)
    and the rank's part of U^T U V (K x m), all-reduced. probes (K, m) must be equal on
    every rank.
    """
    _, n = world()
    mean, ss = global_column_stats(a)
    cross, diag = sketch_cross(a, mean, ss, probes)  # this rank's rows of U^T U V
    tc = sketch_penalty(all_reduce_sum(cross), diag, probes) / n
    var = variance_from_stats(ss, n * a.shape[0], loss.variance_eps) / n
    return var, tc


def encoder_terms_share(
    a: Tensor, W: Tensor, loss: LossConfig, probes: Tensor | None = None, with_wr: bool = True
) -> dict[str, Tensor]:
    """This rank's share of each unweighted encoder term; summed over ranks, the terms of
    `losses.combined_loss` on the global batch.

    a: (b, K) this rank's codes, W: (K, D); probes (K, m) for the sketched correlation
    (equal on every rank). Returns scalars lse, var, tc, and wr unless with_wr is False
    (wr depends on W alone; at K = 16384 it costs 11 GFLOP, so it is only computed when it
    carries gradient or is logged).
    """
    _, n = world()
    lse = -torch.logsumexp(-a, dim=1).sum()  # own rows only: (b,) -> ()
    out = {"lse": lse}
    if probes is not None:
        out["var"], out["tc"] = sketched_terms_share(a, loss, probes)
    else:
        out["var"], out["tc"] = _exact_terms_share(a, loss)
    if with_wr or loss.lambda_wr:
        with torch.set_grad_enabled(bool(loss.lambda_wr) and torch.is_grad_enabled()):
            out["wr"] = weight_redundancy_loss(W, validate=False) / n
    return out


def _exact_terms_share(a: Tensor, loss: LossConfig) -> tuple[Tensor, Tensor]:
    """(var, tc) shares through the gathered codes A (B, K)."""
    rank, n = world()
    A = gather_rows(a)  # (B, K)
    var = variance_loss(A, loss.variance_eps, validate=False) / n
    if A.shape[0] < A.shape[1]:
        U = _unit_columns(A)  # (B, K), U^T U = Corr(A)
        tc = _GramRowsSquareSum.apply(U, rank, a.shape[0]) - U.square().sum(0).square().sum() / n
    else:
        tc = correlation_loss(A, validate=False) / n  # K x K path: every rank, divided by R
    return var, tc


def step_terms(
    net: nn.Module,
    x: Tensor,
    loss: LossConfig,
    dead: Tensor | None = None,
    amp: bool = False,
    probes: Tensor | None = None,
    with_wr: bool = True,
) -> tuple[dict[str, Tensor], Tensor, float]:
    """Forward one shard x (b, D) through net (a model or its DDP wrapper).

    Returns (terms, a (b, K), grad_scale): the unweighted terms as this rank's share (encoder)
    or as the local mean (SAEs, whose losses are means: DDP's averaging already gives the
    global mean), and the factor to multiply the weighted total by before backward.
    probes, with_wr: see `encoder_terms_share` (encoder only).
    """
    model = net.module if isinstance(net, DDP) else net
    fam = family_of(model)
    _, n = world()
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        out = net(x)
    out = tuple(t.float() for t in out) if amp else out
    if fam.batch_statistics:  # the encoder's var and tc: ranks share column statistics
        a = out[0]  # (b, K)
        return encoder_terms_share(a, model.W, loss, probes, with_wr), a, float(n)
    terms, a = fam.terms_from_outputs(model, x, out, loss, dead, amp)  # per-sample means
    return terms, a, 1.0


def reduce_terms(terms: dict[str, Tensor], kind: str) -> dict[str, Tensor]:
    """Global value of each term (detached): the sum of the shares (families whose terms use
    batch statistics: the encoder) or the mean of the local means (SAEs). kind: family name."""
    _, n = world()
    vals = torch.stack([t.detach().float() for t in terms.values()])  # (T,)
    if n > 1:
        dist.all_reduce(vals)
        if not family(kind).batch_statistics:
            vals /= n
    return dict(zip(terms, vals, strict=True))


def train_steps(
    net: nn.Module,
    x_train: Tensor,
    loss: LossConfig,
    *,
    global_batch: int,
    steps: int,
    lr: float = 1e-3,
    seed: int = 0,
    amp: bool = False,
    log_every: int = 0,
    warmup: int = 0,
    compile: bool = False,
    tracker: Tracker | None = None,
) -> dict:
    """Adam for `steps` steps on x_train (N, D), which every rank holds whole (any device).

    Each step draws one global batch of rows from a seeded permutation shared by all ranks
    and gives rank r its r-th slice. Only full global batches are drawn (the rows left over
    at the end of a permutation wait for the next one), so no step sees fewer than
    global_batch >= 2 rows: the batch rule of `data.batches` holds without merging. Returns {"history": [...], "tokens_per_s": float} with
    tokens/s measured over the steps after `warmup`. With loss.tc_probes, every rank draws
    the same probes from a generator seeded with `seed`. compile: run the forward and loss
    through `torch.compile` (fuses the elementwise passes over the (b, K) codes; compile
    time falls inside the warm-up steps, so use warmup >= 3). tracker: gets each logged
    record and the final throughput (pass it on rank 0 only; the caller closes it).
    """
    model = net.module if isinstance(net, DDP) else net
    fam = family_of(model)
    kind = fam.name
    rank, n = world()
    if global_batch % n:
        raise ValueError(f"global batch {global_batch} must be divisible by {n} ranks")
    if not MIN_BATCH_ROWS <= global_batch <= len(x_train):
        raise ValueError(
            f"global batch {global_batch} must be between {MIN_BATCH_ROWS} (batch statistics) "
            f"and the {len(x_train)} training rows: change --batch-size"
        )
    b = global_batch // n
    device = next(model.parameters()).device
    weights = fam.weights(loss, model.hidden_dim)
    opt = torch.optim.Adam(net.parameters(), lr=lr, fused=device.type == "cuda")
    state = fam.init_state(model)  # TopK: since_fired (K,)
    probe_gen = torch.Generator(device).manual_seed(seed)  # same stream on every rank
    sketch = fam.batch_statistics and loss.tc_probes is not None
    with_wr = bool(loss.lambda_wr) or not fam.batch_statistics

    def forward(x: Tensor, dead: Tensor | None, probes: Tensor | None):
        terms, a, scale = step_terms(net, x, loss, dead, amp, probes, with_wr)
        return sum(weights[k] * terms[k] for k in terms) * scale, terms, a

    forward_fn = forward
    if compile:  # static shapes; each model family, K and probes setting is its own graph
        cfg = torch._dynamo.config
        limit = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
        setattr(cfg, limit, max(getattr(cfg, limit), 64))
        forward_fn = torch.compile(forward, dynamic=False)
    gen = torch.Generator().manual_seed(seed)

    def permutation() -> Tensor:  # on x_train's device: slicing it needs no host sync
        return torch.randperm(x_train.shape[0], generator=gen).to(x_train.device)

    order, pos = permutation(), 0
    history: list[dict] = []
    tic = None
    for step in range(steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            tic = time.perf_counter()
        if pos + global_batch > len(order):
            order, pos = permutation(), 0
        idx = order[pos + rank * b : pos + (rank + 1) * b]
        pos += global_batch
        x = x_train[idx].to(device, torch.float32, non_blocking=True)  # (b, D)
        dead = fam.dead_mask(state, loss) if state else None
        probes = None
        if sketch:
            probes = correlation_probes(model.hidden_dim, loss.tc_probes, x, probe_gen)
        scaled_total, terms, a = forward_fn(x, dead, probes)
        optimizer_step(model, opt, scaled_total)
        if state:
            fired = (a > 0).any(dim=0).to(torch.int32)  # (K,)
            if n > 1:
                dist.all_reduce(fired, op=dist.ReduceOp.MAX)
            fam.track(state, fired.bool())
        if log_every and (step + 1) % log_every == 0:
            rec = {k: float(v) for k, v in reduce_terms(terms, kind).items()}
            if "wr" not in rec and "wr" in weights:
                with torch.no_grad():  # W is the same on every rank: no reduction
                    rec["wr"] = float(weight_redundancy_loss(model.W, validate=False))
            rec["total"] = sum(weights[k] * rec[k] for k in weights)
            history.append({"step": step + 1, **rec})
            if tracker is not None:
                tracker.log(rec, step=step + 1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - tic if tic is not None else float("nan")
    timed = steps - warmup
    if tracker is not None:
        tps = timed * global_batch / seconds if timed > 0 else float("nan")
        tracker.log_final({**(history[-1] if history else {}), "seconds": seconds,
                           "tokens_per_s": tps})  # fmt: skip
    return {
        "history": history,
        "tokens_per_s": timed * global_batch / seconds if timed > 0 else float("nan"),
        "seconds": seconds,
    }


def init_device(distributed: bool = True) -> tuple[torch.device, int]:
    """Join the process group (NCCL on GPUs, else gloo) when `distributed`, pick this rank's
    device (TF32 matmuls on GPUs). Returns (device, local rank)."""
    cuda = torch.cuda.is_available()
    if distributed:
        dist.init_process_group("nccl" if cuda else "gloo")
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
    return device, local


@dataclass(frozen=True)
class DistributedOptions(TrackingOptions):
    """Data-parallel training of one model on LM activations or random tokens, timed; run
    under `torchrun --nproc-per-node R -m implicit_em.train.distributed ...` (or alone: one rank)."""

    acts: str | None = None
    """harvest directory (train split, normalized)"""
    random_tokens: int = 0
    """random N(0,1) data instead"""
    input_dim: int = 576
    """D for --random-tokens"""
    type: str = DEFAULT_FAMILY
    """model family (model.type)"""
    hidden_dim: int = 16384
    """K"""
    k: int = 32
    """active latents of the k-sparse families"""
    batch_size: int = 4096
    """global batch B"""
    steps: int = 100
    """optimizer steps"""
    warmup: int = 10
    """steps before timing starts"""
    lr: float = 1e-3
    """Adam learning rate"""
    seed: int = 1
    """seeds the weights, the data order and the probes"""
    amp: bool = False
    """bf16 autocast, float32 losses"""
    tc_probes: int | None = None
    """sketch the correlation penalty with this many probes (default: exact)"""
    compile: bool = False
    """torch.compile the forward + loss"""
    bf16_grads: bool = False
    """all-reduce gradients in bf16 (DDP's bf16_compress_hook)"""
    log_every: int = 0
    """record the terms every this many steps (0: never)"""
    out: str | None = None
    """rank 0 writes a JSON summary here"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.acts and self.random_tokens < self.batch_size:
            raise ValueError("pass --acts or --random-tokens >= --batch-size")


def run_ddp(args: DistributedOptions) -> int:
    """Train on this rank; rank 0 prints (and writes) the JSON summary."""
    from implicit_em import runs
    from implicit_em.config import ModelConfig, RunConfig

    distributed = "RANK" in os.environ
    cuda = torch.cuda.is_available()
    device, local = init_device(distributed)
    rank, n = world()
    if args.acts:
        from implicit_em.data.lm.activations import Normalization, read_split

        x, _ = read_split(args.acts, "train", norm=Normalization.from_manifest(args.acts))
    else:
        gen = torch.Generator().manual_seed(args.seed)
        x = torch.randn(args.random_tokens, args.input_dim, generator=gen)
    x = x.to(device, torch.bfloat16 if cuda else torch.float32)  # whole set on the device
    cfg = RunConfig(model=ModelConfig(type=args.type, input_dim=x.shape[1],
                                      hidden_dim=args.hidden_dim, k=args.k),
                    loss=LossConfig(tc_probes=args.tc_probes))  # fmt: skip
    torch.manual_seed(args.seed)
    model = runs.build_model(cfg).to(device)
    net = DDP(model, device_ids=[local] if cuda else None) if distributed else model
    if distributed and args.bf16_grads:
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import bf16_compress_hook

        net.register_comm_hook(None, bf16_compress_hook)
    tracker = tracking.for_rank(args, rank)  # one record per run, on rank 0
    if tracker is not None:
        tracker.log_config({**cfg.to_dict(), "world_size": n})
    try:
        res = train_steps(net, x, cfg.loss, global_batch=args.batch_size, steps=args.steps,
                          lr=args.lr, seed=args.seed, amp=args.amp, log_every=args.log_every,
                          warmup=args.warmup, compile=args.compile, tracker=tracker)  # fmt: skip
    finally:
        if tracker is not None:
            tracker.close()
    summary = {
        "world_size": n,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "type": args.type,
        "K": args.hidden_dim,
        "D": x.shape[1],
        "global_batch": args.batch_size,
        "amp": args.amp,
        "tc_probes": args.tc_probes,
        "compile": args.compile,
        "bf16_grads": args.bf16_grads,
        "steps": args.steps,
        "tokens_per_s": res["tokens_per_s"],
        "last": res["history"][-1] if res["history"] else None,
    }
    if rank == 0:
        print(json.dumps(summary))
        if args.out:
            Path(args.out).write_text(json.dumps(summary, indent=1))
    if distributed:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":  # torchrun -m implicit_em.train.distributed: the `ddp` command
    from implicit_em.cli import main

    sys.exit(main(["ddp", *sys.argv[1:]]))
