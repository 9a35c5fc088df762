"""The run of the GPU probing study (issue 18): train, harvest, probe, splice.

`main_run` loads nothing itself: given the plan, the prepared data (`plan.prepare`) and the
language model, it harvests the residual stream at `plan.layer` (`resid_pre`) of every
training context, probing passage and held-out context, then for each seed and K trains every
row (one pass, B = plan.batch_size, Adam plan.lr, bf16 autocast on CUDA,
`train.distributed.train_steps`), builds each one's controls (untrained twin, random
directions at its L0), k-sparse probes every read-out (SAEBench protocol,
`eval.sparse_probing`; the logistic regressions run in a process pool while the GPU trains
the next block) and splices each read-out into the full forward (CE, KL, CE-loss recovered,
`eval.probing_suite.downstream`). results.json is rewritten after every block. Moved from
scripts/probing_gpu.py, unchanged.
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from implicit_em.eval.probing_study.plan import (
    Plan,
    check_epochs,
    check_rows,
    label_of,
    plan_rows,
    run_config,
)

T0 = time.perf_counter()
"""When this module was imported (the start of a run command): `log`'s clock and the origin of
`main_run`'s time limit, which so counts the language model's loading too."""


def log(msg: str) -> None:
    """One progress line on stdout, stamped with the seconds since T0."""
    print(f"[{time.perf_counter() - T0:7.1f} s] {msg}", flush=True)


def fit_task(z_train, y_train, z_test, y_test, ks, full: bool) -> dict:
    """Both probe variants of one (read-out, task): z_* hold the top max(ks) latents, ranked.

    Returns {variant: {"k": {k: acc}, "full": acc or None}}. Runs in a worker process.
    """
    from implicit_em.eval.sparse_probing import logistic_accuracy

    out = {}
    for variant, std in (("saebench", False), ("standardized", True)):
        acc = {str(k): logistic_accuracy(z_train[:, :k], y_train, z_test[:, :k], y_test,
                                         standardize=std) for k in ks if k <= z_train.shape[1]}  # fmt: skip
        out[variant] = {"k": acc, "full": None}
    if full is not None:
        ztr, zte = full
        for variant, std in (("saebench", False), ("standardized", True)):
            out[variant]["full"] = logistic_accuracy(ztr, y_train, zte, y_test, standardize=std)
    return out


class Fitter:
    """Logistic-regression fits inline (workers = 0) or in a process pool (spawned before
    any CUDA work; each worker uses one BLAS thread)."""

    def __init__(self, workers: int) -> None:
        self.pool = None
        if workers > 0:
            import multiprocessing as mp

            os.environ.setdefault("OMP_NUM_THREADS", "1")
            self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
        self.pending: list = []  # (row, task, future or result)

    def submit(self, row: str, task: str, *args) -> None:
        if self.pool is None:
            self.pending.append((row, task, fit_task(*args)))
        else:
            self.pending.append((row, task, self.pool.submit(fit_task, *args)))

    def collect(self, into: dict) -> int:
        """Move finished fits into `into[variant][row][task]`; returns how many are left."""
        left = []
        for row, task, f in self.pending:
            if self.pool is not None and not f.done():
                left.append((row, task, f))
                continue
            res = f if self.pool is None else f.result()
            for variant, r in res.items():
                into.setdefault(variant, {}).setdefault(row, {})[task] = r
        self.pending = left
        return len(left)


# ---------------------------------------------------------------- GPU side


def harvest_rows(lm, ctx, layer: int, batch: int, device):
    """Residual (C, T - 1, D) float16 at layer's resid_pre for contexts (C, T), BOS dropped."""
    import torch

    from implicit_em.data.lm import capture_residual

    out = []
    with torch.no_grad():
        for i in range(0, len(ctx), batch):
            ids = torch.as_tensor(ctx[i : i + batch], dtype=torch.long, device=device)
            out.append(capture_residual(lm, ids, layer)[:, 1:].to(torch.float16))
    return torch.cat(out)


def l0_and_dead(a) -> tuple[float, float]:
    """Codes a (T, K) of the held-out tokens -> (L0: mean latents active per token, dead
    fraction: latents active on none of them); active = a > 0."""
    fires = a > 0
    return float(fires.sum(1).double().mean()), float((fires.sum(0) == 0).double().mean())


