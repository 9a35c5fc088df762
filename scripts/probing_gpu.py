"""k-sparse probing and CE-loss recovered at K = 4096 and 16384, 3 seeds, on one GPU (issue 18).

The plan (models, L0 rule, tasks, seeds, metrics) is fixed in docs/eval/probing/gpu_plan.md
before the run; `Plan` below holds the same numbers. Two steps:

1. `prepare` (here, CPU): tokenize once. The probing passage pool and its tasks
   (`eval.probing_tasks`, split by document), the training contexts (128 tokens, BOS first,
   from the pool's *train-side* documents of the five corpora) and held-out contexts (from its
   *test-side* documents) are written to one .npz + .json: the GPU needs no corpus and no
   tokenizer.
2. `run` (GPU): load the full LM (the GGUF, joined from two carried parts), harvest layer-15
   `resid_pre` of every context and passage, then for each seed and K: train every family
   (one pass, B = 4096, Adam 1e-3, bf16 autocast, `train.distributed.train_steps`), build
   each one's controls (untrained twin, random directions at its L0), k-sparse probe every
   read-out (SAEBench protocol, `eval.sparse_probing`; the logistic regressions run in a
   process pool while the GPU trains the next block) and splice each read-out into the full
   forward (CE, KL, CE-loss recovered, `lm_eval`). Results are written after every block.

    python scripts/probing_gpu.py prepare --model M.gguf --out data/probing18
    python scripts/probing_gpu.py run --data data/probing18 --model M.gguf --out $OUT/res
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f} s] {msg}", flush=True)


@dataclass(frozen=True)
class Plan:
    """Every setting of the GPU study (docs/eval/probing/gpu_plan.md)."""

    Ks: tuple[int, ...] = (4096, 16384)
    seeds: tuple[int, ...] = (0, 1, 2)
    families: tuple[str, ...] = ("encoder", "topk_sae", "batchtopk_sae",
                                 "matryoshka_batchtopk_sae", "jumprelu_sae", "standard_sae")  # fmt: skip
    rows: tuple = ()
    """The trained rows of each block, in order, when not empty (else one row per family,
    each with its untrained twin): dicts with "family" (registry name), optional "label" (row
    name prefix; default the family's short name), "loss" (LossConfig overrides, e.g.
    {"l0_coef": 0.01} or {"lambda_wr": 1.0}), "model" (ModelConfig overrides, e.g.
    {"activation": "softplus"}, {"unit_norm_rows": true}, {"centre": true}), "l1_c"
    (standard_sae: l1_weight = l1_c K / D), "untrained" (False: no untrained-twin row, when
    another row or docs/eval/probing/gpu.md already holds the same control) and "pretrain"
    (decoder-free pre-training, then this row's family: a row dict of the encoder trained on
    the first `pretrain_fraction` (default 0.5) of the training rows, the model then started
    from it (`models.init_from_encoder_`) and trained on the rest; or "none", the control:
    this row's model from its random init on the same rest only). A family that uses k
    (registry `uses_k`) takes k = the L0 of the block's first `l0_reference` row, so that row
    comes first."""
    l0_reference: str = "encoder"
    """The family whose held-out L0 (rounded) is the block's k for the families that use k."""
    resp_families: tuple[str, ...] = ()
    """Families whose responsibilities r = softmax(-a) (paper Eq. 4) are probed too, beside
    the codes a, trained and untrained (rows `<label>[r]`)."""
    centre_saes: bool = True
    """Every family that can be centred (registry `centres`) on mean-centred inputs, except
    those in `uncentred`; a row's "model" overrides win."""
    uncentred: tuple[str, ...] = ("encoder",)
    """Families left uncentred by default: the decoder-free encoder (gpu.md's reference row;
    its centred variant is a row with "model": {"centre": true})."""
    twin_mean: bool = False
    """Untrained twins of centred rows take the trained model's input mean (x_mean), so the
    control sees the same centred inputs; False: x_mean = 0, as gpu.md / gpu2 had it."""
    train_tokens: int = 2_000_000
    batch_size: int = 4096
    lr: float = 1e-3
    tc_probes: int = 32
    l1_c: float = 0.5
    """standard_sae l1_weight = l1_c * K / D (the scale study's parametrisation)."""
    jumprelu_l0_coef: float = 1e-3
    jump_threshold: float = 0.001
    jump_bandwidth: float = 0.001
    """JumpReLU's initial threshold and kernel bandwidth: the library defaults when this study
    ran (docs/eval/probing/gpu.md); the defaults have since become 1.0 and 0.1."""
    ks: tuple[int, ...] = (1, 2, 5, 10, 20)
    fit_tokens: int = 100_000
    """Train tokens that fit the post-hoc least-squares / scalar read-outs."""
    ce_contexts: int = 64
    held_contexts: int = 256
    layer: int = 15
    max_norm_ratio: float = 10.0
    # pool / tasks (prepare)
    corpora: tuple[str, ...] = ("sotu", "moby", "spam", "pydoc", "perldoc")
    quota: tuple[int, ...] = (1600, 400, 1400, 600, 600)
    n_tokens: int = 64
    per_doc: int = 8
    test_fraction: float = 0.3
    tasks: tuple[str, ...] = ("spam_vs_ham", "sotu_party", "sotu_era", "pydoc_vs_perldoc",
                              "source")  # fmt: skip
    max_per_class: int = 500
    ctx_len: int = 128
    data_seed: int = 0
    lm_batch: int = 128


TINY = dict(Ks=(16, 32), seeds=(0, 1), train_tokens=4000, batch_size=256, fit_tokens=2000,
            ce_contexts=4, held_contexts=8, layer=1, corpora=("spam", "pydoc", "perldoc"),
            quota=(30, 20, 20), n_tokens=16, per_doc=2, tasks=("spam_vs_ham", "source"),
            ks=(1, 2), ctx_len=32, tc_probes=4, lm_batch=8)  # fmt: skip
"""The CPU end-to-end check (tests/test_probing_gpu.py): every step at toy size."""


# ---------------------------------------------------------------- prepare (CPU)


def prepare(plan: Plan, corpora: dict, tokenizer, out: Path) -> dict:
    """Pool, tasks, train and held-out contexts -> out.npz + out.json. Returns the metadata."""
    import torch

    from implicit_em.data.lm.activations import pack_documents
    from implicit_em.data.lm.corpus import split_documents
    from implicit_em.eval.probing_tasks import build_pool, build_tasks

    quota = dict(zip(plan.corpora, plan.quota, strict=True))
    pool = build_pool({c: corpora[c] for c in plan.corpora}, tokenizer, quota, plan.n_tokens,
                      plan.per_doc, plan.test_fraction, plan.data_seed)  # fmt: skip
    tasks = build_tasks(pool, plan.tasks, plan.max_per_class, plan.data_seed)
    train_docs, test_docs = [], []
    for c in plan.corpora:  # the pool's own document split: no probing test text in training
        tr, te = split_documents(corpora[c], plan.test_fraction, plan.data_seed)
        train_docs += tr
        test_docs += te
    g = torch.Generator().manual_seed(plan.data_seed)
    train_ctx = pack_documents(train_docs, tokenizer, plan.ctx_len)
    need = math.ceil(plan.train_tokens / (plan.ctx_len - 1))
    train_ctx = train_ctx[torch.randperm(len(train_ctx), generator=g)[:need]]
    held = pack_documents(test_docs, tokenizer, plan.ctx_len)
    held = held[torch.randperm(len(held), generator=g)[: plan.held_contexts]]
    arrays = {"pool_tokens": pool.tokens.numpy().astype(np.int32),
              "train_ctx": train_ctx.numpy().astype(np.int32),
              "held_ctx": held.numpy().astype(np.int32)}  # fmt: skip
    for t in tasks:
        for part in ("train_idx", "train_y", "test_idx", "test_y"):
            arrays[f"task:{t.name}:{part}"] = getattr(t, part)
    meta = {"plan": asdict(plan), "pool_split": pool.split, "pool_corpus": pool.corpus,
            "tasks": [t.summary() for t in tasks],
            "train_tokens": int(train_ctx.shape[0] * (plan.ctx_len - 1)),
            "held_tokens": int(held.shape[0] * (plan.ctx_len - 1)),
            "train_docs": len(train_docs), "test_docs": len(test_docs)}  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out.with_suffix(".npz"), **arrays)
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return meta


