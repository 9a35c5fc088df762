"""Data-parallel training (PyTorch DDP, launched by `torchrun`) with global-batch InfoMax terms.

Legend: R ranks, b rows per rank, B = R b the global batch, D input dim, K components, m
probes. a_r (b, K) the codes of rank r's shard, A (B, K) all ranks' codes, W (K, D), V (K, m).

The variance and correlation penalties are statistics of the global batch. Each rank computes
a *share* L_r of the global loss, with sum_r L_r = L, and back-propagates R L_r: DDP averages
the parameter gradients over ranks (dividing by R), and every collective below is built so
that rank r receives R dL/da_r, the gradient of the *whole* loss for its own rows.

Communication per step (one collective per dependency level of the statistics, each on one
flat buffer; `tests/test_distributed.py` counts them):

- sketched correlation (`loss.tc_probes`), no (B, K) tensor crosses ranks:
  forward  1. all-gather of the shards' column (mean, centred sum of squares), 2 K per rank,
              combined as Chan et al.'s parallel variance;
           2. all-reduce of the rank's part of U^T U V (K x m); U's scale s = ss^-1/2 needs the
              global ss of step 1, so the two cannot be merged without changing the estimate;
  backward 3. all-reduce of dL/d(mean, ss) (2 K per rank): dL/ds needs (U^T U) (s R), a third
              sum over all rows; the penalty itself is computed identically on every rank from
              the reduced U^T U V, so its backward needs no collective (`_SumReplicated`);
- exact correlation: forward all-gather of a_r (B x K), every rank forming the statistics and
  its rows of the Gram; backward all-reduce of dL/d(mean, ss) (2 K) only;
- SAEs: no InfoMax collective; TopK's dead-latent counter takes one asynchronous all-reduce
  (MAX, K int32) that the next step waits on;
- gradients: one asynchronous all-reduce of the flattened gradients after backward
  (`GradAverage`; `--grad-sync ddp`: DDP's reducer, buckets as backward produces them);
- one rank (`torchrun --nproc-per-node 1`): none of these, no wrapper; the plain model's step.

Nothing in the step synchronises the host with the device (no .item(), no CPU-side checks);
the terms are read only every `log_every` steps.

    torchrun --nproc-per-node 2 -m implicit_em.train.distributed --random-tokens 1000000 \\
        --hidden-dim 16384 --batch-size 8192 --steps 50 --amp --tc-probes 32 --compile
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as fc
from torch import Tensor, nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
from torch.nn.parallel import DistributedDataParallel as DDP

from implicit_em import tracking
from implicit_em.colstats import constant_columns, unit_scale
from implicit_em.config import LossConfig
from implicit_em.data.batches import MIN_BATCH_ROWS
from implicit_em.families import family, family_of
from implicit_em.kernels import fused_active
from implicit_em.losses import (
    column_stats,
    correlation_probes,
    infomax_terms,
    sketch_cross,
    sketch_penalty,
    variance_from_stats,
    weight_redundancy_loss,
)
from implicit_em.tracking import Tracker
from implicit_em.train.loop import optimizer_step
from implicit_em.train.options import DistributedOptions, StepOptions  # noqa: F401  (their old home)


def world(parallel: bool = True) -> tuple[int, int]:
    """(rank, world size) of the data-parallel group; (0, 1) when torch.distributed is not
    initialized or `parallel` is False (each rank trains its own models: `train.modules`)."""
    if parallel and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# ------------------------------------------------------------------------ collectives
# Functional collectives (`torch.distributed._functional_collectives`): torch.compile traces
# them, so the compiled step stays one graph at any world size (with `dist.all_reduce` in
# eager autograd Functions it broke into 7 graphs, and two H200s ran slower than one:
# docs/scale/ddp/README.md). In eager mode they return a tensor that waits when first used.


def _group():
    return dist.group.WORLD


def _all_gather(x: Tensor) -> Tensor:
    """Concatenate every rank's x (n, ...) into (R n, ...), without gradient
    (`all_gather_single` in torch >= 2.13, `all_gather_tensor` before)."""
    gather = getattr(fc, "all_gather_single", None)
    if gather is not None:
        return gather(x.contiguous(), 0, _group())
    return fc.all_gather_tensor(x.contiguous(), 0, _group())


def _all_reduce(x: Tensor) -> Tensor:
    """Sum of x over the ranks (a new tensor), without gradient."""
    return fc.all_reduce(x.contiguous(), "sum", _group())


class _GatherStats(torch.autograd.Function):
    """x (n,) on each rank -> (R, n) on every rank. Backward: all-reduce of dL/d(R, n) (each
    rank holds only its own consumers' part), then this rank's row."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return _all_gather(x).view(dist.get_world_size(), *x.shape)  # (R, n)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return _all_reduce(grad)[dist.get_rank()]


class _SumReplicated(torch.autograd.Function):
    """Sum of x over ranks, for consumers computed identically on every rank.

    The backward of an all-reduce is an all-reduce of the upstream gradients; when every rank
    computes the same function of the sum, those are equal and their sum is R times this
    rank's: no communication."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return _all_reduce(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad * dist.get_world_size()


class _GatheredStats(torch.autograd.Function):
    """(mean, ss) (K,) of the gathered codes A (B, K), differentiable in this rank's rows a_r.

    Forward: `losses.column_stats` of A, no communication (A is already gathered). Backward:
    one all-reduce of [dL/dmean, dL/dss] (each rank holds the part its own rows' consumers
    contribute), then da_r = dL/dmean / B + 2 dL/dss (a_r - mean); constant columns (ss = 0)
    pass no gradient through ss, as in `colstats.centred_columns`."""

    @staticmethod
    def forward(ctx, a: Tensor, gathered: Tensor) -> tuple[Tensor, Tensor]:
        mean, ss = column_stats(gathered)
        ctx.save_for_backward(a, mean, ss > 0)
        ctx.rows = gathered.shape[0]
        return mean, ss

    @staticmethod
    def backward(ctx, g_mean: Tensor, g_ss: Tensor) -> tuple[Tensor, None]:
        a, mean, live = ctx.saved_tensors
        k = mean.shape[0]
        flat = _all_reduce(torch.cat([g_mean, g_ss * live]))  # (2K,)
        g_mean, g_ss = flat[:k], flat[k:]
        return g_mean / ctx.rows + 2 * g_ss * (a - mean), None  # (b, K)


class _GramRows(torch.autograd.Function):
    """This rank's share ||U_r U^T||_F^2 of ||U U^T||_F^2, U (B, K) the unit columns of A,
    u_r (b, K) its rows from this rank's codes (differentiable), U detached.

    Backward: the whole sum's gradient for rows r, 4 (U_r U^T) U (sum_r of the shares is
    symmetric in the rows), times the upstream gradient: 2 b B K multiply-adds each way,
    1 / R of the one-process cost."""

    @staticmethod
    def forward(ctx, u_r: Tensor, u: Tensor) -> Tensor:
        rows = u_r @ u.mT  # (b, B)
        ctx.save_for_backward(u, rows)
        return rows.square().sum()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        u, rows = ctx.saved_tensors
        return (4 * grad) * (rows @ u), None  # (b, K)


class _CorrShare(torch.autograd.Function):
    """||C - diag C||_F^2 / R with C = U^T U (K, K), U (B, K) detached, u_r (b, K) this rank's
    rows (differentiable): the K x K path (B >= K), every rank forming C. Backward: the whole
    penalty's gradient for rows r, 4 u_r (C - diag C), times the upstream gradient."""

    @staticmethod
    def forward(ctx, u_r: Tensor, u: Tensor) -> Tensor:
        off = u.mT @ u  # (K, K)
        off.diagonal().zero_()
        ctx.save_for_backward(u_r, off)
        return off.square().sum() / dist.get_world_size()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        u_r, off = ctx.saved_tensors
        return (4 * grad) * (u_r @ off), None  # (b, K)


