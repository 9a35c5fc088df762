"""Train N independent models as one stacked model: batched matmuls, one pass per step.

Legend: N models, B batch, D input dim, K components. Parameters are stacked along a leading
model axis (W (N, K, D)); each model draws its own data order from its seed, has its own
learning rate and loss weights, and its own optimizer state, so each ends where training it
alone with `implicit_em.train.loop.train` would (to float tolerance; tests check this).
Models in one stack must share architecture, optimizer, batch size and epochs;
`group_configs` splits a list of configs into such stacks.

Models that share a data seed see the same batches, so the data are gathered once per seed:
a step takes xb (S, B, D) for the S distinct seeds. Internally the models sit in *slots*
ordered so that models of one seed are adjacent and seeds with equally many models form one
block; for the decoder-free encoder the forward of a block of S_b seeds with G models each is
one batched matmul x (S_b, B, D) @ W (S_b, G K, D)^T, and its weight gradient one more.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib
import json
import os
import random
import threading
import time
from collections.abc import Collection
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from implicit_em import kernels, runs
from implicit_em.config import RunConfig
from implicit_em.data.batches import batch_slices, epoch_permutation
from implicit_em.families import family
from implicit_em.losses import centred_columns, unit_scale, weight_redundancy_loss
from implicit_em.models import ACTIVATIONS
from implicit_em.progress import StackBar
from implicit_em.train.loop import evaluate, finite_record, loss_terms
from implicit_em.train.optim import Branches, StackedOptimizer, take_streams

STEPS_PER_GRAPH = 32
"""Full-batch steps `StackedTrainer.fit` replays from one CUDA graph (`StackedTrainer.steps`):
at MNIST sizes a replay per step costs host time that four stacks training side by side in
threads of one interpreter share."""
BACKGROUND_DEVICES = ("cuda",)
"""Device types on which `train_many_in_background` trains (on CPU the caller's work would
share the cores; tests add "cpu" to run it there)."""
CHECKPOINT_EVERY = 5
"""Default epochs between stack checkpoints (`StackedTrainer.fit`): on the paper's CPU protocol
an epoch of a stack takes seconds, so an interrupt loses well under a minute of it."""
URGENT_PRIORITY = -1
"""CUDA stream priority of the stacks `train_many_in_background` is told are urgent (the
default priority is 0; lower is more urgent)."""
FUSED_STEP_ENV = "IMPLICIT_EM_FUSED_STEP"
"""Environment variable: "1" turns the stacked trainer's fused step on (`StackedTrainer`'s
fused_step), "0" off; unset, it is on for CUDA and off elsewhere (`fused_step_enabled`).
Measured on one H200 (docs/benchmarks.md, "Round 4" and "Round 5b"): its block kernel
(`kernels.triton_stacked_v2`) takes 17-18 us a block against the reference's 133-143 us, a step
of the Adam encoder stack 0.288 ms against 0.327 ms; alone it does not shorten the MNIST
reproduce (50.7 s against 50.2-50.5 s for the default step), but with the benchmark's "ours" in
a stack of its own (`experiments.common.SPLIT_URGENT_ENV`) the reproduce's report total is
47.3-47.4 s in three runs against 50.2-51.2 s, its tables within the default step's std."""
FUSED_KERNEL_ENV = "IMPLICIT_EM_FUSED_KERNEL"
"""Former environment variable that chose the fused step's block kernel between v1 and v2; v1
was removed after round 4 (docs/benchmarks.md), so only unset or "v2" (the one kernel) pass."""
_CAPTURE_LOCK = threading.Lock()  # CUDA-graph captures of stacks trained in threads


def env_flag(name: str, default: bool = False) -> bool:
    """Whether the environment variable `name` is on: "1" yes, "0" no, unset `default`.
    Raises ValueError, one line, for any other value. The switches FUSED_STEP_ENV and
    `experiments.common.SPLIT_URGENT_ENV` read through it."""
    value = os.environ.get(name)
    if value is None:
        return default
    if value not in ("0", "1"):
        raise ValueError(f"{name} must be 0 or 1, got {value!r}: unset it or set 0 or 1")
    return value == "1"


def fused_step_enabled(device: torch.device | str = "cpu") -> bool:
    """Whether the stacked trainer takes its fused step on `device`: FUSED_STEP_ENV "1" yes,
    "0" no; unset, yes on CUDA (where it was measured faster, FUSED_STEP_ENV's docstring) and
    no elsewhere (the CPU keeps the default step, bitwise the earlier releases')."""
    return env_flag(FUSED_STEP_ENV, default=torch.device(device).type == "cuda")


def _block_kernel():
    """The module of the fused step's block kernel (`kernels.triton_stacked_v2`), imported on
    first use since it imports Triton; its function is looked up at each call (tests wrap it)."""
    return importlib.import_module("implicit_em.kernels.triton_stacked_v2")


def check_fused_kernel() -> None:
    """Refuse, in one line, a FUSED_KERNEL_ENV that names a removed kernel (anything but "v2")."""
    value = os.environ.get(FUSED_KERNEL_ENV, "v2")
    if value != "v2":
        raise ValueError(
            f"{FUSED_KERNEL_ENV}={value!r}: the fused step has one block kernel now (v2; v1 was "
            "removed after docs/benchmarks.md round 4): unset it"
        )


def stack_key(cfg: RunConfig) -> tuple:
    """Configs with equal keys can share one stack."""
    m, t, lo = cfg.model, cfg.training, cfg.loss
    return (
        m.type, m.input_dim, m.hidden_dim, m.activation, m.k, m.centre, m.jump_bandwidth,
        t.optimizer, t.batch_size, t.epochs, t.device, t.amp,
        lo.lambda_wr > 0, lo.variance_eps, lo.aux_k, lo.dead_steps, lo.aux_coef > 0,
        getattr(lo, "tc_probes", None),
    )  # fmt: skip


def group_configs(cfgs: list[RunConfig]) -> list[list[int]]:
    """Indices of `cfgs` grouped into stackable sets, in order of first appearance."""
    groups: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(stack_key(cfg), []).append(i)
    return list(groups.values())


def stack_groups(
    cfgs: list[RunConfig], urgent: Collection[int] = (), apart: bool = False
) -> list[list[int]]:  # fmt: skip
    """The stacks `train_many_in_background` builds: `group_configs`, or with apart the urgent
    configs (indices) split off into stacks of their own, put first, each group's other
    configs after them in their order. A smaller stack finishes sooner (fewer models to step
    and to evaluate each epoch), at the price of more kernels per step in all: each stack has
    its own optimizer update and batch gathers."""
    groups = group_configs(cfgs)
    hot = set(urgent)
    if not (apart and hot):
        return groups
    first = [[i for i in g if i in hot] for g in groups]
    rest = [[i for i in g if i not in hot] for g in groups]
    return [g for g in first + rest if g]


def seed_slots(seeds: list[int]) -> tuple[list[int], list[int], list[tuple[int, int, int]]]:
    """Where each model of a stack sits, so that models sharing a data seed share one matmul.

    seeds: the data seed of each model, in the caller's order. Returns (slots, data_seeds,
    blocks): slot j holds model slots[j]; data row r is drawn with data_seeds[r]; each block
    (r0, r1, g) covers data rows r0:r1, each row feeding g adjacent slots (slots r0 * ... are
    contiguous: a block's slots start where the previous block's end). Seeds with more models
    come first; ties keep the order of first appearance.
    """
    groups: dict[int, list[int]] = {}
    for i, sd in enumerate(seeds):
        groups.setdefault(sd, []).append(i)
    order = sorted(groups, key=lambda sd: -len(groups[sd]))  # stable: first appearance on ties
    slots = [i for sd in order for i in groups[sd]]
    blocks: list[tuple[int, int, int]] = []
    for r, sd in enumerate(order):
        g = len(groups[sd])
        if blocks and blocks[-1][2] == g:
            blocks[-1] = (blocks[-1][0], r + 1, g)
        else:
            blocks.append((r, r + 1, g))
    return slots, order, blocks