def load_data(path: Path) -> tuple[dict, dict]:
    meta = json.loads(path.with_suffix(".json").read_text())
    with np.load(path.with_suffix(".npz")) as z:
        arrays = {k: z[k] for k in z.files}
    return meta, arrays


# ---------------------------------------------------------------- probe fits (worker side)


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


def run_config(family: str, K: int, d: int, plan: Plan, seed: int, k: int = 16,
               row: dict | None = None):  # fmt: skip
    """The run config of one row. Every family gets loss.tc_probes (only the families whose
    terms include the decorrelation penalty read it); SAE families are centred when the
    registry says they can be (plan.centre_saes). row: a `Plan.rows` entry (its "loss"
    overrides and "l1_c"), or None for the plan's defaults."""
    from implicit_em.config import LossConfig, ModelConfig, RunConfig, TrainConfig
    from implicit_em.families import FAMILIES

    row = row or {}
    l1_c = row.get("l1_c") or plan.l1_c
    loss = LossConfig(l1_weight=l1_c * K / d, dead_steps=250, tc_probes=plan.tc_probes,
                      l0_coef=plan.jumprelu_l0_coef)  # fmt: skip
    loss = replace(loss, **row.get("loss", {}))
    model = ModelConfig(
        type=family,
        input_dim=d,
        hidden_dim=K,
        k=k,
        centre=plan.centre_saes and FAMILIES[family].centres and family not in plan.uncentred,
        jump_threshold=plan.jump_threshold,
        jump_bandwidth=plan.jump_bandwidth,
    )  # fmt: skip
    return RunConfig(
        model=replace(model, **row.get("model", {})),
        loss=loss,
        training=TrainConfig(epochs=1, batch_size=plan.batch_size, lr=plan.lr, seed=seed),
    )


SHORT = {"encoder": "encoder", "topk_sae": "topk", "batchtopk_sae": "batchtopk",
         "matryoshka_batchtopk_sae": "matryoshka", "jumprelu_sae": "jumprelu",
         "standard_sae": "l1", "tied_topk_sae": "tied-topk",
         "tied_topk_hybrid": "tied-topk-im"}  # fmt: skip
"""Row-name prefixes (the names gpu.md's rows carry)."""


def train_row(model, row: dict, cfg, x_train, plan: Plan, K: int, d: int, seed: int,
              k: int, device) -> list[dict]:  # fmt: skip
    """Train one row's model in place: one pass over x_train (N, D) with `train_steps`, or,
    for a row with "pretrain" (Plan.rows), the pre-training encoder on the first
    round(N * pretrain_fraction) rows, `models.init_from_encoder_`, then the model on the
    other rows (pretrain "none": the model alone on those rows, the control). Each stage
    is one pass at plan.batch_size, Adam plan.lr, seed `seed`. Returns one
    {"steps", "history"} per stage trained."""
    from implicit_em import runs
    from implicit_em.models import init_from_encoder_
    from implicit_em.train.distributed import train_steps

    def fit(m, x, loss) -> dict:
        steps = len(x) // plan.batch_size
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


def plan_rows(plan: Plan) -> list[dict]:
    """The trained rows of a block: plan.rows, or one per family with its untrained twin."""
    if plan.rows:
        return [dict(r) for r in plan.rows]
    return [{"family": f} for f in plan.families]