def gather_stats(x: Tensor) -> Tensor:
    """Differentiable all-gather of x (n,) -> (R, n) (`_GatherStats`)."""
    return _GatherStats.apply(x)


def sum_replicated(x: Tensor) -> Tensor:
    """Sum over ranks whose consumers are identical on every rank (`_SumReplicated`)."""
    return _SumReplicated.apply(x)


def gather_codes(a: Tensor) -> Tensor:
    """All-gather of a (b, K) along rows -> (R b, K), without gradient."""
    return _all_gather(a.detach())


# ------------------------------------------------------------------------ loss shares


def global_column_stats(a: Tensor, parallel: bool = True) -> tuple[Tensor, Tensor]:
    """(mean, centred sum of squares) (K,) of every column over the global batch, from this
    rank's codes a (b, K), differentiably, with one all-gather of 2 K numbers per rank.

    The shards' (mean, ss) are combined as Chan et al.'s parallel variance does (equal shard
    sizes): no (B, K) tensor crosses ranks. Columns constant over the global batch
    (`colstats.constant_columns`, judged again after combining: the shards' means differ by
    round-off) get ss = 0, as in `losses.column_stats`. One rank: `losses.column_stats`.
    """
    mean, ss = column_stats(a)  # (K,), (K,)
    _, n = world(parallel)
    if n == 1:
        return mean, ss
    k, b = a.shape[1], a.shape[0]
    parts = gather_stats(torch.cat([mean, ss]))  # (R, 2K)
    means, sss = parts[:, :k], parts[:, k:]  # (R, K) each
    g_mean = means.mean(dim=0)
    g_ss = sss.sum(dim=0) + b * (means - g_mean).square().sum(dim=0)
    return g_mean, g_ss * ~constant_columns(g_mean, g_ss, n * b)


