"""Are the decoder-free encoder's probe-selected latents duplicates? CPU test (issue 18).

Plan and rules, fixed before any result: cpu-duplicates-PLAN.md (this folder). Writes
cpu-duplicates.json and cpu-duplicates.md into --out (refuses to replace them).

    export PYTHONPATH=$PWD/src
    python docs/eval/probing/cpu_duplicates.py --out docs/eval/probing

Reads the cached CPU-scale activations of `probing_suite.run` (1,700 passages x 64 tokens,
SmolLM2 layer 15) and rebuilds its passage pool and tasks; trains, per seed, the decoder-free
encoder (package defaults) to the longest length, read at each length, and a TopK SAE at
k = the encoder's L0 at each length; probes every row and its controls (untrained init,
random directions at the L0) with the SAEBench probe, plain and with the de-duplicated
selection (`eval.selected_redundancy`), and measures the redundancy of the selections.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from implicit_em import runs
from implicit_em.atomic import atomic_write_bytes, atomic_write_json, free_paths
from implicit_em.data.lm.corpus import cache_dir, load_corpus
from implicit_em.data.lm.model import load_tokenizer
from implicit_em.eval import selected_redundancy as sr
from implicit_em.eval.options import ProbingOptions
from implicit_em.eval.probing_suite import _run_config, dataset_means, measured_l0, split_tokens
from implicit_em.eval.probing_tasks import build_pool, build_tasks
from implicit_em.eval.sparse_probing import (
    RandomDirections,
    k_sparse_probe,
    logistic_accuracy,
    mean_difference_ranking,
    mean_pool,
    pooled_codes,
)
from implicit_em.train.loop import train

OUT_FILES = ("cpu-duplicates.json", "cpu-duplicates.md")
ACTS = "acts-04ee3500c11805a4.safetensors"
STAT_KS = (5, 20)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the two output files")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--epochs", type=int, nargs="+", default=[1, 5, 20],
                   help="training lengths (epochs over the train-split tokens)")  # fmt: skip
    p.add_argument("--hidden-dim", type=int, default=512, help="K")
    p.add_argument("--acts", type=Path, default=None, help=f"default: cache/probing/{ACTS}")
    p.add_argument("--tokenizer", type=Path, default=None,
                   help="tokenizer folder; default: the cached dequantised SmolLM2 folder")  # fmt: skip
    return p.parse_args(argv)


def load_data(args, opts: ProbingOptions):
    """Pool, tasks and the cached activations (P, T, D) float16; refuses a token mismatch."""
    from safetensors.torch import load_file

    tok_dir = args.tokenizer
    if tok_dir is None:
        found = sorted(p for p in (cache_dir() / "models").glob("SmolLM2-135M-Instruct*")
                       if (p / "tokenizer_config.json").is_file() and not p.name.endswith(".tmp"))  # fmt: skip
        if not found:
            sys.exit("no cached SmolLM2 tokenizer folder: pass --tokenizer DIR")
        tok_dir = found[0]
    tokenizer = load_tokenizer(str(tok_dir))
    corpora = {c: load_corpus(c) for c in opts.corpora}
    quota = dict(zip(opts.corpora, opts.quota, strict=True))
    pool = build_pool(corpora, tokenizer, quota, opts.n_tokens, opts.per_doc,
                      opts.test_fraction, opts.seed)  # fmt: skip
    tasks = build_tasks(pool, opts.tasks, opts.max_per_class, opts.seed)
    path = args.acts or cache_dir() / "probing" / ACTS
    stored = load_file(path)
    if not torch.equal(stored["tokens"], pool.tokens):
        sys.exit(f"{path} holds other tokens than the rebuilt passage pool: wrong cache file")
    return pool, tasks, stored["acts"], str(path), str(tok_dir)


def training_tokens(acts, pool, opts: ProbingOptions):
    """As `probing_suite.run` (`probing_suite.split_tokens`): train-split tokens, outliers out,
    scaled; test tokens scaled."""
    _, x_train, x_test, scale, _, _ = split_tokens(acts, pool.split, opts.max_norm_ratio)
    return x_train, x_test, scale


def snapshots(cfg, x_train, x_test, lengths, run_dir: Path):
    """Train one model to max(lengths), returning deep copies at the end of each length.

    The run directory's checkpoint + `resume` continue the same run (`train` ends where an
    uninterrupted run would), so the copies are the states of one uninterrupted run.
    Returns ({L: model}, history records, seconds)."""
    model = runs.build_model(cfg)
    out, done, tic, hist = {}, 0, time.perf_counter(), []
    for L in sorted(lengths):
        hist = train(model, x_train, cfg, x_eval=x_test[:4096], run_dir=run_dir,
                     resume=done > 0, stop_after=L - done, progress=False)  # fmt: skip
        out[L], done = copy.deepcopy(model).eval(), L
    return out, hist, time.perf_counter() - tic


def probe_row(encode, W, acts, scale, tasks, ks) -> dict:
    """Plain and de-duplicated k-sparse probing of one read-out, and the selections' stats.

    encode: (N, D) normalized -> (N, K); W (K, D) its directions (None: raw residual, no
    de-duplication). Returns {"plain": per_task, "dedup": per_task, "stats": ...}."""
    if encode is None:
        z = mean_pool(acts).numpy()  # (P, D)
    else:
        z = pooled_codes(lambda x: encode(x * scale), acts).numpy()  # (P, K)
    plain, dedup, stats = {}, {}, {}
    for t in tasks:
        zt, zs = z[t.train_idx], z[t.test_idx]
        res = k_sparse_probe(zt, t.train_y, zs, t.test_y, ks, full=False)
        plain[t.name] = {"k": {str(k): v for k, v in res["k"].items()}, "full": float("nan"),
                         "selected": {str(k): v for k, v in res["selected"].items()}}  # fmt: skip
        if W is None:
            continue
        order = mean_difference_ranking(zt, t.train_y)
        dk, dsel = {}, {}
        for k in ks:
            idx = sr.dedup_selection(order, W, k)
            dk[str(k)] = logistic_accuracy(zt[:, idx], t.train_y, zs[:, idx], t.test_y)
            dsel[str(k)] = idx.tolist()
        dedup[t.name] = {"k": dk, "full": float("nan"), "selected": dsel}
        stats[t.name] = {
            f"{sel}@{k}": sr.selection_stats(W, zt, src[t.name]["selected"][str(k)])
            for k in STAT_KS
            for sel, src in (("plain", plain), ("dedup", dedup))
        }
    return {"plain": plain, "dedup": dedup, "stats": stats}


def stat_means(stats: dict, tasks) -> dict:
    """Per-task selection stats -> {"plain@20:distinct": mean over datasets, ...} (a dataset
    is the mean of its tasks, as the accuracies)."""
    out = {}
    for key in next(iter(stats.values())):
        for field in ("mean_abs_cos", "mean_abs_corr", "distinct"):
            values = {task: float(s[key][field]) for task, s in stats.items()}
            out[f"{key}:{field}"] = _dataset_mean(values, tasks)
    return out


def _dataset_mean(values: dict, tasks) -> float:
    by_ds: dict[str, list[float]] = {}
    for t in tasks:
        by_ds.setdefault(t.dataset, []).append(values[t.name])
    return float(np.mean([np.nanmean(v) for v in by_ds.values()]))


# ---------------------------------------------------------------- rules and report

BASES = ("encoder", "encoder init", "topk", "topk init", "random")
LABELS = {
    "encoder": "encoder (energies a)",
    "encoder init": "encoder, untrained init",
    "topk": "TopK SAE, k = encoder L0",
    "topk init": "TopK SAE, untrained init",
    "random": "random dirs @ encoder L0",
}
KINDS = {"encoder": "trained", "encoder init": "untrained", "topk": "trained",
         "topk init": "untrained", "random": "random"}  # fmt: skip


def row_of(rows: dict, base: str, seed: int, L: int) -> dict:
    return rows[f"{base} s{seed}" if base == "encoder init" else f"{base} s{seed} e{L}"]


def value(r: dict, key: str) -> float:
    """One number of a row: "l0", "rows_with_duplicate", "plain:20" / "dedup:20" (accuracy,
    mean over datasets), or a stats key "plain@20:distinct"."""
    if key in ("l0", "rows_with_duplicate"):
        return float(r[key])
    if "@" in key:
        return float(r["stats"][key])
    sel, k = key.split(":")
    return float(r["acc"][sel][k])


def per_seed(out: dict, base: str, L: int, key: str) -> list[float]:
    return [value(row_of(out["rows"], base, s, L), key) for s in out["options"]["seeds"]]


def r1(distinct: float, cos: float, ref_cos: float) -> str:
    """Plan rule R1 on one selection: distinct directions among the top 20 and the margin
    of its mean |cos| over the references'."""
    margin = cos - ref_cos
    if distinct <= 16 and margin >= 0.05:
        return "redundant"
    if distinct >= 19 and margin < 0.05:
        return "not redundant"
    return "some duplication"


