"""The stacked trainer's optimizer: Adam (or plain SGD) for N models stacked along dim 0.

Legend: N models; every parameter is a tensor (N, ...) whose slice i belongs to model i.
Model i takes exactly the step `torch.optim.Adam([p_i], lr=lr_i)` (or SGD) would take on its
own slices (tests/train/test_optim.py compares them); a model marked dead in `alive` is frozen.
"""

from __future__ import annotations

import torch
from torch import Tensor

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


class StackedOptimizer:
    """Per-model Adam or SGD on stacked parameters.

    params: name -> (N, ...) leaf tensors whose .grad the trainer fills; lrs: N learning rates;
    alive: (N,) bool, shared with the trainer (a diverged model is set False and stops moving).
    fused: on CPU, run torch's fused Adam kernel per learning rate (one pass over the
    parameters instead of about ten); False: the tensor-only update that CUDA graphs capture
    (no host reads).
    """

    def __init__(
        self, params: dict[str, Tensor], lrs: list[float], alive: Tensor, name: str = "adam",
        fused: bool = False,
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

    @staticmethod
    def _per_model(t: Tensor, like: Tensor) -> Tensor:
        return t.view(-1, *([1] * (like.ndim - 1)))  # (N,) -> (N, 1, ..., 1)

    @torch.no_grad()
    def step(self) -> None:
        """One step of every live model, from the gradients in each parameter's .grad."""
        self.step_t.add_(1)  # a tensor, so that a captured CUDA graph advances it on replay
        if self.fused and self.name == "adam":
            return self._fused_adam_step()
        lr = torch.where(self.alive, self.lr, torch.zeros_like(self.lr))  # diverged: frozen
        if self.name == "sgd":
            for p in self.params.values():
                p.addcmul_(self._per_model(lr.to(p.dtype), p), p.grad, value=-1)
            return
        # Adam, as torch.optim.Adam (single-tensor path) computes it.
        b1, b2 = ADAM_BETAS
        bc1 = 1 - torch.pow(b1, self.step_t)  # float64 scalars, like Python's float math
        bc2_sqrt = (1 - torch.pow(b2, self.step_t)).sqrt()
        step_size = lr.double() / bc1  # (N,)
        for name, p in self.params.items():
            m, v = self.state[name]
            m.lerp_(p.grad, 1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            update = v.sqrt().div_(bc2_sqrt.to(p.dtype)).add_(ADAM_EPS)  # denominator
            torch.div(m, update, out=update)  # in place: one temporary per parameter
            p.sub_(update.mul_(self._per_model(step_size.to(p.dtype), p)))

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