def sketched_terms_share(
    a: Tensor, loss: LossConfig, probes: Tensor, parallel: bool = True
) -> tuple[Tensor, Tensor]:
    """This rank's share (var, tc) with the sketched correlation (`loss.tc_probes`).

    a (b, K) this rank's codes, probes V (K, m), equal on every rank. The global (mean, ss)
    (`global_column_stats`), then this rank's rows of U^T U V, summed over ranks; every rank
    then forms the same penalty from the sum and keeps 1 / R of it (`_SumReplicated`).
    """
    _, n = world(parallel)
    mean, ss = global_column_stats(a, parallel)
    cross, diag = sketch_cross(a, mean, ss, probes)  # (K, m): this rank's rows of U^T U V
    if n > 1:
        cross = sum_replicated(cross)
    tc = sketch_penalty(cross, diag, probes) / n
    var = variance_from_stats(ss, n * a.shape[0], loss.variance_eps) / n
    return var, tc


def _exact_terms_share(a: Tensor, loss: LossConfig, parallel: bool = True) -> tuple[Tensor, Tensor]:
    """(var, tc) shares with the exact correlation: codes gathered once, the statistics and
    this rank's rows of the Gram (B < K) or the whole K x K matrix (B >= K) on every rank."""
    from implicit_em.losses import correlation_loss, variance_loss

    rank, n = world(parallel)
    if n == 1:
        return variance_loss(a, loss.variance_eps, False), correlation_loss(a, False)
    b = a.shape[0]
    A = gather_codes(a)  # (B, K), no gradient
    mean, ss = _stats_of_gathered(a, A)  # (K,), (K,): backward all-reduces their gradients
    s = unit_scale(ss)  # (K,)
    u_r = (a - mean) * s  # (b, K) this rank's unit columns, differentiable
    u = ((A - mean.detach()) * s.detach()).contiguous()  # (B, K), rows r equal to u_r
    var = variance_from_stats(ss, n * b, loss.variance_eps) / n
    if A.shape[0] < A.shape[1]:
        diag = ss * s.square()  # (K,) = diag(U^T U), 1 on live columns, 0 on constant ones
        tc = _gram_rows(u_r, u) - diag.square().sum() / n
    else:
        tc = _corr_share(u_r, u)
    return var, tc


def _stats_of_gathered(a: Tensor, gathered: Tensor) -> tuple[Tensor, Tensor]:
    return _GatheredStats.apply(a, gathered)


def _gram_rows(u_r: Tensor, u: Tensor) -> Tensor:
    return _GramRows.apply(u_r, u)


def _corr_share(u_r: Tensor, u: Tensor) -> Tensor:
    return _CorrShare.apply(u_r, u)


