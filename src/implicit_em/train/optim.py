"""The stacked trainer's optimizer: Adam (or plain SGD) for N models stacked along dim 0.

Legend: N models; every parameter is a tensor (N, ...) whose slice i belongs to model i.
Model i takes exactly the step `torch.optim.Adam([p_i], lr=lr_i)` (or SGD) would take on its
own slices (tests/train/test_optim.py compares them); a model marked dead in `alive` is frozen.
Adam has three forms: the tensor-only update (about ten elementwise kernels per parameter,
what CUDA graphs capture by default), torch's fused kernel per learning rate with host reads
(`fused`, the CPU default) and the opt-in multi-tensor form (`multi_tensor`): torch's fused
kernel over every model of a learning rate at once, with no host reads, so CUDA graphs capture
it (about five kernels a step instead of about thirty; it rounds differently from the
tensor-only update, to float32 rounding: tests/train/test_optim.py).
"""

from __future__ import annotations

import contextlib
import threading
import weakref

import torch
from torch import Tensor

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8
POOL_STREAMS = 32
"""Streams torch keeps per device and priority (`torch.cuda.Stream()` hands them out in turn)."""
_HELD: dict[tuple[int, int], int] = {}  # (device index, stream handle) -> owners holding it
_HELD_LOCK = threading.RLock()  # reentrant: a collection inside take_streams may release


def take_streams(owner: object, device: torch.device, n: int, priority: int = 0) -> list:
    """n CUDA streams of torch's pool that no live owner holds, held until `owner` is
    garbage-collected; [] off CUDA.

    priority: torch.cuda.Stream's (lower is more urgent; 0 the default). Kernels captured on
    these streams into a CUDA graph keep it on replay (PyTorch instantiates graphs with
    per-node priorities), so the GPU serves them first when work of lower priority waits.
    torch's pool has POOL_STREAMS streams per priority, handed out in turn, so two stacks
    training side by side could otherwise get the same stream: a false dependency between
    them, and while one captures a CUDA graph, the other's work on that stream would join the
    graph. Only when every stream of the pool is held does an owner share one (the first
    the pool hands out then).
    """
    if device.type != "cuda" or n == 0:
        return []
    streams, keys = [], []
    with _HELD_LOCK:
        for _ in range(n):
            tried = [torch.cuda.Stream(device, priority=priority)]
            while (tried[-1].device_index, tried[-1].cuda_stream) in _HELD:
                if len(tried) == POOL_STREAMS:  # all held: share the first one handed out
                    del tried[1:]
                    break
                tried.append(torch.cuda.Stream(device, priority=priority))
            s = tried[-1]
            key = (s.device_index, s.cuda_stream)
            streams.append(s)
            keys.append(key)
            _HELD[key] = _HELD.get(key, 0) + 1
    weakref.finalize(owner, _release, keys)
    return streams


def _release(keys: list[tuple[int, int]]) -> None:
    with _HELD_LOCK:
        for key in keys:
            _HELD[key] -= 1
            if not _HELD[key]:
                del _HELD[key]


class Branches:
    """Independent chains of kernels of one step, each on a side CUDA stream of its own.

    At MNIST sizes a stacked step is a chain of a hundred-odd kernels of a few microseconds
    that each fill a few SMs: independent chains (the update of each parameter, the blocks of
    the encoder's batched matmuls) overlap when they run on separate streams, and inside a
    CUDA-graph capture they become parallel branches of the graph. Every kernel and its
    inputs stay the same, so the results are bitwise those of one stream.

    Use: `fork()` (the branches wait for the work queued so far), run chain i inside
    `on(i)`, then `join()` (the current stream waits for every branch). Tensors the branches
    read must stay referenced until `join()` (the caching allocator could otherwise hand
    their memory to the current stream's next allocation while a branch still reads it).
    Off CUDA it runs everything on the current stream. priority: of the branches' streams
    (`take_streams`).
    """

    def __init__(self, device: torch.device, n: int, priority: int = 0) -> None:
        self.streams = take_streams(self, device, n, priority)
        self._main: torch.cuda.Stream | None = None

    def fork(self) -> None:
        if self.streams:
            self._main = torch.cuda.current_stream(self.streams[0].device)
            for s in self.streams:
                s.wait_stream(self._main)

    def on(self, i: int):
        """Context: chain i runs on branch i (on the current stream without branches)."""
        return torch.cuda.stream(self.streams[i]) if self.streams else contextlib.nullcontext()

    def join(self) -> None:
        if self.streams:
            for s in self.streams:
                self._main.wait_stream(s)
            self._main = None


