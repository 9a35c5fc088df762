"""Train N independent models as one stacked model: batched matmuls, one pass per step.

Legend: N models, B batch, D input dim, K components. Parameters are stacked along a leading
model axis (W (N, K, D)); each model draws its own data order from its seed, has its own
learning rate and loss weights, and its own optimizer state, so each ends where training it
alone with `implicit_em.training.train` would (to float tolerance; tests check this).
Models in one stack must share architecture, optimizer, batch size and epochs;
`group_configs` splits a list of configs into such stacks.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from implicit_em import runs
from implicit_em.config import RunConfig
from implicit_em.data.batches import epoch_permutation
from implicit_em.training import evaluate, finite_record, loss_terms, term_weights

_ADAM_BETAS, _ADAM_EPS = (0.9, 0.999), 1e-8


def stack_key(cfg: RunConfig) -> tuple:
    """Configs with equal keys can share one stack."""
    m, t, lo = cfg.model, cfg.training, cfg.loss
    return (
        m.type, m.input_dim, m.hidden_dim, m.activation, m.k,
        t.optimizer, t.batch_size, t.epochs, t.device, t.amp,
        lo.lambda_wr > 0, lo.variance_eps, lo.aux_k, lo.dead_steps, lo.aux_coef > 0,
    )  # fmt: skip


def group_configs(cfgs: list[RunConfig]) -> list[list[int]]:
    """Indices of `cfgs` grouped into stackable sets, in order of first appearance."""
    groups: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(stack_key(cfg), []).append(i)
    return list(groups.values())


class _Terms(nn.Module):
    """Wraps a model so that functional_call swaps its parameters for one stacked slice."""

    def __init__(self, model: nn.Module, cfg: RunConfig) -> None:
        super().__init__()
        self.model, self.loss, self.amp = model, cfg.loss, cfg.training.amp

    def forward(self, x: Tensor, dead: Tensor) -> dict:
        terms = loss_terms(self.model, x, self.loss, dead, self.amp)
        terms["fired"] = (terms.pop("a") > 0).any(dim=0)  # (K,)
        return terms


class StackedTrainer:
    """N models of one architecture, trained together. See the module docstring."""

    def __init__(self, cfgs: list[RunConfig], device: torch.device | str = "cpu") -> None:
        if not cfgs or len({stack_key(c) for c in cfgs}) != 1:
            raise ValueError("configs in one stack must share stack_key(); use group_configs()")
        self.cfgs, self.device = cfgs, torch.device(device)
        self.kind = cfgs[0].model.type
        self.models = [runs.build_model(c).to(self.device) for c in cfgs]
        params, _ = stack_module_state(self.models)
        self.params = {f"model.{k}": v for k, v in params.items()}  # name -> (N, ...)
        wrapper = _Terms(copy.deepcopy(self.models[0]).to("meta"), cfgs[0])
        self._terms = vmap(
            lambda p, x, dead: functional_call(wrapper, p, (x, dead)), in_dims=(0, 0, 0)
        )
        n = len(cfgs)
        weights = [term_weights(self.kind, c.loss, c.model.hidden_dim) for c in cfgs]
        dtype = next(iter(self.params.values())).dtype  # weights like 16.8 must not round
        self.weights = {
            k: torch.tensor([w[k] for w in weights], dtype=dtype, device=self.device)
            for k in weights[0]
        }  # term -> (N,)
        self.lr = torch.tensor([c.training.lr for c in cfgs], device=self.device)  # (N,)
        self.step_t = torch.zeros((), dtype=torch.float64, device=self.device)  # Adam's t
        self.use_graphs = self.device.type == "cuda"
        self._graph: torch.cuda.CUDAGraph | None = None
        self._warmup_left = 3
        self.adam = {k: (torch.zeros_like(v), torch.zeros_like(v)) for k, v in self.params.items()}
        k_dim = cfgs[0].model.hidden_dim
        self.since_fired = torch.zeros(n, k_dim, dtype=torch.long, device=self.device)
        self.alive = torch.ones(n, dtype=torch.bool, device=self.device)

    def _per_model(self, t: Tensor, like: Tensor) -> Tensor:
        return t.view(-1, *([1] * (like.ndim - 1)))  # (N,) -> (N, 1, ..., 1)

    @torch.no_grad()
    def _optimizer_step(self) -> None:
        self.step_t.add_(1)  # a tensor, so that a captured CUDA graph advances it on replay
        lr = torch.where(self.alive, self.lr, torch.zeros_like(self.lr))  # diverged: frozen
        if self.cfgs[0].training.optimizer == "sgd":
            for p in self.params.values():
                p.sub_(self._per_model(lr, p) * p.grad)
            return
        # Adam, as torch.optim.Adam (single-tensor path) computes it.
        b1, b2 = _ADAM_BETAS
        bc1 = 1 - torch.pow(b1, self.step_t)  # float64 scalars, like Python's float math
        bc2_sqrt = (1 - torch.pow(b2, self.step_t)).sqrt()
        step_size = lr.double() / bc1  # (N,)
        for name, p in self.params.items():
            m, v = self.adam[name]
            m.lerp_(p.grad, 1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            update = v.sqrt().div_(bc2_sqrt.to(p.dtype)).add_(_ADAM_EPS)  # denominator
            torch.div(m, update, out=update)  # in place: one temporary per parameter
            p.sub_(update.mul_(self._per_model(step_size.to(p.dtype), p)))

    def train_step(self, xb: Tensor) -> dict:
        """One step on xb (N, B, D). Returns the unweighted terms, each (N,), detached."""
        loss = self.cfgs[0].loss
        dead = self.since_fired >= loss.dead_steps  # (N, K)
        terms = self._terms(self.params, xb, dead)
        fired = terms.pop("fired")  # (N, K)
        total = sum(self.weights[k] * terms[k] for k in self.weights)  # (N,)
        for p in self.params.values():
            p.grad = None
        total.sum().backward()  # models are independent: d(sum)/d(p_i) = dL_i/d(p_i)
        if self.kind == "topk_sae":
            with torch.no_grad():  # remove_parallel_grads_ on every W_dec (N, D, K)
                w, g = self.params["model.W_dec"], self.params["model.W_dec"].grad
                g.sub_(w * (g * w).sum(dim=1, keepdim=True))
        self._optimizer_step()
        if self.kind == "topk_sae":
            with torch.no_grad():
                w = self.params["model.W_dec"]
                w.div_(w.norm(dim=1, keepdim=True).clamp_min(1e-8))
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
            side = torch.cuda.Stream()
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
        with torch.cuda.graph(self._graph):
            self._static_out = self.train_step(self._static_x)
        self._graph.replay()  # capture records the step without running it
        return {k: v.clone() for k, v in self._static_out.items()}

    @torch.no_grad()
    def sync_models(self) -> list[nn.Module]:
        """Copy each stacked slice into its own nn.Module (for evaluation and saving)."""
        for i, model in enumerate(self.models):
            for name, p in model.named_parameters():
                p.copy_(self.params[f"model.{name}"][i])
        return self.models

    def fit(
        self, x_train: Tensor, x_eval: Tensor | None = None, progress: bool = True
    ) -> list[list[dict]]:
        """Train all models for their epochs. Returns one history per model (as `train`)."""
        x_train = x_train.to(self.device)
        x_eval = x_train if x_eval is None else x_eval.to(self.device)
        t = self.cfgs[0].training
        n, bsz = len(x_train), t.batch_size
        steps = -(-n // bsz)
        histories: list[list[dict]] = [[] for _ in self.cfgs]
        bar = tqdm(total=t.epochs * steps, disable=not progress, unit="step",
                   desc=f"{self.kind} x{len(self.cfgs)}")  # fmt: skip
        for epoch in range(t.epochs):
            tic = time.perf_counter()
            order = torch.stack(
                [epoch_permutation(n, c.training.seed, epoch, self.device) for c in self.cfgs]
            )  # (N, n)
            sums: dict[str, Tensor] = {}
            for s in range(steps):
                xb = x_train[order[:, s * bsz : (s + 1) * bsz]]  # (N, B, D)
                for k, v in self.step(xb).items():
                    sums[k] = sums[k] + v if k in sums else v
                bar.update(1)
            seconds = time.perf_counter() - tic
            means = {k: (v / steps).tolist() for k, v in sums.items()}  # one sync per epoch
            for i, model in enumerate(self.sync_models()):
                if not bool(self.alive[i]):
                    continue
                rec = {"epoch": epoch + 1, **{k: v[i] for k, v in means.items()}}
                rec.update(evaluate(model, x_eval))
                rec["seconds"] = seconds
                histories[i].append(rec)
                if not finite_record(rec):
                    self.alive[i] = False
            bar.set_postfix(loss=f"{means['total'][0]:.4g}")
        bar.close()
        return histories


def train_many(
    cfgs: list[RunConfig],
    x_train: Tensor,
    x_eval: Tensor | None = None,
    run_dirs: list[str | Path] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    stacked: bool = True,
) -> list[tuple[nn.Module, list[dict]]]:
    """Train every config (stacked where possible, else one by one); return (model, history).

    With run_dirs, each finished model is written to its own run directory as `train` does.
    """
    from implicit_em.training import train

    results: list = [None] * len(cfgs)
    if stacked:
        for group in group_configs(cfgs):
            trainer = StackedTrainer([cfgs[i] for i in group], device)
            for i, model, hist in zip(
                group, trainer.models, trainer.fit(x_train, x_eval, progress), strict=True
            ):
                results[i] = (model, hist)
    else:
        for i, cfg in enumerate(cfgs):
            model = runs.build_model(cfg).to(device)
            hist = train(model, x_train.to(device), cfg, x_eval=x_eval, progress=progress)
            results[i] = (model, hist)
    if run_dirs is not None:
        for (model, hist), cfg, run_dir in zip(results, cfgs, run_dirs, strict=True):
            save_run(model, cfg, hist, run_dir)
    return results


def save_run(model: nn.Module, cfg: RunConfig, history: list[dict], run_dir: str | Path) -> None:
    """Write a finished run: model + config, history, and metrics.json last."""
    run_dir = runs.prepare_run_dir(run_dir, resume=False, overwrite=False)
    runs.save_model(model, cfg, run_dir)
    runs.write_history(run_dir, history)
    final = dict(history[-1]) if history else {}
    final["epochs_completed"] = len(history)
    runs.atomic_write_json(run_dir / runs.METRICS, final)