# Whether `encoder_terms_share` takes the fused kernels at one rank (issue 19; H200, B = 4096,
# K = 16384, bf16 autocast, eager; docs/benchmarks.md, "Round 9" and "Round 9b"). Round 9
# timed `train_steps` with them at 0.33x the tokens/s of the plain formulas (its rule:
# "slower", so off): step_terms hands the kernels float32 codes, and the gradient kernel's
# float32 tile product ran in IEEE precision (benchmarks/profile_train_steps.py: 89 % of the
# device time). With that product in tf32x3 (`kernels.triton_infomax.dot_precision`), round 9b
# timed 1.20x, 1.19x, 1.38x (its rule: "faster", so on). benchmarks/bench_train_steps.py sets
# it per row to time both paths.
# "amp_codes": the codes' dtype for the encoder terms under bf16 autocast at one rank, when
# the fused kernels take them: "float32" (cast, as every rank count always did; the default)
# or "bf16" (the kernels read the bf16 codes as float32 and return dL/da in bf16, as
# `train.loop`'s step hands them; no cast of the (b, K) codes, 27.5 % of the fused step's
# device time in round 9b's profile).
# Round 10 kept "float32": its check failed on an amp_codes test, and the timing was
# undecided (docs/benchmarks.md, "Round 10").
# "fused_compiled": whether the fused kernels also take the terms inside a compiled step
# (`train_steps(compile=True)`, read while torch.compile traces). Off since round 11: there
# Inductor fuses the plain formulas itself, and the kernels ran at 0.83-0.88x of them in all 5
# rounds (docs/benchmarks.md, "Round 11"; round 10: 0.78-0.90x on a shared host).
TERMS = {"fused_one_rank": True, "amp_codes": "float32", "fused_compiled": False}


def fused_here(a: Tensor, n: int) -> bool:
    """Whether the encoder terms of codes a on n ranks come from the fused kernels:
    `TERMS["fused_one_rank"]`, one rank, not inside a torch.compile trace unless
    `TERMS["fused_compiled"]`, and `kernels.fused_active(a)`."""
    traced = torch.compiler.is_compiling()
    return (TERMS["fused_one_rank"] and n == 1 and (TERMS["fused_compiled"] or not traced)
            and fused_active(a))  # fmt: skip


def encoder_terms_share(
    a: Tensor,
    W: Tensor,
    loss: LossConfig,
    probes: Tensor | None = None,
    with_wr: bool = True,
    parallel: bool = True,
) -> dict[str, Tensor]:
    """This rank's share of each unweighted encoder term; summed over ranks, the terms of
    `losses.combined_loss` on the global batch.

    a: (b, K) this rank's codes, W: (K, D); probes (K, m) for the sketched correlation
    (equal on every rank). Returns scalars lse, var, tc, and wr unless with_wr is False
    (wr depends on W alone; at K = 16384 it costs 11 GFLOP, so it is only computed when it
    carries gradient or is logged). parallel=False: this rank's batch is the whole batch.
    Where `fused_here` (`TERMS["fused_one_rank"]`, on by default since round 9b; one rank;
    the fused kernels active, `kernels.fused_active`: CUDA and Triton, mode "auto" or "on"),
    lse, var and tc come from `losses.infomax_terms`, the same terms in one pass
    forward and one backward (`kernels.infomax`, tested against these formulas); several
    ranks share column statistics, which the kernels do not, so they always take the plain
    path below.
    """
    _, n = world(parallel)
    if fused_here(a, n):
        lse, var, tc = infomax_terms(a, probes, loss.variance_eps)
        out = {"lse": lse, "var": var, "tc": tc}
    else:
        lse = -torch.logsumexp(-a, dim=1).sum()  # own rows only: (b,) -> ()
        out = {"lse": lse}
        if probes is not None:
            out["var"], out["tc"] = sketched_terms_share(a, loss, probes, parallel)
        else:
            out["var"], out["tc"] = _exact_terms_share(a, loss, parallel)
    if with_wr or loss.lambda_wr:
        with torch.set_grad_enabled(bool(loss.lambda_wr) and torch.is_grad_enabled()):
            out["wr"] = weight_redundancy_loss(W, validate=False) / n
    return out


def bf16_codes(fam, a: Tensor, n: int) -> bool:
    """Whether `step_terms` under autocast hands the encoder terms the codes a (b, K) in
    bf16 rather than float32: `TERMS["amp_codes"]` is "bf16", the family uses batch
    statistics (the encoder), a is bf16, and the fused kernels take the terms (`fused_here`)."""
    return (TERMS["amp_codes"] == "bf16" and fam.batch_statistics and a.dtype == torch.bfloat16
            and fused_here(a, n))  # fmt: skip