def readout_at_k(model, k: int):
    """A trained or untrained row's model read out at the block's k (`models.TopKReadout`), in
    eval mode like every model the study evaluates (the trained model and its twin alike)."""
    from implicit_em.models import TopKReadout

    return TopKReadout(model, k).eval()


def train_row(model, row: dict, cfg, x_train, plan: Plan, K: int, d: int, seed: int,
              k: int, device) -> list[dict]:  # fmt: skip
    """Train one row's model in place: plan.epochs passes over x_train (N, D) with
    `train_steps`, or, for a row with "pretrain" (Plan.rows), the pre-training encoder on the
    first round(N * pretrain_fraction) rows, `models.init_from_encoder_`, then the model on the
    other rows (pretrain "none": the model alone on those rows, the control). Each stage is
    plan.epochs passes (plan.epochs * (rows // plan.batch_size) steps; 1 pass = gpu.md - gpu4)
    at plan.batch_size, Adam plan.lr, seed `seed`. Returns one {"steps", "history"} per stage
    trained."""
    from implicit_em import runs
    from implicit_em.models import init_from_encoder_
    from implicit_em.train.distributed import train_steps

    def fit(m, x, loss) -> dict:
        steps = plan.epochs * (len(x) // plan.batch_size)
        r = train_steps(m, x, loss, global_batch=plan.batch_size, steps=steps, lr=plan.lr,
                        seed=seed, amp=device.type == "cuda", log_every=max(1, steps // 4),
                        warmup=min(5, steps - 1))  # fmt: skip
        return {"steps": steps, "history": r["history"]}

    pre = row.get("pretrain")
    if pre is None:
        return [fit(model, x_train, cfg.loss)]
    if pre != "none" and not isinstance(pre, dict):
        raise ValueError(f"row pretrain must be a row dict or 'none', got {pre!r}")
    n1 = round(len(x_train) * row.get("pretrain_fraction", 0.5))
    stages = []
    if pre != "none":
        pcfg = run_config(pre["family"], K, d, plan, seed, k=k, row=pre)
        enc = runs.build_model(pcfg, seed=seed).to(device)
        stages.append(fit(enc, x_train[:n1], pcfg.loss))
        init_from_encoder_(model, enc)
    stages.append(fit(model, x_train[n1:], cfg.loss))
    return stages


def harvest(lm, arrays: dict, plan: Plan, device) -> tuple:
    """The residuals `main_run` reads, at plan.layer (`resid_pre`, BOS dropped, float16, model
    units): (x (N, D) of the training contexts, acts (P, T, D) of the probing passages,
    held (M, D) of the held-out contexts), from arrays "train_ctx", "pool_tokens", "held_ctx"."""
    xs = harvest_rows(lm, arrays["train_ctx"], plan.layer, plan.lm_batch, device)
    acts = harvest_rows(lm, arrays["pool_tokens"], plan.layer, plan.lm_batch, device)  # (P, T, D)
    held = harvest_rows(lm, arrays["held_ctx"], plan.layer, plan.lm_batch, device)
    D = xs.shape[-1]
    return xs.reshape(-1, D), acts, held.reshape(-1, D)


def main_run(plan: Plan, meta: dict, arrays: dict, lm, out: Path, device: str,
             time_limit: float = 0.0, workers: int = 0, lm_info: dict | None = None,
             harvested: tuple | None = None, models: dict | None = None) -> dict:  # fmt: skip
    """The whole GPU study (module docstring); results.json rewritten after every block.

    harvested: `harvest(lm, arrays, plan, device)`'s (x, acts, held), computed once and passed
    in (e.g. by several runs on the CPU); None harvests here. The LM is still used for the CE
    splice. models: a dict that receives each block's trained models, by row name (after any
    read-out), e.g. for diagnostics; None keeps none."""
    import torch

    from implicit_em import runs
    from implicit_em.data.lm.activations import norm_outliers
    from implicit_em.eval.probing_suite import downstream
    from implicit_em.eval.sparse_probing import RandomDirections
    from implicit_em.eval.verdict import RAW_ROW
    from implicit_em.families import FAMILIES
    from implicit_em.lm_eval import encode, fit_linear_decoder, fit_scalar_decoder, fvu
    from implicit_em.models import Encoder

    check_rows(plan.rows)  # again for a Plan built in code (plan files: when read, plan_fields)
    check_epochs(plan.epochs)
    fitter = Fitter(workers)  # before any CUDA work
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)  # one process per GPU
    torch.backends.cuda.matmul.allow_tf32 = True
    out.mkdir(parents=True, exist_ok=True)
    res: dict = {"plan": asdict(plan), "data": {k: v for k, v in meta.items()
                                                if not k.startswith("pool_")},
                 "gpu": torch.cuda.get_device_name() if dev.type == "cuda" else None,
                 "l0": {}, "dead_fraction": {}, "kinds": {}, "train": {}, "fvu": {},
                 "probing": {}, "downstream": {}, "blocks_done": [], "not_run": [],
                 "lm": lm_info}  # fmt: skip

    def save() -> None:
        tmp = out / "results.json.tmp"
        tmp.write_text(json.dumps(res, indent=1))
        tmp.replace(out / "results.json")

    lm.to(dev).eval()
    t = time.perf_counter()
    if harvested is None:
        harvested = harvest(lm, arrays, plan, dev)
    else:
        res["harvest_given"] = True
    x_all, acts, held = (h.to(dev) for h in harvested)  # (N, D), (P, T, D), (M, D) model units
    D = x_all.shape[-1]
    res["harvest_s"] = round(time.perf_counter() - t, 1)
    median = float(x_all[:200_000].float().norm(dim=1).median())
    keep = ~norm_outliers(x_all.float(), plan.max_norm_ratio, median)
    x_all = x_all[keep]
    scale = math.sqrt(D / float(x_all.float().square().sum(1).mean()))
    x_train = (x_all.float() * scale).to(torch.float16)  # (N, D) normalized
    n_train = x_train.shape[0]
    gen = torch.Generator().manual_seed(0)
    x_fit = x_train[torch.randperm(n_train, generator=gen)[: plan.fit_tokens].to(dev)].float()
    x_held = held.float() * scale  # (M, D) normalized
    typical = ~norm_outliers(held.float(), plan.max_norm_ratio, median)
    res["tokens"] = {"train": n_train, "dropped_outliers": int((~keep).sum()),
                     "held": int(x_held.shape[0]), "held_typical": int(typical.sum()),
                     "passages": int(acts.shape[0]), "norm_scale": scale,
                     "median_norm": median}  # fmt: skip
    if dev.type == "cuda":  # the harvest and its normalisation: the run's largest buffers
        res["cuda_peak_gib_harvest"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    log(f"harvest {res['harvest_s']} s: {res['tokens']}")
    save()

    names = [t["name"] for t in meta["tasks"]]
    tasks = {n: tuple(arrays[f"task:{n}:{p}"] for p in ("train_idx", "train_y", "test_idx",
                                                       "test_y")) for n in names}  # fmt: skip
    kmax = max(plan.ks)

    @torch.no_grad()
    def pooled(fn) -> torch.Tensor:  # (P, K) float64: codes per token, mean over the passage
        P, T, _ = acts.shape
        chunk = max(1, 16384 // T)
        outs = [fn(acts[i : i + chunk].reshape(-1, D).float() * scale).reshape(
            min(chunk, P - i), T, -1).double().mean(1) for i in range(0, P, chunk)]  # fmt: skip
        return torch.cat(outs)

    def probe(row: str, fn, full: bool = False) -> None:
        z = pooled(fn) if fn is not None else acts.double().mean(1)  # raw: model units
        for name, (tri, try_, tei, tey) in tasks.items():
            ztr, zte = (
                z[torch.as_tensor(tri, device=z.device)],
                z[torch.as_tensor(tei, device=z.device)],
            )
            ytr = torch.as_tensor(try_, device=z.device)
            diff = (ztr[ytr == 1].mean(0) - ztr[ytr == 0].mean(0)).abs()  # (K,)
            # stable descending order, as sparse_probing.mean_difference_ranking
            order = torch.from_numpy(np.argsort(-diff.cpu().numpy(), kind="stable")[:kmax])
            top = order.to(z.device)
            f = (ztr.cpu().numpy(), zte.cpu().numpy()) if full else None
            fitter.submit(row, name, ztr[:, top].cpu().numpy(), try_, zte[:, top].cpu().numpy(),
                          tey, plan.ks, f)  # fmt: skip

    # the raw residual read k-sparse (a baseline) and on all D dimensions (full: the ceiling)
    res["kinds"][RAW_ROW] = "raw"
    probe(RAW_ROW, None, full=True)
    ce_ctx = torch.as_tensor(arrays["held_ctx"][: plan.ce_contexts], dtype=torch.long)

    def over(what: str) -> bool:
        if time_limit and time.perf_counter() - T0 > time_limit:
            res["not_run"].append(what)
            log(f"time limit: {what} not run")
            return True
        return False

    for seed in plan.seeds:
        for K in plan.Ks:
            block = f"K{K}-s{seed}"
            if over(block):
                continue
            tb = time.perf_counter()
            trained, untrained = {}, {}
            no_twin, resp = set(), set()  # rows without an untrained row; rows also read as r
            k_match = None
            k_of = {}  # label -> its held-out L0, rounded: the k of a row with "k_of"
            weights = {}  # label -> (trained model before any read-out, its stages): weights_of
            for row in plan_rows(plan):
                fam = row["family"]
                label = label_of(row)
                readout = row.get("readout")
                uses_k = FAMILIES[fam].uses_k or readout == "topk"
                k_row = k_of.get(row["k_of"]) if "k_of" in row else k_match
                if uses_k and k_row is None:
                    why = f"no L0 of {row['k_of']}" if "k_of" in row else "no encoder L0"
                    res.setdefault("errors", {})[f"{label}-K{K}-s{seed}"] = why
                    continue  # the L0 rule needs the block's encoder (or k_of row) first
                cfg = run_config(fam, K, D, plan, seed, k=k_row or 16, row=row)
                name = f"{label}-K{K}" + (f"-k{k_row}" if uses_k else "") + f"-s{seed}"
                model = runs.build_model(cfg, seed=seed).to(dev)
                untrained[name] = runs.build_model(cfg, seed=seed).to(dev).eval()
                if row.get("untrained", True) is False:
                    no_twin.add(name)
                if fam in plan.resp_families:
                    resp.add(name)
                res.setdefault("rows", {})[name] = {"family": fam, "config": asdict(cfg),
                                                    "row": row}  # fmt: skip
                t = time.perf_counter()
                try:
                    src = row.get("weights_of")
                    if src is not None:  # the same training as row `src`: reuse its weights
                        if src not in weights:
                            raise RuntimeError(f"weights_of {src!r}: that row has no trained "
                                               "model in this block (it failed or did not run)")  # fmt: skip
                        model.load_state_dict(weights[src][0].state_dict())
                        stages = weights[src][1]
                    else:
                        stages = train_row(model, row, cfg, x_train, plan, K, D, seed,
                                           k_row or 16, dev)  # fmt: skip
                except Exception as e:  # one family failing must not lose the others
                    res.setdefault("errors", {})[name] = f"{type(e).__name__}: {e}"
                    log(f"{name}: FAILED {type(e).__name__}: {e}")
                    del untrained[name]
                    continue
                model.eval()
                weights[label] = (model, stages)
                if plan.twin_mean and getattr(model, "centre", False):
                    untrained[name].load_state_dict(  # the trained model's input mean
                        {**untrained[name].state_dict(),
                         **{b: v for b, v in model.state_dict().items() if b.startswith("x_mean")}})  # fmt: skip
                if readout == "topk":  # post-hoc read-out at the block's k, twin alike
                    model = readout_at_k(model, k_row)
                    untrained[name] = readout_at_k(untrained[name], k_row)
                trained[name] = model
                if models is not None:
                    models[name] = model
                a = encode(model, x_held)
                l0, res["dead_fraction"][name] = l0_and_dead(a)
                res["l0"][name] = l0
                au = encode(untrained[name], x_held)
                if name not in no_twin:
                    twin = f"{name} (untrained)"
                    res["l0"][twin], res["dead_fraction"][twin] = l0_and_dead(au)
                hist = stages[-1]["history"]
                res["train"][name] = {"steps": sum(st["steps"] for st in stages),
                                      "seconds": round(time.perf_counter() - t, 1),
                                      "last": hist[-1] if hist else None}  # fmt: skip
                if row.get("weights_of") is not None:
                    res["train"][name]["weights_of"] = row["weights_of"]
                if len(stages) > 1 or row.get("pretrain"):
                    res["train"][name]["stages"] = [
                        {"steps": st["steps"], "last": st["history"][-1] if st["history"] else None}
                        for st in stages
                    ]  # fmt: skip
                res["kinds"][name] = "trained"
                if name not in no_twin:
                    res["kinds"][f"{name} (untrained)"] = "untrained"
                k_of[label] = int(min(K, max(1, round(l0))))
                if fam == plan.l0_reference and k_match is None:  # the block's first such row
                    k_match = k_of[label]
                del a, au
                log(f"{name}: {res['train'][name]['seconds']} s, L0 {l0:.1f}, dead "
                    f"{res['dead_fraction'][name]:.4f}")  # fmt: skip
            rand = {}
            for i, name in enumerate(trained):
                k_l0 = int(min(K, max(1, round(res["l0"][name]))))
                rn = f"random dirs @ L0 {k_l0} ({name})"
                rand[rn] = RandomDirections(D, K, k_l0, seed=1000 * (seed + 1) + i).to(dev)
                res["l0"][rn] = l0_and_dead(encode(rand[rn], x_held))[0]
                res["kinds"][rn] = "random"
            # probing: the fits run in the pool while the next block trains
            for name in trained:
                probe(name, trained[name].encode)
                if name not in no_twin:
                    probe(f"{name} (untrained)", untrained[name].encode)
                if name in resp:  # r = softmax(-a), paper Eq. 4
                    label, _, rest = name.partition("-K")
                    rn = f"{label}[r]-K{rest}"
                    for m, tag, kind in ((trained[name], "", "trained"),
                                         (untrained[name], " (untrained)", "untrained")):  # fmt: skip
                        probe(rn + tag, lambda x, m=m: torch.softmax(-m.encode(x), dim=1))
                        res["kinds"][rn + tag] = kind
                        res["l0"][rn + tag] = float(K)  # r > 0 everywhere
            for rn, m in rand.items():
                probe(rn, m.encode)
            # downstream loss
            torch.set_grad_enabled(False)
            splices, kinds = {}, {}
            twins = {n: m for n, m in untrained.items() if n not in no_twin}
            for group, kind in ((trained, "trained"), (twins, "untrained"), (rand, "random")):
                for name, m in group.items():
                    label = f"{name} (untrained)" if kind == "untrained" else name
                    fns = {}
                    if hasattr(m, "decode"):
                        fns["own decoder"] = lambda x, m=m: m.decode(m.encode(x))
                    else:
                        a_fit = encode(m, x_fit)
                        if isinstance(m, Encoder):
                            W = m.W.detach()
                            c, mu = fit_scalar_decoder(a_fit, W, x_fit, offset=True)
                            fns["W^T, scalar + offset"] = (lambda x, m=m, W=W, c=c, mu=mu:
                                                          c * (m.encode(x) @ W) + mu)  # fmt: skip
                        V, v = fit_linear_decoder(a_fit, x_fit)
                        fns["post-hoc least squares"] = lambda x, m=m, V=V, v=v: m.encode(x) @ V + v
                        del a_fit
                    for ro, fn in fns.items():
                        key = f"{label} | {ro}"
                        xh = torch.cat(
                            [fn(x_held[i : i + 8192]) for i in range(0, len(x_held), 8192)]
                        )
                        res["fvu"][key] = {"all": fvu(x_held, xh),
                                           "typical": fvu(x_held[typical], xh[typical])}  # fmt: skip
                        splices[key] = lambda h, fn=fn: fn(h.float() * scale) / scale
                        kinds[key] = kind
            ce = downstream(lm, ce_ctx, splices, plan.layer, "resid_pre", 16)
            for key, kind in kinds.items():
                ce[key]["kind"] = kind
            res["downstream"][block] = ce
            torch.set_grad_enabled(True)
            fitter.collect(res["probing"])
            res["blocks_done"].append(block)
            res.setdefault("block_seconds", {})[block] = round(time.perf_counter() - tb, 1)
            log(f"{block} done in {res['block_seconds'][block]} s; CE orig "
                f"{ce['orig']['ce']:.4f} zero {ce['zero']['ce']:.4f}")  # fmt: skip
            save()
            del trained, untrained, rand, splices, weights
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    t = time.perf_counter()
    while fitter.collect(res["probing"]):
        if time_limit and time.perf_counter() - T0 > time_limit + 30:
            res["not_run"].append("some probe fits (pool still busy)")
            break
        time.sleep(0.2)
    res["probe_wait_s"] = round(time.perf_counter() - t, 1)
    res["total_s"] = round(time.perf_counter() - T0, 1)
    if dev.type == "cuda":
        res["cuda_peak_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    save()
    log(f"done; waited {res['probe_wait_s']} s for the last probe fits")
    if fitter.pool is not None:
        fitter.pool.shutdown(wait=False, cancel_futures=True)
    return res