class StackedOptimizer:
    """Per-model Adam or SGD on stacked parameters.

    params: name -> (N, ...) leaf tensors whose .grad the trainer fills; lrs: N learning rates;
    alive: (N,) bool, shared with the trainer (a diverged model is set False and stops moving).
    fused: on CPU, run torch's fused Adam kernel per learning rate (one pass over the
    parameters instead of about ten); False: the tensor-only update that CUDA graphs capture
    (no host reads). priority: of the CUDA streams of the parameters' updates (`Branches`).
    multi_tensor: Adam as `_multi_tensor_adam_step` (opt-in; takes precedence over fused).
    Neither form has weight decay, amsgrad or maximize (the trainer uses none).
    """

    def __init__(
        self, params: dict[str, Tensor], lrs: list[float], alive: Tensor, name: str = "adam",
        fused: bool = False, priority: int = 0, multi_tensor: bool = False,
    ) -> None:  # fmt: skip
        if name not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be adam or sgd, got {name!r}")
        device = next(iter(params.values())).device
        self.params, self.name, self.fused, self.alive = params, name, fused, alive
        self.lr = torch.tensor(lrs, device=device)  # (N,)
        self._lr_list = list(lrs)
        self.step_t = torch.zeros((), dtype=torch.float64, device=device)  # Adam's t
        self._fused_step = torch.zeros((), dtype=torch.float32, device=device)
        self.state = {k: (torch.zeros_like(v), torch.zeros_like(v)) for k, v in params.items()}
        self._key: tuple | None = None
        self.multi_tensor = multi_tensor
        self._groups_key: tuple | None = None
        # CUDA: each parameter's update on a branch of its own (`Branches`).
        self.branches = Branches(device, len(params), priority)

    @staticmethod
    def _per_model(t: Tensor, like: Tensor) -> Tensor:
        return t.view(-1, *([1] * (like.ndim - 1)))  # (N,) -> (N, 1, ..., 1)

    @torch.no_grad()
    def step(self) -> None:
        """One step of every live model, from the gradients in each parameter's .grad."""
        self.step_t.add_(1)  # a tensor, so that a captured CUDA graph advances it on replay
        if self.multi_tensor and self.name == "adam":
            return self._multi_tensor_adam_step()
        if self.fused and self.name == "adam":
            return self._fused_adam_step()
        lr = torch.where(self.alive, self.lr, torch.zeros_like(self.lr))  # diverged: frozen
        casts: dict[tuple, Tensor] = {}  # each scalar cast once per dtype, shared by the branches

        def cast(key: str, t: Tensor, dtype: torch.dtype) -> Tensor:
            if (key, dtype) not in casts:
                casts[key, dtype] = t.to(dtype)
            return casts[key, dtype]

        if self.name == "sgd":
            for p in self.params.values():
                cast("lr", lr, p.dtype)
            self.branches.fork()
            for i, p in enumerate(self.params.values()):
                with self.branches.on(i):
                    p.addcmul_(self._per_model(cast("lr", lr, p.dtype), p), p.grad, value=-1)
            self.branches.join()
            return
        # Adam, as torch.optim.Adam (single-tensor path) computes it.
        b1, b2 = ADAM_BETAS
        bc1 = 1 - torch.pow(b1, self.step_t)  # float64 scalars, like Python's float math
        bc2_sqrt = (1 - torch.pow(b2, self.step_t)).sqrt()
        step_size = lr.double() / bc1  # (N,)
        for p in self.params.values():
            cast("bc2", bc2_sqrt, p.dtype), cast("step", step_size, p.dtype)
        self.branches.fork()
        for i, (name, p) in enumerate(self.params.items()):
            m, v = self.state[name]
            with self.branches.on(i):
                m.lerp_(p.grad, 1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                update = v.sqrt().div_(cast("bc2", bc2_sqrt, p.dtype)).add_(ADAM_EPS)  # denominator
                torch.div(m, update, out=update)  # in place: one temporary per parameter
                p.sub_(update.mul_(self._per_model(cast("step", step_size, p.dtype), p)))
                del update  # freed on its branch's stream, before the join
        self.branches.join()

    def _fused_adam_step(self) -> None:
        """torch.optim.Adam(fused=True) on each live model's slices, one call per learning rate.

        The lists of per-model views are rebuilt only when a model diverges or the gradient
        tensors change (the batched paths write into the same .grad every step).
        """
        self._fused_step.add_(1)
        # The cached views keep old gradients alive, so a new gradient has a new address.
        key = (tuple(self.alive.tolist()), *(p.grad.data_ptr() for p in self.params.values()))
        if self._key != key:
            by_lr: dict[float, list[int]] = {}
            for j, (lr, alive) in enumerate(zip(self._lr_list, key[0], strict=True)):
                if alive:  # a diverged model stays frozen
                    by_lr.setdefault(lr, []).append(j)
            views = [
                (p.unbind(0), p.grad.unbind(0), self.state[name][0].unbind(0),
                 self.state[name][1].unbind(0))
                for name, p in self.params.items()
            ]  # fmt: skip
            self._lists = []
            for lr, idx in by_lr.items():
                lists: tuple[list, list, list, list] = ([], [], [], [])
                for parts in views:
                    for out, part in zip(lists, parts, strict=True):
                        out.extend(part[j] for j in idx)
                self._lists.append((lr, lists, [self._fused_step] * len(lists[0])))
            self._key = key
        for lr, lists, steps in self._lists:
            torch._fused_adam_(
                *lists, [], steps, lr=lr, beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1],
                weight_decay=0.0, eps=ADAM_EPS, amsgrad=False, maximize=False,
            )  # fmt: skip

    def _multi_tensor_adam_step(self) -> None:
        """torch.optim.Adam(fused=True)'s kernel over all models at once, capturable.

        Slots with equal learning rates that sit side by side are one slice of each stacked
        tensor, so a stack with one learning rate is one call over [W, b] (p, grad, m, v: one
        multi-tensor kernel launch, bias corrections computed in it from the float32 step).
        lr and step are device tensors and nothing is read on the host, so a CUDA graph
        captures it. Diverged models (`alive` False) are frozen by keeping their slices from
        before the step (`torch.where`, exact), whatever the kernel wrote there.
        Kernels per step: 2 step counters, 1 copy, 1 per learning rate, 1 where per parameter.
        """
        self._fused_step.add_(1)
        params = list(self.params.values())
        key = tuple(p.grad.data_ptr() for p in params)  # the vmap path makes new gradients
        if self._groups_key != key:
            self._groups = self._lr_groups()
            self._before = [torch.empty_like(p) for p in params]
            self._groups_key = key
        torch._foreach_copy_(self._before, params)
        for lr, lists in self._groups:
            torch._fused_adam_(
                *lists, [], [self._fused_step] * len(lists[0]), lr=lr, beta1=ADAM_BETAS[0],
                beta2=ADAM_BETAS[1], weight_decay=0.0, eps=ADAM_EPS, amsgrad=False,
                maximize=False,
            )  # fmt: skip
        for p, old in zip(params, self._before, strict=True):
            torch.where(self._per_model(self.alive, p), p, old, out=p)  # (N, ...)

    def _lr_groups(self) -> list[tuple[Tensor, tuple[list, list, list, list]]]:
        """(lr as a device scalar, (params, grads, exp_avgs, exp_avg_sqs)) per learning rate;
        each list holds the slices p[j0:j1] of the runs of adjacent slots with that rate."""
        runs: list[tuple[int, int]] = []
        for j, lr in enumerate(self._lr_list):
            if runs and self._lr_list[runs[-1][0]] == lr:
                runs[-1] = (runs[-1][0], j + 1)
            else:
                runs.append((j, j + 1))
        by_lr: dict[float, tuple[Tensor, tuple[list, list, list, list]]] = {}
        for j0, j1 in runs:
            lr = self._lr_list[j0]
            if lr not in by_lr:  # the rate as the tensor-only update holds it (float32)
                by_lr[lr] = (self.lr[j0].clone(), ([], [], [], []))
            lists = by_lr[lr][1]
            for name, p in self.params.items():
                m, v = self.state[name]
                for out, t in zip(lists, (p, p.grad, m, v), strict=True):
                    out.append(t[j0:j1])
        return list(by_lr.values())