def encoder_terms(a: Tensor, variance_eps: float) -> dict[str, Tensor]:
    """lse, var and tc of `losses.combined_loss` for many models at once, without vmap.

    a: (S, B, G, K), the codes of S x G models (batch on dim 1, components on dim 3).
    Returns each term as (S, G). The formulas are those of lse_loss, variance_loss and
    correlation_loss (tests compare the trainer with the one-model loop that uses them); the
    centred codes (`losses.centred_columns`, constant columns zeroed) are shared by var and tc,
    and reductions run over dim 1 directly.
    """
    b, k = a.shape[1], a.shape[3]
    lse = -torch.logsumexp(-a, dim=3).sum(dim=1)  # (S, B, G) -> (S, G)
    centred, _, ss = centred_columns(a, dim=1)  # (S, B, G, K), (S, G, K) sums of squares
    var = -torch.log(ss / (b - 1) + variance_eps).sum(dim=-1)  # unbiased Var, as a.var(dim=0)
    u = (centred * unit_scale(ss).unsqueeze(1)).permute(0, 2, 1, 3)  # (S, G, B, K)
    if b < k:  # ||U^T U||_F = ||U U^T||_F; the diagonal of U^T U is the squared column norms
        gram = u @ u.mT  # (S, G, B, B)
        tc = gram.square().sum(dim=(-2, -1)) - u.square().sum(dim=-2).square().sum(dim=-1)
    else:  # zero the diagonal before squaring (see losses._offdiag_sq_kk)
        corr = u.mT @ u  # (S, G, K, K)
        off = ~torch.eye(k, dtype=torch.bool, device=a.device)
        tc = (corr * off).square().sum(dim=(-2, -1))
    return {"lse": lse, "var": var, "tc": tc}


@torch.no_grad()
def encoder_terms_grad(
    a: Tensor, variance_eps: float, weights: dict[str, Tensor]
) -> tuple[dict[str, Tensor], Tensor]:
    """`encoder_terms` and the gradient of sum_models (w_lse lse + w_var var + w_tc tc) by a.

    a: (S, B, G, K); weights: "lse", "var", "tc", each (S, G). Returns (terms (S, G) each,
    dL/da (S, B, G, K)), in closed form (tests compare it with autograd):
      lse: dL/da = r = softmax(-a) over K (paper Eq. 4);
      var: with c = a - mean_B(a), ss = sum_B c^2: dL/dc = -2 c / ((B - 1) (Var + eps));
      tc: U = c s, s = ss^-1/2 (0 for constant columns), C = U^T U, M = C off its diagonal; L = ||M||^2,
          dL/dU = 4 U M, dL/dc = s (dL/dU - U sum_B(U dL/dU)), then centred over B.
    """
    b, k = a.shape[1], a.shape[3]
    w = {t: v[:, None, :, None] for t, v in weights.items()}  # (S, 1, G, 1)
    neg = -a
    lse_b = torch.logsumexp(neg, dim=3, keepdim=True)  # (S, B, G, 1)
    grad = torch.exp(neg.sub_(lse_b)).mul_(w["lse"])  # w_lse r
    lse = -lse_b.sum(dim=(1, 3))  # (S, G)
    centred, _, ss = centred_columns(a, dim=1)  # (S, B, G, K): constant columns are zeros,
    ss = ss.unsqueeze(1)  # (S, 1, G, K)               so they get no var or tc gradient
    var_eps = ss / (b - 1) + variance_eps
    var = -torch.log(var_eps).sum(dim=(1, 3))  # (S, G)
    grad.addcmul_(centred, w["var"] * (-2 / (b - 1)) / var_eps)
    s = unit_scale(ss)  # (S, 1, G, K)
    u = (centred * s).permute(0, 2, 1, 3)  # (S, G, B, K)
    off = ~torch.eye(k, dtype=torch.bool, device=a.device)
    m = (u.mT @ u).mul_(off)  # (S, G, K, K): the correlation off its diagonal
    tc = m.square().sum(dim=(-2, -1))  # (S, G)
    du = (u @ m).mul_(4 * w["tc"].permute(0, 2, 1, 3))  # (S, G, B, K)
    dc = (du - u * (u * du).sum(dim=2, keepdim=True)).permute(0, 2, 1, 3).mul_(s)
    grad.add_(dc).sub_(dc.mean(dim=1, keepdim=True))
    return {"lse": lse, "var": var, "tc": tc}, grad


class _Terms(nn.Module):
    """Wraps a model so that functional_call swaps its parameters for one stacked slice."""

    def __init__(self, model: nn.Module, cfg: RunConfig) -> None:
        super().__init__()
        self.model, self.loss, self.amp = model, cfg.loss, cfg.training.amp

    def forward(self, x: Tensor, dead: Tensor | None) -> dict:
        terms = loss_terms(self.model, x, self.loss, dead, self.amp)
        terms["fired"] = (terms.pop("a") > 0).any(dim=0)  # (K,)
        return terms


