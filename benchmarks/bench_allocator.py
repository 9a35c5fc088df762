"""glibc's default malloc vs `allocator.keep_freed_memory` on the reproduction's CPU stacks.

Each setting runs in its own child process (malloc settings are per process), alternating
default / keep, `--repeats` times each; prints samples/s per stack and the keep/default
ratio of the medians, with each child's minor page faults. Workloads, MNIST, batch 128:

    encoder  N=23 decoder-free encoders, Adam, 3 data seeds (the ablation/dynamics stacks)
    topk     N=5 TopK SAEs (K=64, k=17), Adam, 5 seeds, 4 latents held dead (AuxK active)

    python benchmarks/bench_allocator.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

BATCH = 128


def child(mode: str, workload: str, steps: int, threads: int) -> dict:
    if mode == "keep":
        from implicit_em.allocator import keep_freed_memory

        assert keep_freed_memory(), "mallopt failed: not glibc?"
    import torch

    from implicit_em.config import from_dict
    from implicit_em.data import load_mnist
    from implicit_em.train.stacked import StackedTrainer

    torch.set_num_threads(threads)
    if workload == "encoder":
        n, seeds, model = 23, 3, {"type": "encoder", "hidden_dim": 64}
    else:
        n, seeds, model = 5, 5, {"type": "topk_sae", "hidden_dim": 64, "k": 17}
    cfgs = [
        from_dict({"model": {"input_dim": 784, **model},
                   "training": {"batch_size": BATCH, "lr": 1e-3, "seed": 1 + i % seeds}})
        for i in range(n)
    ]  # fmt: skip
    trainer = StackedTrainer(cfgs)
    x = load_mnist("train")[0][: (steps + 5) * BATCH]
    order = trainer.epoch_order(len(x), 0)

    def run(s0: int, s1: int) -> None:
        for s in range(s0, s1):
            if workload == "topk":
                trainer.since_fired[:, :4] = 10**6  # 4 dead latents per model: AuxK runs
            trainer.step(trainer.batch(x, order, s, BATCH))

    run(0, 5)  # warm-up
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tic = time.perf_counter()
    run(5, 5 + steps)
    seconds = time.perf_counter() - tic
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {"samples_per_s": n * steps * BATCH / seconds, "faults_per_step": faults / steps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    p.add_argument("--steps", type=int, default=150, help="timed steps per child")
    p.add_argument("--repeats", type=int, default=2, help="children per setting and workload")
    p.add_argument("--child", nargs=2, metavar=("MODE", "WORKLOAD"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.steps, args.threads)))
        return
    print(f"CPU, {args.threads} torch threads, {args.steps} steps per child, batch {BATCH}")
    for workload in ("encoder", "topk"):
        got: dict[str, list[dict]] = {"default": [], "keep": []}
        for _ in range(args.repeats):
            for mode in got:
                cmd = [sys.executable, __file__, "--child", mode, workload,
                       "--steps", str(args.steps), "--threads", str(args.threads)]  # fmt: skip
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                got[mode].append(json.loads(out.strip().splitlines()[-1]))
        med = {m: statistics.median(r["samples_per_s"] for r in rs) for m, rs in got.items()}
        for mode, rs in got.items():
            rates = ", ".join(f"{r['samples_per_s']:,.0f}" for r in rs)
            flt = statistics.median(r["faults_per_step"] for r in rs)
            print(f"{workload:8s} {mode:8s} samples/s {rates}  (minor faults/step {flt:,.0f})")
        print(f"{workload:8s} keep/default: {med['keep'] / med['default']:.2f}x")


if __name__ == "__main__":
    main()
