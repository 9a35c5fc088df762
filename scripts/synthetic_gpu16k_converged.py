"""Issue 18 at convergence: the 200 M-sample harness check and the family rows on one shared
stream, with the fast (CUDA-graphed) step (docs/eval/synthetic/gpu16k-converged-PLAN.md fixes
the plan; docs/eval/synthetic/gpu16k-converged.md the results).

Roles (one process each; the driver starts ref on GPU 0 and rows on GPU 1, or both on the one
GPU there is):

- check: the fast step on CUDA against the plain step (same weights after 30 steps on the
  same batches, every family of ROWS, exact decorrelation so that no random numbers differ),
  ms per step plain and graphed (the real settings), sampling per batch in chunks, the
  prefetching sampler's stream against the plain one, and the loop's rate (graphed BatchTopK
  fed by the prefetching sampler).
- equal: the graph against the same fast step run eagerly, full float32, tiny recipe (the
  driver runs it on the rows' GPU before the rows).
- ref: BatchTopK (--ref-variant, default batchtopk-k25; batchtopk-k25-sl-all is sae-lens's
  protocol, docs/eval/synthetic/harness-gap.md), width 4,096, k = 25, batch 1,024, Adam 3e-4
  constant, to 200 M samples
  (SAELens docs `docs/synth_sae_bench.md`), MCC at MILESTONES (matched in worker processes),
  `ref.json` rewritten at every milestone, so that a timeout still leaves the curve.
- rows: the family rows of ROWS (SEEDED for --seeds seeds) in lockstep on one stream
  (`synthetic.run` with shared_stream, one_stream, fast_step), until --budget.

usage: python scripts/synthetic_gpu16k_converged.py OUT_DIR [--role driver|check|equal|ref|rows]
       [--budget 540] [--seeds 1] [--sae-lens-src sl] [--tiny]
       rows role: [--variants V ...] [--seed-list S ...] [--steps N] [--plain-step]
                  [--latents K]

--budget: seconds from the driver's start by which each process has written its results
(training stops earlier: REF_RESERVE / ROWS_RESERVE seconds are kept for the scoring).
--tiny: the CI recipe and sizes, to run every role on a CPU.
--budget: note that ROWS_RESERVE (60 s) and the model's build come out of it: a row alone
needs about --budget 300 (fast step) or 480 (plain step) for 47,927 steps at width 4,096.
--reserve: rows role, the seconds of --budget kept for scoring (default ROWS_RESERVE, 60).
--latents: the rows' width (default 4,096; k stays 25), e.g. 16384, the issue's second K.
--plain-step: the eager step instead of the CUDA-graphed one, for centred and pre-trained
variants (which the fast step does not cover; without it they stop at the argument check;
docs/eval/synthetic/gpu16k-variants.md ran them so).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_eval import add_worker_args, worker_setup  # noqa: E402
from synthetic_eval import sync as _sync  # noqa: E402
from synthetic_eval import timed as _timed  # noqa: E402

CHECKED = ("batchtopk-k25", "topk-k25", "tied-topk", "tied-topk-im-3.0", "encoder",
           "matryoshka-k25", "jumprelu-0.003", "jumprelu-0.01", "jumprelu-0.03",
           "standard-l1-1.0", "standard-l1-3.0", "standard-l1-10.0")  # fmt: skip
# what fits at >= 50 M samples beside the sampler, from the check's graphed step times
# (docs/eval/synthetic/gpu16k-converged-PLAN.md); BatchTopK comes from the reference run
ROWS = ("topk-k25", "tied-topk", "tied-topk-im-3.0", "encoder", "jumprelu-0.003",
        "jumprelu-0.01", "standard-l1-3.0", "standard-l1-10.0")  # fmt: skip
SEEDED = ("tied-topk", "tied-topk-im-3.0", "encoder")
MILESTONES = (2.5e6, 5e6, 10e6, 25e6, 50e6, 75e6, 100e6, 125e6, 150e6, 175e6, 200e6)
REF_RESERVE = 35.0  # s kept after training for the 200k-sample scoring of the reference
ROWS_RESERVE = 60.0  # s kept for scoring every row (MCCs in workers)


def base_options(args, S, **kw):
    big = dict(recipe=args.recipe, latents=4096, k=25, batch_size=1024, lr=3e-4,
               steps=math.ceil(200e6 / 1024), eval_samples=50_000, untrained_samples=10_000,
               sample_chunk=32_768)  # fmt: skip
    if args.tiny:
        big = dict(recipe="tiny", latents=64, k=6, batch_size=128, lr=3e-4, steps=600,
                   eval_samples=4_000, untrained_samples=1_000, sample_chunk=1_024)  # fmt: skip
    opts = S.SyntheticEvalOptions(**big, device=args.device, log_every=2000, plot=False,
                                  lstsq=False, gradient_shares=False, fast_step=True)  # fmt: skip
    return replace(opts, **kw)


def variant(S, name, opts):
    v = S.VARIANTS[name]
    tiny = opts.recipe == "tiny"  # -k25 rows follow --tiny's k; a full-recipe row keeps its own
    return replace(v, k=opts.k) if tiny and v.k is not None else v


def check(args, out: Path) -> None:
    """The fast step on this device against the plain one, and where a step's time goes."""
    from implicit_em.eval import synthetic as S

    dev, log = args.device, {}
    opts = base_options(args, S)
    t = time.perf_counter()
    synth = S.build_synthetic_model(opts.recipe, 42, dev)
    log["build_seconds"] = time.perf_counter() - t
    B, C = opts.batch_size, opts.sample_chunk
    torch.manual_seed(1)
    xs = [synth.sample(B) for _ in range(30)]
    exact = replace(opts, tc_probes=None)  # no random probes: graph and eager draw alike
    for name in CHECKED:
        v, rec = variant(S, name, opts), {}
        trs = [S.VariantTrainer(v, synth, replace(exact, fast_step=f), 0, None)
               for f in (False, True)]  # fmt: skip
        for x in xs:
            for tr in trs:
                tr.step(x)
        _sync(dev)
        p, f = (tr.model.state_dict() for tr in trs)
        rec["max_abs_diff"] = max(float((p[k].double() - f[k].double()).abs().max()) for k in p)
        rec["max_abs_param"] = max(float(p[k].double().abs().max()) for k in p)
        rec["since_fired_equal"] = bool(torch.equal(trs[0].since_fired, trs[1].since_fired))
        rec["graphed"] = trs[1].graph is not None
        plain = S.VariantTrainer(v, synth, replace(opts, fast_step=False), 0, None)
        fast = S.VariantTrainer(v, synth, opts, 0, None)
        for _ in range(5):
            plain.step(xs[0])
            fast.step(xs[0])
        rec["plain_step_ms"] = 1e3 * _timed(lambda pl=plain: pl.step(xs[0]), 30, dev)
        rec["fast_step_ms"] = 1e3 * _timed(lambda fa=fast: fa.step(xs[0]), 200, dev)
        log[name] = rec
        print(name, json.dumps(rec), flush=True)
        del trs, plain, fast
    torch.manual_seed(7)
    a = torch.cat([S.ChunkedSampler(synth, C)(B) for _ in range(2)])
    torch.manual_seed(7)
    pre = S.ChunkedSampler(synth, C, prefetch=True)
    b = torch.cat([pre(C // 2) for _ in range(4)])
    log["prefetch_stream_equal"] = bool(torch.equal(a[:B], b[:B]))
    log["sample_in_chunks_per_batch_ms"] = 1e3 * _timed(lambda: synth.sample(C), 3, dev) * B / C
    ref = S.VariantTrainer(variant(S, "batchtopk-k25", opts), synth, opts, 0, None)
    sampler = S.ChunkedSampler(synth, C, prefetch=True)
    for _ in range(40):
        ref.step(sampler(B))
    log["loop_prefetch_ms"] = 1e3 * _timed(lambda: ref.step(sampler(B)), 2000, dev)
    plain_sampler = S.ChunkedSampler(synth, C)
    log["loop_no_prefetch_ms"] = 1e3 * _timed(lambda: ref.step(plain_sampler(B)), 1000, dev)
    print(json.dumps({k: v for k, v in log.items() if k not in CHECKED}), flush=True)
    (out / "check.json").write_text(json.dumps(log, indent=1))


def equal(args, out: Path) -> None:
    """The CUDA graph against the same fast step run eagerly (fused Adam in both), in full
    float32 (TF32 off), exact decorrelation (no random probes), on the tiny recipe: max |diff|
    of the weights after 1 and after 30 steps on the same batches, every family of CHECKED."""
    from implicit_em.eval import synthetic as S

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    opts = replace(base_options(argparse.Namespace(**{**vars(args), "tiny": True}), S),
                   tc_probes=None, k=6)  # fmt: skip
    synth = S.build_synthetic_model("tiny", 42, args.device)
    torch.manual_seed(1)
    xs = [synth.sample(opts.batch_size) for _ in range(30)]
    log = {}
    for name in CHECKED:
        trs = [S.VariantTrainer(variant(S, name, opts), synth, opts, 0, None) for _ in range(2)]
        trs[1]._graphed = lambda: False  # the same step, eager
        rec = {}
        for i, x in enumerate(xs):
            for tr in trs:
                tr.step(x)
            if i in (0, 29):
                p, f = (tr.model.state_dict() for tr in trs)
                rec[f"max_abs_diff_{i + 1}"] = max(
                    float((p[k].double() - f[k].double()).abs().max()) for k in p
                )
        rec["graphed"] = trs[0].graph is not None
        rec["since_fired_equal"] = bool(torch.equal(trs[0].since_fired, trs[1].since_fired))
        log[name] = rec
        print(name, json.dumps(rec), flush=True)
    (out / "equal.json").write_text(json.dumps(log, indent=1))


def reference(args, out: Path, t_start: float) -> None:
    from implicit_em.eval import synthetic as S

    dev = args.device
    log: dict = {"args": vars(args)}
    opts = base_options(args, S, eval_samples=4_000 if args.tiny else 200_000)
    v = variant(S, args.ref_variant, opts)
    t = time.perf_counter()
    synth = S.build_synthetic_model(opts.recipe, 42, dev)
    gt = synth.feature_dict.feature_vectors.detach()
    log.update(build_seconds=time.perf_counter() - t, true_l0=S._true_l0(synth),
               gt_checksum=S.model_checksum(synth))  # fmt: skip
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    S._POOL = ProcessPoolExecutor(4, multiprocessing.get_context("spawn"),
                                  initializer=S._pool_init,
                                  initargs=(gt.float().cpu().numpy(),))  # fmt: skip
    B, total = opts.batch_size, opts.steps
    tr = S.VariantTrainer(v, synth, opts, 0, None)
    log["untrained_mcc"] = S._mcc(S.directions(tr.model)[0].clone(), gt)
    scale = 1.0 if not args.tiny else 600 * 128 / 200e6  # the tiny run's milestones
    marks = {math.ceil(m * scale / B): m * scale for m in MILESTONES}
    snaps, deadline = [], t_start + args.budget - REF_RESERVE
    torch.manual_seed(0)
    if args.sampler_device:
        # the same recipe and seed built again on the sampling device: the same model, checked
        # by its checksum; its chunks are drawn there by a thread and copied to `dev`
        try:
            other = S.background_sampler_model(opts, synth, args.sampler_device)
        except ValueError as e:
            raise SystemExit(str(e)) from None
        log.update(sampler_device=args.sampler_device,
                   sampler_gt_checksum=S.model_checksum(other))  # fmt: skip
        torch.manual_seed(0)
        sample = S.BackgroundSampler(other, opts.sample_chunk, dev)
    else:
        sample = S.ChunkedSampler(synth, opts.sample_chunk, prefetch=True)

    def write(final: bool) -> None:
        done = [{k: (v.result() if hasattr(v, "result") and (final or v.done()) else
                     None if hasattr(v, "result") else v) for k, v in s.items()}
                for s in snaps]  # fmt: skip
        rec = {k: v for k, v in log.items() if k != "untrained_mcc"}
        u = log["untrained_mcc"]
        rec["untrained_mcc"] = u.result() if hasattr(u, "result") else u
        (out / "ref.json").write_text(json.dumps({**rec, "snapshots": done}, indent=1))

    t0, step = time.perf_counter(), 0
    while step < total and time.perf_counter() < deadline:
        tr.step(sample(B))
        step += 1
        if step in marks:
            _sync(dev)
            snap = {"step": step, "samples": step * B, "seconds": time.perf_counter() - t0,
                    "threshold": float(tr.model.threshold),
                    "mcc": S._mcc(S.directions(tr.model)[0].clone(), gt)}  # fmt: skip
            snaps.append(snap)
            print(json.dumps({k: v for k, v in snap.items() if k != "mcc"}), flush=True)
            write(False)
    _sync(dev)
    sample.close()
    log.update(steps=step, samples=step * B, train_seconds=time.perf_counter() - t0,
               graphed=tr.graph is not None)  # fmt: skip
    if step not in marks:
        snaps.append({"step": step, "samples": step * B, "seconds": log["train_seconds"],
                      "threshold": float(tr.model.threshold),
                      "mcc": S._mcc(S.directions(tr.model)[0].clone(), gt)})  # fmt: skip
    print(f"trained {step} steps ({step * B} samples) in {log['train_seconds']:.1f} s", flush=True)
    write(True)
    torch.save({"W_dec": tr.model.W_dec.detach().half().cpu(),
                "threshold": tr.model.threshold.detach().cpu()}, out / "ref_sae.pt")  # fmt: skip
    t = time.perf_counter()
    log["trained"] = S._resolve(S.score_model(tr.model, tr.variant, synth, opts, None, 0))
    log["eval_seconds"] = time.perf_counter() - t
    log["snapshots"] = snaps
    log = S._resolve(log)
    (out / "ref.json").write_text(json.dumps(log, indent=1))
    print("snapshots", json.dumps([(s["samples"], s["mcc"]) for s in log["snapshots"]]))
    print(json.dumps({k: v for k, v in log["trained"].items() if k != "random_at_l0"}))
    print("random@L0", json.dumps(log["trained"]["random_at_l0"]))
    S._POOL.shutdown()


def rows(args, out: Path, t_start: float) -> None:
    from implicit_em.eval import synthetic as S

    reserve = ROWS_RESERVE if args.reserve is None else args.reserve
    max_seconds = args.budget - reserve - (time.perf_counter() - t_start)
    if max_seconds <= 0:  # the run would train nothing and report its init as "trained"
        raise SystemExit(f"--budget {args.budget} leaves no training time after --reserve "
                         f"{reserve} and {time.perf_counter() - t_start:.0f} s of start-up: "
                         "raise --budget or lower --reserve")  # fmt: skip
    seeds = tuple(args.seed_list) if args.seed_list else tuple(range(args.seeds))
    names = tuple(args.variants) if args.variants else ROWS if not args.tiny else ROWS[:6]
    opts = base_options(
        args,
        S,
        variants=names,
        seeds=seeds,
        seed_variants=None if args.variants else SEEDED,
        shared_stream=True,
        one_stream=True,
        mcc_workers=12,
        out_dir=str(out / "rows"),
        max_seconds=max_seconds,
        sampler_device=args.sampler_device,
    )
    if args.plain_step:  # centred and pre-trained variants: the fast step does not cover them
        opts = replace(opts, fast_step=False)
    if args.steps:  # a fixed length (matching an earlier run), --budget still the limit
        opts = replace(opts, steps=args.steps)
    if args.latents:  # another width (the issue asks K = 4096 and 16384); k stays 25
        opts = replace(opts, latents=args.latents)
    if args.tiny:
        opts = replace(opts, k=6, mcc_workers=1)
    S.TIME_SAFETY = 0.97  # no pre-trained rows: max_seconds stops training in any case
    try:
        S.run(opts)
    except S.NoTrainingTime as e:  # one line, no results written
        raise SystemExit(f"{e}: raise --budget or lower --reserve") from None


def driver(args, out: Path) -> None:
    here, procs = Path(__file__).resolve(), []
    gpus = torch.cuda.device_count()
    for i, role in enumerate(("ref", "rows")):
        if role == "rows":  # the graph-equality check first, on the rows' GPU (seconds)
            cmd = [sys.executable, str(here), str(out), "--role", "equal"]
            cmd += ["--sae-lens-src", args.sae_lens_src] if args.sae_lens_src else []
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(i)} if gpus >= 2 else None
            with open(out / "equal.log", "w") as f:
                subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, check=False)
        cmd = [sys.executable, str(here), str(out), "--role", role, "--budget", str(args.budget),
               "--recipe", args.recipe, "--seeds", str(args.seeds), "--t-start",
               str(time.time()), "--ref-variant", args.ref_variant]  # fmt: skip
        if args.sae_lens_src:
            cmd += ["--sae-lens-src", args.sae_lens_src]
        if args.tiny:
            cmd.append("--tiny")
        env = dict(os.environ)
        if gpus >= 2:
            env["CUDA_VISIBLE_DEVICES"] = str(i)
        f = open(out / f"{role}.log", "w")
        procs.append((role, subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env), f))
    for role, p, f in procs:
        p.wait()
        f.close()
        print(role, "exit", p.returncode, flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out_dir")
    p.add_argument("--role", default="driver", choices=("driver", "check", "equal", "ref", "rows"))
    p.add_argument("--budget", type=float, default=540.0)
    p.add_argument("--seeds", type=int, default=1, help="seeds of the SEEDED rows")
    add_worker_args(p)
    p.add_argument("--ref-variant", default="batchtopk-k25",
                   help="the reference's variant (batchtopk-k25-sl-all: sae-lens's protocol, "
                        "docs/eval/synthetic/harness-gap.md)")  # fmt: skip
    p.add_argument("--sampler-device", default=None,
                   help="ref and rows roles: draw the samples on this device (e.g. cuda:1) in a "
                        "background thread and copy them to --device (harness-gap.md)")  # fmt: skip
    p.add_argument("--variants", nargs="+", default=None, metavar="VARIANT",
                   help="rows role: these variants (names of eval.options.VARIANTS) instead "
                        "of ROWS")  # fmt: skip
    p.add_argument("--seed-list", nargs="+", type=int, default=None,
                   help="rows role: these seeds (each its own init; one stream, the first's) "
                        "instead of range(--seeds)")  # fmt: skip
    p.add_argument("--steps", type=int, default=None,
                   help="rows role: train this many steps (if --budget allows) instead of "
                        "what fits in --budget")  # fmt: skip
    p.add_argument("--plain-step", action="store_true",
                   help="rows role: the plain (eager) step instead of the graphed fast step, "
                        "for centred and pre-trained variants, which the fast step does not "
                        "cover")  # fmt: skip
    p.add_argument("--reserve", type=float, default=None,
                   help="rows role: seconds of --budget kept for scoring (default 60; width "
                        "16,384 needs more: each MCC is a 16,384 x 16,384 Hungarian matching, "
                        "~32 s on one CPU core for random directions)")  # fmt: skip
    p.add_argument("--latents", type=int, default=None,
                   help="rows role: this width (latents) instead of 4,096 (64 with --tiny), "
                        "e.g. 16384 for the issue's second K")  # fmt: skip
    args = p.parse_args()
    if args.reserve is not None and (not 0 <= args.reserve < args.budget or args.role != "rows"):
        p.error(f"--reserve {args.reserve}: seconds kept for scoring, >= 0 and below --budget "
                f"({args.budget}), for --role rows only")  # fmt: skip
    if args.latents is not None and (args.latents < 1 or args.role != "rows"):
        p.error(f"--latents {args.latents}: a positive width, for --role rows only")
    if args.variants:  # checked before any GPU work (a typo used to surface minutes later)
        from implicit_em.eval.options import VARIANTS

        unknown = [v for v in args.variants if v not in VARIANTS]
        if unknown:
            names = ", ".join(unknown)
            p.error(f"unknown variant(s) {names}: see implicit_em.eval.options.VARIANTS")
        from implicit_em.eval.synthetic import fast_step_covers

        slow = [v for v in args.variants if not fast_step_covers(VARIANTS[v])]
        if slow and args.role == "rows" and not args.plain_step:
            p.error(
                f"{', '.join(slow)}: centred or pre-trained, which the fast step does not "
                "cover; add --plain-step (or run them in a process of their own with it)"
            )
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.role == "driver":
        driver(args, out)
        return
    t_start = worker_setup(args)
    if args.role == "check":
        check(args, out)
    elif args.role == "equal":
        equal(args, out)
    elif args.role == "ref":
        reference(args, out, t_start)
    else:
        rows(args, out, t_start)


if __name__ == "__main__":
    main()