def step_terms(
    net: nn.Module,
    x: Tensor,
    loss: LossConfig,
    dead: Tensor | None = None,
    amp: bool = False,
    probes: Tensor | None = None,
    with_wr: bool = True,
    parallel: bool = True,
) -> tuple[dict[str, Tensor], Tensor, float]:
    """Forward one shard x (b, D) through net (a model or its DDP wrapper).

    Returns (terms, a (b, K), grad_scale): the unweighted terms as this rank's share (encoder)
    or as the local mean (SAEs, whose losses are means: DDP's averaging already gives the
    global mean), and the factor to multiply the weighted total by before backward.
    probes, with_wr, parallel: see `encoder_terms_share` (encoder only). amp: the forward
    under bf16 autocast, its outputs cast to float32; a stays bf16 where `bf16_codes` says.
    """
    model = net.module if isinstance(net, DDP) else net
    fam = family_of(model)
    _, n = world(parallel)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        out = net(x)
    if amp:  # float32 outputs, except bf16 codes for the fused terms (TERMS["amp_codes"])
        keep = bf16_codes(fam, out[0], n)
        out = tuple(t if keep and i == 0 else t.float() for i, t in enumerate(out))
    if fam.batch_statistics:  # the encoder's var and tc: ranks share column statistics
        a = out[0]  # (b, K)
        terms = encoder_terms_share(a, model.W, loss, probes, with_wr, parallel)
        return terms, a, float(n)
    terms, a = fam.terms_from_outputs(model, x, out, loss, dead, amp)  # per-sample means
    return terms, a, 1.0


def reduce_terms(terms: dict[str, Tensor], kind: str, parallel: bool = True) -> dict[str, Tensor]:
    """Global value of each term (detached): the sum of the shares (families whose terms use
    batch statistics: the encoder) or the mean of the local means (SAEs). kind: family name."""
    _, n = world(parallel)
    vals = torch.stack([t.detach().float() for t in terms.values()])  # (T,)
    if n > 1:
        dist.all_reduce(vals)
        if not family(kind).batch_statistics:
            vals /= n
    return dict(zip(terms, vals, strict=True))


# ------------------------------------------------------------------------ training


class GradAverage:
    """Average the parameter gradients over the ranks with ONE asynchronous all-reduce of the
    flattened gradients, replacing DDP's reducer for these one-layer models.

    DDP all-reduces buckets as backward produces them, to overlap communication with the
    rest of backward; a one-layer model has no rest (dW is its last gradient), and under
    torch.compile dynamo splits the graph at the bucket boundaries (`optimize_ddp`), which
    cost 20 % of the step on one GPU (docs/scale/ddp/README.md). Here: after backward, the
    gradients are copied into one flat buffer (`torch._utils._flatten_dense_tensors`),
    divided by R and all-reduced asynchronously; `wait` (a stream wait on GPUs, no host
    synchronisation) copies the averages back, before the family's housekeeping and the
    optimizer step. Parameters are broadcast from rank 0 once, at construction, as DDP does
    (through a contiguous copy where a parameter is a transposed view: NCCL needs contiguous).
    A parameter without a gradient gets zeros (every rank must join the same all-reduce).
    bf16: all-reduce the flat buffer in bfloat16 (half the bytes, rounded gradients).
    """

    def __init__(self, model: nn.Module, bf16: bool = False) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.bf16 = bf16
        self.ranks = world()[1]
        self._pending: tuple | None = None  # (work, flat buffer)
        with torch.no_grad():
            for p in self.params:  # equal start on every rank
                # NCCL takes contiguous tensors only; the SAEs' W_dec (K, D) is a transpose
                buf = p if p.is_contiguous() else p.contiguous()
                dist.broadcast(buf, 0)
                if buf is not p:
                    p.copy_(buf)

    def launch(self) -> None:
        """Start the all-reduce of the gradients backward left in .grad (async)."""
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = _flatten_dense_tensors([p.grad for p in self.params])  # (P,)
        if self.bf16:
            flat = flat.to(torch.bfloat16)
        flat.div_(self.ranks)
        self._pending = (dist.all_reduce(flat, async_op=True), flat)

    def wait(self) -> None:
        """Wait for the all-reduce and write the averaged gradients into .grad."""
        work, flat = self._pending
        work.wait()
        grads = [p.grad for p in self.params]
        for g, avg in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
            g.copy_(avg)
        self._pending = None

    def __call__(self) -> None:
        """launch then wait: nothing in a one-layer step can run in between (TopK's decoder
        housekeeping needs the averaged gradients)."""
        self.launch()
        self.wait()