def r2(e: float, e_dedup: float, t: float) -> str:
    """Plan rules G and R2: encoder plain / de-duplicated and TopK plain k = 20 accuracy."""
    g = t - e
    if g < 0.01:
        return "not testable here (no gap)"
    if e_dedup >= t - 0.01:
        return "supported"
    if e_dedup - e >= g / 2:
        return "partly"
    return "not the cause"


def _agree(mean_reading: str, seed_readings: list[str]) -> str:
    if all(s == mean_reading for s in seed_readings):
        return mean_reading
    return f"mixed (mean: {mean_reading}; seeds: {', '.join(seed_readings)})"


RULE_KEYS = ("plain:20", "dedup:20", "plain@20:distinct", "plain@20:mean_abs_cos")


def rule_values(out: dict, L: int, i: int | None) -> dict:
    """(base, key) -> the seed mean (i None) or seed number i's value, for the rules."""
    vals = {}
    for b in BASES:
        for key in RULE_KEYS:
            xs = per_seed(out, b, L, key)
            vals[(b, key)] = float(np.mean(xs)) if i is None else xs[i]
    return vals


def rule_readings(g: dict) -> dict:
    """R1 (encoder against TopK and random dirs; TopK against its init and random dirs) and
    R2 on one set of values from `rule_values`."""

    def rule1(base: str, refs: tuple[str, ...]) -> str:
        ref = max(g[(b, "plain@20:mean_abs_cos")] for b in refs)
        return r1(g[(base, "plain@20:distinct")], g[(base, "plain@20:mean_abs_cos")], ref)

    return {
        "R1_encoder": rule1("encoder", ("topk", "random")),
        "R1_topk": rule1("topk", ("topk init", "random")),
        "R2": r2(g[("encoder", "plain:20")], g[("encoder", "dedup:20")], g[("topk", "plain:20")]),
    }


