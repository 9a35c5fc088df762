"""The 16k GPU rows of issue 18 in one device call (docs/eval/synthetic/gpu16k.md, whose plan
was fixed before the run): three processes side by side on one GPU.

- ref: the harness check against the published SynthSAEBench-16k number (BatchTopK, width
  4,096, k = 25, batch 1,024, Adam 3e-4 constant, 200 M samples: SAELens docs
  `docs/synth_sae_bench.md`, "Quickstart" and "Raw results ... L0 = 25"). Before training it
  times where a step goes (sae-lens sampling per batch against sampling in chunks, and the
  training step alone). MCC snapshots at fixed sample counts (matchings in 2 workers).
- head: the headline rows, 3 seeds, all models in lockstep (`run` with shared_stream).
- extra: the one-seed rows (sweeps, levers, L0 sweep), in lockstep.

usage: python scripts/synthetic_gpu16k.py OUT_DIR [--sae-lens-src sl] [--budget 250]
       [--recipe synthsaebench-16k-v2] [--role driver|ref|head|extra] [--tiny]

--budget: seconds from the driver's start after which every process stops training (the
reference gets 25 s more; it has one model to score). --tiny: the CI recipe and sizes, to
test the whole path on a CPU. Each process writes its log and JSON under OUT_DIR as it goes.
"""

import argparse
import json
import math
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

HEAD = ("encoder", "topk", "batchtopk", "tied-topk-im-3.0", "topk-pretrained", "topk-half")
EXTRA = ("matryoshka", "jumprelu-0.01", "jumprelu-0.1", "jumprelu-1.0", "l1-0.1", "l1-1.0",
         "l1-10.0", "tied-topk", "encoder-wr", "encoder-centred", "batchtopk-k15",
         "batchtopk-k34")  # fmt: skip
MILESTONES = (2.5e6, 5e6, 10e6, 25e6, 50e6, 100e6, 150e6, 200e6)  # samples


def base_options(args, S):
    big = dict(recipe=args.recipe, latents=4096, k=25, batch_size=1024, lr=3e-4,
               steps=48_828, eval_samples=50_000, untrained_samples=10_000,
               sample_chunk=32_768)  # fmt: skip
    if args.tiny:
        big = dict(recipe="tiny", latents=64, k=6, batch_size=128, lr=3e-4, steps=400,
                   eval_samples=4_000, untrained_samples=1_000, sample_chunk=1_024)  # fmt: skip
    return S.SyntheticEvalOptions(**big, device=args.device, log_every=2000, plot=False,
                                  lstsq=False, gradient_shares=False)  # fmt: skip