class ModelStepper:
    """One model's optimizer, family state, probe stream and (compiled) step.

    net: the model or its DDP wrapper; parallel: whether its batch is sharded over the ranks
    (False: each rank steps its own models on whole batches, `train.modules`; one rank is
    always the plain path, with no collective). probe_seed seeds the probes
    (`loss.tc_probes`), drawn on the model's device, equal on every rank. Sharded and not in
    DDP: the gradients are averaged by `GradAverage` (bf16_grads: in bfloat16).
    """

    def __init__(self, net: nn.Module, loss: LossConfig, *, lr: float, probe_seed: int,
                 amp: bool = False, compile: bool = False, parallel: bool = True,
                 bf16_grads: bool = False) -> None:  # fmt: skip
        parallel = parallel and world()[1] > 1
        self.net, self.loss, self.amp, self.parallel = net, loss, amp, parallel
        self.model = net.module if isinstance(net, DDP) else net
        self.fam = family_of(self.model)
        self.weights = self.fam.weights(loss, self.model.hidden_dim)
        self.device = next(self.model.parameters()).device
        self.opt = torch.optim.Adam(net.parameters(), lr=lr, fused=self.device.type == "cuda")
        self.state = self.fam.init_state(self.model)  # TopK: since_fired (K,)
        self.probe_gen = torch.Generator(self.device).manual_seed(probe_seed)
        self.sketch = self.fam.batch_statistics and loss.tc_probes is not None
        self.with_wr = bool(loss.lambda_wr) or not self.fam.batch_statistics
        self._pending: tuple | None = None  # TopK: (async all-reduce, fired) of the last step
        self.grad_average = None
        if parallel and not isinstance(net, DDP):
            self.grad_average = GradAverage(self.model, bf16_grads)
        self.forward = self._forward
        if compile:  # static shapes; each model family, K and probes setting is its own graph
            cfg = torch._dynamo.config
            limit = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
            setattr(cfg, limit, max(getattr(cfg, limit), 64))
            self.forward = torch.compile(self._forward, dynamic=False)

    def _forward(self, x: Tensor, dead: Tensor | None, probes: Tensor | None):
        terms, a, scale = step_terms(self.net, x, self.loss, dead, self.amp, probes,
                                     self.with_wr, self.parallel)  # fmt: skip
        return sum(self.weights[k] * terms[k] for k in terms) * scale, terms, a

    def step(self, x: Tensor) -> dict[str, Tensor]:
        """One optimizer step on x (b, D); returns the terms (this rank's shares, not detached
        or read: reading them would synchronise the host)."""
        self.settle()
        dead = self.fam.dead_mask(self.state, self.loss) if self.state else None
        probes = None
        if self.sketch:
            probes = correlation_probes(self.model.hidden_dim, self.loss.tc_probes, x,
                                        self.probe_gen)  # fmt: skip
        scaled_total, terms, a = self.forward(x, dead, probes)
        optimizer_step(self.model, self.opt, scaled_total, self.grad_average)
        if self.state:
            fired = (a.detach() > 0).any(dim=0).to(torch.int32)  # (K,)
            work = None
            if world(self.parallel)[1] > 1:  # waited on at the next step, not now
                work = dist.all_reduce(fired, op=dist.ReduceOp.MAX, async_op=True)
            self._pending = (work, fired)
        return terms

    def settle(self) -> None:
        """Fold the last step's fired latents into the family state (waits for the all-reduce:
        on GPUs a stream wait, not a host one)."""
        if self._pending is not None:
            work, fired = self._pending
            if work is not None:
                work.wait()
            self.fam.track(self.state, fired.bool())
            self._pending = None

    def record(self, terms: dict[str, Tensor]) -> dict[str, float]:
        """The global terms and the weighted total as floats (synchronises the host)."""
        rec = {k: float(v) for k, v in reduce_terms(terms, self.fam.name, self.parallel).items()}
        if "wr" not in rec and "wr" in self.weights:
            with torch.no_grad():  # W is the same on every rank: no reduction
                rec["wr"] = float(weight_redundancy_loss(self.model.W, validate=False))
        rec["total"] = sum(self.weights[k] * rec[k] for k in self.weights)
        return rec


