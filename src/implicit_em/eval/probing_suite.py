"""k-sparse probing and downstream loss of every model family beside its controls (issue 18).

Legend: P passages, T tokens per passage, N tokens, D hidden size, K latents.

`run(ProbingOptions(...))` does, end to end:

1. Passages and tasks (`probing_tasks`): a per-corpus passage pool split by document, and
   balanced binary tasks over it.
2. Activations: the residual at (layer, hook_point) for every passage token (BOS dropped),
   harvested with the truncated forward (`lm.capture_residual`) and cached under
   `cache_dir()/probing/` keyed by the tokens, the weights' sha256, layer and hook point.
3. Models, trained with `implicit_em.training.train` on the tokens of the *train-split*
   passages (inputs scaled by norm_scale = sqrt(D / E||x||^2) as in `implicit-em harvest`;
   tokens with norm > 10x the median left out of training, as `llm-train` does). Each family
   has its untrained (random-init, same seed) twin, and each model a random-directions
   control at its measured L0 (`sparse_probing.RandomDirections`).
4. k-sparse probing (`sparse_probing`) of every read-out: SAE codes; for the decoder-free
   encoder both its energies a and its responsibilities r = softmax(-a) (paper Eq. 4); and
   the raw residual (a k-sparse baseline that trained read-outs can exceed), per task and k,
   plus the full-dictionary probe (for the raw residual, all D dimensions: the ceiling).
5. Downstream loss (`evaluate.spliced_ce`): CE and KL with each reconstruction spliced in
   at the layer, on test-split passages; CE-loss recovered against zero ablation. The
   decoder-free encoder is spliced through W^T (best scalar + offset, `fit_scalar_decoder`)
   and through the post-hoc least-squares decoder (`fit_linear_decoder`, fitted after
   training on frozen train codes: not a decoder the model learned); SAEs through their own
   decoder; random directions through least squares.
6. Report: `probing.json`, `probing.md`, `probing_vs_k.png` in out_dir.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import platform
import re
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from implicit_em.atomic import atomic_save
from implicit_em.data.lm import capture_residual
from implicit_em.data.lm.corpus import cache_dir
from implicit_em.eval.options import ProbingOptions, check_out_dir, option_error
from implicit_em.eval.verdict import MARGIN, RAW_ROW, ceiling_label, probing_row_label


@torch.no_grad()
def harvest_passages(
    lm: nn.Module,
    tokens: Tensor,
    layer: int,
    hook_point: str = "resid_pre",
    batch_size: int = 16,
    progress: bool = False,
) -> Tensor:
    """Residual (P, T, D) float16 at (layer, hook_point) for tokens (P, 1 + T), BOS dropped.

    The forward stops after the hooked block (`capture_residual`).
    """
    from tqdm.auto import tqdm

    out = []
    for i in tqdm(range(0, len(tokens), batch_size), disable=not progress, desc="harvest"):
        h = capture_residual(lm, tokens[i : i + batch_size], layer, hook_point)  # (B, 1+T, D)
        out.append(h[:, 1:].to(torch.float16))
    return torch.cat(out)


def activation_cache_path(tokens: Tensor, weights_id: str, layer: int, hook_point: str) -> Path:
    """Cache file for the activations of these tokens under these weights and hook."""
    h = hashlib.sha256(tokens.numpy().tobytes())
    h.update(f"{weights_id}:{layer}:{hook_point}:{tuple(tokens.shape)}".encode())
    return cache_dir() / "probing" / f"acts-{h.hexdigest()[:16]}.safetensors"


def cached_passage_activations(
    lm: nn.Module,
    tokens: Tensor,
    weights_id: str,
    layer: int,
    hook_point: str = "resid_pre",
    batch_size: int = 16,
    progress: bool = False,
) -> tuple[Tensor, dict]:
    """harvest_passages, read from / written to `activation_cache_path` (atomic write).

    Returns (acts (P, T, D) float16, info {"path", "cached", "seconds", "tokens_per_s"}).
    """
    from safetensors.torch import load_file, save_file

    path = activation_cache_path(tokens, weights_id, layer, hook_point)
    if path.is_file():
        stored = load_file(path)
        if torch.equal(stored["tokens"], tokens):
            return stored["acts"], {"path": str(path), "cached": True}
    tic = time.perf_counter()
    acts = harvest_passages(lm, tokens, layer, hook_point, batch_size, progress)
    seconds = time.perf_counter() - tic
    atomic_save(lambda tmp: save_file({"acts": acts.contiguous(), "tokens": tokens.contiguous()}, tmp),
                path)  # fmt: skip
    n_tok = tokens.numel()
    return acts, {
        "path": str(path),
        "cached": False,
        "seconds": seconds,
        "tokens_per_s": n_tok / seconds,
    }


REPORT_FILES = ("probing.json", "probing.md", "probing_vs_k.png")


# ---------------------------------------------------------------- models and read-outs


def _run_config(opts: ProbingOptions, input_dim: int, kind: str, **model_kw):
    from implicit_em.config import LossConfig, ModelConfig, RunConfig, TrainConfig

    return RunConfig(
        model=ModelConfig(type=kind, input_dim=input_dim, hidden_dim=opts.hidden_dim, **model_kw),
        loss=LossConfig(l1_weight=opts.l1_weight),
        training=TrainConfig(
            epochs=opts.epochs, batch_size=opts.batch_size, lr=opts.lr, seed=opts.seed
        ),
    )


def model_specs(opts: ProbingOptions, input_dim: int) -> dict:
    """name -> RunConfig of every family trained by `run` (matched-L0 TopK added later)."""
    specs = {
        f"encoder-{act}": _run_config(opts, input_dim, "encoder", activation=act)
        for act in opts.activations
    }
    specs[f"topk-k{opts.topk_k}"] = _run_config(opts, input_dim, "topk_sae", k=opts.topk_k)
    specs["l1-sae"] = _run_config(opts, input_dim, "standard_sae")
    return specs


def readouts(name: str, model: nn.Module) -> dict:
    """Read-outs of one model: name -> fn(x (N, D) normalized) -> (N, K).

    Decoder-free encoder: `a` (energies) and `r` = softmax(-a) (paper Eq. 4); others: codes.
    """
    from implicit_em.models import Encoder

    if isinstance(model, Encoder):
        return {
            f"{name} [a]": model.encode,
            f"{name} [r]": lambda x: torch.softmax(-model.encode(x), dim=1),  # (N, K)
        }
    return {name: model.encode}


@torch.no_grad()
def measured_l0(model: nn.Module, x: Tensor) -> float:
    """Mean number of latents > 0 per token of x (N, D) (the `evaluate.code_stats` L0)."""
    from implicit_em.lm_eval import encode

    return float((encode(model, x) > 0).sum(dim=1).double().mean())


# ---------------------------------------------------------------- probing


PROBE_VARIANTS = {"saebench": False, "standardized": True}
"""Probe variants: SAEBench's logistic regression on raw pooled features, and the same on
features z-scored with train statistics (removes the effect of a read-out's overall scale
on the fixed L2 penalty C = 1; responsibilities are ~1/K)."""


def probe_rows(rows: dict, acts: Tensor, scale: float, tasks: list, ks: tuple[int, ...]) -> dict:
    """k-sparse probing of each read-out on each task, in each of PROBE_VARIANTS.

    rows: name -> fn(x normalized (N, D)) -> (N, K), or None for the raw residual (pooled
    in model units). acts: (P, T, D) pool activations.
    Returns {variant: {row: {task: probe result}}}.
    """
    from implicit_em.eval.sparse_probing import k_sparse_probe, mean_pool, pooled_codes

    out: dict = {variant: {} for variant in PROBE_VARIANTS}
    for row, fn in rows.items():
        if fn is None:
            z = mean_pool(acts).numpy()
        else:
            z = pooled_codes(lambda x, fn=fn: fn(x * scale), acts).numpy()
        for variant, std in PROBE_VARIANTS.items():
            out[variant][row] = {}
            for t in tasks:
                res = k_sparse_probe(
                    z[t.train_idx], t.train_y, z[t.test_idx], t.test_y, ks, standardize=std
                )
                res["k"] = {str(k): v for k, v in res["k"].items()}
                res["selected"] = {str(k): v for k, v in res["selected"].items()}
                out[variant][row][t.name] = res
    return out


def dataset_means(per_task: dict, tasks: list, ks: tuple[int, ...]) -> dict:
    """Mean accuracy per dataset (its tasks averaged), then over datasets (SAEBench)."""
    datasets: dict[str, list[str]] = {}
    for t in tasks:
        datasets.setdefault(t.dataset, []).append(t.name)
    keys = [str(k) for k in ks] + ["full"]

    def acc(task: str, key: str) -> float:
        r = per_task[task]
        return r["full"] if key == "full" else r["k"].get(key, float("nan"))

    by_ds = {
        ds: {key: float(np.mean([acc(t, key) for t in names])) for key in keys}
        for ds, names in datasets.items()
    }
    mean = {key: float(np.mean([by_ds[ds][key] for ds in by_ds])) for key in keys}
    return {"per_dataset": by_ds, "mean": mean}


# ---------------------------------------------------------------- downstream loss


def splice_functions(name: str, model: nn.Module, x_fit: Tensor, scale: float) -> dict:
    """Reconstructions to splice, in model units: name -> fn(h (N, D) raw) -> (N, D) raw.

    Encoder: W^T with best scalar + offset, and the post-hoc least-squares decoder; SAE:
    its decoder; anything else (random directions): least squares. x_fit (N, D) normalized
    train tokens fit the scalar / least-squares read-outs.
    """
    from implicit_em.lm_eval import reconstructions
    from implicit_em.models import Encoder

    recons = reconstructions(model, x_fit)
    if isinstance(model, Encoder):
        keep = {"wt_scalar_offset": "W^T, scalar + offset", "lstsq": "post-hoc least squares"}
    elif hasattr(model, "decode"):
        keep = {"decoder": "own decoder"}
    else:
        keep = {"lstsq": "post-hoc least squares"}
    return {
        f"{name} | {label}": (lambda h, fn=recons[key]: fn(h.float() * scale) / scale)
        for key, label in keep.items()
    }


def downstream(
    lm: nn.Module,
    contexts: Tensor,
    splices: dict,
    layer: int,
    hook_point: str,
    batch_size: int,
) -> dict:
    """CE, KL and CE-loss recovered of each splice on contexts (C, 1 + T) (BOS kept intact).

    Returns {"orig": {...}, "zero": {...}, name: {"ce", "kl", "ce_loss_recovered"}}.
    """
    from implicit_em.lm_eval import ce_loss_recovered, spliced_ce

    ce = spliced_ce(lm, contexts, layer, hook_point, splices, drop_bos=True, batch_size=batch_size)
    for name in ce:
        ce[name]["ce_loss_recovered"] = ce_loss_recovered(
            ce["orig"]["ce"], ce[name]["ce"], ce["zero"]["ce"]
        )
    return ce


# ---------------------------------------------------------------- run


def _load_inputs(opts: ProbingOptions, lm, tokenizer, corpora):
    from implicit_em.data.lm import load_lm
    from implicit_em.data.lm.corpus import load_corpus

    info = {"model_id": opts.model, "weights_sha256": None}
    if lm is None:
        lm, tokenizer, info = load_lm(opts.model)
    if corpora is None:
        corpora = {name: load_corpus(name) for name in opts.corpora}
    return lm, tokenizer, info, corpora


def split_tokens(acts: Tensor, split: list[str], max_norm_ratio: float):
    """The training and test tokens of `run`: every token of the train-split passages, scaled
    by norm_scale = sqrt(D / E||x||^2) (over the train tokens, outliers included), with tokens of
    norm > max_norm_ratio x the median left out (none when max_norm_ratio <= 0); the test-split
    tokens scaled the same.

    acts (P, T, D) passage activations, split (P,) "train" / "test". Returns (is_train (P,)
    bool, x_train (N, D), x_test (M, D), scale, n_dropped, median norm)."""
    from implicit_em.data.lm.activations import norm_outliers

    is_train = torch.tensor([s == "train" for s in split])
    D = acts.shape[-1]
    x_raw = acts[is_train].reshape(-1, D).float()  # (N, D)
    scale = math.sqrt(D / float(x_raw.square().sum(1).mean()))
    n_dropped, median = 0, float(x_raw.norm(dim=1).median())
    if max_norm_ratio > 0:
        outl = norm_outliers(x_raw, max_norm_ratio, median)
        n_dropped = int(outl.sum())
        x_raw = x_raw[~outl]
    x_test = acts[~is_train].reshape(-1, D).float() * scale  # (M, D)
    return is_train, x_raw * scale, x_test, scale, n_dropped, median


# ---------------------------------------------------------------- checks before any work
# The option values are checked when ProbingOptions is made; these need the disk or the hub.
# An option is named in backticks: the CLI shows it as its flag (cli.options.as_flags).


def check_model(model: str) -> None:
    """Refuse, before anything is loaded, a `model` that `data.lm.load_lm` cannot find: the
    bundled alias or a .gguf path whose file is missing, a path to something else, a hub id
    that is neither in the local Hugging Face cache nor on a reachable hub (the loader would
    spend ~25 s retrying before it says so). Raises FileNotFoundError naming `model`."""
    from implicit_em.data.lm.model import SMOLLM2_ALIAS, _gguf_path

    def missing(problem: str, fix: str = "") -> Exception:
        fix = fix or f"pass {SMOLLM2_ALIAS}, a .gguf path, a model folder or a Hugging Face hub id"
        return option_error(f"`model` {problem}: {fix}", FileNotFoundError)

    try:
        if _gguf_path(model) is not None:
            return
    except FileNotFoundError as e:
        raise option_error(f"`model`: {e}", FileNotFoundError) from None
    if Path(model).is_dir():
        return
    if Path(model).exists():
        raise missing(f"{model} is a file but not a .gguf")
    try:
        from huggingface_hub import constants, model_info, try_to_load_from_cache
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            HFValidationError,
            RepositoryNotFoundError,
        )
    except ImportError:  # no hub client: the loader reports what is missing
        return
    where = f"{model!r} is not a file, a folder nor a"
    try:
        if isinstance(try_to_load_from_cache(model, "config.json"), str):
            return
    except HFValidationError:
        raise missing(f"{where} valid hub id") from None
    if constants.HF_HUB_OFFLINE:
        raise missing(f"{where} hub model in the local cache (HF_HUB_OFFLINE is set)")
    try:
        model_info(model, timeout=10)
    except GatedRepoError:
        return  # the loader says what access it needs
    except RepositoryNotFoundError:
        raise missing(f"{where} model on the Hugging Face hub") from None
    except HfHubHTTPError:
        return  # another answer from the hub: the loader reports it
    except Exception:  # noqa: BLE001  (no answer at all: DNS, connection, timeout)
        raise missing(
            f"{where} hub model in the local cache, and the Hugging Face hub cannot be reached",
            f"pass {SMOLLM2_ALIAS}, a .gguf path or a model folder, "
            "or check the hub id and the network",
        ) from None


def _check_out_dir(opts: ProbingOptions) -> Path:
    return check_out_dir(opts.out_dir, REPORT_FILES, opts.overwrite)


def run(opts: ProbingOptions, lm=None, tokenizer=None, corpora=None) -> dict:
    """Run the whole probing + downstream-loss evaluation and write the report.

    lm / tokenizer / corpora (name -> list of Document) may be passed in (tests); by default
    they are loaded from opts.model and opts.corpora. Returns the result dict written to
    out_dir/probing.json. See the module docstring for the steps.
    """
    from implicit_em import runs
    from implicit_em.data.lm.model import check_layer
    from implicit_em.eval.probing_tasks import build_pool, build_tasks
    from implicit_em.eval.sparse_probing import RandomDirections
    from implicit_em.train.loop import train

    if lm is None:
        check_model(opts.model)
    out = _check_out_dir(opts)  # opts.corpora was checked when opts was made (check_corpora)
    torch.set_num_threads(opts.threads)
    times: dict[str, float] = {}
    tic = time.perf_counter()
    lm, tokenizer, info, corpora = _load_inputs(opts, lm, tokenizer, corpora)
    try:
        check_layer(lm, opts.layer, opts.hook_point)
    except ValueError as e:
        raise option_error(f"`layer`: {e}") from None
    quota = dict(zip(opts.corpora, opts.quota, strict=True))
    pool = build_pool(
        {c: corpora[c] for c in opts.corpora},
        tokenizer,
        quota,
        opts.n_tokens,
        opts.per_doc,
        opts.test_fraction,
        opts.seed,
    )
    tasks = build_tasks(pool, opts.tasks, opts.max_per_class, opts.seed)
    times["load_and_tasks"] = time.perf_counter() - tic

    tic = time.perf_counter()
    weights_id = info.get("weights_sha256")
    if weights_id is None:  # an injected model: hash its weights for the cache key
        h = hashlib.sha256()
        for p in lm.state_dict().values():
            h.update(p.detach().cpu().float().numpy().tobytes())
        weights_id = h.hexdigest()
    acts, harvest_info = cached_passage_activations(
        lm,
        pool.tokens,
        weights_id,
        opts.layer,
        opts.hook_point,
        opts.lm_batch_size,
        opts.progress,
    )
    times["harvest"] = time.perf_counter() - tic

    is_train, x_train, x_test, scale, n_dropped, median = split_tokens(
        acts, pool.split, opts.max_norm_ratio
    )
    D = acts.shape[-1]

    specs = model_specs(opts, D)
    trained, untrained, l0, fit_seconds = {}, {}, {}, {}

    def fit(name: str, cfg) -> None:
        untrained[name] = runs.build_model(cfg).eval()
        model = runs.build_model(cfg)
        t0 = time.perf_counter()
        # per-epoch metrics on 4,096 test tokens (as llm-train), not on all training tokens
        train(model, x_train, cfg, x_eval=x_test[:4096], progress=opts.progress)
        fit_seconds[name] = time.perf_counter() - t0
        trained[name] = model.eval()
        l0[name] = measured_l0(model, x_test)
        l0[f"{name} (untrained)"] = measured_l0(untrained[name], x_test)

    for name, cfg in specs.items():
        fit(name, cfg)
    if opts.match_encoder_l0 and "encoder-relu" in l0:
        k_match = int(min(opts.hidden_dim, max(1, round(l0["encoder-relu"]))))
        if k_match != opts.topk_k:
            name = f"topk-k{k_match} (L0 of encoder-relu)"
            fit(name, _run_config(opts, D, "topk_sae", k=k_match))
    times["train"] = sum(fit_seconds.values())

    rand = {}
    for i, name in enumerate(trained):
        k_l0 = int(min(opts.hidden_dim, max(1, round(l0[name]))))
        rand[f"random dirs @ L0 {k_l0} ({name})"] = RandomDirections(
            D, opts.hidden_dim, k_l0, seed=opts.seed + 1000 + i
        )
    for name, model in rand.items():
        l0[name] = measured_l0(model, x_test)

    rows: dict = {RAW_ROW: None}
    kinds = {RAW_ROW: "raw"}
    for name in trained:
        for row, fn in readouts(name, trained[name]).items():
            rows[row], kinds[row] = fn, "trained"
        for row, fn in readouts(f"{name} (untrained)", untrained[name]).items():
            rows[row], kinds[row] = fn, "untrained"
    for name, model in rand.items():
        rows[name], kinds[name] = model.encode, "random"

    tic = time.perf_counter()
    per_task = probe_rows(rows, acts, scale, tasks, opts.ks)
    summary = {
        variant: {row: dataset_means(per_task[variant][row], tasks, opts.ks) for row in rows}
        for variant in per_task
    }
    times["probing"] = time.perf_counter() - tic

    ce = None
    if opts.ce_contexts > 0:
        tic = time.perf_counter()
        test_rows = np.flatnonzero(~is_train.numpy())
        pick = np.random.default_rng(opts.seed).permutation(test_rows)[: opts.ce_contexts]
        contexts = pool.tokens[np.sort(pick)]
        splices, splice_kind = {}, {}
        groups = [(trained, "trained"), (untrained, "untrained"), (rand, "random")]
        for group, kind in groups:
            for name, model in group.items():
                label = f"{name} (untrained)" if kind == "untrained" else name
                for key, fn in splice_functions(label, model, x_train, scale).items():
                    splices[key], splice_kind[key] = fn, kind
        ce = downstream(lm, contexts, splices, opts.layer, opts.hook_point, opts.lm_batch_size)
        for key, kind in splice_kind.items():
            ce[key]["kind"] = kind
        times["downstream"] = time.perf_counter() - tic

    result = {
        "scale": "CPU-scale: "
        f"{len(pool)} passages x {opts.n_tokens} tokens, K = {opts.hidden_dim}, "
        f"{opts.epochs} epoch{'s' if opts.epochs != 1 else ''} on {x_train.shape[0]} tokens, "
        "one seed",
        "options": dataclasses.asdict(opts),
        "model": info,
        "harvest": harvest_info,
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": opts.threads,
        },
        "training_tokens": {
            "used": int(x_train.shape[0]),
            "dropped_outliers": n_dropped,
            "median_norm": median,
            "norm_scale": scale,
        },
        "input_dim": D,
        "tasks": [t.summary() for t in tasks],
        "l0": l0,
        "train_seconds": fit_seconds,
        "kinds": kinds,
        "probing": per_task,
        "probing_summary": summary,
        "downstream": ce,
        "seconds": times,
    }
    _write_report(out, result, opts)
    return result


# ---------------------------------------------------------------- report


def _l0_of_row(row: str, l0: dict) -> float | None:
    return l0.get(row.split(" [", 1)[0])


def small_test_sets(tasks: list[dict], margin: float = MARGIN) -> list[str]:
    """A warning when one test passage of some task moves its accuracy by more than 10x the
    verdict's margin (n_test < 10 / margin): the report's beats and losses are then noise."""
    small = [t for t in tasks if t["n_test"] * margin < 10]
    if not small:
        return []
    worst = min(small, key=lambda t: t["n_test"])
    return ["", f"**Small test sets:** {', '.join(t['name'] for t in small)} "
            f"(fewest: {worst['n_test']} passages in {worst['name']}, so one passage moves its "
            f"accuracy by {1 / worst['n_test']:.3f}); differences of {margin} between rows, "
            "the verdict's margin, are within that noise. Raise --quota for a reading."]  # fmt: skip


def short_controls(rows, l0: dict, tol: float = 0.9) -> list[str]:
    """Lines naming each random-direction control whose measured L0 falls below `tol` times
    the L0 it was drawn at (`random dirs @ L0 n (...)`): with ReLU codes, random directions
    fire only on their positive projections, about K / 2 per token, so a model denser than
    that has no random control at its own L0. Empty when every control reaches its L0."""
    out = []
    for row in rows:
        m = re.match(r"random dirs @ L0 (\d+) ", row)
        got = l0.get(row)
        if m and got is not None and got < tol * int(m.group(1)):
            out.append(f"- `{row}` fires {got:.1f} latents per token, not {m.group(1)}: random "
                       "directions with ReLU codes fire only on positive projections (about "
                       "K / 2), so this control is sparser than its model.")  # fmt: skip
    return ["", *out] if out else []


def render_markdown(result: dict, opts: ProbingOptions) -> str:
    """The report's markdown: tasks, probing table (mean over datasets), per-dataset tables,
    downstream-loss table, times."""
    ks = [str(k) for k in opts.ks]
    lines = [
        "# k-sparse probing and downstream loss (issue 18) - " + result["scale"],
        "",
        f"Model {result['model'].get('model_id')} "
        f"(weights sha256 {str(result['model'].get('weights_sha256'))[:12]}), layer "
        f"{opts.layer} {opts.hook_point}. Accuracies are test accuracies of a logistic "
        "regression on the k latents with the largest class-mean difference on the train "
        "split (SAEBench protocol), pooled by the mean over each passage's tokens; "
        "`full` = all K latents (all D dimensions for the raw residual). The raw residual's "
        "k-sparse row is a baseline, which trained read-outs can exceed; the ceiling is its "
        "probe on all D dimensions (the `(ceiling)` row). Decoder-free rows are read out two "
        "ways: `[a]` the energies a (ReLU or softplus of Wx + b) themselves, `[r]` the responsibilities "
        "softmax(-a) (paper eq. 4). `random dirs @ L0 n (model)` is the control for `model`: "
        "K random unit directions keeping each token's n largest positive projections.",
        "",
        "## Tasks",
        "",
        "| task | dataset | train | test |",
        "|---|---|---|---|",
    ]
    for t in result["tasks"]:
        lines.append(f"| {t['name']} | {t['dataset']} | {t['n_train']} | {t['n_test']} |")
    lines += small_test_sets(result["tasks"])
    titles = {
        "saebench": "SAEBench probe (logistic regression on raw pooled features)",
        "standardized": "same, features z-scored with train statistics first",
    }
    for variant, summary in result["probing_summary"].items():
        lines += [
            "",
            f"## Probing accuracy, mean over datasets: {titles.get(variant, variant)}",
            "",
            "`source` counts as one dataset (the mean of its 5 one-vs-rest tasks).",
            "",
            "| read-out | kind | L0 | " + " | ".join(f"k={k}" for k in ks) + " | full |",
            "|---|---|---|" + "---|" * (len(ks) + 1),
        ]
        for row, s in summary.items():
            l0 = None if row.endswith("[r]") else _l0_of_row(row, result["l0"])
            l0s = "-" if l0 is None else f"{l0:.1f}"
            accs = " | ".join(f"{s['mean'][k]:.3f}" for k in [*ks, "full"])
            kind = result["kinds"][row]
            lines.append(f"| {probing_row_label(row)} | {kind} | {l0s} | {accs} |")
            if kind == "raw":  # the ceiling: the same probe on all D dimensions, not k-sparse
                lines.append(f"| {ceiling_label(result.get('input_dim'))} | raw | - | "
                             + "- | " * len(ks) + f"{s['mean']['full']:.3f} |")  # fmt: skip
        lines += short_controls(summary, result["l0"])
    main = result["probing_summary"]["saebench"]
    datasets = list(next(iter(main.values()))["per_dataset"])
    for k in ("1", "5"):
        if k not in ks:
            continue
        lines += [
            "",
            f"## Per dataset, k = {k} (SAEBench probe)",
            "",
            "| read-out | " + " | ".join(datasets) + " |",
            "|---|" + "---|" * len(datasets),
        ]
        for row, s in main.items():
            accs = " | ".join(f"{s['per_dataset'][d][k]:.3f}" for d in datasets)
            lines.append(f"| {probing_row_label(row)} | {accs} |")
    ce = result.get("downstream")
    if ce:
        lines += [
            "",
            "## Downstream loss (reconstruction spliced in at the layer, BOS kept)",
            "",
            f"CE of the unmodified model {ce['orig']['ce']:.4f} nats/token; zero ablation "
            f"{ce['zero']['ce']:.4f} (KL {ce['zero']['kl']:.3f}).",
            "",
            "| model | spliced through | kind | L0 | CE | KL | CE-loss recovered |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in ce.items():
            if name in ("orig", "zero"):
                continue
            base, readout = name.split(" | ", 1)
            l0 = result["l0"].get(base)
            l0s = "-" if l0 is None else f"{l0:.1f}"
            lines.append(
                f"| {base} | {readout} | {r['kind']} | {l0s} | {r['ce']:.4f} | {r['kl']:.4f} | "
                f"{r['ce_loss_recovered']:.4f} |"
            )
    from implicit_em.eval.verdict import downstream_verdict, probing_verdict

    lines += ["", *probing_verdict(main, result["kinds"], opts.ks)]
    lines += downstream_verdict(ce or {})
    tt = result["training_tokens"]
    lines += [
        "",
        "## Run",
        "",
        f"Training tokens {tt['used']} (train-split passages; {tt['dropped_outliers']} with "
        f"norm > {opts.max_norm_ratio}x the median left out), norm_scale {tt['norm_scale']:.4f}.",
        "Seconds: "
        + ", ".join(f"{k} {v:.0f}" for k, v in result["seconds"].items())
        + "; per model: "
        + ", ".join(f"{k} {v:.0f}" for k, v in result["train_seconds"].items()),
        f"Harvest: {json.dumps({k: v for k, v in result['harvest'].items() if k != 'path'})}.",
        "",
    ]
    return "\n".join(lines)


def plot_probing(result: dict, opts: ProbingOptions, path: Path) -> None:
    """Mean probing accuracy vs k: trained read-outs solid, untrained dashed, random
    directions dotted, the raw residual's k-sparse baseline black, its probe on all D
    dimensions (the ceiling) a dashed black line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    ks = list(opts.ks)
    variants = list(result["probing_summary"])
    fig, axes = plt.subplots(1, len(variants), figsize=(7 * len(variants), 5.5), sharey=True)
    axes = np.atleast_1d(axes)
    styles = {"trained": "-", "untrained": "--", "random": ":", "raw": "-"}
    palette = [plt.get_cmap("tab20")(i) for i in range(20)]
    for ax, variant in zip(axes, variants, strict=True):
        colors: dict[str, str] = {}
        for row, s in result["probing_summary"][variant].items():
            kind = result["kinds"][row]
            base = row.replace(" (untrained)", "")
            if kind == "random":
                base = row.rsplit("(", 1)[-1].rstrip(")")
                base = base + (" [a]" if base.startswith("encoder") else "")
            if kind == "raw":
                color = "black"
            else:
                color = colors.setdefault(base, palette[len(colors) % len(palette)])
            y = [s["mean"][str(k)] for k in ks]
            lw = 2 if kind in ("trained", "raw") else 1.2
            ax.plot(ks, y, styles[kind], color=color, marker="o", ms=3,
                    label=probing_row_label(row), lw=lw)  # fmt: skip
            if kind == "raw":
                ax.axhline(s["mean"]["full"], ls="--", color="black", lw=1,
                           label=ceiling_label(result.get("input_dim")))  # fmt: skip
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("k (latents selected by class-mean difference)")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(f"{variant} probe", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy, mean over datasets")
    fig.suptitle(result["scale"], fontsize=9)
    # below the panels, so that no entry covers a curve
    handles, labels = axes[-1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=max(1, min(4, (len(labels) + 5) // 6)), frameon=False)  # fmt: skip
    atomic_save(lambda p: fig.savefig(p, dpi=120, bbox_inches="tight", format="png"), path)
    plt.close(fig)


def _write_report(out: Path, result: dict, opts: ProbingOptions) -> None:
    from implicit_em.atomic import atomic_write_bytes, atomic_write_json

    atomic_write_json(out / "probing.json", result)
    atomic_write_bytes(out / "probing.md", render_markdown(result, opts).encode())
    plot_probing(result, opts, out / "probing_vs_k.png")
