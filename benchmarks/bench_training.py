"""Training and probe throughput: the plain one-model loop vs the stacked N-model trainer.

One workload for every line: MNIST, the decoder-free encoder with K=64 (784 -> 64), batch 128,
Adam lr 1e-3 (the paper's protocol), a fixed number of optimizer steps per model. Prints
samples/s (summed over the models of a stack) and ratios, which are what to compare across
runs on shared, noisy machines:

    stacked N / plain = the speed-up over running N plain loops one after the other.

Each stack is timed with every model on its own data seed (no batch shared: the worst case)
and, with --shared-seeds S, with the models spread over S seeds as in the reproduction
(configs x learning rates x 3 seeds), where models of one seed share one matmul.

Then the linear-probe time on 64-dim codes of MNIST (60k train / 10k test by default) and,
with --raw-pixels, on the 784 raw pixels: the torch L-BFGS probe vs scikit-learn's
StandardScaler + LogisticRegression. With --reproduce, last, the wall time of the whole
`implicit-em reproduce` at paper scale on each device (a child process, its own output
directory; about 30 minutes on a 2-core CPU), with its report's table of stage times.

    python benchmarks/bench_training.py --threads 2                 # CPU (and CUDA if present)
    python benchmarks/bench_training.py --device cpu --steps 30 --n 1 12 24 51
    python benchmarks/bench_training.py --device cpu --no-probe --n 24 --reproduce
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from implicit_em import runs
from implicit_em.config import from_dict
from implicit_em.data import load_mnist
from implicit_em.data.batches import TensorBatches
from implicit_em.metrics import linear_probe_accuracy
from implicit_em.probe import torch_probe_accuracy
from implicit_em.train.loop import make_optimizer, train_epoch
from implicit_em.train.stacked import StackedTrainer

BATCH, K = 128, 64


def config(seed: int, device: str):
    return from_dict({
        "model": {"type": "encoder", "input_dim": 784, "hidden_dim": K},
        "training": {"batch_size": BATCH, "lr": 1e-3, "optimizer": "adam", "seed": seed,
                     "epochs": 1, "device": device},
    })  # fmt: skip


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def bench_plain(x: torch.Tensor, steps: int, device: str) -> tuple[float, torch.nn.Module]:
    """Samples/s of training.train_epoch over exactly `steps` steps (after one warm-up epoch)."""
    cfg = config(1, device)
    model = runs.build_model(cfg).to(device)
    opt = make_optimizer(model, "adam", cfg.training.lr)
    batches = TensorBatches(x[: steps * BATCH], None, BATCH, shuffle=True, seed=1)
    warm = TensorBatches(x[: 3 * BATCH], None, BATCH, shuffle=True, seed=1)
    train_epoch(model, warm, opt, cfg.loss)
    sync(device)
    tic = time.perf_counter()
    train_epoch(model, batches, opt, cfg.loss)  # reads the epoch means once, at the end
    sync(device)
    return steps * BATCH / (time.perf_counter() - tic), model


def bench_stacked(
    x: torch.Tensor, n_models: int, steps: int, device: str, n_seeds: int | None = None
) -> float:
    """Samples/s (all models together) of StackedTrainer.step (its hot path: CUDA graphs on GPUs).

    n_seeds: distinct data seeds in the stack (model i gets seed 1 + i % n_seeds); default
    n_models, every model its own data order (the worst case: no batch is shared).
    """
    n_seeds = n_seeds or n_models
    cfgs = [config(1 + i % n_seeds, device) for i in range(n_models)]
    trainer = StackedTrainer(cfgs, device)
    n = steps * BATCH
    order = trainer.epoch_order(n, 0)  # (S, n)
    xs = x[:n]

    def run(n_steps: int) -> None:
        sums = None
        for s in range(n_steps):
            total = trainer.step(trainer.batch(xs, order, s, BATCH))["total"]  # xb (S, B, D)
            sums = total if sums is None else sums + total
        sums.tolist()  # one host sync, as StackedTrainer.fit does per epoch

    run(5)  # warm-up (and CUDA-graph capture)
    sync(device)
    tic = time.perf_counter()
    run(steps)
    sync(device)
    return n_models * n / (time.perf_counter() - tic)


def bench_probe(
    model: torch.nn.Module | None, device: str, n_train: int, n_test: int, sklearn: bool
) -> dict:
    """Probe on the model's codes, or on the raw pixels when model is None."""
    (xtr, ytr), (xte, yte) = load_mnist("train"), load_mnist("test")
    xtr, ytr, xte, yte = xtr[:n_train], ytr[:n_train], xte[:n_test], yte[:n_test]
    if model is None:
        ftr, fte = xtr.to(device), xte.to(device)  # (n, 784)
    else:
        model = model.to(device).eval()
        with torch.no_grad():
            ftr, fte = model.encode(xtr.to(device)), model.encode(xte.to(device))  # (n, 64)
    sync(device)
    tic = time.perf_counter()
    acc_t = torch_probe_accuracy(ftr, ytr, fte, yte)[0]
    sync(device)
    out = {"torch_s": time.perf_counter() - tic, "torch_acc": acc_t}
    if sklearn:
        tic = time.perf_counter()
        out["sklearn_acc"] = linear_probe_accuracy(ftr.cpu(), ytr, fte.cpu(), yte)
        out["sklearn_s"] = time.perf_counter() - tic
    return out