class BatchStream:
    """Global batches of row indices into N rows: a seeded permutation, only full batches
    (the rows left over at the end of a permutation wait for the next one), on `device`, so
    that slicing needs no host synchronisation. Equal on every rank with equal seeds."""

    def __init__(self, n_rows: int, global_batch: int, seed: int, device: torch.device) -> None:
        if not MIN_BATCH_ROWS <= global_batch <= n_rows:
            raise ValueError(
                f"global batch {global_batch} must be between {MIN_BATCH_ROWS} (batch "
                f"statistics) and the {n_rows} training rows: change --batch-size"
            )
        self.n, self.batch, self.device = n_rows, global_batch, device
        self.gen = torch.Generator().manual_seed(seed)
        self.order, self.pos = self._permutation(), 0

    def _permutation(self) -> Tensor:
        order = torch.randperm(self.n, generator=self.gen)
        if self.device.type == "cuda":  # pinned: the copy does not wait for the device
            order = order.pin_memory()
        return order.to(self.device, non_blocking=True)

    def next(self) -> Tensor:
        """The next global batch's row indices (global_batch,)."""
        if self.pos + self.batch > self.n:
            self.order, self.pos = self._permutation(), 0
        idx = self.order[self.pos : self.pos + self.batch]
        self.pos += self.batch
        return idx


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
    probe_seed: int | None = None,
    sync_debug: bool = False,
    bf16_grads: bool = False,
) -> dict:
    """Adam for `steps` steps on x_train (N, D), which every rank holds whole (any device).

    Each step draws one global batch of rows (`BatchStream`, seeded with `seed`) and gives
    rank r its r-th slice, so no step sees fewer than global_batch >= 2 rows: the batch rule
    of `data.batches` holds without merging. Returns {"history": [...], "tokens_per_s": float,
    "seconds": float} with tokens/s measured over the steps after `warmup`. With
    loss.tc_probes, every rank draws the same probes from a generator seeded with probe_seed
    (default: seed). compile: run the forward and loss through `torch.compile` (fuses the
    elementwise passes over the (b, K) codes, the encoder's terms included: a compiled step
    takes the plain formulas, not the fused kernels, unless `TERMS["fused_compiled"]`; compile
    time falls inside the warm-up steps, so use warmup >= 3). tracker: gets each logged record
    and the final throughput (pass it on rank 0 only; the caller closes it). sync_debug (CUDA): count the operations that
    synchronise the host with the device during the timed steps, logging excepted
    (`torch.cuda.set_sync_debug_mode`), into "host_syncs". net: the model (gradients averaged
    by `GradAverage` over several ranks, bf16_grads: in bfloat16) or its DDP wrapper.
    """
    model = net.module if isinstance(net, DDP) else net
    rank, n = world()
    if global_batch % n:
        raise ValueError(f"global batch {global_batch} must be divisible by {n} ranks")
    b = global_batch // n
    device = next(model.parameters()).device
    stream = BatchStream(len(x_train), global_batch, seed, x_train.device)
    stepper = ModelStepper(net, loss, lr=lr, probe_seed=seed if probe_seed is None else probe_seed,
                           amp=amp, compile=compile, bf16_grads=bf16_grads)  # fmt: skip
    history: list[dict] = []
    tic = None
    check = sync_debug and device.type == "cuda"
    recorder = warnings.catch_warnings(record=True) if check else contextlib.nullcontext([])
    with recorder as syncs:
        if check:
            warnings.simplefilter("always")
        for step in range(steps):
            if step == warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                tic = time.perf_counter()
                if check:
                    torch.cuda.set_sync_debug_mode("warn")
            idx = stream.next()[rank * b : (rank + 1) * b]
            x = x_train[idx].to(device, torch.float32, non_blocking=True)  # (b, D)
            terms = stepper.step(x)
            if log_every and (step + 1) % log_every == 0:
                mode = torch.cuda.get_sync_debug_mode() if check else 0
                if check:
                    torch.cuda.set_sync_debug_mode(0)  # logging reads the terms: a host sync
                rec = stepper.record(terms)
                history.append({"step": step + 1, **rec})
                if tracker is not None:
                    tracker.log(rec, step=step + 1)
                if check:
                    torch.cuda.set_sync_debug_mode(mode)
        stepper.settle()
        if check:
            torch.cuda.set_sync_debug_mode(0)
    # torch's message for each synchronising call (not its one-time "prototype" notice)
    host_syncs = sum("called a synchronizing" in str(w.message) for w in syncs) if check else None
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - tic if tic is not None else float("nan")
    if steps > 0:
        record_last(stepper, terms, history, steps)
    timed = steps - warmup
    tps = timed * global_batch / seconds if timed > 0 else float("nan")
    if tracker is not None:
        tracker.log_final({**(history[-1] if history else {}), "seconds": seconds,
                           "tokens_per_s": tps})  # fmt: skip
    return {"history": history, "tokens_per_s": tps, "seconds": seconds, "host_syncs": host_syncs}