def main_run(plan: Plan, meta: dict, arrays: dict, lm, out: Path, device: str,
             time_limit: float = 0.0, workers: int = 0, lm_info: dict | None = None) -> dict:  # fmt: skip
    """The whole GPU study (module docstring); results.json rewritten after every block."""
    import torch

    from implicit_em import runs
    from implicit_em.data.lm.activations import norm_outliers
    from implicit_em.eval.probing_suite import downstream
    from implicit_em.eval.sparse_probing import RandomDirections
    from implicit_em.families import FAMILIES
    from implicit_em.lm_eval import encode, fit_linear_decoder, fit_scalar_decoder, fvu
    from implicit_em.models import Encoder

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
    xs = harvest_rows(lm, arrays["train_ctx"], plan.layer, plan.lm_batch, dev)
    D = xs.shape[-1]
    x_all = xs.reshape(-1, D)  # (N, D) float16, model units
    acts = harvest_rows(lm, arrays["pool_tokens"], plan.layer, plan.lm_batch, dev)  # (P, T, D)
    held = harvest_rows(lm, arrays["held_ctx"], plan.layer, plan.lm_batch, dev).reshape(-1, D)
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

    res["kinds"]["raw residual (ceiling)"] = "raw"
    probe("raw residual (ceiling)", None, full=True)
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
            for row in plan_rows(plan):
                fam = row["family"]
                label = row.get("label") or SHORT[fam]
                uses_k = FAMILIES[fam].uses_k
                if uses_k and k_match is None:
                    res.setdefault("errors", {})[f"{label}-K{K}-s{seed}"] = "no encoder L0"
                    continue  # the L0 rule needs the block's encoder first
                cfg = run_config(fam, K, D, plan, seed, k=k_match or 16, row=row)
                name = f"{label}-K{K}" + (f"-k{k_match}" if uses_k else "") + f"-s{seed}"
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
                    stages = train_row(model, row, cfg, x_train, plan, K, D, seed,
                                       k_match or 16, dev)  # fmt: skip
                except Exception as e:  # one family failing must not lose the others
                    res.setdefault("errors", {})[name] = f"{type(e).__name__}: {e}"
                    log(f"{name}: FAILED {type(e).__name__}: {e}")
                    del untrained[name]
                    continue
                model.eval()
                trained[name] = model
                a = encode(model, x_held)
                l0 = float((a > 0).sum(1).double().mean())
                res["l0"][name] = l0
                res["dead_fraction"][name] = float(((a > 0).sum(0) == 0).double().mean())
                if plan.twin_mean and getattr(model, "centre", False):
                    untrained[name].load_state_dict(  # the trained model's input mean
                        {**untrained[name].state_dict(),
                         **{b: v for b, v in model.state_dict().items() if b.startswith("x_mean")}})  # fmt: skip
                au = encode(untrained[name], x_held)
                if name not in no_twin:
                    res["l0"][f"{name} (untrained)"] = float((au > 0).sum(1).double().mean())
                hist = stages[-1]["history"]
                res["train"][name] = {"steps": sum(st["steps"] for st in stages),
                                      "seconds": round(time.perf_counter() - t, 1),
                                      "last": hist[-1] if hist else None}  # fmt: skip
                if len(stages) > 1 or row.get("pretrain"):
                    res["train"][name]["stages"] = [
                        {"steps": st["steps"], "last": st["history"][-1] if st["history"] else None}
                        for st in stages
                    ]  # fmt: skip
                res["kinds"][name] = "trained"
                if name not in no_twin:
                    res["kinds"][f"{name} (untrained)"] = "untrained"
                if fam == plan.l0_reference and k_match is None:  # the block's first such row
                    k_match = int(min(K, max(1, round(l0))))
                del a, au
                log(f"{name}: {res['train'][name]['seconds']} s, L0 {l0:.1f}, dead "
                    f"{res['dead_fraction'][name]:.4f}")  # fmt: skip
            rand = {}
            for i, name in enumerate(trained):
                k_l0 = int(min(K, max(1, round(res["l0"][name]))))
                rn = f"random dirs @ L0 {k_l0} ({name})"
                rand[rn] = RandomDirections(D, K, k_l0, seed=1000 * (seed + 1) + i).to(dev)
                res["l0"][rn] = float((encode(rand[rn], x_held) > 0).sum(1).double().mean())
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
            del trained, untrained, rand, splices
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
    save()
    log(f"done; waited {res['probe_wait_s']} s for the last probe fits")
    if fitter.pool is not None:
        fitter.pool.shutdown(wait=False, cancel_futures=True)
    return res


# ---------------------------------------------------------------- report (CPU, afterwards)


def merge_results(parts: list[dict]) -> dict:
    """One results dict from several (e.g. one process per K): the per-name tables are
    united (a name in two parts, such as the raw residual, keeps the first part's entry),
    in the order of the parts (so per-seed lists follow the files' order: seeds 0-1 of one
    file, then seed 2 of the next), the block lists joined; plan and data come from the
    first part, with the union of Ks."""

    def unite(first: dict, later: dict) -> dict:
        return {**first, **{k: v for k, v in later.items() if k not in first}}

    res = json.loads(json.dumps(parts[0]))
    for part in parts[1:]:
        for key in ("l0", "dead_fraction", "kinds", "train", "fvu", "downstream", "rows",
                    "block_seconds", "errors"):  # fmt: skip
            if key in part:
                res[key] = unite(res.get(key, {}), part[key])
        for variant, rows in part.get("probing", {}).items():
            res["probing"][variant] = unite(res["probing"].get(variant, {}), rows)
        for key in ("blocks_done", "not_run"):
            res[key] = res.get(key, []) + part.get(key, [])
        res["plan"]["Ks"] = sorted(set(res["plan"]["Ks"]) | set(part["plan"]["Ks"]))
    return res


def row_id(name: str) -> str:
    """Seed-free row name: `topk-K4096-k58-s1` -> `topk-K4096`; controls keep their tag."""
    import re

    if name.startswith("random dirs"):
        inner = name.split(" (", 1)[1][:-1]  # "random dirs @ L0 {k} ({name})"
        return f"random dirs @ L0 of {row_id(inner)}"
    tag = " (untrained)" if name.endswith(" (untrained)") else ""
    base = name.removesuffix(" (untrained)")
    base = re.sub(r"-s\d+$", "", base)
    base = re.sub(r"-k\d+$", "", base)
    return base + tag