def bench_reproduce(device: str, threads: int) -> float:
    """Wall seconds of `implicit-em reproduce` (paper scale) in a child process; prints the
    report's stage table."""
    with tempfile.TemporaryDirectory(prefix="bench_reproduce_") as tmp:
        cmd = [sys.executable, "-m", "implicit_em.cli", "reproduce", "--device", device,
               "--threads", str(threads), "--quiet", "--out", tmp]  # fmt: skip
        tic = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - tic
        report = (Path(tmp) / "report.md").read_text()
    table = re.search(r"\| step \| wall time \(s\) \|\n(?:\|.*\|\n?)+", report)
    print(table.group(0).rstrip() if table else "(no stage table in the report)")
    return wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, or auto (cpu, then cuda if present)"
    )
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    p.add_argument("--steps", type=int, default=60, help="timed optimizer steps per model")
    p.add_argument("--n", type=int, nargs="+", default=[1, 12, 24, 51], help="stack sizes")
    p.add_argument(
        "--shared-seeds", type=int, default=3,
        help="also time each stack with this many distinct data seeds, models sharing them as "
        "in the reproduction (3 seeds x variants/learning rates); 0: skip",
    )  # fmt: skip
    p.add_argument("--probe-train", type=int, default=60000, help="probe training samples")
    p.add_argument("--probe-test", type=int, default=10000, help="probe test samples")
    p.add_argument("--no-probe", action="store_true", help="skip the probe timing")
    p.add_argument("--no-sklearn", action="store_true", help="time only the torch probe")
    p.add_argument("--raw-pixels", action="store_true", help="also time the raw-pixel probe")
    p.add_argument(
        "--reproduce", action="store_true",
        help="also time the whole `implicit-em reproduce` on each device (slow)",
    )  # fmt: skip
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    devices = [args.device] if args.device != "auto" else ["cpu"]
    if args.device == "auto" and torch.cuda.is_available():
        devices.append("cuda")
    x_cpu = load_mnist("train")[0]  # (60000, 784)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"cuda {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")  # fmt: skip
    print(f"workload: MNIST encoder 784 -> {K}, batch {BATCH}, Adam 1e-3, {args.steps} steps/model")
    for device in devices:
        x = x_cpu.to(device)
        plain, model = bench_plain(x, args.steps, device)
        print(f"\n[{device}] plain loop (training.train_epoch): {plain:12,.0f} samples/s")
        rates, shared = {}, {}
        for n_models in args.n:
            rates[n_models] = bench_stacked(x, n_models, args.steps, device)
            print(f"[{device}] stacked N={n_models:<3d} ({n_models} seeds): "
                  f"{rates[n_models]:12,.0f} samples/s  "
                  f"= {rates[n_models] / plain:5.2f}x N sequential plain loops")  # fmt: skip
            if args.shared_seeds and n_models > args.shared_seeds:
                r = bench_stacked(x, n_models, args.steps, device, args.shared_seeds)
                shared[n_models] = r
                print(f"[{device}] stacked N={n_models:<3d} ({args.shared_seeds} seeds): "
                      f"{r:12,.0f} samples/s  = {r / plain:5.2f}x N sequential plain loops")  # fmt: skip
        if 24 in rates:
            print(f"[{device}] ratio stacked N=24 / 24 sequential plain loops: "
                  f"{rates[24] / plain:.2f}x with 24 seeds"
                  + (f", {shared[24] / plain:.2f}x with {args.shared_seeds} seeds" if 24 in shared else "")
                  + " (target >= 3x on CPU)")  # fmt: skip
        if not args.no_probe:
            with_sklearn = not args.no_sklearn and device == devices[0]  # sklearn is CPU-only
            pr = bench_probe(model, device, args.probe_train, args.probe_test, with_sklearn)
            line = (f"[{device}] probe on {K}-dim codes, {args.probe_train}/{args.probe_test}: "
                    f"torch {pr['torch_s']:.2f} s (acc {pr['torch_acc']:.4f})")  # fmt: skip
            print(line + sklearn_part(pr))
        if args.raw_pixels:
            with_sklearn = not args.no_sklearn and device == devices[0]
            pr = bench_probe(None, device, args.probe_train, args.probe_test, with_sklearn)
            print(f"[{device}] probe on the 784 raw pixels, {args.probe_train}/{args.probe_test}: "
                  f"torch {pr['torch_s']:.2f} s (acc {pr['torch_acc']:.4f})" + sklearn_part(pr))  # fmt: skip
        if args.reproduce:
            wall = bench_reproduce(device, args.threads)
            print(f"[{device}] implicit-em reproduce (paper scale): {wall:.1f} s wall "
                  f"({wall / 60:.1f} min; target <= 30 min on the 2-core CPU, <= 2 min on one H100)")  # fmt: skip


def sklearn_part(pr: dict) -> str:
    if "sklearn_s" not in pr:
        return ""
    return (f", sklearn {pr['sklearn_s']:.2f} s (acc {pr['sklearn_acc']:.4f}), "
            f"sklearn/torch time {pr['sklearn_s'] / pr['torch_s']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
