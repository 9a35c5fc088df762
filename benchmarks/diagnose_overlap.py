"""Where the reproduction's training time goes on one GPU: each stack alone, side by side,
and beside the linear probe the evaluation runs (issue 19, MNIST reproduce).

The stacks are the reproduction's own (`experiments.reproduce.pretrain_all`'s configs: Adam
encoders N=23, SGD encoders N=12, standard SAEs N=5; TopK SAEs N=5 with k=17, the k of every
H200 run so far). For each stack, prints:
  fit     `StackedTrainer.fit` for --epochs epochs (eval at the last, no checkpoints), run
          twice (the first captures the graphs), wall per epoch of the second, and the mean
          host time of `_epoch` (the record's `seconds`: launching the epoch's work, which
          blocks once the launch queue is full);
  replay  ms per step of the 32-step CUDA graph replayed back to back (the GPU's time per
          step with no host work between replays).
Then the graphs replayed side by side from one thread (no Python between them: what the
GPU does with the stacks together), the Adam stack's replays at stream priority -1 beside
the others at 0, and the TopK stack's replays beside a torch probe of 8 feature sets fitted
in another thread (the evaluation's heaviest GPU work).

    PYTHONPATH=src python3 benchmarks/diagnose_overlap.py --epochs 3

Written in round 2 of the MNIST-reproduce work (docs/benchmarks.md) and not yet run on a GPU
(that round's device time was spent); its configs were checked on CPU.
"""

from __future__ import annotations

import argparse
import threading
import time

import torch

from implicit_em.experiments import reproduce
from implicit_em.experiments.common import load_data, run_id
from implicit_em.probe import torch_probe_accuracy
from implicit_em.train.stacked import STEPS_PER_GRAPH, StackedTrainer, group_configs


def configs(epochs: int) -> dict[str, list]:
    """The reproduction's stacks, each config with `epochs` epochs."""
    kw = dict(out="/tmp/diagnose", quick=False, device="cuda")
    cfgs = []
    for name in ("ablation", "benchmark", "dynamics"):
        s = reproduce._settings(name, **kw)
        if name == "ablation":
            cfgs += [s.config(u, {"training": {"seed": sd}})
                     for u in s.extra["variants"].values() for sd in s.seeds()]  # fmt: skip
        elif name == "benchmark":
            cfgs += [s.config(s.extra["variants"][v], {"training": {"seed": sd}})
                     for v in ("ours", "standard_sae") for sd in s.seeds()]  # fmt: skip
            topk = [s.config(s.extra["variants"]["topk_sae"],
                             {"model": {"k": 17}, "training": {"seed": sd}}) for sd in s.seeds()]  # fmt: skip
        else:
            cfgs += [s.config({"training": {"optimizer": o, "lr": lr, "seed": sd}})
                     for o in s.extra["optimizers"] for lr in s.extra["learning_rates"]
                     for sd in s.seeds()]  # fmt: skip
    unique = list({run_id(c): c for c in cfgs}.values())
    stacks = {}
    for g in group_configs(unique) + [list(range(len(unique), len(unique) + len(topk)))]:
        group = [(unique + topk)[i] for i in g]
        c = group[0]
        name = f"{c.model.type}-{c.training.optimizer} N={len(group)}"
        stacks[name] = [with_epochs(x, epochs) for x in group]
    return stacks


def with_epochs(cfg, epochs: int):
    from implicit_em.config import from_dict

    d = cfg.to_dict()
    d["training"]["epochs"] = epochs
    return from_dict(d)


def replays(trainers: list[StackedTrainer], n: int) -> float:
    """Wall seconds of n replays of each trainer's 32-step graph, issued round robin from
    this thread on each trainer's own stream."""
    torch.cuda.synchronize()
    tic = time.perf_counter()
    for _ in range(n):
        for t in trainers:
            with torch.cuda.stream(t.fit_stream):
                t._chunk[0].replay()
    torch.cuda.synchronize()
    return time.perf_counter() - tic


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--replays", type=int, default=30)
    args = p.parse_args()
    stacks = configs(args.epochs)
    data = load_data(next(iter(stacks.values()))[0], "cuda")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, {args.epochs} epochs")
    trainers = {}
    for name, cfgs in stacks.items():
        t = StackedTrainer(cfgs, "cuda")
        walls = []
        for _ in range(2):  # the first fit captures the graphs; the second is timed
            torch.cuda.synchronize()
            tic = time.perf_counter()
            with torch.cuda.stream(t.fit_stream):
                hist = t.fit(data.x_train, data.x_test, progress=False, eval_every=10)
            torch.cuda.synchronize()
            walls.append(time.perf_counter() - tic)
        wall = walls[-1]
        enq = [h["seconds"] for h in hist[0]]
        per_step = replays([t], args.replays) / (args.replays * STEPS_PER_GRAPH) * 1e3
        trainers[name] = t
        print(f"{name:26s} fit {wall / args.epochs * 1e3:7.1f} ms/epoch (first fit, with the "
              f"captures: {walls[0] / args.epochs * 1e3:.1f}), of which _epoch's host time "
              f"{sum(enq) / len(enq) * 1e3:6.1f} ms; "
              f"replay {per_step:.3f} ms/step ({per_step * 469:.0f} ms/epoch)")  # fmt: skip
    names = list(trainers)
    alone = {k: replays([trainers[k]], args.replays) for k in names}
    three = [trainers[k] for k in names[:3]]
    together = replays(three, args.replays)
    print(f"replays of the 3 training-step stacks: alone {', '.join(f'{alone[k]:.3f}' for k in names[:3])} s; "
          f"side by side {together:.3f} s (sum alone {sum(alone[k] for k in names[:3]):.3f})")  # fmt: skip
    hi = StackedTrainer(stacks[names[0]], "cuda", priority=-1)  # the same stack, captured at -1
    with torch.cuda.stream(hi.fit_stream):
        hi.fit(data.x_train, data.x_test, progress=False, eval_every=10)
    torch.cuda.synchronize()
    t_hi = replays([hi], args.replays)
    both = replays([hi, *three[1:]], args.replays)
    print(f"Adam stack at priority -1: alone {t_hi:.3f} s, beside the other two {both:.3f} s")
    # beside the probe: the TopK stack's replays while another thread fits 8 probes
    topk = trainers[names[3]]
    feats = torch.rand(8, 60000, 64, device="cuda")
    feats_t = torch.rand(8, 10000, 64, device="cuda")
    y, y_t = data.y_train.cuda(), data.y_test.cuda()
    tic = time.perf_counter()
    torch_probe_accuracy(feats, y, feats_t, y_t, max_iter=100)
    probe_alone = time.perf_counter() - tic
    done = {}

    def probe() -> None:
        tic = time.perf_counter()
        torch_probe_accuracy(feats, y, feats_t, y_t, max_iter=100)
        done["probe"] = time.perf_counter() - tic

    th = threading.Thread(target=probe)
    th.start()
    t_topk = replays([topk], args.replays * 3)
    th.join()
    print(f"TopK replays alone {alone[names[3]] * 3:.3f} s, beside the probe {t_topk:.3f} s; "
          f"probe (8 sets, 100 L-BFGS iterations) alone {probe_alone:.3f} s, beside {done['probe']:.3f} s")  # fmt: skip


if __name__ == "__main__":
    main()