def dataset_mean(per_task: dict, key: str) -> float:
    """Mean over datasets (the five source tasks count as one), SAEBench's averaging."""
    by_ds: dict[str, list[float]] = {}
    for task, r in per_task.items():
        v = r["full"] if key == "full" else r["k"].get(key)
        if v is not None:
            by_ds.setdefault(task.split(":")[0], []).append(v)
    return float(np.mean([np.mean(v) for v in by_ds.values()])) if by_ds else float("nan")


def summarize(res: dict) -> dict:
    """Per seed-free row: kind, K, L0 and accuracies per k (mean, min, max over seeds)."""
    ks = [str(k) for k in res["plan"]["ks"]]
    rows: dict = {}
    for variant, per_row in res["probing"].items():
        for name, per_task in per_row.items():
            rid = row_id(name)
            r = rows.setdefault(rid, {"kind": res["kinds"].get(name), "names": [], "acc": {}})
            if name not in r["names"]:
                r["names"].append(name)
            for key in [*ks, "full"]:
                r["acc"].setdefault(variant, {}).setdefault(key, []).append(
                    dataset_mean(per_task, key)
                )
    for r in rows.values():
        r["l0"] = [res["l0"][n] for n in r["names"] if n in res["l0"]]
        r["seeds"] = len(r["names"])
    ce: dict = {}
    for d in res["downstream"].values():
        for key, v in d.items():
            if key in ("orig", "zero"):
                ce.setdefault(key, {}).setdefault("ce", []).append(v["ce"])
                continue
            name, readout = key.split(" | ", 1)
            c = ce.setdefault(f"{row_id(name)} | {readout}", {"kind": v["kind"], "names": []})
            c["names"].append(name)
            for m in ("ce", "kl", "ce_loss_recovered"):
                c.setdefault(m, []).append(v[m])
            f = res["fvu"].get(key)
            if f:
                c.setdefault("fvu", []).append(f["all"])
                c.setdefault("fvu_typical", []).append(f["typical"])
    for c in ce.values():
        if "names" in c:
            c["l0"] = [res["l0"][n] for n in c["names"] if n in res["l0"]]
    return {"probing": rows, "downstream": ce, "ks": ks}


def _ms(v: list, fmt: str = ".3f") -> str:
    if not v:
        return "-"
    if len(v) == 1:
        return format(v[0], fmt)
    return f"{format(float(np.mean(v)), fmt)} [{format(min(v), fmt)}, {format(max(v), fmt)}]"


def _order(rid: str) -> tuple:
    import re

    m = re.search(r"K(\d+)", rid)
    K = int(m.group(1)) if m else 0
    kind = 2 if rid.startswith("random") else (1 if "untrained" in rid else 0)
    fam = rid.split(" @ L0 of ")[-1].split("-K")[0]
    return (K, fam, kind)