def readings(out: dict) -> dict:
    """The plan's rules at each length, on seed means, 'mixed' where the seeds disagree."""
    res = {}
    n = len(out["options"]["seeds"])
    for L in out["options"]["epochs"]:
        m = rule_values(out, L, None)
        mean_r = rule_readings(m)
        seed_r = [rule_readings(rule_values(out, L, i)) for i in range(n)]
        rnd = m[("random", "dedup:20")] - m[("random", "plain:20")]
        res[str(L)] = {
            "gap_topk_minus_encoder_k20": m[("topk", "plain:20")] - m[("encoder", "plain:20")],
            "encoder_plain_k20": m[("encoder", "plain:20")],
            "encoder_dedup_k20": m[("encoder", "dedup:20")],
            "topk_plain_k20": m[("topk", "plain:20")],
            "topk_dedup_k20": m[("topk", "dedup:20")],
            **{key: _agree(mean_r[key], [r[key] for r in seed_r]) for key in mean_r},
            "random_dedup_minus_plain_k20": rnd,
            "dedup_procedure_suspect": abs(rnd) > 0.01,
        }
    return res


def _fmt(xs: list[float], digits: int = 3) -> str:
    if len(xs) == 1:
        return f"{xs[0]:.{digits}f}"
    return f"{np.mean(xs):.{digits}f} [{min(xs):.{digits}f}, {max(xs):.{digits}f}]"


