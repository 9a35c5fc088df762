"""Operations per stacked training step, default step against the opt-in fused step, side by side.

For the reproduction's encoder stacks (Adam N=23 on 5 data seeds, SGD N=12 on 3, MNIST,
batch 128, K = 64; the stacks of `benchmarks/profile_stacked.py`) counts, with torch.profiler,
the operations one `StackedTrainer.train_step` dispatches, for the whole step and for its
optimizer update alone:
  default  the step as CUDA runs it by default (tensor-only Adam, `fused_adam = False`; the
           closed-form terms as `encoder_terms_grad`'s torch operations);
  fused    `fused_step=True` (IMPLICIT_EM_FUSED_STEP=1): torch's fused multi-tensor Adam and
           each block's terms as one Triton kernel (`kernels.triton_stacked_v2`; round 3
           counted v1, one program per model, removed since: one launch a block either way).
On the CPU these counts are a PROXY for the GPU's kernel launches, not a measurement of them:
an operation counts once if it is not a metadata-only one (views, reshapes, empty allocations)
and no counted operation runs below it in the dispatch tree (a matrix product counts besides
the copies below it), a `_foreach_*` / `_fused_*` operation counts once as a whole (one multi-tensor launch on CUDA for the tensors here), and
each Triton kernel call counts once (on the CPU it runs in Triton's interpreter, set below
before anything imports Triton, and the operations it runs there are not counted).
The GPU's own count (`benchmarks/profile_stacked.py --device cuda`) was 203 kernels per step
for the Adam stack with the default step (docs/benchmarks.md).

    python benchmarks/count_step_ops.py
"""

from __future__ import annotations

import argparse
import os
from collections import Counter

os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports Triton

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile, record_function  # noqa: E402

from implicit_em.config import from_dict  # noqa: E402
from implicit_em.data import load_mnist  # noqa: E402
from implicit_em.train.stacked import StackedTrainer  # noqa: E402

BATCH = 128
STACKS = {
    "encoder-adam": (23, 5, "adam"),
    "encoder-sgd": (12, 3, "sgd"),
    "encoder-adam-repro": (23, [1, 2, 3] * 7 + [4, 5], "adam"),
    "encoder-ours": (5, [1, 2, 3, 4, 5], "adam"),
    "encoder-adam-rest": (18, [1, 2, 3] * 6, "adam"),
}
"""name -> (N, data seeds: a count, model i on seed 1 + i % count, or each model's seed;
optimizer). The last three are the reproduce's Adam stack as it is by default and split
under IMPLICIT_EM_SPLIT_URGENT=1 (`profile_stacked.STACKS` says how)."""
METADATA = {
    "aten::view", "aten::reshape", "aten::_reshape_alias", "aten::as_strided", "aten::empty",
    "aten::empty_like", "aten::empty_strided", "aten::unsqueeze", "aten::squeeze",
    "aten::permute", "aten::t", "aten::transpose", "aten::expand", "aten::select",
    "aten::slice", "aten::detach", "aten::alias", "aten::resolve_conj", "aten::resolve_neg",
    "aten::unbind", "aten::split", "aten::lift_fresh", "aten::_unsafe_view", "aten::numpy_T",
    "aten::mT", "aten::unflatten", "aten::flatten", "detach", "aten::item",
    "aten::_local_scalar_dense", "aten::is_nonzero", "aten::result_type", "aten::view_as",
    "aten::expand_as", "aten::set_", "aten::requires_grad_",
}  # fmt: skip
GEMMS = {"aten::baddbmm", "aten::bmm", "aten::addmm", "aten::mm"}
KERNEL = "triton: kernels.triton_stacked_v2._strip_kernel"


def build(name: str, fused_step: bool) -> StackedTrainer:
    n, seeds, opt = STACKS[name]
    seed = seeds if isinstance(seeds, list) else [1 + i % seeds for i in range(n)]
    cfgs = [
        from_dict({"model": {"type": "encoder", "input_dim": 784, "hidden_dim": 64},
                   "training": {"batch_size": BATCH, "optimizer": opt, "lr": 1e-3,
                                "seed": seed[i]}})
        for i in range(n)
    ]  # fmt: skip
    tr = StackedTrainer(cfgs, "cpu", fused_step=fused_step)
    tr.fused_adam = False  # the default step as CUDA graphs capture it
    return tr


def launches(prof) -> Counter:
    """Operations that stand for a GPU launch each (see the module doc), by name."""
    out: Counter = Counter()

    def walk(ev) -> int:  # returns how many it counted in ev's subtree
        name = ev.name
        if name == KERNEL or name.startswith(("aten::_foreach_", "aten::_fused_")):
            out[name] += 1  # one launch as a whole, whatever it runs inside
            return 1
        below = sum(walk(c) for c in ev.cpu_children)
        own = name.startswith("aten::") and name not in METADATA
        if own and (below == 0 or name in GEMMS):  # a GEMM runs besides its children's copies
            out[name] += 1
            return below + 1
        return below

    for ev in prof.events():
        if ev.cpu_parent is None:
            walk(ev)
    return out


def count(name: str, fused_step: bool, x: torch.Tensor) -> tuple[Counter, Counter]:
    """(launch proxies of one whole step, of its optimizer update alone), after a warm-up."""
    from implicit_em.kernels import triton_stacked_v2

    tr = build(name, fused_step)
    order = tr.epoch_order(len(x), 0)
    kernel = triton_stacked_v2.block_terms_grad_v2

    def labelled(*args):
        with record_function(KERNEL):
            return kernel(*args)

    triton_stacked_v2.block_terms_grad_v2 = labelled
    try:
        for s in range(2):  # warm-up (gradient buffers, cached lists, Triton's first launch)
            tr.train_step(tr.batch(x, order, s, BATCH))
        xb = tr.batch(x, order, 2, BATCH)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            tr.train_step(xb)
        with profile(activities=[ProfilerActivity.CPU]) as prof_opt:
            tr.optim.step()
    finally:
        triton_stacked_v2.block_terms_grad_v2 = kernel
    return launches(prof), launches(prof_opt)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--stacks", nargs="+", default=list(STACKS), choices=list(STACKS))
    p.add_argument("--top", type=int, default=0, help="also list the N commonest operations")
    args = p.parse_args()
    torch.set_num_threads(1)
    x = load_mnist("train")[0]
    print(f"torch {torch.__version__}, CPU; operations per step (a proxy for GPU kernel launches)")
    print(f"{'stack':24s} {'':8s} {'default':>8s} {'fused':>8s}")
    for name in args.stacks:
        (d_all, d_opt), (f_all, f_opt) = count(name, False, x), count(name, True, x)
        n = STACKS[name][0]
        print(f"{name + f' N={n}':24s} {'step':8s} {d_all.total():8d} {f_all.total():8d}")
        print(f"{'':24s} {'optim':8s} {d_opt.total():8d} {f_opt.total():8d}")
        rest_d, rest_f = d_all.total() - d_opt.total(), f_all.total() - f_opt.total()
        print(f"{'':24s} {'rest':8s} {rest_d:8d} {rest_f:8d}")
        if args.top:
            for label, c in (("default", d_all), ("fused", f_all)):
                print(f"  {label}: " + ", ".join(f"{k} {v}" for k, v in c.most_common(args.top)))


if __name__ == "__main__":
    main()