def render(res: dict, summ: dict) -> str:
    ks = summ["ks"]
    lines = []
    for variant, title in (
        ("saebench", "SAEBench probe (logistic regression on raw pooled codes)"),
        ("standardized", "same, features z-scored with train statistics"),
    ):
        lines += [
            "",
            f"### Probing accuracy, mean over datasets: {title}",
            "",
            "Mean over the seeds, [min, max] in brackets; L0 on the held-out tokens.",
            "",
            "| read-out | kind | seeds | L0 | " + " | ".join(f"k={k}" for k in ks) + " |",
            "|---|---|---|---|" + "---|" * len(ks),
        ]
        for rid in sorted(summ["probing"], key=_order):
            r = summ["probing"][rid]
            acc = r["acc"].get(variant, {})
            l0 = _ms(r["l0"], ".1f")
            lines.append(
                f"| {rid} | {r['kind']} | {r['seeds']} | {l0} | "
                + " | ".join(_ms(acc.get(k, [])) for k in ks)
                + " |"
            )
        raw = summ["probing"].get("raw residual (ceiling)")
        if raw:
            lines += [
                "",
                f"Raw residual, all 576 dims (full probe): "
                f"{_ms(raw['acc'].get(variant, {}).get('full', []))}.",
            ]
    ce = summ["downstream"]
    lines += [
        "",
        "### Downstream loss (read-out spliced in at layer 15, full 30-block forward)",
        "",
        f"CE of the unmodified model {_ms(ce['orig']['ce'], '.4f')} nats/token; zero "
        f"ablation {_ms(ce['zero']['ce'], '.4f')}.",
        "",
        "| model | spliced through | kind | L0 | CE-loss recovered | KL | FVU | FVU typical |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = [k for k in ce if k not in ("orig", "zero")]
    for key in sorted(keys, key=lambda k: _order(k.split(" | ")[0])):
        c = ce[key]
        name, ro = key.split(" | ", 1)
        lines.append(
            f"| {name} | {ro} | {c['kind']} | {_ms(c['l0'], '.1f')} | "
            f"{_ms(c['ce_loss_recovered'])} | {_ms(c['kl'])} | {_ms(c.get('fvu', []))} | "
            f"{_ms(c.get('fvu_typical', []))} |"
        )
    return "\n".join(lines) + "\n"


def plot(res: dict, summ: dict, path: Path, variant: str = "saebench") -> None:
    """Mean probing accuracy vs k, one panel per K: trained solid, untrained dashed, random
    directions dotted, raw residual black; bars = min-max over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [int(k) for k in summ["ks"]]
    Ks = res["plan"]["Ks"]
    fig, axes = plt.subplots(1, len(Ks), figsize=(7 * len(Ks), 5.5), sharey=True)
    axes = np.atleast_1d(axes)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fams = sorted({rid.split(" @ L0 of ")[-1].split("-K")[0] for rid in summ["probing"]})
    for ax, K in zip(axes, Ks, strict=True):
        for rid, r in summ["probing"].items():
            acc = r["acc"].get(variant, {})
            if rid.startswith("raw"):
                style, color, lw = "-", "black", 2.5
            else:
                if f"-K{K}" not in rid:
                    continue
                fam = rid.split(" @ L0 of ")[-1].split("-K")[0]
                color = palette[fams.index(fam) % len(palette)]
                style = (
                    ":" if r["kind"] == "random" else ("--" if r["kind"] == "untrained" else "-")
                )
                lw = 2 if r["kind"] == "trained" else 1.1
            y = np.array([np.mean(acc[str(k)]) for k in ks])
            lo = y - np.array([min(acc[str(k)]) for k in ks])
            hi = np.array([max(acc[str(k)]) for k in ks]) - y
            ax.errorbar(
                ks,
                y,
                yerr=[lo, hi],
                fmt=style,
                color=color,
                lw=lw,
                marker="o",
                ms=3,
                capsize=2,
                label=rid,
            )
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("k (latents selected by class-mean difference)")
        ax.set_title(
            f"K = {K}: {variant} probe, mean over 5 datasets and the seeds (bars min-max)",
            fontsize=9,
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=5.5, loc="lower right", ncol=2)
    axes[0].set_ylabel("test accuracy")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


# ---------------------------------------------------------------- run 2: rows and verdict


OLD_ROWS = {"batchtopk": "batchtopk", "matryoshka": "matryoshka", "jumprelu": "jumprelu(l0_coef=0.001)",
            "l1": "l1(l1_c=0.5)", "encoder": "encoder"}  # fmt: skip
"""gpu.md's rows read beside run 2's (its JumpReLU and L1 settings named as run 2's sweep)."""


def row_stats(summ: dict, res: dict, rid: str, readout: str | None) -> dict | None:
    """L0, dead latents (per seed), SAEBench-probe accuracy per k and averaged over k (per
    seed, then mean / min / max), CE-loss recovered and KL through `readout`: seed means."""
    r = summ["probing"].get(rid)
    if r is None:
        return None
    ks = summ["ks"]
    acc = r["acc"]["saebench"]
    per_seed = [float(np.mean([acc[k][i] for k in ks])) for i in range(len(acc[ks[0]]))]
    K = int(rid.split("-K")[1].split()[0].split("-")[0]) if "-K" in rid else None
    out = {"seeds": r["seeds"], "l0": float(np.mean(r["l0"])) if r["l0"] else None,
           "dead": [round(res["dead_fraction"][n] * K) for n in r["names"]
                    if n in res.get("dead_fraction", {})],
           "acc": {k: float(np.mean(acc[k])) for k in ks},
           "mean_k": float(np.mean(per_seed)), "mean_k_range": [min(per_seed), max(per_seed)]}  # fmt: skip
    c = summ["downstream"].get(f"{rid} | {readout}") if readout else None
    if c:
        out.update(readout=readout, ce=float(np.mean(c["ce_loss_recovered"])),
                   ce_range=[min(c["ce_loss_recovered"]), max(c["ce_loss_recovered"])],
                   kl=float(np.mean(c["kl"])))  # fmt: skip
    return out


TIED_FAMILIES = {"tied-topk": "tied_topk_sae", "tied-topk-im-3.0": "tied_topk_hybrid"}
"""The registry family of each tied row of gpu2's plan (for its kind in the verdict)."""


def compare(new: dict, old: dict) -> tuple[str, dict]:
    """Run 2's rows beside gpu.md's, and the moonshot verdict by the rules fixed in
    docs/eval/probing/gpu2_plan.md. Returns (markdown, numbers)."""
    from types import SimpleNamespace

    from implicit_em.eval.verdict import DECODER_FREE, HYBRID, variant_kind

    sn, so = summarize(new), summarize(old)
    own, lsq = "own decoder", "post-hoc least squares"
    numbers: dict = {}
    lines: list[str] = []
    ks = sn["ks"]
    for K in new["plan"]["Ks"]:
        rows: list[tuple[str, str, dict]] = []  # (label, source, stats)

        def add(rid, readout, source="run 2", label=None, summ=sn, res=new, rows=rows):
            st = row_stats(summ, res, rid, readout)
            if st is not None:
                rows.append((label or rid, source, st))
            return st

        raw = add("raw residual (ceiling)", None)
        enc = add(f"encoder-K{K}", lsq)
        add(f"encoder-K{K} (untrained)", lsq, "gpu.md", summ=so, res=old)
        add(f"random dirs @ L0 of encoder-K{K}", lsq)
        add(f"encoder[r]-K{K}", None)
        add(f"encoder[r]-K{K} (untrained)", None)
        topk = add(f"topk-K{K}", own)
        add(f"random dirs @ L0 of topk-K{K}", lsq)
        base = {f"topk-K{K}": topk}
        for short in ("batchtopk", "matryoshka"):
            base[f"{short}-K{K} (gpu.md)"] = add(f"{short}-K{K}", own, "gpu.md",
                                                 f"{short}-K{K} (gpu.md)", so, old)  # fmt: skip
        sweep: dict[str, list] = {"jumprelu": [], "l1": []}
        for fam in sweep:
            st = add(f"{fam}-K{K}", own, "gpu.md", f"{OLD_ROWS[fam]}-K{K} (gpu.md)", so, old)
            if st:
                sweep[fam].append((f"{OLD_ROWS[fam]}-K{K} (gpu.md)", st))
            for rid in sorted(sn["probing"], key=str):
                if rid.startswith(f"{fam}(") and rid.endswith(f"-K{K}"):
                    st = add(rid, own)
                    add(f"random dirs @ L0 of {rid}", lsq)
                    sweep[fam].append((rid, st))
        matched = {}
        for fam, pts in sweep.items():
            if enc and pts:
                name, st = min(pts, key=lambda p: abs(math.log(p[1]["l0"] / enc["l0"])))
                ratio = st["l0"] / enc["l0"]
                matched[fam] = {"row": name, "l0_ratio": ratio, "within_1.25": 0.8 <= ratio <= 1.25}
                if matched[fam]["within_1.25"]:
                    base[name] = st
        models = {}
        for m in ("tied-topk", "tied-topk-im-3.0"):
            st = add(f"{m}-K{K}", own)
            unt = add(f"tied-topk-K{K} (untrained)", own) if m == "tied-topk" else None
            rnd = add(f"random dirs @ L0 of {m}-K{K}", lsq)
            models[m] = (st, rnd)
            if unt is not None:
                models["untrained"] = unt
        base = {n: st for n, st in base.items() if st}
        best_name = max(base, key=lambda n: base[n]["mean_k"]) if base else None
        best = base[best_name] if best_name else None
        verdict = {"encoder_l0": enc["l0"] if enc else None, "matched_sweep": matched,
                   "best_baseline": best_name, "best_mean_k": best["mean_k"] if best else None,
                   "topk_ce": topk.get("ce") if topk else None, "models": {}}  # fmt: skip
        unt = models.get("untrained")
        for m in ("tied-topk", "tied-topk-im-3.0"):
            st, rnd = models[m]
            if not st or not best or not topk:
                continue
            v = {"mean_k": st["mean_k"], "probe_gap": st["mean_k"] - best["mean_k"],
                 "ce": st.get("ce"), "ce_gap": st.get("ce", float("nan")) - topk["ce"],
                 "dead": st["dead"], "probe_met": st["mean_k"] >= best["mean_k"] - 0.005,
                 "ce_met": st.get("ce", -1) >= topk["ce"] - 0.01,
                 "dead_met": bool(st["dead"]) and max(st["dead"]) == 0,
                 "above_random": rnd is not None and st["mean_k_range"][0] > rnd["mean_k_range"][1],
                 "above_untrained": unt is not None
                 and st["mean_k_range"][0] > unt["mean_k_range"][1]}  # fmt: skip
            # gpu2_plan's three fixed criteria, then the issue's target: those, clearly above
            # both controls, and a decoder-free or hybrid model (eval.verdict's kinds)
            v["criteria_met"] = v["probe_met"] and v["ce_met"] and v["dead_met"]
            v["kind"] = variant_kind(SimpleNamespace(family=TIED_FAMILIES[m]))
            v["target_met"] = (v["criteria_met"] and v["above_random"] and v["above_untrained"]
                               and v["kind"] in (DECODER_FREE, HYBRID))  # fmt: skip
            verdict["models"][m] = v
        numbers[f"K{K}"] = {"verdict": verdict, "rows": {lab: st for lab, _, st in rows}}
        lines += ["", f"### K = {K}", "",
                  "| row | source | L0 | dead (per seed) | "
                  + " | ".join(f"k={k}" for k in ks)
                  + " | mean over k [seed range] | CE-loss recovered [range] | KL | read-out |",
                  "|---|---|---|---|" + "---|" * len(ks) + "---|---|---|---|"]  # fmt: skip
        for lab, src, st in rows:
            ce = (
                f"{st['ce']:.3f} [{st['ce_range'][0]:.3f}, {st['ce_range'][1]:.3f}]"
                if "ce" in st
                else "-"
            )
            kl = f"{st['kl']:.3f}" if "kl" in st else "-"
            l0 = f"{st['l0']:.1f}" if st["l0"] is not None else "-"
            dead = "/".join(str(d) for d in st["dead"]) or "-"
            lines.append(f"| {lab} | {src} | {l0} | {dead} | "
                         + " | ".join(f"{st['acc'][k]:.3f}" for k in ks)
                         + f" | {st['mean_k']:.3f} [{st['mean_k_range'][0]:.3f}, "
                         f"{st['mean_k_range'][1]:.3f}] | {ce} | {kl} | {st.get('readout', '-')} |")  # fmt: skip
        lines += ["", f"Matched sweep points: {json.dumps(matched)}",
                  f"Best SAE baseline at the encoder's L0: {best_name} "
                  f"({verdict['best_mean_k']:.3f} mean over k)" if best else "no baseline",
                  ""]  # fmt: skip
        for m, v in verdict["models"].items():
            lines.append(
                f"- **{m}**: probing {v['mean_k']:.3f} ({v['probe_gap']:+.3f} vs best), "
                f"CE-loss recovered {v['ce']:.3f} ({v['ce_gap']:+.3f} vs TopK {topk['ce']:.3f}), "
                f"dead {v['dead']}; above random dirs: {v['above_random']}, above untrained: "
                f"{v['above_untrained']}; the three criteria met: {v['criteria_met']} (probe "
                f"{v['probe_met']}, CE {v['ce_met']}, dead {v['dead_met']}); {v['kind']}; "
                f"target met (criteria, above both controls, decoder-free or hybrid): "
                f"{v['target_met']}"
            )
    _ = raw
    return "\n".join(lines) + "\n", numbers


# ---------------------------------------------------------------- run 3: variants and verdict


def _apart(a: list[float], b: list[float], margin: float) -> str:
    """'above' when a's worst seed exceeds b's best by more than margin, 'below' the other
    way round, else 'level' (eval.verdict's rule for beating a control)."""
    if min(a) > max(b) + margin:
        return "above"
    if max(a) < min(b) - margin:
        return "below"
    return "level"


def compare3(new: dict, baseline: dict) -> tuple[str, dict]:
    """Run 3's variant rows against the reference encoder, their controls and the SAE
    baselines, by the rules fixed in docs/eval/probing/gpu3_plan.md. baseline: gpu2's
    gpu2_compare.json (its best SAE baseline per K at the encoder's L0). Returns (markdown,
    numbers)."""
    from types import SimpleNamespace

    from implicit_em.eval.verdict import DECODER_FREE, HYBRID, MARGIN, matched_l0, variant_kind
    from implicit_em.families import FAMILIES

    def kind(r: dict) -> str:  # eval.verdict's kind of a plan row (pre-training: a hybrid)
        pre = r.get("pretrain")
        return variant_kind(SimpleNamespace(
            family=r["family"], pretrain_fraction=r.get("pretrain_fraction", 0.5) if pre else 0.0,
            pretrain=pre["family"] if isinstance(pre, dict) else "none"))  # fmt: skip

    sn = summarize(new)
    own, lsq = "own decoder", "post-hoc least squares"
    ref_label = next(r.get("label") or SHORT[r["family"]] for r in new["plan"]["rows"]
                     if r["family"] == new["plan"]["l0_reference"])  # fmt: skip
    labels = [(r.get("label") or SHORT[r["family"]], r) for r in new["plan"]["rows"]]
    numbers: dict = {}
    lines: list[str] = [
        f"Rules (gpu3_plan.md, fixed before the run): probing = SAEBench probe, mean over the "
        f"5 datasets and k in {sn['ks']}, per seed; A *above* / *below* B when A's worst seed "
        f"is more than {MARGIN} above B's best seed (or the other way round), else *level* "
        f"(`eval.verdict.MARGIN`); CE-loss recovered compared the same way with margin 0 "
        f"(seed ranges disjoint); L0s matched within `eval.verdict.matched_l0` (25 %)."
    ]
    for K in new["plan"]["Ks"]:

        def stats(label: str, tag: str = "", K=K) -> dict | None:
            rid = f"{label}-K{K}{tag}"
            ro = own if f"{rid} | {own}" in sn["downstream"] else lsq
            st = row_stats(sn, new, rid, ro)
            if st is not None:
                per = [
                    float(c)
                    for c in sn["downstream"].get(f"{rid} | {ro}", {}).get("ce_loss_recovered", [])
                ]
                st["ce_seeds"] = per
            return st

        ref = stats(ref_label)
        topk = next((stats(lab) for lab, r in labels if FAMILIES[r["family"]].uses_k
                     and "pretrain" not in r and not FAMILIES[r["family"]].tied), None)  # fmt: skip
        b = baseline.get(f"K{K}", {}).get("verdict", {})
        best_name, best = b.get("best_baseline"), b.get("best_mean_k")
        if topk is not None and (best is None or topk["mean_k"] > best):
            best_name, best = "topk (this run)", topk["mean_k"]
        per_row: dict = {}
        table = ["", f"### K = {K}", "",
                 "| row | L0 | dead (per seed) | probing mean over k [seeds] | untrained twin | "
                 "random @ L0 | beats controls | vs reference | CE-loss rec. [seeds] (read-out) "
                 "| CE vs reference |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for lab, r in labels:
            st = stats(lab)
            if st is None:
                continue
            twin = stats(r.get("twin_of", lab), " (untrained)")
            rnd = row_stats(sn, new, f"random dirs @ L0 of {lab}-K{K}", None)
            ctrl = [c for c in (twin, rnd) if c is not None]
            beats = bool(ctrl) and all(_apart(list(st["mean_k_range"]), list(c["mean_k_range"]),
                                              MARGIN) == "above" for c in ctrl)  # fmt: skip
            v = {"kind": kind(r), "l0": st["l0"], "dead": st["dead"], "mean_k": st["mean_k"],
                 "mean_k_range": st["mean_k_range"], "ce": st.get("ce"),
                 "readout": st.get("readout"), "beats_controls": beats,
                 "twin_mean_k": twin["mean_k"] if twin else None,
                 "random_mean_k": rnd["mean_k"] if rnd else None}  # fmt: skip
            if ref is not None and lab != ref_label:
                v["probe_vs_reference"] = _apart(list(st["mean_k_range"]),
                                                 list(ref["mean_k_range"]), MARGIN)  # fmt: skip
                v["probe_delta"] = st["mean_k"] - ref["mean_k"]
                if st.get("ce_seeds") and ref.get("ce_seeds"):
                    v["ce_vs_reference"] = _apart(st["ce_seeds"], ref["ce_seeds"], 0.0)
                    v["ce_delta"] = st["ce"] - ref["ce"]
            if (v["kind"] in (DECODER_FREE, HYBRID) and best is not None and topk is not None
                    and ref is not None and "ce" in st):  # fmt: skip
                v["target"] = {
                    "matched_l0": matched_l0(st["l0"], ref["l0"]),
                    "probe_met": st["mean_k"] >= best - 0.005,
                    "ce_met": st["ce"] >= topk["ce"] - 0.01,
                    "dead_met": bool(st["dead"]) and max(st["dead"]) == 0,
                    "beats_controls": beats,
                }  # fmt: skip
                v["target_met"] = all(v["target"].values())
            per_row[lab] = v
            rng = f"{st['mean_k']:.3f} [{st['mean_k_range'][0]:.3f}, {st['mean_k_range'][1]:.3f}]"
            ce = (f"{st['ce']:.3f} [{min(st['ce_seeds']):.3f}, {max(st['ce_seeds']):.3f}] "
                  f"({st['readout']})" if st.get("ce_seeds") else "-")  # fmt: skip
            table.append(
                f"| {lab} | {st['l0']:.1f} | {'/'.join(map(str, st['dead'])) or '-'} | {rng} | "
                f"{v['twin_mean_k'] if twin is None else format(twin['mean_k'], '.3f')} | "
                f"{'-' if rnd is None else format(rnd['mean_k'], '.3f')} | {beats} | "
                f"{v.get('probe_vs_reference', '-')} "
                f"({v.get('probe_delta', 0.0):+.3f}) | {ce} | {v.get('ce_vs_reference', '-')} |"
            )
        pre = {lab: r["pretrain"] for lab, r in labels if "pretrain" in r}
        pretrain = {}
        for lab, p in pre.items():
            if p == "none":
                continue
            ctl = next((c for c, q in pre.items() if q == "none"), None)
            if ctl in per_row and lab in per_row:
                a, c = stats(lab), stats(ctl)
                pretrain[lab] = {"control": ctl,
                                 "probe": _apart(list(a["mean_k_range"]), list(c["mean_k_range"]),
                                                 MARGIN),
                                 "probe_delta": a["mean_k"] - c["mean_k"],
                                 "ce": _apart(a["ce_seeds"], c["ce_seeds"], 0.0),
                                 "ce_delta": a["ce"] - c["ce"],
                                 "dead": a["dead"], "dead_control": c["dead"]}  # fmt: skip
        dfree = [lab for lab, r in labels if not FAMILIES[r["family"]].uses_k and lab in per_row
                 and not FAMILIES[r["family"]].tied]  # fmt: skip
        best_var = max(dfree, key=lambda lab: per_row[lab]["mean_k"], default=None)
        numbers[f"K{K}"] = {"rows": per_row, "pretrain": pretrain, "best_baseline": best_name,
                            "best_baseline_mean_k": best, "topk_ce": topk["ce"] if topk else None,
                            "best_decoder_free": best_var}  # fmt: skip
        lines += table + [""]
        lines.append(f"- Best SAE baseline at the encoder's L0: {best_name} "
                     + ("(none)" if best is None else f"({best:.3f} mean over k)"))  # fmt: skip
        if best_var is not None:
            bv = per_row[best_var]
            lines.append(f"- Best decoder-free row: **{best_var}** (probing {bv['mean_k']:.3f}, "
                         f"beats its controls: {bv['beats_controls']}, vs reference: "
                         f"{bv.get('probe_vs_reference', 'is the reference')})")  # fmt: skip
        for lab, v in per_row.items():
            if "target_met" in v:
                miss = [k for k, ok in v["target"].items() if not ok]
                lines.append(f"- {lab}: target met: **{v['target_met']}**"
                             + (f" (misses: {', '.join(miss)})" if miss else ""))  # fmt: skip
        for lab, pv in pretrain.items():
            lines.append(f"- {lab} against {pv['control']} (same second half, random init): "
                         f"probing {pv['probe']} ({pv['probe_delta']:+.3f}), CE-loss recovered "
                         f"{pv['ce']} ({pv['ce_delta']:+.4f}), dead {pv['dead']} against "
                         f"{pv['dead_control']}")  # fmt: skip
    return "\n".join(lines) + "\n", numbers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare", help="tokenize the pool, tasks and contexts (CPU)")
    pp.add_argument("--model", required=True, help="GGUF or model folder (for its tokenizer)")
    pp.add_argument("--out", required=True, help="path stem: writes STEM.npz and STEM.json")
    pr = sub.add_parser("run", help="the GPU study")
    pr.add_argument("--data", required=True, help="the stem written by prepare")
    pr.add_argument("--model", required=True)
    pr.add_argument("--out", required=True)
    pr.add_argument("--device", default="cuda")
    pr.add_argument("--time-limit", type=float, default=0.0, help="start no block after (s)")
    pr.add_argument("--workers", type=int, default=12, help="probe-fit processes (0: inline)")
    pr.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="run only these of the plan's seeds (one process per GPU)")  # fmt: skip
    pc = sub.add_parser("compare", help="run 2's rows beside gpu.md's, and the verdict (CPU)")
    pc.add_argument("--results", required=True, nargs="+", help="run 2's results.json files")
    pc.add_argument("--old", required=True, help="gpu.md's results.json")
    pc.add_argument("--out", required=True, help="folder: gpu2_compare.md, gpu2_compare.json")
    p3 = sub.add_parser("compare3", help="run 3's variant rows and their verdict (CPU)")
    p3.add_argument("--results", required=True, nargs="+", help="run 3's results.json files")
    p3.add_argument("--baseline", required=True, help="gpu2's gpu2_compare.json")
    p3.add_argument("--out", required=True, help="folder: gpu3_compare.md, gpu3_compare.json")
    pt = sub.add_parser("report", help="tables and plot from a results.json (CPU)")
    pt.add_argument("--results", required=True, nargs="+",
                    help="one or more results.json (e.g. one per GPU process), merged")  # fmt: skip
    pt.add_argument("--out", required=True, help="folder: gpu_tables.md, gpu_summary.json, PNG")
    for q in (pp, pr, pt):
        q.add_argument("--plan-json", default=None,
                       help="overrides of Plan fields (JSON, or @FILE holding it)")  # fmt: skip
    a = p.parse_args()
    if getattr(a, "plan_json", None) and a.plan_json.startswith("@"):
        a.plan_json = Path(a.plan_json[1:]).read_text()
    if a.cmd == "compare":
        md, nums = compare(merge_results([json.loads(Path(f).read_text()) for f in a.results]),
                           json.loads(Path(a.old).read_text()))  # fmt: skip
        (Path(a.out) / "gpu2_compare.md").write_text(md)
        (Path(a.out) / "gpu2_compare.json").write_text(json.dumps(nums, indent=1))
        print(md)
        return
    if a.cmd == "compare3":
        md, nums = compare3(merge_results([json.loads(Path(f).read_text()) for f in a.results]),
                            json.loads(Path(a.baseline).read_text()))  # fmt: skip
        out = Path(a.out)
        for name, text in (
            ("gpu3_compare.md", md),
            ("gpu3_compare.json", json.dumps(nums, indent=1)),
        ):
            if (out / name).exists():
                p.error(f"{out / name} exists: move it away or choose another --out")
            (out / name).write_text(text)
        print(md)
        return
    if a.cmd == "report":
        res = merge_results([json.loads(Path(f).read_text()) for f in a.results])
        summ = summarize(res)
        out = Path(a.out)
        (out / "gpu_tables.md").write_text(render(res, summ))
        (out / "gpu_summary.json").write_text(json.dumps(summ, indent=1))
        plot(res, summ, out / "gpu_probing_vs_k.png")
        return
    if a.cmd == "prepare":
        plan = Plan(**{k: tuple(v) if isinstance(v, list) else v
                       for k, v in json.loads(a.plan_json or "{}").items()})  # fmt: skip
        from implicit_em.data.lm import load_lm
        from implicit_em.data.lm.corpus import load_corpus

        _, tok, _ = load_lm(a.model)
        meta = prepare(plan, {c: load_corpus(c) for c in plan.corpora}, tok, Path(a.out))
        print(json.dumps({k: v for k, v in meta.items() if not k.startswith("pool_")}, indent=1))
        return
    import torch

    from implicit_em.data.lm import load_lm

    meta, arrays = load_data(Path(a.data))
    plan = replace(Plan(**{k: tuple(v) if isinstance(v, list) else v
                           for k, v in meta["plan"].items()}),
                   **{k: tuple(v) if isinstance(v, list) else v
                      for k, v in json.loads(a.plan_json or "{}").items()})  # fmt: skip
    if a.seeds is not None:
        if not set(a.seeds) <= set(plan.seeds):
            p.error(f"--seeds {a.seeds} not all in the plan's seeds {plan.seeds}")
        plan = replace(plan, seeds=tuple(a.seeds))
    lm, _, info = load_lm(a.model, progress=False)
    log(f"LM loaded: {info}")
    torch.set_num_threads(4)
    main_run(plan, meta, arrays, lm, Path(a.out), a.device, a.time_limit, a.workers, info)


if __name__ == "__main__":
    main()