class StackedTrainer:
    """N models of one architecture, trained together. See the module docstring.

    `models` and the histories of `fit` follow the caller's order of `cfgs`; the stacked
    tensors (params, optimizer state, the terms `train_step` returns) follow `slots`.
    """

    def __init__(
        self, cfgs: list[RunConfig], device: torch.device | str = "cpu", priority: int = 0,
        fused_step: bool | None = None,
    ) -> None:  # fmt: skip
        """priority: of the stack's CUDA streams (`optim.take_streams`; lower is more urgent):
        side by side, the GPU serves the kernels of a more urgent stack first.
        fused_step: fewer kernels per step (None: `fused_step_enabled(device)`, on for CUDA
        unless FUSED_STEP_ENV is "0", off elsewhere unless it is "1"): Adam as one multi-tensor
        kernel per learning rate
        (`StackedOptimizer.multi_tensor`), and on the encoder's closed-form ReLU path each
        block's terms and dL/dz as one Triton kernel (`kernels.triton_stacked_v2`; on CUDA, or on
        the CPU under TRITON_INTERPRET=1; the reference where Triton is missing or a block does
        not fit). It rounds differently from the default step, so results agree with it to
        float32 rounding per step, not bitwise (FUSED_STEP_ENV says what it gains on an
        H200). Raises ValueError when the fused step is on and FUSED_KERNEL_ENV names a
        removed kernel (`check_fused_kernel`)."""
        if not cfgs or len({stack_key(c) for c in cfgs}) != 1:
            raise ValueError("configs in one stack must share stack_key(); use group_configs()")
        self.cfgs, self.device = cfgs, torch.device(device)
        self.fused_step = fused_step_enabled(self.device) if fused_step is None else fused_step
        if self.fused_step:
            check_fused_kernel()
        self.family = family(cfgs[0].model.type)
        self.kind = self.family.name
        self.models = [runs.build_model(c).to(self.device) for c in cfgs]
        if any(True for _ in self.models[0].buffers()):  # stacks hold parameters only
            raise ValueError(
                f"a {self.kind} model with running statistics (a centred input mean, a "
                "BatchTopK threshold) cannot be stacked: train it one model at a time "
                "(experiment commands: add --no-stack; library: implicit_em.train.loop)"
            )
        if getattr(self.models[0], "unit_norm_rows", False):  # no stacked form of the hook
            raise ValueError(
                f"a {self.kind} model with unit-norm rows (model.unit_norm_rows) cannot be "
                "stacked: train it one model at a time (experiment commands: add --no-stack; "
                "library: implicit_em.train.loop)"
            )
        self.slots, self.data_seeds, self.blocks = seed_slots([c.training.seed for c in cfgs])
        slot_cfgs = [cfgs[i] for i in self.slots]
        params, _ = stack_module_state([self.models[i] for i in self.slots])
        self.params = {f"model.{k}": v for k, v in params.items()}  # name -> (N, ...)
        wrapper = _Terms(copy.deepcopy(self.models[0]).to("meta"), cfgs[0])
        self._terms = vmap(  # "different": each model draws its own tc_probes, if any
            lambda p, x, dead: functional_call(wrapper, p, (x, dead)),
            in_dims=(0, 0, 0),
            randomness="different",
        )
        row = [r for r0, r1, g in self.blocks for r in range(r0, r1) for _ in range(g)]
        self._data_row = torch.tensor(row, device=self.device)  # slot -> row of xb, (N,)
        self._rows_are_slots = row == list(range(len(cfgs)))
        loss = cfgs[0].loss
        # The family names its batched fast path, if any (`Family.stacked_fast_path`): the
        # decoder-free encoder's batched matmuls (see the module docstring) or the SAEs'
        # hand-written gradients; otherwise the generic vmap path.
        fast = self.family.stacked_fast_path(cfgs[0])
        self.fast_encoder = fast == "_encoder_step"
        self.fast_sae = fast == "_sae_step"
        # AuxK's dead latents (TopK): the family keeps a `since_fired` state.
        self.tracks_dead = bool(self.family.init_state(self.models[0]))
        n = len(cfgs)
        weights = [self.family.weights(c.loss, c.model.hidden_dim) for c in slot_cfgs]
        dtype = next(iter(self.params.values())).dtype  # weights like 16.8 must not round
        self.weights = {
            k: torch.tensor([w[k] for w in weights], dtype=dtype, device=self.device)
            for k in weights[0]
        }  # term -> (N,)
        if self.fast_encoder and not loss.lambda_wr:
            del self.weights["wr"]  # reported once per epoch by `fit`, not computed per step
        self._block_weights = []  # the fused kernel's (3, S_b G) weights of each block
        if self.fast_encoder and self.fused_step:
            ends = np.cumsum([0] + [(r1 - r0) * g for r0, r1, g in self.blocks]).tolist()
            self._block_weights = [
                torch.stack([self.weights[t][m0:m1] for t in ("lse", "var", "tc")]).float()
                for m0, m1 in zip(ends[:-1], ends[1:], strict=True)
            ]  # fmt: skip
        self.use_graphs = self.device.type == "cuda"
        n_blocks = len(self.blocks)  # `_encoder_step`: one branch per block, if several
        self.priority = priority
        self._block_branches = Branches(self.device, n_blocks if n_blocks > 1 else 0, priority)
        self._aux_branch = Branches(self.device, int(self.family.topk_codes), priority)  # AuxK
        # Its own streams, taken once (`take_streams`): warm-up, eager steps and captures run
        # on `_side`, `fit` side by side with other stacks on `fit_stream` (`_fit_stack`).
        self._side, self.fit_stream = take_streams(self, self.device, 2, priority) or (None, None)
        # No host reads in a step (CUDA graphs capture it): AuxK then always runs, on all K
        # columns, with live latents masked; on CPU it runs on the dead columns, when any.
        self.host_reads = not self.use_graphs
        self._graph: torch.cuda.CUDAGraph | None = None
        self._warmup_left = 3
        # `fit` on CUDA: STEPS_PER_GRAPH steps per graph replay, with their batch gathers and
        # the sums of their terms (into the static `_acc`), so the host is not in every step.
        self._chunk: tuple[torch.cuda.CUDAGraph, Tensor, tuple] | None = None
        self._acc: dict[str, Tensor] | None = None
        # CUDA graphs of stacks trained side by side are captured one stack at a time, with
        # the other stacks of one `train_many` waiting: a capture must not overlap other
        # threads' captures (entering one synchronizes the device). No other stack works on
        # a stream a capture uses (each holds its own streams: `take_streams`).
        self.captured = threading.Event()
        """Set once `fit` will capture no more CUDA graphs (or has ended)."""
        self.proceed: threading.Event | None = None
        """If set by the caller: after its last capture, `fit` waits for it (`train_many`
        sets it once every stack has captured)."""
        self._captures_left = 0
        k_dim = cfgs[0].model.hidden_dim
        self.since_fired = torch.zeros(n, k_dim, dtype=torch.long, device=self.device)
        self.alive = torch.ones(n, dtype=torch.bool, device=self.device)  # slot order
        # On CPU, Adam runs as torch's fused kernel (one pass over the parameters instead of
        # about ten); CUDA graphs need the tensor-only update (no host reads).
        self.optim = StackedOptimizer(
            self.params, [c.training.lr for c in slot_cfgs], self.alive,
            cfgs[0].training.optimizer, fused=self.device.type == "cpu", priority=priority,
            multi_tensor=self.fused_step,
        )  # fmt: skip

    def _per_model(self, t: Tensor, like: Tensor) -> Tensor:
        return t.view(-1, *([1] * (like.ndim - 1)))  # (N,) -> (N, 1, ..., 1)

    def epoch_order(self, n: int, epoch: int) -> Tensor:
        """The order of n samples in `epoch` for each data seed: (S, n) int64."""
        return torch.stack([epoch_permutation(n, sd, epoch, self.device) for sd in self.data_seeds])

    def batch(self, x: Tensor, order: Tensor, step: int, batch_size: int) -> Tensor:
        """Rows of x (n, D) in step `step` of each data seed's `order` (S, n): (S, B, D).
        Batches follow `data.batches.batch_slices` (a one-row tail joins the batch before)."""
        lo, hi = batch_slices(order.shape[1], batch_size)[step]
        return self.gather(x, order[:, lo:hi])

    @staticmethod
    def gather(x: Tensor, idx: Tensor) -> Tensor:
        """Rows idx (S, B) of x (n, D): (S, B, D)."""
        return x.index_select(0, idx.reshape(-1)).view(*idx.shape, x.shape[1])

    @property
    def fused_adam(self) -> bool:
        """CPU: torch's fused Adam kernel per learning rate (`StackedOptimizer.fused`)."""
        return self.optim.fused

    @fused_adam.setter
    def fused_adam(self, value: bool) -> None:
        self.optim.fused = value

    @property
    def step_t(self) -> Tensor:
        return self.optim.step_t

    def _encoder_step(self, xb: Tensor) -> tuple[dict, Tensor]:
        """Terms (each (N,), slot order) and total of the decoder-free encoder; sets the grads.

        One batched matmul per block forward, and each block's weight gradient dz^T x one
        more, written straight into W.grad (autograd through slices of the stacked W would
        zero and copy a full (N, K, D) gradient per block). dL/da is closed-form
        (`encoder_terms_grad`) when B >= K, else autograd from the losses back to z.
        """
        w, bias = self.params["model.linear.weight"], self.params["model.linear.bias"]
        k, d = w.shape[1], w.shape[2]
        act_name = self.cfgs[0].model.activation
        act, eps = ACTIVATIONS[act_name], self.cfgs[0].loss.variance_eps
        closed_form = xb.shape[1] >= k
        wr_grad = bool(self.cfgs[0].loss.lambda_wr)
        # Closed form without wr: each block's gradient is final, so the whole block (forward,
        # terms, weight gradient) is one independent chain, on a branch of its own on CUDA.
        whole = closed_form and not wr_grad
        parts, spans, zs, m0 = [], [], [], 0
        if whole:
            self._block_branches.fork()
        for i, (r0, r1, g) in enumerate(self.blocks):
            s, m1 = r1 - r0, m0 + (r1 - r0) * g
            branch = self._block_branches.on(i) if whole else contextlib.nullcontext()
            with branch:
                with torch.no_grad():
                    w_blk = w[m0:m1].view(s, g * k, d)  # (S_b, G K, D): G models per seed
                    z = torch.baddbmm(bias[m0:m1].view(s, 1, g * k), xb[r0:r1], w_blk.mT)
                spans.append((r0, r1, m0, m1, s, g * k))  # z: (S_b, B, G K)
                if closed_form:
                    wts = {t: self.weights[t][m0:m1].view(s, g) for t in ("lse", "var", "tc")}
                    if act_name == "relu" and self._fused_block(z, k):
                        kernel = _block_kernel().block_terms_grad_v2
                        terms_b, dz = kernel(z, g, k, eps, self._block_weights[i])
                    elif act_name == "relu":
                        terms_b, da = encoder_terms_grad(z.relu().view(s, -1, g, k), eps, wts)
                        dz = da.view_as(z).mul_(z > 0)  # dL/dz
                    else:
                        z.requires_grad_()
                        a = act(z)
                        terms_b, da = encoder_terms_grad(a.detach().view(s, -1, g, k), eps, wts)
                        dz = torch.autograd.grad(a, z, da.view_as(a))[0]
                    if whole:
                        self._weight_grads(xb[r0:r1], dz, m0, m1, s, g * k)
                    else:
                        zs.append(dz)
                else:
                    z.requires_grad_()
                    terms_b = encoder_terms(act(z).view(s, -1, g, k), eps)  # (S_b, G) each
                    zs.append(z)
            parts.append(terms_b)
            m0 = m1
        if whole:
            self._block_branches.join()
        terms = {t: torch.cat([p[t].reshape(-1) for p in parts]) for t in parts[0]}  # (N,)
        if wr_grad:
            with torch.enable_grad():
                terms["wr"] = vmap(weight_redundancy_loss, in_dims=(0, None))(w, False)  # (N,)
        total = sum(self.weights[t] * terms[t] for t in self.weights)  # (N,)
        if whole:
            dzs = []
        elif closed_form:
            dzs = zs
            if wr_grad:
                wr_total = (self.weights["wr"] * terms["wr"]).sum()
                dw_wr = torch.autograd.grad(wr_total, w)[0]
        else:  # models are independent: d(sum)/d(p_i) = dL_i/d(p_i)
            grads = torch.autograd.grad(total.sum(), [*zs, w] if wr_grad else zs)
            dzs, dw_wr = grads[: len(zs)], grads[-1]
        with torch.no_grad():
            for (r0, r1, m0, m1, s, gk), dz in zip(spans if not whole else [], dzs, strict=True):
                self._weight_grads(xb[r0:r1], dz, m0, m1, s, gk)
            if wr_grad:
                w.grad.add_(dw_wr)
        return {t: v.detach() for t, v in terms.items()}, total.detach()

    def _fused_block(self, z: Tensor, k: int) -> bool:
        """Whether the fused step runs this block's closed-form terms as one Triton kernel:
        z (S_b, B, G K) on CUDA (or the CPU under Triton's interpreter), float32, and its
        (B, K) tile fits the kernel (`kernels.triton_stacked_v2.fits`)."""
        if not (self.fused_step and kernels.triton_available()):
            return False
        if not (z.is_cuda or kernels.interpreted()):
            return False
        return _block_kernel().fits(z.shape[1], k, z.dtype)

    @torch.no_grad()
    def _weight_grads(self, xb: Tensor, dz: Tensor, m0: int, m1: int, s: int, gk: int) -> None:
        """W.grad and b.grad of slots m0:m1 (S_b seeds x G models) from dz (S_b, B, G K) and
        the block's data xb (S_b, B, D): dz^T x and the sum of dz over the batch."""
        w, bias = self.params["model.linear.weight"], self.params["model.linear.bias"]
        torch.bmm(dz.mT, xb, out=w.grad[m0:m1].view(s, gk, w.shape[2]))  # (S_b, G K, D)
        torch.sum(dz, dim=1, out=bias.grad[m0:m1].view(s, gk))

    @torch.no_grad()
    def _sae_step(self, x: Tensor, dead: Tensor | None = None) -> tuple[dict, Tensor]:
        """Terms and total of the SAE baselines with hand-written gradients; sets the grads.

        x: (N, B, D). StandardSAE: mse + l1_weight * l1. TopKSAE: mse + aux_coef * aux, with
        AuxK on the latents in `dead` (N, K) (None: no latent is dead, aux is exactly zero);
        its target x - x_hat is detached, so it reaches W_dec and the encoder through the
        dead latents' codes only. Same values and gradients as autograd through
        `training.loss_terms` (tests compare with the one-model loop), with fewer passes over
        the (N, B, D) tensors: the residual x_hat - x is one baddbmm, and the MSE's 2 / (B D)
        scales the (N, B, K)- and parameter-sized gradients only.
        """
        topk = self.family.topk_codes
        w_enc, b_enc = self.params["model.encoder.weight"], self.params["model.encoder.bias"]
        if topk:
            w_dec, b_dec = self.params["model.W_dec"], self.params["model.b_dec"]  # (N, D, K)
            x_in = x - b_dec[:, None]  # (N, B, D): the encoder sees x - b_dec
        else:
            w_dec, b_dec = self.params["model.decoder.weight"], self.params["model.decoder.bias"]
            x_in = x
        bsz, d = x.shape[1], x.shape[2]
        z = torch.baddbmm(b_enc[:, None], x_in, w_enc.mT).relu_()  # (N, B, K)
        if topk:
            vals, idx = z.topk(self.models[0].k, dim=-1)  # (N, B, k)
            a = torch.zeros_like(z).scatter_(-1, idx, vals)  # (N, B, K)
        else:
            a = z
        r = torch.baddbmm(b_dec[:, None] - x, a, w_dec.mT)  # x_hat - x, (N, B, D)
        c = 2.0 / (bsz * d)  # d mse / d x_hat = c r
        auxk = topk and dead is not None
        if auxk:  # AuxK reads z, r and W_dec only: on a branch (CUDA) beside the MSE's gradients
            self._aux_branch.fork()
            with self._aux_branch.on(0):
                aux, dz_aux, cols, dw_aux = self._auxk(z, r, w_dec, dead, c)
        terms = {"mse": torch.linalg.vector_norm(r, dim=(1, 2)).square() / (bsz * d)}  # (N,)
        torch.bmm(r.mT, a, out=w_dec.grad).mul_(c)  # (N, D, K)
        torch.sum(r, dim=1, out=b_dec.grad).mul_(c)  # (N, D)
        da = torch.bmm(r, w_dec).mul_(c)  # (N, B, K)
        if auxk:
            self._aux_branch.join()
            terms["aux"] = aux
            w_dec.grad.scatter_add_(2, cols[:, None].expand_as(dw_aux), dw_aux)
        elif topk:
            terms["aux"] = torch.zeros_like(terms["mse"])
        else:
            k = a.shape[-1]
            terms["l1"] = a.sum(dim=(1, 2)) / (bsz * k)  # a >= 0: |a| = a
            da.add_((self.weights["l1"] / (bsz * k)).view(-1, 1, 1))  # d|a|/da = 1 where a > 0
        dz = da.mul_(a > 0)  # ReLU (and TopK's selection): gradient where a > 0
        if auxk:
            dz.scatter_add_(-1, cols[:, None].expand_as(dz_aux), dz_aux)
        torch.bmm(dz.mT, x_in, out=w_enc.grad)  # (N, K, D)
        torch.sum(dz, dim=1, out=b_enc.grad)  # (N, K)
        if topk:  # b_dec also enters the encoder's input: d/d b_dec of -b_dec W_enc^T
            b_dec.grad.sub_(torch.bmm(b_enc.grad[:, None], w_enc).squeeze(1))  # (N, D)
        total = sum(self.weights[t] * terms[t] for t in self.weights)  # (N,)
        terms["a"] = a
        return terms, total

    def _auxk(
        self, z: Tensor, r: Tensor, w_dec: Tensor, dead: Tensor, c: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """AuxK's term (N,), its gradients in the dead latents' pre-codes and decoder
        columns, and their indices.

        z (N, B, K) pre-codes, r = x_hat - x (N, B, D), w_dec (N, D, K), dead (N, K), c the
        MSE's 2 / (B D). Only dead latents can carry AuxK codes, so the work runs on the
        M = max dead count columns of each model (padded with live columns, whose codes are
        zeroed): the same result as the top-k_aux over all K with live codes masked to 0,
        at M / K of the cost (a few of 64 latents are dead in the reproduction's TopK SAEs).
        Without host reads (CUDA graphs), M = K.
        Returns (aux, dz (N, B, M), cols (N, M), dW (N, D, M)): W_dec's AuxK gradient is dW
        in columns cols (the caller adds it into w_dec.grad).
        """
        (n, bsz, k), d = z.shape, r.shape[-1]
        m = int(dead.sum(dim=1).max()) if self.host_reads else k
        cols = torch.argsort((~dead).to(torch.uint8), dim=1, stable=True)[:, :m]  # dead first
        live = ~dead.gather(1, cols)  # (N, M): padding
        z_d = z.gather(-1, cols[:, None].expand(n, bsz, m)).masked_fill_(live[:, None], 0.0)
        k_aux = min(self.cfgs[0].loss.aux_k, m)
        if k_aux < m:
            vals, idx = z_d.topk(k_aux, dim=-1)  # (N, B, k_aux)
            z_d = torch.zeros_like(z_d).scatter_(-1, idx, vals)
        w_d = w_dec.gather(2, cols[:, None].expand(n, d, m))  # (N, D, M)
        e = torch.bmm(z_d, w_d.mT).add_(r)  # aux_hat - (x - x_hat), (N, B, D)
        any_dead = dead.any(dim=1).to(z.dtype)  # (N,): no dead latent, no AuxK loss
        aux = torch.linalg.vector_norm(e, dim=(1, 2)).square() / (bsz * d) * any_dead
        coef = (self.weights["aux"] * any_dead * c).view(-1, 1, 1)  # d(w aux)/d aux_hat / e
        dz = torch.bmm(e, w_d).mul_(coef * (z_d > 0))  # via the dead latents' codes
        return aux, dz, cols, torch.bmm(e.mT, z_d.mul_(coef))  # dW: (N, D, M)

    def train_step(self, xb: Tensor) -> dict:
        """One step on xb (S, B, D), one batch per data seed. Returns the unweighted terms,
        each (N,) in slot order, detached (the encoder's wr only when lambda_wr > 0)."""
        loss = self.cfgs[0].loss
        fired = None
        if self.fast_encoder:
            for p in self.params.values():
                if p.grad is None:
                    p.grad = torch.empty_like(p)  # written in full every step
            terms, total = self._encoder_step(xb)
        else:
            xn = xb if self._rows_are_slots else xb.index_select(0, self._data_row)  # (N, B, D)
            dead = self.since_fired >= loss.dead_steps  # (N, K)
            if self.fast_sae:
                for p in self.params.values():
                    if p.grad is None:
                        p.grad = torch.empty_like(p)  # written in full every step
                auxk = self.tracks_dead and loss.aux_coef > 0
                if auxk and self.host_reads:
                    auxk = bool(dead.any())  # on CPU, AuxK runs only while a latent is dead
                terms, total = self._sae_step(xn, dead if auxk else None)
                fired = (terms.pop("a") > 0).any(dim=1)  # (N, K)
            else:
                terms = self._terms(self.params, xn, dead)
                fired = terms.pop("fired")  # (N, K)
                total = sum(self.weights[k] * terms[k] for k in self.weights)  # (N,)
                for p in self.params.values():
                    p.grad = None
                total.sum().backward()  # models are independent: d(sum)/d(p_i) = dL_i/d(p_i)
        self.family.stacked_before_step(self.params)
        self.optim.step()
        self.family.stacked_after_step(self.params)
        if self.tracks_dead:
            with torch.no_grad():
                self.since_fired.copy_(torch.where(fired, 0, self.since_fired + 1))
        out = {k: v.detach() for k, v in terms.items()}
        out["total"] = total.detach()
        return out

    def step(self, xb: Tensor) -> dict:
        """train_step, replayed from a captured CUDA graph on GPUs (full batches only).

        Each step launches hundreds of small kernels; replaying them as one graph removes the
        launch and Python overhead that dominates at MNIST scale. The first steps run eagerly
        on a side stream (warm-up, as capture requires), and every step, captured or not,
        updates the same parameter and optimizer tensors in place.
        """
        if not self.use_graphs:
            return self.train_step(xb)
        if self._graph is not None and xb.shape == self._static_x.shape:
            self._static_x.copy_(xb)
            self._graph.replay()
            return {k: v.clone() for k, v in self._static_out.items()}
        if self._graph is not None or self._warmup_left > 0:
            side = self._side
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self.train_step(xb)
            torch.cuda.current_stream().wait_stream(side)
            self._warmup_left -= 1
            return out
        self._static_x = xb.clone()
        for p in self.params.values():
            p.grad = None
        self._graph = torch.cuda.CUDAGraph()
        # Stacks may train side by side in threads (train_many on CUDA): one capture at a
        # time (entering a capture synchronizes the device, which fails while another thread
        # captures), on its own stream, with errors only for this thread's unsafe calls.
        capture = self._side
        with (
            _CAPTURE_LOCK,
            torch.cuda.graph(self._graph, stream=capture, capture_error_mode="thread_local"),
        ):
            self._static_out = self.train_step(self._static_x)
        self._graph.replay()  # capture records the step without running it
        self._captured_one()
        return {k: v.clone() for k, v in self._static_out.items()}

    def steps(self, x: Tensor, order: Tensor, acc: dict[str, Tensor], batch_size: int) -> None:
        """Full steps on consecutive batches: step c trains on the rows
        order[:, c B:(c + 1) B] (order (S, C B), B = batch_size) of x (n, D) and adds its terms
        (those `step` returns) into acc, in place and in step order, so the sums are bitwise
        those of `fit`'s step-by-step loop. `fit` replays this from one CUDA graph on GPUs."""
        for c in range(order.shape[1] // batch_size):
            out = self.train_step(self.gather(x, order[:, c * batch_size : (c + 1) * batch_size]))
            for k, v in out.items():
                acc[k].add_(v)

    def _replay_steps(self, x: Tensor, order: Tensor, acc: dict[str, Tensor], bsz: int) -> None:
        """`steps` from a CUDA graph, captured on the first call (x, acc and the chunk size
        must then stay the same tensors and sizes; another x recaptures)."""
        key = (x.data_ptr(), tuple(x.shape), tuple(order.shape), bsz)
        if self._chunk is not None and self._chunk[2] == key:
            graph, static_order, _ = self._chunk
            static_order.copy_(order)
            graph.replay()
            return
        static_order = order.clone()
        graph = torch.cuda.CUDAGraph()
        capture = self._side
        capture.wait_stream(torch.cuda.current_stream(self.device))
        with (
            _CAPTURE_LOCK,  # as in `step`
            torch.cuda.graph(graph, stream=capture, capture_error_mode="thread_local"),
        ):
            self.steps(x, static_order, acc, bsz)
        torch.cuda.current_stream(self.device).wait_stream(capture)
        graph.replay()  # capture records the steps without running them
        self._chunk = (graph, static_order, key)
        self._captured_one()

    def _captured_one(self) -> None:
        """After a capture: the last one of `fit` sets `captured`, then waits for `proceed`."""
        self._captures_left -= 1
        if self._captures_left == 0:
            self.captured.set()
            if self.proceed is not None:
                self.proceed.wait()

    def _epoch(self, x: Tensor, order: Tensor, bounds: list[tuple[int, int]], bsz: int,
               bar: StackBar) -> dict[str, Tensor]:  # fmt: skip
        """One epoch of steps over the batches `bounds` of `order` (S, n); the sums of each
        term over the steps (N,) each. On CUDA the sums are the static `_acc`, and once the
        one-step graph is captured (warm-up done), runs of STEPS_PER_GRAPH full batches replay
        from one graph (`steps`) that adds into them."""
        sums: dict[str, Tensor] = {}
        full = sum(hi - lo == bsz for lo, hi in bounds)  # the full batches come first
        s = 0
        while s < len(bounds):
            lo, hi = bounds[s]
            warm = self._graph is not None  # warm-up done, the one-step graph captured
            if warm and sums is self._acc and s + STEPS_PER_GRAPH <= full:
                self._replay_steps(x, order[:, lo : lo + STEPS_PER_GRAPH * bsz], sums, bsz)
                bar.update(STEPS_PER_GRAPH * bsz)
                s += STEPS_PER_GRAPH
                continue
            out = self.step(self.gather(x, order[:, lo:hi]))
            if sums:
                for k, v in out.items():  # in place on the static sums: the same values
                    sums[k] = sums[k].add_(v) if sums is self._acc else sums[k] + v
            elif self.use_graphs:
                if self._acc is None:
                    self._acc = {k: torch.empty_like(v) for k, v in out.items()}
                for k, v in out.items():
                    self._acc[k].copy_(v)
                sums = self._acc
            else:
                sums = dict(out)
            bar.update(hi - lo)
            s += 1
        return sums

    def state_dict(self) -> dict:
        """Everything a continuation needs to end bitwise where an uninterrupted fit ends:
        the stacked parameters, the optimizer's moments and step counters, the dead-latent
        counters, which models are alive, and the RNG states (the sketched penalty draws its
        probes from torch's generator). The data order needs nothing: each epoch's order is
        a pure function of (seed, epoch) (`data.batches.epoch_permutation`). Tensors on CPU."""
        cpu = {k: v.detach().cpu().clone() for k, v in self.params.items()}
        rng = {"torch": torch.get_rng_state(), "python": random.getstate(),
               "numpy": np.random.get_state()}  # fmt: skip
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "params": cpu,
            "moments": {
                k: (m.cpu().clone(), v.cpu().clone()) for k, (m, v) in self.optim.state.items()
            },
            "step_t": self.optim.step_t.cpu().clone(),
            "fused_step": self.optim._fused_step.cpu().clone(),
            "since_fired": self.since_fired.cpu().clone(),
            "alive": self.alive.cpu().clone(),
            "rng": rng,
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()` in place (the optimizer and CUDA graphs hold these tensors)."""
        for k, p in self.params.items():
            p.copy_(state["params"][k])
        for k, (m, v) in self.optim.state.items():
            m.copy_(state["moments"][k][0])
            v.copy_(state["moments"][k][1])
        self.optim.step_t.copy_(state["step_t"])
        self.optim._fused_step.copy_(state["fused_step"])
        self.since_fired.copy_(state["since_fired"])
        self.alive.copy_(state["alive"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)

    def _resume(self, path: Path, key: str) -> tuple[int, list[list[dict]]] | None:
        """(epoch, histories) of the checkpoint at `path` if it belongs to this stack."""
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
            if ckpt["key"] != key:
                return None
            self.load_state_dict(ckpt["trainer"])
        except Exception as err:  # noqa: BLE001  (a damaged checkpoint is only lost time)
            tqdm.write(f"note: ignoring the damaged stack checkpoint {path} "
                       f"({type(err).__name__}); training this stack from epoch 0")  # fmt: skip
            return None
        return ckpt["epoch"], ckpt["histories"]

    @torch.no_grad()
    def sync_models(self) -> list[nn.Module]:
        """Copy each stacked slice into its own nn.Module (for evaluation and saving)."""
        for j, i in enumerate(self.slots):
            for name, p in self.models[i].named_parameters():
                p.copy_(self.params[f"model.{name}"][j])
        return self.models

    def fit(
        self,
        x_train: Tensor,
        x_eval: Tensor | None = None,
        progress: bool = True,
        eval_every: int = 1,
        checkpoint: str | Path | None = None,
        checkpoint_every: int = CHECKPOINT_EVERY,
    ) -> list[list[dict]]:
        """Train all models for their epochs. Returns one history per model (as `train`).

        eval_every: run `evaluate` on x_eval after every eval_every-th epoch and after the
        last; other epochs record the loss terms and `w_row_norm` only. On the encoder's
        batched path with lambda_wr = 0, `wr` (which then carries no gradient) is recorded
        at the end of each epoch instead of averaged over its steps.
        checkpoint: a file for this stack's training state (`state_dict`, the epoch and the
        histories), written atomically after every checkpoint_every-th epoch (0: never) but
        the last. If it exists and belongs to this stack (same configs, data size, device
        and eval_every), training continues from it: the weights and histories (all but
        each record's wall-clock `seconds`) are bitwise those of an uninterrupted fit.
        The caller deletes it once the runs are saved.
        """
        x_train = x_train.to(self.device)
        x_eval = x_train if x_eval is None else x_eval.to(self.device)
        t = self.cfgs[0].training
        n, bsz = len(x_train), t.batch_size
        bounds = batch_slices(n, bsz)  # (start, stop) of each step's rows
        steps = len(bounds)
        histories: list[list[dict]] = [[] for _ in self.cfgs]
        start = 0
        key = self.checkpoint_key(x_train, x_eval, eval_every)
        if checkpoint is not None and Path(checkpoint).is_file():
            resumed = self._resume(Path(checkpoint), key)
            if resumed is not None:
                start, histories = resumed
        bar = StackBar(f"{self.kind} x{len(self.cfgs)}", t.epochs, n, start, enabled=progress)
        wr_per_epoch = self.fast_encoder and "wr" not in self.weights
        if self.use_graphs:  # the one-step graph, then (from step 4, or in epoch 2) the runs'
            full = sum(hi - lo == bsz for lo, hi in bounds)
            runs_graph = self._chunk is None and full >= STEPS_PER_GRAPH + 1
            self._captures_left = (self._graph is None) + runs_graph
        if self._captures_left <= 0:
            self.captured.set()
        for epoch in range(start, t.epochs):
            tic = time.perf_counter()
            order = self.epoch_order(n, epoch)  # (S, n)
            sums = self._epoch(x_train, order, bounds, bsz, bar)
            seconds = time.perf_counter() - tic
            means = {k: (v / steps).tolist() for k, v in sums.items()}  # one sync per epoch
            if wr_per_epoch:
                with torch.no_grad():
                    w = self.params["model.linear.weight"]  # (N, K, D)
                    means["wr"] = vmap(weight_redundancy_loss, in_dims=(0, None))(w, False).tolist()
            full_eval = (epoch + 1) % eval_every == 0 or epoch + 1 == t.epochs
            models = self.sync_models()
            for j, i in enumerate(self.slots):
                if not bool(self.alive[j]):
                    continue
                rec = {"epoch": epoch + 1, **{k: v[j] for k, v in means.items()}}
                if full_eval:
                    rec.update(evaluate(models[i], x_eval))
                else:
                    rec["w_row_norm"] = float(models[i].W.detach().norm(dim=1).mean())
                rec["seconds"] = seconds
                histories[i].append(rec)
                if not finite_record(rec):
                    self.alive[j] = False
            bar.epoch_done(epoch + 1, loss=f"{means['total'][0]:.4g}")
            due = checkpoint_every and (epoch + 1) % checkpoint_every == 0
            if checkpoint is not None and due and epoch + 1 < t.epochs:
                snap = {"key": key, "epoch": epoch + 1, "histories": histories,
                        "trainer": self.state_dict()}  # fmt: skip
                runs.atomic_save(lambda p, s=snap: torch.save(s, p), checkpoint)
        bar.close()
        return histories

    def checkpoint_key(self, x_train: Tensor, x_eval: Tensor, eval_every: int) -> str:
        """What a stack checkpoint must match to be continued: the configs in order (their
        slots and batched shapes follow from it), the data sizes, the device type and
        eval_every (the histories depend on it)."""
        d = {"cfgs": [c.to_dict() for c in self.cfgs], "device": self.device.type,
             "x": [list(x_train.shape), list(x_eval.shape)], "eval_every": eval_every}  # fmt: skip
        for c in d["cfgs"]:
            c["training"].pop("device")
        if self.fused_step:  # another rounding: a default checkpoint does not continue here
            d["fused_step"] = True
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def train_many(
    cfgs: list[RunConfig],
    x_train: Tensor,
    x_eval: Tensor | None = None,
    run_dirs: list[str | Path] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    stacked: bool = True,
    eval_every: int = 1,
    checkpoint_every: int = CHECKPOINT_EVERY,
) -> list[tuple[nn.Module, list[dict]]]:
    """Train every config (stacked where possible, else one by one); return (model, history).

    With run_dirs, each finished model is written to its own run directory as `train` does,
    and each stack checkpoints its training state every checkpoint_every epochs (0: never)
    to `stack_checkpoint(run_dirs of the stack)`; called again with the same configs and
    run_dirs after an interrupt, a stack continues from its checkpoint (`StackedTrainer.fit`).
    eval_every: see `StackedTrainer.fit` (the one-by-one path evaluates every epoch).
    """
    from implicit_em.train.loop import train

    results: list = [None] * len(cfgs)
    done = _keeper(results, cfgs, run_dirs)
    if stacked:
        groups = group_configs(cfgs)
        fit = (x_train, x_eval, progress, eval_every)
        ckpts = _checkpoints(groups, run_dirs, checkpoint_every)
        draws = _draws(cfgs)
        # At MNIST sizes a stack's step is a few hundred tiny kernels, too small to fill the
        # GPU: on CUDA, independent stacks run side by side in threads, each on its own
        # stream (not when steps draw random numbers, whose order across threads would vary).
        concurrent = torch.device(device).type == "cuda" and len(groups) > 1 and not draws
        with ThreadPoolExecutor(len(groups)) if concurrent else contextlib.nullcontext() as pool:
            if pool is not None:
                # Model init seeds the global RNG: every stack is built here, in order.
                trainers = [StackedTrainer([cfgs[i] for i in g], device) for g in groups]
                with _one_capture_at_a_time(trainers):
                    futures = []
                    for t, c in zip(trainers, ckpts, strict=True):
                        futures.append(pool.submit(_fit_stack, t, *fit, c, checkpoint_every,
                                                   concurrent=True))  # fmt: skip
                        t.captured.wait()
                fitted = (f.result() for f in futures)
            else:  # lazily: one stack in memory at a time, saved before the next one starts
                fitted = (
                    _fit_stack(StackedTrainer([cfgs[i] for i in g], device), *fit, c,
                               checkpoint_every)
                    for g, c in zip(groups, ckpts, strict=True)
                )  # fmt: skip
            for group, ckpt, (models, hists) in zip(groups, ckpts, fitted, strict=True):
                _finish_stack(group, models, hists, ckpt, done)
    else:
        for i, cfg in enumerate(cfgs):
            model = runs.build_model(cfg).to(device)
            done(i, model, train(model, x_train.to(device), cfg, x_eval=x_eval, progress=progress))
    return results


class StacksFuture(Future):
    """The Future of `train_many_in_background`: `train_many`'s result once every stack is
    done (or the first stack's error); `of(i)`: the Future of the stack that trains config i
    alone (None once its runs are saved, or its error), for callers that need some runs
    before the others."""

    def __init__(self, per_config: list[Future]) -> None:
        super().__init__()
        self._per_config = per_config

    def of(self, i: int) -> Future:
        return self._per_config[i]


def train_many_in_background(
    cfgs: list[RunConfig],
    x_train: Tensor,
    x_eval: Tensor | None = None,
    run_dirs: list[str | Path] | None = None,
    device: torch.device | str = "cuda",
    progress: bool = True,
    eval_every: int = 1,
    checkpoint_every: int = CHECKPOINT_EVERY,
    urgent: Collection[int] = (),
    apart: bool = False,
) -> StacksFuture | None:
    """`train_many` (stacked) in a background thread, so that the caller can work meanwhile.

    The stacks are built here, in the calling thread (model init seeds the global RNG, so the
    weights are those `train_many` starts from); then a daemon thread per stack fits it on a
    CUDA stream of its own and saves its runs (run directories and checkpoints as in
    `train_many`). Returns once the stacks have captured their CUDA graphs. Returns a
    `StacksFuture` of `train_many`'s result (its exception if training failed), or None where
    training cannot overlap the caller's work reproducibly: a device other than CUDA (on CPU
    the caller's work would share the cores), or steps that draw random numbers (the sketched
    penalty's probes come from the global generator the caller also draws from).
    urgent: indices of configs needed first; their stacks run at URGENT_PRIORITY (the
    GPU serves their kernels before those of the other stacks and of the caller's default
    stream). The results do not depend on it.
    apart: the urgent configs train in stacks of their own (`stack_groups`), so that they
    are saved sooner. Their models then share their batched matmuls with fewer others, which
    on a GPU may round differently (cuBLAS picks kernels by shape): not bitwise the runs of
    the default grouping, the same to float32 rounding.
    """
    if torch.device(device).type not in BACKGROUND_DEVICES or _draws(cfgs):
        return None
    return _train_in_thread(cfgs, x_train, x_eval, run_dirs, device, progress, eval_every,
                            checkpoint_every, urgent, apart)  # fmt: skip


def _train_in_thread(
    cfgs: list[RunConfig], x_train: Tensor, x_eval: Tensor | None, run_dirs: list | None,
    device: torch.device | str, progress: bool, eval_every: int, checkpoint_every: int,
    urgent: Collection[int] = (), apart: bool = False,
) -> StacksFuture:  # fmt: skip
    """`train_many_in_background` on any device."""
    groups = stack_groups(cfgs, urgent, apart)
    ckpts = _checkpoints(groups, run_dirs, checkpoint_every)
    hot = set(urgent)
    trainers = [StackedTrainer([cfgs[i] for i in g], device,
                               URGENT_PRIORITY if hot.intersection(g) else 0) for g in groups]  # fmt: skip
    results: list = [None] * len(cfgs)
    done = _keeper(results, cfgs, run_dirs)
    stack_futures = [Future() for _ in groups]
    per_config: list = [None] * len(cfgs)
    for g, f in zip(groups, stack_futures, strict=True):
        for i in g:
            per_config[i] = f
    future = StacksFuture(per_config)
    on_stream = torch.device(device).type == "cuda"
    pending, lock = [len(groups)], threading.Lock()

    def work(group: list[int], trainer: StackedTrainer, ckpt: Path | None, mine: Future) -> None:
        try:
            models, hists = _fit_stack(trainer, x_train, x_eval, progress, eval_every, ckpt,
                                       checkpoint_every, concurrent=on_stream)  # fmt: skip
            _finish_stack(group, models, hists, ckpt, done)
        except BaseException as err:  # noqa: BLE001  (handed to whoever waits on the future)
            mine.set_exception(err)
            with lock:
                if not future.done():
                    future.set_exception(err)
            return
        mine.set_result(None)
        with lock:
            pending[0] -= 1
            if pending[0] == 0 and not future.done():
                future.set_result(results)

    # Side by side, as in train_many. CUDA forbids device-wide synchronizations (which the
    # caller's work may do) while a stream captures a graph: return once every stack's
    # captures are done (`StackedTrainer.captured`: a few steps).
    with _one_capture_at_a_time(trainers):
        for args in zip(groups, trainers, ckpts, stack_futures, strict=True):
            threading.Thread(target=work, args=args, name="implicit-em stack", daemon=True).start()
            args[1].captured.wait()
    return future


def _keeper(results: list, cfgs: list[RunConfig], run_dirs: list | None):
    """done(i, model, history) for the trainers: results[i] = (model, history), and with
    run_dirs the run saved at once (`save_run`), so a later stack's failure loses nothing."""

    def done(i: int, model: nn.Module, hist: list[dict]) -> None:
        results[i] = (model, hist)
        if run_dirs is not None:
            save_run(model, cfgs[i], hist, run_dirs[i])

    return done


@contextlib.contextmanager
def _one_capture_at_a_time(trainers: list[StackedTrainer]):
    """Stacks started (and each waited for: `captured`) inside the block hold after their
    captures until it ends (`StackedTrainer.proceed`), also when it ends in an error."""
    proceed = threading.Event()
    for t in trainers:
        t.proceed = proceed
    try:
        yield
    finally:
        proceed.set()


def _draws(cfgs: list[RunConfig]) -> bool:
    """Whether the steps of any config draw random numbers (the sketched penalty's probes)."""
    return any(getattr(c.loss, "tc_probes", None) is not None for c in cfgs)


def _checkpoints(
    groups: list[list[int]], run_dirs: list | None, checkpoint_every: int
) -> list[Path | None]:
    """The checkpoint file of each stack (`stack_checkpoint`); None where none is kept."""
    if run_dirs is None or not checkpoint_every:
        return [None] * len(groups)
    ckpts = [stack_checkpoint([run_dirs[i] for i in g]) for g in groups]
    for g, c in zip(groups, ckpts, strict=True):
        record_stack(c, [run_dirs[i] for i in g])
    return ckpts


def _finish_stack(group: list[int], models: list, hists: list, ckpt: Path | None, done) -> None:
    """Hand each trained model of a stack to done(i, model, history), then delete the
    stack's checkpoint: every run of the stack is saved, so it is spent."""
    for i, model, hist in zip(group, models, hists, strict=True):
        done(i, model, hist)
    if ckpt is not None:
        ckpt.unlink(missing_ok=True)
        ckpt.with_suffix(".json").unlink(missing_ok=True)
        remove_spent_checkpoints(ckpt.parent)  # and those these runs made spent
        with contextlib.suppress(OSError):  # .stacks/ goes once it is empty
            ckpt.parent.rmdir()


def stack_checkpoint(run_dirs: list[str | Path]) -> Path:
    """Where the stack that trains into run_dirs keeps its checkpoint: a hidden `.stacks/`
    folder beside the first run directory, one file per set of run directories (in order)."""
    names = json.dumps([str(Path(d).resolve()) for d in run_dirs])
    digest = hashlib.sha1(names.encode()).hexdigest()[:16]
    return Path(run_dirs[0]).parent / ".stacks" / f"stack-{digest}.pt"


def record_stack(checkpoint: Path, run_dirs: list[str | Path]) -> None:
    """Write which run directories the stack of `checkpoint` trains, beside it
    (`stack-<digest>.json`, names relative to the store), for `remove_spent_checkpoints`."""
    store = checkpoint.parent.parent.resolve()
    names = [os.path.relpath(Path(d).resolve(), store) for d in run_dirs]
    runs.atomic_write_json(checkpoint.with_suffix(".json"), {"run_dirs": names})


def remove_spent_checkpoints(stacks: str | Path) -> list[Path]:
    """Remove the stack checkpoints in `stacks` (a store's `.stacks/`) that no run can continue;
    return the removed checkpoint paths.

    A checkpoint is spent when a run it trains was finished (its metrics.json written) after
    the checkpoint was last written: by its own stack, interrupted before its cleanup, or by
    another stack (another command asked for a subset of its runs). `ensure_runs` stacks only
    unfinished runs, so the same set of runs is never asked for again. A checkpoint that
    predates `record_stack` (no .json) names no runs and is kept.
    """
    stacks, removed = Path(stacks), []
    for record in sorted(stacks.glob("stack-*.json")) if stacks.is_dir() else []:
        ckpt = record.with_suffix(".pt")
        try:
            names = json.loads(record.read_text())["run_dirs"]
            written = (ckpt if ckpt.exists() else record).stat().st_mtime
        except (OSError, ValueError, KeyError):
            continue  # being written or removed by another process: look again next time
        finished = [
            (stacks.parent / n / runs.METRICS).stat().st_mtime
            for n in names
            if runs.is_complete(stacks.parent / n)
        ]
        if any(t >= written for t in finished):
            ckpt.unlink(missing_ok=True)
            record.unlink(missing_ok=True)
            removed.append(ckpt)
    return removed


def _fit_stack(
    trainer: StackedTrainer, x_train: Tensor, x_eval: Tensor | None, progress: bool,
    eval_every: int, checkpoint: Path | None = None, checkpoint_every: int = CHECKPOINT_EVERY,
    concurrent: bool = False,
) -> tuple[list[nn.Module], list[list[dict]]]:  # fmt: skip
    """`trainer.fit`; with `concurrent` (CUDA), on a stream of its own."""
    stream = None
    if concurrent:
        stream = trainer.fit_stream
        stream.wait_stream(torch.cuda.current_stream(trainer.device))  # data and init ready
    try:
        with torch.cuda.stream(stream):  # None: the current stream
            hists = trainer.fit(x_train, x_eval, progress, eval_every, checkpoint,
                                checkpoint_every)  # fmt: skip
    finally:
        trainer.captured.set()
    if stream is not None:
        stream.synchronize()  # the caller reads the models on its own stream
    return trainer.models, hists


def save_run(model: nn.Module, cfg: RunConfig, history: list[dict], run_dir: str | Path) -> None:
    """Write a finished run: model + config, history, and metrics.json last."""
    run_dir = runs.prepare_run_dir(run_dir, resume=False, overwrite=False)
    runs.save_model(model, cfg, run_dir)
    runs.write_history(run_dir, history)
    final = dict(history[-1]) if history else {}
    final["epochs_completed"] = len(history)
    runs.atomic_write_json(run_dir / runs.METRICS, final)
    runs.write_manifest(run_dir)