def reference(args, out: Path, t_start: float) -> None:
    from implicit_em.eval import synthetic as S

    dev = args.device
    log: dict = {"args": vars(args)}
    opts = replace(base_options(args, S), variants=("batchtopk-k25",), eval_samples=200_000)
    if args.tiny:
        opts = replace(opts, eval_samples=4_000, k=6)
    v = replace(S.VARIANTS["batchtopk-k25"], k=opts.k)
    t = time.perf_counter()
    synth = S.build_synthetic_model(opts.recipe, 42, dev)
    gt = synth.feature_dict.feature_vectors.detach()
    log.update(build_seconds=time.perf_counter() - t, true_l0=S._true_l0(synth),
               gt_checksum=S.model_checksum(synth))  # fmt: skip
    # where a step goes: sae-lens sampling per batch, sampling in chunks, the step alone
    B, C = opts.batch_size, opts.sample_chunk
    tr = S.VariantTrainer(v, synth, opts, 99, None)
    x = synth.sample(B)
    for _ in range(5):
        tr.step(synth.sample(B))
    chunked = S.ChunkedSampler(synth, C)
    prof = {
        "sample_per_batch_s": _timed(lambda: synth.sample(B), 20, dev),
        "sample_in_chunks_per_batch_s": _timed(lambda: synth.sample(C), 3, dev) * B / C,
        "train_step_s": _timed(lambda: tr.step(x), 50, dev),
        "loop_step_old_s": _timed(lambda: tr.step(synth.sample(B)), 20, dev),
        "loop_step_chunked_s": _timed(lambda: tr.step(chunked(B)), 200, dev),
    }
    from implicit_em.families.batchtopk_sae import batch_topk

    z = torch.relu(tr.model.pre_activations(x)).detach()  # (B, K)
    prof["batch_topk_alone_s"] = _timed(lambda: batch_topk(z, v.k), 50, dev)
    tk = S.VariantTrainer(replace(S.VARIANTS["topk-k25"], k=v.k), synth, opts, 99, None)
    prof["topk_train_step_s"] = _timed(lambda: tk.step(x), 50, dev)
    enc = S.VariantTrainer(S.VARIANTS["encoder"], synth, opts, 99, None)
    prof["encoder_train_step_s"] = _timed(lambda: enc.step(x), 50, dev)
    log["profile"] = prof
    print("profile", json.dumps(prof), flush=True)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    S._POOL = ProcessPoolExecutor(2, multiprocessing.get_context("spawn"),
                                  initializer=S._pool_init,
                                  initargs=(gt.float().cpu().numpy(),))  # fmt: skip
    total = math.ceil(200e6 / B) if not args.tiny else 2000
    opts = replace(opts, steps=total)
    tr = S.VariantTrainer(v, synth, opts, 0, None)
    untrained = S._mcc(S.directions(tr.model)[0].clone(), gt)
    marks = {math.ceil(m / B): m for m in MILESTONES} if not args.tiny else {500: 0, 1000: 0}
    snaps, deadline = [], t_start + args.budget + 25
    torch.manual_seed(0)
    sample = S.ChunkedSampler(synth, C)
    t0, step = time.perf_counter(), 0
    while step < total and time.perf_counter() < deadline:
        tr.step(sample(B))
        step += 1
        if step in marks or step % 20_000 == 0:
            _sync(dev)
            snap = {"step": step, "samples": step * B, "seconds": time.perf_counter() - t0,
                    "threshold": float(tr.model.threshold)}  # fmt: skip
            if step in marks:
                snap["mcc"] = S._mcc(S.directions(tr.model)[0].clone(), gt)
            snaps.append(snap)
            print(json.dumps({k: v for k, v in snap.items() if k != "mcc"}), flush=True)
    _sync(dev)
    log.update(steps=step, samples=step * B, train_seconds=time.perf_counter() - t0)
    if step not in marks:
        snaps.append({"step": step, "samples": step * B, "seconds": log["train_seconds"],
                      "mcc": S._mcc(S.directions(tr.model)[0].clone(), gt)})  # fmt: skip
    print(f"trained {step} steps ({step * B} samples) in {log['train_seconds']:.1f} s", flush=True)
    torch.save({"W_dec": tr.model.W_dec.detach().half().cpu(),
                "threshold": tr.model.threshold.detach().cpu()}, out / "ref_sae.pt")  # fmt: skip
    t = time.perf_counter()
    res = S.score_model(tr.model, tr.variant, synth, opts, None, 0)
    log.update(snapshots=snaps, untrained_mcc=untrained, trained=res)
    log = S._resolve(log)
    log["eval_seconds"] = time.perf_counter() - t
    (out / "ref.json").write_text(json.dumps(log, indent=1))
    print("snapshots", json.dumps([(s["samples"], s.get("mcc")) for s in log["snapshots"]]))
    print(json.dumps({k: v for k, v in log["trained"].items() if k != "random_at_l0"}))
    print("random@L0", json.dumps(log["trained"]["random_at_l0"]))
    S._POOL.shutdown()


def group(args, out: Path, t_start: float, variants, seeds, workers: int) -> None:
    from implicit_em.eval import synthetic as S

    opts = replace(base_options(args, S), variants=variants, seeds=seeds, shared_stream=True,
                   mcc_workers=workers, out_dir=str(out / args.role),
                   max_seconds=args.budget - (time.perf_counter() - t_start))  # fmt: skip
    S.run(opts)


def driver(args, out: Path) -> None:
    here = Path(__file__).resolve()
    procs = []
    for role in ("ref", "head", "extra"):
        cmd = [
            sys.executable,
            str(here),
            str(out),
            "--role",
            role,
            "--budget",
            str(args.budget),
            "--recipe",
            args.recipe,
            "--device",
            args.device,
            "--t-start",
            str(time.time()),
        ]
        if args.sae_lens_src:
            cmd += ["--sae-lens-src", args.sae_lens_src]
        if args.tiny:
            cmd.append("--tiny")
        f = open(out / f"{role}.log", "w")
        procs.append((role, subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT), f))
    for role, p, f in procs:
        p.wait()
        f.close()
        print(role, "exit", p.returncode, flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out_dir")
    p.add_argument("--role", default="driver", choices=("driver", "ref", "head", "extra"))
    p.add_argument("--budget", type=float, default=250.0)
    add_worker_args(p)
    args = p.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.role == "driver":
        driver(args, out)
        return
    t_start = worker_setup(args)
    if args.role == "ref":
        reference(args, out, t_start)
    elif args.role == "head":
        group(args, out, t_start, HEAD, (0, 1, 2), 4)
    else:
        group(args, out, t_start, EXTRA, (0,), 4)


if __name__ == "__main__":
    main()