def render(out: dict) -> str:
    o = out["options"]
    ks = [str(k) for k in o["ks"]]
    raw = out["rows"]["raw residual (ceiling)"]["acc"]["plain"]
    lines = [
        "# Are the encoder's probe-selected latents duplicates? CPU test (issue 18)",
        "",
        "Plan and rules, fixed before this run: [cpu-duplicates-PLAN.md](cpu-duplicates-PLAN.md). "
        f"K = {o['hidden_dim']}, D = 576 (SmolLM2-135M layer 15 resid_pre, the cached CPU-scale "
        f"harvest), {o['training_tokens']} training tokens, batch {o['batch_size']}, Adam lr "
        f"{o['lr']}, seeds {o['seeds']}; mean over seeds, [min, max] in brackets. Accuracy: "
        "SAEBench probe (k latents by class-mean difference, logistic regression C = 1 on raw "
        "pooled codes), mean over the 5 datasets. *dedup*: the same ranking with any latent "
        f"at |cos| >= {o['duplicate_cos']} to one already taken skipped. Stats of the plain "
        "top-20 selection: mean pairwise |cos| of the directions, mean pairwise |corr| of the "
        "pooled codes (train passages), distinct directions (components at |cos| >= "
        f"{o['duplicate_cos']}); rows w/ dup: of the K rows, those with a near-duplicate.",
        "",
        "Raw residual (ceiling), plain selection: "
        + ", ".join(f"k={k} {raw[k]:.3f}" for k in ks)
        + ".",
    ]
    for L in o["epochs"]:
        lines += [
            "",
            f"## {L} epoch{'s' if L > 1 else ''}",
            "",
            "| row | kind | L0 | "
            + " | ".join(f"k={k}" for k in ks)
            + " | dedup k=5 | dedup k=20 | gain 5->20 | dedup gain 5->20 | mean abs cos @20 "
            "| mean abs corr @20 | distinct @20 | dedup distinct @20 | rows w/ dup |",
            "|---|---|---|" + "---|" * (len(ks) + 9),
        ]
        for b in BASES:
            ps = functools.partial(per_seed, out, b, L)
            gain = [x - y for x, y in zip(ps("plain:20"), ps("plain:5"), strict=True)]
            dgain = [x - y for x, y in zip(ps("dedup:20"), ps("dedup:5"), strict=True)]
            cells = [LABELS[b], KINDS[b], _fmt(ps("l0"), 1)]
            cells += [_fmt(ps(f"plain:{k}")) for k in ks]
            cells += [_fmt(ps("dedup:5")), _fmt(ps("dedup:20")), _fmt(gain), _fmt(dgain)]
            cells += [_fmt(ps("plain@20:mean_abs_cos")), _fmt(ps("plain@20:mean_abs_corr")),
                      _fmt(ps("plain@20:distinct"), 1), _fmt(ps("dedup@20:distinct"), 1),
                      _fmt(ps("rows_with_duplicate"), 0)]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## The plan's rules",
        "",
        "| epochs | TopK - encoder @20 | encoder @20 | encoder dedup @20 | TopK @20 | TopK dedup @20 "
        "| R1 encoder | R1 TopK | R2 | random dedup - plain @20 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for L, r in out["readings"].items():
        lines.append(
            f"| {L} | {r['gap_topk_minus_encoder_k20']:+.3f} | {r['encoder_plain_k20']:.3f} | "
            f"{r['encoder_dedup_k20']:.3f} | {r['topk_plain_k20']:.3f} | {r['topk_dedup_k20']:.3f} "
            f"| {r['R1_encoder']} | {r['R1_topk']} | {r['R2']} | "
            f"{r['random_dedup_minus_plain_k20']:+.3f}{' (suspect)' if r['dedup_procedure_suspect'] else ''} |"
        )
    sec = out["seconds"]
    lines += [
        "",
        "## Run",
        "",
        f"Command: `{out['command']}` (PYTHONPATH=src), torch.set_num_threads(1), "
        f"{out['machine']['platform']}, torch {out['machine']['torch']}; shared 2-core machine.",
        f"Wall time: total {sec['total']:.0f} s, loading (tokenizer, corpora, pool, activations) "
        f"{sec['load']:.0f} s; training: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in out["train_seconds"].items())
        + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    clash = [n for n in OUT_FILES if (args.out / n).exists()]
    if clash:
        sys.exit(f"cpu_duplicates.py: {args.out} already holds {', '.join(clash)}: "
                 "move them away or choose another --out")  # fmt: skip
    paths = free_paths(args.out, OUT_FILES, overwrite=False)
    wall0 = time.perf_counter()
    opts = ProbingOptions(hidden_dim=args.hidden_dim, progress=False)
    ks = tuple(opts.ks)
    tic = time.perf_counter()
    pool, tasks, acts, acts_path, tok_dir = load_data(args, opts)
    x_train, x_test, scale = training_tokens(acts, pool, opts)
    D, K = acts.shape[-1], args.hidden_dim
    times = {"load": time.perf_counter() - tic}
    print(f"loaded in {times['load']:.0f} s: {len(pool)} passages, {len(tasks)} tasks, "
          f"{len(x_train)} training tokens", flush=True)  # fmt: skip

    raw = probe_row(None, None, acts, 1.0, tasks, ks)
    results = {"raw residual (ceiling)": {"kind": "raw", "probe": raw}}
    train_seconds: dict = {}
    for seed in args.seeds:
        o = dataclasses.replace(opts, seed=seed)
        cfg = _run_config(dataclasses.replace(o, epochs=max(args.epochs)), D, "encoder",
                          activation="relu")  # fmt: skip
        enc_init = runs.build_model(cfg).eval()
        with tempfile.TemporaryDirectory() as d:
            encs, hist, sec = snapshots(cfg, x_train, x_test, args.epochs, Path(d) / "enc")
        train_seconds[f"encoder s{seed} ({max(args.epochs)} epochs)"] = sec
        print(f"seed {seed}: encoder trained in {sec:.0f} s", flush=True)
        rows = {f"encoder init s{seed}": ("untrained", enc_init, None)}
        for L in args.epochs:
            l0 = measured_l0(encs[L], x_test)
            k_L = int(min(K, max(1, round(l0))))
            tcfg = _run_config(dataclasses.replace(o, epochs=L), D, "topk_sae", k=k_L)
            topk_init = runs.build_model(tcfg).eval()
            topk = runs.build_model(tcfg)
            t0 = time.perf_counter()
            train(topk, x_train, tcfg, x_eval=x_test[:4096], progress=False)
            train_seconds[f"topk k={k_L} s{seed} ({L} epochs)"] = time.perf_counter() - t0
            print(f"seed {seed}, {L} epochs: encoder L0 {l0:.1f}; TopK k={k_L} trained in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
            rows[f"encoder s{seed} e{L}"] = ("trained", encs[L], L)
            rows[f"topk s{seed} e{L}"] = ("trained", topk.eval(), L)
            rows[f"topk init s{seed} e{L}"] = ("untrained", topk_init, L)
            rows[f"random s{seed} e{L}"] = (
                "random",
                RandomDirections(D, K, k_L, seed=seed + 1000 + L),
                L,
            )
        for name, (kind, model, L) in rows.items():
            t0 = time.perf_counter()
            W = model.W.detach().numpy()  # (K, D)
            res = probe_row(model.encode, W, acts, scale, tasks, ks)
            results[name] = {
                "kind": kind, "seed": seed, "epochs": L,
                "l0": measured_l0(model, x_test),
                "rows_with_duplicate": sr.rows_with_duplicate(W),
                "probe": res,
                "probe_seconds": time.perf_counter() - t0,
            }  # fmt: skip
            print(f"  probed {name} in {time.perf_counter() - t0:.0f} s", flush=True)
        results[f"encoder s{seed} e{max(args.epochs)}"]["history_l0"] = [
            r["l0"] for r in hist]  # fmt: skip

    for r in results.values():
        p = r["probe"]
        r["acc"] = {sel: dataset_means(p[sel], tasks, ks)["mean"] for sel in ("plain", "dedup")
                    if p[sel]}  # fmt: skip
        if p["stats"]:
            r["stats"] = stat_means(p["stats"], tasks)
    times["total"] = time.perf_counter() - wall0
    out = {
        "plan": "docs/eval/probing/cpu-duplicates-PLAN.md",
        "command": "python docs/eval/probing/cpu_duplicates.py " + " ".join(sys.argv[1:]),
        "acts": acts_path,
        "tokenizer": tok_dir,
        "options": {
            "hidden_dim": K,
            "seeds": args.seeds,
            "epochs": args.epochs,
            "batch_size": opts.batch_size,
            "lr": opts.lr,
            "ks": list(ks),
            "duplicate_cos": sr.DUPLICATE_COS,
            "training_tokens": len(x_train),
            "norm_scale": scale,
        },  # fmt: skip
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": 1},
        "tasks": [t.summary() for t in tasks],
        "rows": results,
        "train_seconds": train_seconds,
        "seconds": times,
    }
    out["readings"] = readings(out)
    atomic_write_json(paths[0], out)
    atomic_write_bytes(paths[1], render(out).encode())
    print(f"wrote {paths[0]} and {paths[1]} in {times['total']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