def record_last(stepper: ModelStepper, terms: dict[str, Tensor], history: list[dict],
                steps: int) -> None:  # fmt: skip
    """Append the last step's record to history unless `log_every` already logged it, so a
    run without logging still ends with its final terms (metrics.json, the summary's "last").
    Reads the terms (a host synchronisation): call it after the timed steps."""
    if not history or history[-1]["step"] != steps:
        history.append({"step": steps, **stepper.record(terms)})


def init_device(distributed: bool = True) -> tuple[torch.device, int]:
    """Join the process group (NCCL on GPUs, else gloo) when `distributed`, pick this rank's
    device (TF32 matmuls on GPUs). Returns (device, local rank)."""
    cuda = torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
    if distributed:
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    return device, local


def load_stream(
    acts: list[str], random_tokens: int, input_dim: int, seed: int, device: torch.device
) -> list[Tensor]:
    """The training rows, whole, on `device` (bf16 on GPUs, float32 on the CPU): the train
    split of each harvest directory in `acts`, normalized as its manifest says, or (acts
    empty) one (random_tokens, input_dim) tensor of N(0, 1) entries seeded with `seed`."""
    if acts:
        from implicit_em.data.lm.activations import Normalization, read_split

        xs = [read_split(a, "train", norm=Normalization.from_manifest(a))[0] for a in acts]
    else:
        xs = [torch.randn(random_tokens, input_dim, generator=torch.Generator().manual_seed(seed))]
    return [x.to(device, torch.bfloat16 if device.type == "cuda" else torch.float32) for x in xs]


def wrap_ddp(model: nn.Module, device: torch.device, bf16_grads: bool = False) -> nn.Module:
    """model in DDP when torch.distributed is initialized with more than one rank (else model
    itself: one rank trains as the plain model does, with no wrapper and no collective);
    bf16_grads all-reduces the gradients in bf16 (`bf16_compress_hook`)."""
    if world()[1] == 1:
        return model
    cuda = device.type == "cuda"
    net = DDP(model, device_ids=[device.index] if cuda else None)  # the models hold no buffers
    if bf16_grads:
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import bf16_compress_hook

        net.register_comm_hook(None, bf16_compress_hook)
    return net


def run_ddp(args: DistributedOptions) -> int:
    """Train on this rank; rank 0 prints (and writes) the JSON summary."""
    from implicit_em import runs
    from implicit_em.config import ModelConfig, RunConfig

    distributed = "RANK" in os.environ
    cuda = torch.cuda.is_available()
    device, local = init_device(distributed)
    rank, n = world()
    acts = [args.acts] if args.acts else []
    (x,) = load_stream(acts, args.random_tokens, args.input_dim, args.seed, device)
    cfg = RunConfig(model=ModelConfig(type=args.type, input_dim=x.shape[1],
                                      hidden_dim=args.hidden_dim, k=args.k),
                    loss=LossConfig(tc_probes=args.tc_probes))  # fmt: skip
    torch.manual_seed(args.seed)
    model = runs.build_model(cfg).to(device)
    net = wrap_ddp(model, device, args.bf16_grads) if args.grad_sync == "ddp" else model
    tracker = tracking.for_rank(args, rank)  # one record per run, on rank 0
    if tracker is not None:
        tracker.log_config({**cfg.to_dict(), "world_size": n})
    try:
        res = train_steps(net, x, cfg.loss, global_batch=args.batch_size, steps=args.steps,
                          lr=args.lr, seed=args.seed, amp=args.amp, log_every=args.log_every,
                          warmup=args.warmup, compile=args.compile, tracker=tracker,
                          sync_debug=args.sync_debug,
                          bf16_grads=args.bf16_grads and args.grad_sync == "flat")  # fmt: skip
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
        "per_rank_batch": args.batch_size // n,
        "amp": args.amp,
        "tc_probes": args.tc_probes,
        "compile": args.compile,
        "bf16_grads": args.bf16_grads,
        "grad_sync": args.grad_sync if n > 1 else "none",
        "steps": args.steps,
        "warmup": args.warmup,
        "tokens_per_s": res["tokens_per_s"],
        "seconds": res["seconds"],
        "host_syncs": res["host_syncs"],
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
