"""Training-step throughput at SAE scale: decoder-free Encoder vs TopKSAE vs StandardSAE.

One workload for every line: K latents, D inputs, batch B (default K = 16384, D = 576,
B = 4096, SmolLM2-135M's residual width), Adam, the library's own step (`training.loss_terms`
weighted by `training.term_weights`, as `train_epoch` runs it). Random N(0, 1) inputs unless
--acts names a harvest. Reports per model: tokens/s, step time, counted matmul FLOPs and the
achieved TFLOP/s next to a plain torch.matmul of the (B, D) @ (D, K) shape, and peak GPU memory;
for the Encoder also the share of the step spent in the InfoMax penalties (variance +
correlation), measured two ways: the step minus an LSE-only step, and the penalties' own
forward + backward on fixed codes.

    python benchmarks/bench_scale.py                       # GPU if present, else a tiny CPU smoke run
    python benchmarks/bench_scale.py --amp bf16 --out bench.json
    python benchmarks/bench_scale.py --amp bf16 --compile compiled --fused   # fused vs reference

--fused runs each encoder twice, with the fused InfoMax kernels (`implicit_em.kernels`, mode
"on", rows "+fused") and with the pure-PyTorch reference (mode "off", rows "+ref"); without it
the mode is the environment's (IMPLICIT_EM_FUSED, default auto: fused on CUDA). Each row also
reports the share of the step in all three InfoMax terms (lse, var, tc: their forward +
backward on fixed codes, in the dtype the step feeds them) and the time of the step's matmuls
alone, run as plain torch.matmul calls of the same shapes and dtypes (`matmul_bound_ms`).
--bf16-gram adds the exact encoder with its Gram in bf16 (row "encoder+fused_bf16gram");
--skip leaves rows out by name (e.g. encoder+ref); --stats-variants adds sketched rows with
other layouts of the statistics pass.

--interleave W (issue 19, round 8) builds and compiles every row once in the process, then
times W-step windows of the rows in turn, --windows per row, the rows' order turning by one
each cycle: per window the wall-clock and CUDA-event time per step, the settings it ran under
(each row keeps its own compiled step; its layout and fold are set before each of its windows)
and anything TorchDynamo compiled or the cudagraph trees recorded meanwhile.

--whole-graph (issue 19, round 9; GPU only) captures each row's whole step (forward, loss,
backward and Adam, made capturable) in one CUDA graph and replays it on each next batch
(`GraphStep`), so the host issues one replay a step; with --compile compiled the forward and
loss are compiled in --compile-mode default (reduce-overhead's own CUDA graphs cannot sit
inside the capture).

The encoder's wr metric (paper Eq. 8, weight 0 by default, computed under no_grad): --wr
logged (default) leaves it out of the timed step, as the scale trainer runs it
(`distributed.train_steps` computes it only on the steps it logs, outside the step); --wr step
computes it in every step, as `train_epoch` does (it logs each epoch's mean of every step's
wr; the rows of the issue-19 rounds 1-3). Every encoder row says which (`wr_in_step`, and a
"wr in step" column of the closing table); a variant ending in +wr or -wr overrides it.

Matmul FLOPs counted (2 m n k each; elementwise work not counted):
  Encoder: linear fwd + grad W = 4BDK; Gram U U^T fwd + its one-matmul bwd = 4 B^2 K (B < K).
  TopKSAE: encoder fwd + grad W + grad x (b_dec) = 6BDK; dense decode fwd + bwd = 6BDK;
           AuxK decode of the dead latents, dense, = 6BDK (computed every step).
  StandardSAE: encoder 4BDK + decoder 6BDK.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import time

import torch

from implicit_em.atomic import atomic_write_bytes
from implicit_em.config import LossConfig
from implicit_em.families.encoder import bias_fold, matmul_fold
from implicit_em.kernels import fused_active, fused_mode
from implicit_em.kernels import infomax as fused_impl
from implicit_em.losses import (
    correlation_probes,
    infomax_terms,
)
from implicit_em.models import Encoder, StandardSAE, TopKSAE
from implicit_em.train.loop import (
    loss_terms,
    model_type,
    optimizer_step,
    term_weights,
)


def _triton_kernels():
    """implicit_em.kernels.triton_infomax, or a stand-in holding STATS without Triton."""
    from types import SimpleNamespace

    from implicit_em.kernels import triton_available

    if not triton_available():
        return SimpleNamespace(STATS={}, GRAD={})
    from implicit_em.kernels import triton_infomax

    return triton_infomax


def _config(c) -> dict:
    """A triton.Config as a plain dict: its kernel arguments (BM, BK, ...), warps and stages."""
    return {**c.kwargs, "num_warps": c.num_warps, "num_stages": c.num_stages}


def autotune_picks() -> dict:
    """The tile configuration each autotuned Triton kernel of `triton_infomax` picked, read
    from the autotuner objects (`triton.runtime.autotuner.Autotuner`): per kernel, `picked`
    maps each autotuning key (the key arguments' values and the tensors' dtypes, as a string)
    to the configuration chosen for it in this process so far; `last` is the configuration of
    the kernel's latest launch (`best_config`), `held` how many configurations it may choose
    from (1 with IMPLICIT_EM_AUTOTUNE=0 or under the interpreter) and `timings` the ms per
    configuration of its latest tuning (Triton's `configs_timings`; absent when it never
    timed, e.g. one configuration). {} without Triton or before any launch."""
    tk = _triton_kernels()
    out = {}
    for name, k in sorted(vars(tk).items()):
        if not (hasattr(k, "cache") and hasattr(k, "configs") and hasattr(k, "fn")):
            continue  # not an autotuner
        best = getattr(k, "best_config", None)
        if not k.cache and best is None:
            continue  # never launched in this process
        row = {"picked": {str(key): _config(c) for key, c in k.cache.items()},
               "last": _config(best) if best is not None else None, "held": len(k.configs)}  # fmt: skip
        timings = getattr(k, "configs_timings", None)
        if timings:
            row["timings"] = {json.dumps(_config(c)): t if isinstance(t, float) else list(t)
                              for c, t in timings.items()}  # fmt: skip
        out[name] = row
    return out


def pick_device(name: str) -> torch.device:
    """--device: "auto" is the GPU when there is one, else the CPU; anything else as given."""
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(auto if name == "auto" else name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of fn() after `warmup` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    tic = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - tic) / steps


WHOLE_GRAPH_WARMUP = 3
WHOLE_GRAPH_NOT_RO = ("--whole-graph captures the whole step itself: use --compile-mode default "
                      "(reduce-overhead records CUDA graphs of its own)")  # fmt: skip
"""The one line that refuses --whole-graph with reduce-overhead (`make_step` and `main`)."""
"""Steps a whole-step graph runs eagerly on a side stream before its capture (the compile,
Triton's autotuning, cuBLAS's workspaces and Adam's state all happen there, not in the
capture)."""


class GraphStep:
    """One training step captured whole in a CUDA graph (forward, loss, backward and the
    optimizer's step) and replayed on each next batch: the "whole-network capture" of
    PyTorch's CUDA-graph notes (`torch.cuda.graph`), for issue 19's host-time question.

    once(x): one eager (or torch.compile'd, without CUDA graphs of its own) step on the (B, D)
    batch x, with a capturable optimizer. x_batches: the batches served in turn, each copied
    into one static (B, D) input before a replay. The first call runs WHOLE_GRAPH_WARMUP steps
    of `once` on a side stream, captures one, then replays it: the first call trains
    warmup + 1 steps, every later call one. cuda: what makes the graph, the capture and the
    streams (CUDAGraph, graph, Stream, stream, current_stream); torch.cuda by default, a
    stand-in in the CPU tests. Raises ValueError when the batches are not CUDA tensors and no
    stand-in is given."""

    def __init__(self, once, x_batches, cuda=None) -> None:
        if cuda is None and x_batches[0].device.type != "cuda":
            raise ValueError("a whole-step CUDA graph needs CUDA tensors: run on a GPU, or "
                             "leave out --whole-graph")  # fmt: skip
        self.once, self.x_batches, self.cuda = once, x_batches, cuda or torch.cuda
        self.static_x = x_batches[0].clone()  # (B, D): the address the graph reads
        self.graph = None
        self.i = 0

    def _build(self) -> None:
        c = self.cuda
        side, main = c.Stream(), c.current_stream()
        side.wait_stream(main)
        with c.stream(side):
            for _ in range(WHOLE_GRAPH_WARMUP):
                self.once(self.static_x)
        main.wait_stream(side)
        self.graph = c.CUDAGraph()
        with c.graph(self.graph):
            self.once(self.static_x)

    def __call__(self) -> None:
        self.static_x.copy_(self.x_batches[self.i % len(self.x_batches)])
        self.i += 1
        if self.graph is None:
            self._build()
        self.graph.replay()


def make_step(model, x_batches, loss: LossConfig, amp: bool, lse_only: bool = False,
              compile: str | None = None, with_wr: bool = True, whole_graph: bool = False):  # fmt: skip
    """A closure running one training step of the library's trainer on the next batch.

    compile: a torch.compile mode ("default", "reduce-overhead", ...) for the forward and
    loss (everything before backward); None runs them eagerly. with_wr=False: without the
    encoder's zero-weight wr metric, which `train_epoch` computes every step (it logs its
    epoch mean) and `distributed.train_steps` only on the steps it logs. whole_graph: the
    whole step (forward, loss, backward, Adam) captured in one CUDA graph (`GraphStep`), with
    Adam capturable; compile then must not be "reduce-overhead" (its own CUDA graphs cannot
    sit inside another capture). Raises ValueError for that, and off CUDA (`GraphStep`).
    """
    if whole_graph and compile == "reduce-overhead":
        raise ValueError(WHOLE_GRAPH_NOT_RO)
    kind = model_type(model)
    weights = term_weights(kind, loss, model.hidden_dim)
    device = x_batches[0].device  # fused Adam on GPUs, as distributed.train_steps runs it
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=device.type == "cuda",
                           capturable=whole_graph and device.type == "cuda")  # fmt: skip
    dead = torch.zeros(model.hidden_dim, dtype=torch.bool, device=x_batches[0].device)
    it = {"i": 0}

    def objective(x):
        if lse_only:
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
                a = model(x)[0]  # (B, K)
            return -torch.logsumexp(-a.float(), dim=1).sum()
        terms = loss_terms(model, x, loss, dead if kind == "topk_sae" else None, amp,
                           with_wr=with_wr)  # fmt: skip
        return sum(weights[k] * terms[k] for k in weights if k in terms)

    fn = torch.compile(objective, mode=compile) if compile else objective
    if whole_graph:
        return GraphStep(lambda x: optimizer_step(model, opt, fn(x)), x_batches)

    def step() -> None:
        x = x_batches[it["i"] % len(x_batches)]
        it["i"] += 1
        optimizer_step(model, opt, fn(x))

    return step


def infomax_fn(loss: LossConfig, k: int):
    """All three InfoMax terms (lse + var + tc) of codes a (B, K) as the step computes them."""

    def terms(a):
        probes = None if loss.tc_probes is None else correlation_probes(k, loss.tc_probes, a)
        return sum(infomax_terms(a, probes, loss.variance_eps))

    return terms


def gram_rows(B: int, blocks: int) -> list[tuple[int, int]]:
    """(rows, columns) of each forward Gram product of the exact penalty with `blocks` row
    blocks (`kernels.infomax._GramBlocked`): block i times the rows from its start on."""
    step = -(-B // max(1, blocks))
    return [(min(i + step, B) - i, B - i) for i in range(0, B, step)]


def matmul_shapes(kind: str, B: int, D: int, K: int, probes: int | None, exact: bool,
                  blocks: int = 1):  # fmt: skip
    """(m, k, n, dtype-kind) of each matmul in one step: "amp" ones run in the autocast
    dtype, "codes" ones in the dtype the InfoMax terms read the codes in, "f32" in float32.
    blocks: the exact penalty's forward Gram in that many row blocks."""
    if kind == "encoder":
        mm = [(B, D, K, "amp"), (K, B, D, "amp")]  # z = x W^T; grad W = dz^T x
        if probes is not None:  # a (s V), a^T P forward; a (s R), a^T Q backward
            mm += [(B, K, probes, "codes"), (K, B, probes, "codes")] * 2
        elif exact and B < K:  # Gram U U^T forward (its upper block rows), (U U^T) U backward
            mm += [(r, K, c, "f32") for r, c in gram_rows(B, blocks)] + [(B, B, K, "f32")]
        elif exact:
            mm += [(K, B, K, "f32")] * 3
        return mm
    enc = [(B, D, K, "amp"), (K, B, D, "amp")]
    dec = [(B, K, D, "amp"), (B, D, K, "amp"), (D, B, K, "amp")]  # decode, grad z, grad W_dec
    if kind == "topk_sae":
        return enc + [(B, K, D, "amp")] + dec * 2  # grad x (b_dec); dense AuxK decode too
    return enc + dec


def matmul_flops(kind: str, B: int, D: int, K: int, probes: int | None = None,
                 blocks: int = 1) -> float:  # fmt: skip
    if kind == "encoder":
        if probes is not None:  # a V and a^T P forward, their gradients backward
            return 4 * B * D * K + 10 * B * K * probes
        if B < K:  # the forward Gram's upper block rows, the backward's (B, B) @ (B, K)
            fwd = 2 * K * sum(r * c for r, c in gram_rows(B, blocks))
            return 4 * B * D * K + fwd + 2 * B * B * K
        return 4 * B * D * K + 6 * B * K * K
    if kind == "topk_sae":
        return 18 * B * D * K
    return 10 * B * D * K


def plain_matmuls(shapes, amp: bool, codes_bf16: bool, steps: int, warmup: int, device):
    """ms of the given matmuls (see matmul_shapes) as plain torch.matmul calls, in sequence."""
    dt = {"amp": torch.bfloat16 if amp else torch.float32, "f32": torch.float32,
          "codes": torch.bfloat16 if codes_bf16 else torch.float32}  # fmt: skip
    pairs = [(torch.randn(m, k, device=device, dtype=dt[t]),
              torch.randn(k, n, device=device, dtype=dt[t])) for m, k, n, t in shapes]  # fmt: skip

    def run() -> None:
        for x, y in pairs:
            torch.matmul(x, y)

    return 1e3 * timed(run, steps, warmup, device)


def measure(build, loss: LossConfig, comp, args, x_batches, amp: bool, device,
            with_wr: bool = True, isolated: bool = True) -> dict:  # fmt: skip
    """One model's row: step time, tokens/s, FLOPs, the matmul bound, peak memory and, for the
    encoder, the InfoMax terms' share of the step (unless not isolated). with_wr: see
    `make_step`. The step is timed args.repeats times in a row (args.steps steps each, the
    warm-up before the first only): `step_ms_repeats` holds each, `step_ms` their median."""
    B, D, K = args.B, args.D, args.K
    torch._dynamo.reset()  # the fused mode is read at trace time: trace each model afresh
    model = build().to(device)
    kind = model_type(model)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    step = make_step(model, x_batches, loss, amp, compile=comp, with_wr=with_wr,
                     whole_graph=args.whole_graph)  # fmt: skip
    reps = [timed(step, args.steps, args.warmup if i == 0 else 0, device)
            for i in range(max(1, args.repeats))]  # fmt: skip
    t = sorted(reps)[len(reps) // 2]  # the median (of an odd count; the upper middle if even)
    exact = kind == "encoder" and loss.tc_probes is None
    blocks = fused_impl.EXACT["blocks"] if exact and fused_active(x_batches[0]) else 1
    flops = matmul_flops(kind, B, D, K, loss.tc_probes, blocks)
    row = {
        "tokens_per_s": B / t,
        "step_ms": 1e3 * t,
        "step_ms_repeats": [1e3 * r for r in reps],
        "matmul_gflop_per_step": flops / 1e9,
        "achieved_tflops": flops / t / 1e12,
        "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30
        if device.type == "cuda"
        else None,
    }
    a = model(x_batches[0])[0].detach()  # (B, K)
    fused = kind == "encoder" and fused_active(a)
    codes_bf16 = fused and amp  # the fused kernels read the bf16 codes as they are
    shapes = matmul_shapes(kind, B, D, K, loss.tc_probes, kind == "encoder", blocks)
    if fused and fused_impl.EXACT["gram"] == "bfloat16":  # the Gram's matmuls run in bf16
        shapes = [(m, k, n, "codes" if t == "f32" else t) for m, k, n, t in shapes]
    row["matmul_bound_ms"] = plain_matmuls(shapes, amp, codes_bf16, args.steps, args.warmup,
                                           device)  # fmt: skip
    row["step_over_matmul_bound"] = row["step_ms"] / row["matmul_bound_ms"]
    if kind == "encoder":
        row["infomax_path"] = "fused" if fused else "reference"
        row["wr_in_step"] = with_wr  # the wr metric computed in each step
        row["bias_fold"] = bias_fold(model, loss, x_batches[0])  # the step's choice
        row["matmul_fold"] = matmul_fold(model, loss, x_batches[0])
    if kind == "encoder" and isolated and args.isolated:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            a = model(x_batches[0])[0].detach()
        a = (a if codes_bf16 else a.float()).requires_grad_(True)
        terms = infomax_fn(loss, K)
        terms = torch.compile(terms, mode=comp) if comp else terms

        def infomax(a=a, terms=terms) -> None:
            terms(a).backward()
            a.grad = None

        t_im = timed(infomax, args.steps, args.warmup, device)
        row["infomax_ms_isolated"] = 1e3 * t_im
        row["infomax_fraction_isolated"] = t_im / t
        if not args.fused:  # the older measure, by difference with an LSE-only step
            lse_step = make_step(model, x_batches, loss, amp, lse_only=True, compile=comp)
            t_lse = timed(lse_step, args.steps, args.warmup, device)
            row["lse_only_step_ms"] = 1e3 * t_lse
            row["penalty_fraction_by_difference"] = (t - t_lse) / t
    del model
    return row


WR_LINES = {
    "logged": "not in the timed step (computed only on logged steps, outside the step, as "
              "distributed.train_steps does)",
    "step": "computed in every timed step (as train_epoch does)",
}  # fmt: skip


def wr_setting(fused: str | None, default: str) -> tuple[bool, bool]:
    """(wr computed in the timed step, whether the row's variant chose it) for a row's fused
    tag (e.g. "on-stats512s+wr") and --wr's value ("logged" or "step")."""
    for suffix, inside in (("-wr", False), ("+wr", True)):
        if fused and fused.endswith(suffix):
            return inside, True
    return default == "step", False


def parse_variant(var: str) -> tuple[dict, int | None, dict]:
    """(statistics layout for `triton_infomax.STATS` ({} = the default), gradient strip rows
    or None, updates of `kernels.infomax.FOLD` ({} = the default; /b0, /b1: the bias fold
    off or on; /mm, /mmc: the matmul fold with the Triton GEMM or cuBLAS's ReLU epilogue)) of a --stats-variants entry such as
    "512s/g256/b0+wr" (the wr suffix is `wr_setting`'s). SystemExit with one line on an unknown part, or on rows the
    kernels cannot take (`triton_infomax.rows_problem`: statistics rows a positive multiple
    of each tile height at or below them, gradient rows 0 or such a multiple; without Triton
    `_rows_sign`: statistics rows > 0, gradient rows >= 0)."""
    layout, *opts = var.removesuffix("-wr").removesuffix("+wr").split("/")
    stats, grad_rows, fold = {}, None, {}
    form = "write LAYOUT[/gR][/b0|/b1|/mm|/mmc][+wr|-wr], e.g. 512s/g256/b0+wr"
    try:
        if layout:
            stats = {"rows": int(layout.removesuffix("s")), "shift": layout.endswith("s")}
        for opt in opts:
            if opt in ("b0", "b1"):
                fold["bias"] = opt == "b1"
            elif opt in ("mm", "mmc"):  # the matmul fold's forward: Triton GEMM / cuBLAS
                fold["matmul"] = "triton" if opt == "mm" else "cublas"
            elif opt.startswith("g"):
                grad_rows = int(opt[1:])
            else:
                raise ValueError(opt)
    except ValueError:
        raise SystemExit(f"--stats-variants: cannot read {var!r}: {form}") from None
    check = getattr(_triton_kernels(), "rows_problem", _rows_sign)
    for why in (stats and check(stats["rows"]), grad_rows is not None and check(grad_rows, True)):
        if why:
            raise SystemExit(f"--stats-variants: cannot use {var!r}: {why}; {form}")
    return stats, grad_rows, fold


def _rows_sign(rows: int, grad: bool = False) -> str | None:
    """`rows_problem`'s stand-in without Triton: statistics rows > 0, gradient rows >= 0."""
    if rows > 0 or (grad and rows == 0):
        return None
    what, bound = ("gradient strip", ">= 0") if grad else ("statistics", "> 0")
    return f"{what} rows {rows} must be {bound}"


def ordered(models: dict, order: str) -> dict:
    """models re-ordered as the comma-separated names in `order` list them. SystemExit with
    one line unless every row is named exactly once."""
    names = order.split(",")
    if sorted(names) != sorted(models):
        raise SystemExit(f"--order: name every row once, in the order to run them; rows: "
                         f"{','.join(models)}; given: {order}")  # fmt: skip
    return {n: models[n] for n in names}


def write_json(res: dict, path: str) -> None:
    """res as JSON at path, atomically (`implicit_em.atomic`: a temporary file beside it, then
    renamed): a process killed mid-write (its time limit) leaves the previous complete JSON."""
    atomic_write_bytes(path, json.dumps(res, indent=1).encode())


@contextlib.contextmanager
def row_settings(fused: str | None):
    """Apply a row's kernel settings for the duration of the block, then restore the previous
    ones: its fused tag (None: the environment's mode; "on", "off"; "on-bf16gram[N]": the exact
    penalty's bf16 Gram, in N row blocks; "on-stats" + a --stats-variants entry: the layout in
    `triton_infomax.STATS` / `GRAD` and the bias fold in `kernels.infomax.FOLD`) sets the fused
    mode, `kernels.infomax.EXACT` and those dicts. The fused mode, FOLD and STATS["rows"] are
    read when the step is traced (TorchDynamo guards on them), STATS["shift"] and GRAD when
    the kernels launch (or a CUDA graph records them): a row's step must run under its own
    settings both when compiled and when timed."""
    tk = _triton_kernels()
    saved = [(d, dict(d)) for d in (tk.STATS, getattr(tk, "GRAD", {}), fused_impl.FOLD,
                                    fused_impl.EXACT)]  # fmt: skip
    try:
        if fused and fused.startswith("on-bf16gram"):
            fused_impl.EXACT["gram"] = "bfloat16"
            if fused != "on-bf16gram":  # e.g. on-bf16gram1: 1 block
                fused_impl.EXACT["blocks"] = int(fused.removeprefix("on-bf16gram"))
        else:
            fused_impl.EXACT["gram"] = "float32"
        if fused and fused.startswith("on-stats"):  # e.g. on-stats256s/g0/b0+wr, see --help
            layout, grad_rows, fold = parse_variant(fused.removeprefix("on-stats"))
            tk.STATS.update(layout)
            if grad_rows is not None:
                tk.GRAD.update(rows=grad_rows)
            fused_impl.FOLD.update(fold)
        with fused_mode((fused or "auto").split("-")[0]):
            yield
    finally:
        for d, old in saved:
            d.clear()
            d.update(old)


def compile_counts(device: torch.device) -> dict:
    """Counts so far in this process: frames TorchDynamo converted ("frames": each first
    compile or recompile of a function; a call that hits a cached entry adds nothing), graphs
    it produced ("graphs"), CUDA graphs TorchInductor's cudagraph trees recorded on the device
    ("cudagraphs": nodes of its trees, one per recording, a re-recording included), the
    re-recordings it counted as unexpected ("cudagraph_rerecords") and the functions it ran
    without CUDA graphs ("cudagraph_skips"). A count this torch does not keep is None (and
    the CUDA-graph ones off CUDA)."""
    out = dict.fromkeys(("frames", "graphs", "cudagraphs", "cudagraph_rerecords",
                         "cudagraph_skips"))  # fmt: skip
    try:  # a defaultdict of collections.Counter: a key not yet counted reads 0
        from torch._dynamo.utils import counters
    except ImportError:
        return out
    out["frames"], out["graphs"] = counters["frames"]["total"], counters["stats"]["unique_graphs"]
    if device.type != "cuda":
        return out
    out["cudagraph_skips"] = counters["inductor"]["cudagraph_skips"]
    try:
        from torch._inductor import cudagraph_trees

        mgr = cudagraph_trees.get_manager(device.index or 0, create_if_none_exists=False)
        if mgr is None:  # nothing recorded on this device yet
            out["cudagraphs"] = out["cudagraph_rerecords"] = 0
            return out
        nodes = [n for roots in mgr.roots.values() for n in roots]
        seen = 0
        while nodes:
            node = nodes.pop()
            seen += 1
            nodes += [c for cs in node.children.values() for c in cs]
        out["cudagraphs"] = seen
        out["cudagraph_rerecords"] = sum(sum(f.values()) for f in mgr.num_rerecord.values())
    except (AttributeError, ImportError, TypeError):  # another torch's internals
        pass
    return out


def time_window(step, steps: int, device: torch.device) -> dict:
    """ms per step of `steps` calls of step(), synchronized before and after: "wall_ms" (host
    clock, sync to sync), "issue_ms" (host clock until the last call returned, before the
    final sync: near wall_ms when the host, not the GPU, sets the pace) and "gpu_ms" (CUDA
    events recorded on the stream before the first and after the last call: the GPU's time
    over the window, idle gaps included; None off CUDA)."""
    events = None
    if device.type == "cuda":
        events = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
    sync(device)
    tic = time.perf_counter()
    if events:
        events[0].record()
    for _ in range(steps):
        step()
    issued = time.perf_counter()
    if events:
        events[1].record()
    sync(device)
    toc = time.perf_counter()
    return {"wall_ms": 1e3 * (toc - tic) / steps, "issue_ms": 1e3 * (issued - tic) / steps,
            "gpu_ms": events[0].elapsed_time(events[1]) / steps if events else None}  # fmt: skip


def rotation(names: list[str], cycles: int) -> list[list[str]]:
    """The rows' order in each cycle: `names` rotated by one more each cycle (cycle c starts
    with names[c % len(names)]), so every row runs in every position. Within a cycle each row
    follows its predecessor in the cyclic order `names`; the row opening cycle c + 1 follows
    cycle c's last row, the one two places before it in that order (with D X F L: F follows X
    within a cycle, D when F opens one)."""
    return [[names[(c + i) % len(names)] for i in range(len(names))] for c in range(cycles)]


def interleave(models: dict, args, x_batches, amp: bool, device, mode: str,
               comp: str | None, res: dict) -> None:  # fmt: skip
    """--interleave: every row built and compiled once in this process (in the rows' order,
    each under its own settings, `row_settings`, with args.warmup steps), one untimed cycle,
    then args.windows cycles of `rotation`, each row timed for args.interleave steps per cycle
    (`time_window`). Per window: the row, cycle and slot, the times, the settings active while
    it ran (STATS, FOLD, GRAD, the fused path, the step's bias fold) and what TorchDynamo and
    the cudagraph trees compiled or recorded during it (`compile_counts`: 0 expected, as every
    row's step was compiled before). res gets "interleave" (windows, per-row build, counts) and
    "models" (per row, step_ms = the median window's wall_ms); the JSON at args.out is written
    after the build and after every cycle, so a process stopped by a time limit keeps them."""
    torch._dynamo.reset()  # once: the rows' compiled steps live side by side from here on
    names, tk = list(models), _triton_kernels()
    it = {"window_steps": args.interleave, "windows_per_row": args.windows, "warmup": args.warmup,
          "recompile_limit": getattr(torch._dynamo.config, "recompile_limit", None),
          "cycles": rotation(names, args.windows), "rows": {}, "windows": []}  # fmt: skip
    res["interleave"] = it
    steps, models_built = {}, {}

    def settings(name: str) -> dict:
        build, loss, fused = models[name]
        model = models_built[name]
        row = {"stats_pass": dict(tk.STATS), "grad_pass": dict(getattr(tk, "GRAD", {})),
               "fold": dict(fused_impl.FOLD), "fused_active": fused_active(x_batches[0])}  # fmt: skip
        if model_type(model) == "encoder":
            row["bias_fold"] = bias_fold(model, loss, x_batches[0])
            row["matmul_fold"] = matmul_fold(model, loss, x_batches[0])
        return row

    def save() -> None:
        if args.out:
            write_json(res, args.out)

    for name in names:  # build and compile each row once
        build, loss, fused = models[name]
        with_wr = wr_setting(fused, args.wr)[0]
        before = compile_counts(device)
        with row_settings(fused):
            tic = time.perf_counter()
            models_built[name] = build().to(device)
            steps[name] = make_step(models_built[name], x_batches, loss, amp, compile=comp,
                                    with_wr=with_wr, whole_graph=args.whole_graph)  # fmt: skip
            for _ in range(max(1, args.warmup)):
                steps[name]()
            sync(device)
            row = {"build_s": time.perf_counter() - tic, "wr_in_step": with_wr,
                   "settings": settings(name)}  # fmt: skip
        row["counts"] = diff_counts(before, compile_counts(device))
        it["rows"][name] = row
        print(f"interleave built {name}: {json.dumps(row)}", flush=True)
    it["counts_after_build"] = compile_counts(device)
    save()
    it["untimed"] = []  # the first cycle, in the rows' order: not used by any summary
    for c, cycle in enumerate([names, *it["cycles"]]):
        for slot, name in enumerate(cycle):
            before = compile_counts(device)
            gc0 = sum(g["collections"] for g in gc.get_stats())
            with row_settings(models[name][2]):
                win = time_window(steps[name], args.interleave, device)
                win["settings"] = settings(name)
            win["gc_collections"] = sum(g["collections"] for g in gc.get_stats()) - gc0
            win["counts"] = diff_counts(before, compile_counts(device))
            (it["windows"] if c else it["untimed"]).append(
                {"row": name, "cycle": c - 1, "slot": slot, **win})  # fmt: skip
        summarize_windows(res, mode)
        save()
    it["counts_end"] = compile_counts(device)
    it["triton_configs"] = autotune_picks()


def diff_counts(before: dict, after: dict) -> dict:
    """after - before per count of `compile_counts` (None where either is None)."""
    return {k: None if after[k] is None or before[k] is None else after[k] - before[k]
            for k in after}  # fmt: skip


def summarize_windows(res: dict, mode: str) -> None:
    """res["models"] from the interleaved windows so far: per row, step_ms the median window's
    wall_ms (the upper middle of an even count), gpu_ms the median of its GPU times (None off
    CUDA), the windows' wall_ms in order and the row's settings and build."""
    it = res["interleave"]
    B = res["shape"]["B"]
    for name, built in it["rows"].items():
        wins = [w for w in it["windows"] if w["row"] == name]
        if not wins:
            continue
        wall = [w["wall_ms"] for w in wins]
        gpu = [w["gpu_ms"] for w in wins if w["gpu_ms"] is not None]
        t = sorted(wall)[len(wall) // 2]
        res["models"][f"{name}/{mode}"] = {
            "step_ms": t, "tokens_per_s": B / t * 1e3, "windows": len(wins),
            "gpu_ms": sorted(gpu)[len(gpu) // 2] if gpu else None,
            "step_ms_windows": wall, "wr_in_step": built["wr_in_step"],
            **{k: v for k, v in built["settings"].items() if k in ("bias_fold", "matmul_fold",
                                                                 "stats_pass")},
            "build_s": built["build_s"],
        }  # fmt: skip


def summary_table(res: dict) -> str:
    """A Markdown table of the rows: step ms, tokens/s, the ratio to the L1 SAE (standard_sae)
    and the TopK SAE of the same compile mode, whether the wr metric ran in the step and the
    bias fold was taken (encoder rows), and the InfoMax terms' isolated share."""
    head = ("| row | step ms | tokens/s | vs L1 SAE | vs TopK | wr in step | bias fold "
            "| InfoMax ms (share) |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    lines = [head]
    for key, row in res["models"].items():
        mode = key.rsplit("/", 1)[1]
        ref = {n.split("/")[0].split("_k")[0]: r for n, r in res["models"].items()
               if n.endswith(f"/{mode}")}  # fmt: skip
        ratio = [f"{row['tokens_per_s'] / ref[n]['tokens_per_s']:.2f}x" if n in ref else "-"
                 for n in ("standard_sae", "topk_sae")]  # fmt: skip
        wr, fold = ({True: "yes", False: "no"}.get(row.get(k), "-")
                    for k in ("wr_in_step", "bias_fold"))  # fmt: skip
        fold = "matmul" if row.get("matmul_fold") else fold  # it folds the bias too
        im = "-"
        if "infomax_ms_isolated" in row:
            share = 100 * row["infomax_fraction_isolated"]
            im = f"{row['infomax_ms_isolated']:.3f} ({share:.0f} %)"
        lines.append(f"| {key} | {row['step_ms']:.3f} | {row['tokens_per_s']:,.0f} | "
                     f"{ratio[0]} | {ratio[1]} | {wr} | {fold} | {im} |")  # fmt: skip
    return "\n".join(lines)


def run_rows(models: dict, modes: dict, args, x_batches, amp: bool, device, res: dict) -> None:
    """Each row in turn, every compile mode: `measure` under the row's settings (`row_settings`),
    its result in res["models"] (and the JSON at args.out, row by row)."""
    for mode, comp in modes.items():
        for name, (build, loss, fused) in models.items():
            with_wr, wr_override = wr_setting(fused, args.wr)
            with row_settings(fused):
                # a wr override changes nothing the isolated terms measure: not repeated
                row = measure(build, loss, comp, args, x_batches, amp, device, with_wr,
                              isolated=not wr_override)  # fmt: skip
                tk = _triton_kernels()
                row["exact_gram"], row["stats_pass"] = fused_impl.EXACT["gram"], dict(tk.STATS)
                row["grad_pass"] = dict(getattr(tk, "GRAD", {}))
                row["gram_blocks"] = fused_impl.EXACT["blocks"]
            row["position"] = len(res["models"])  # rows run before this one in the process
            row["triton_configs"] = autotune_picks()  # picks so far, this row's included
            res["models"][f"{name}/{mode}"] = row
            print(f"{name}/{mode}: {json.dumps(row)}", flush=True)
            if args.out:  # row by row, so that a process stopped by a time limit keeps its rows
                write_json(res, args.out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--K", type=int, default=16384)
    p.add_argument("--D", type=int, default=576)
    p.add_argument("--B", type=int, default=4096)
    p.add_argument("--topk", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=1,
                   help="time each step this many times in a row (--steps each); step_ms is "
                        "their median, step_ms_repeats lists them")  # fmt: skip
    p.add_argument(
        "--no-isolated",
        dest="isolated",
        action="store_false",
        help="skip the InfoMax terms timed alone (one compile less per encoder row)",
    )
    p.add_argument("--order", default="",
                   help="comma-separated row names (without /mode) in the order to run them; "
                        "must name every row once")  # fmt: skip
    p.add_argument("--interleave", type=int, default=0, metavar="W",
                   help="build and compile every row once, then time W-step windows of the "
                        "rows in turn (the rows' order, rotated by one each cycle), --windows "
                        "per row; each window's wall-clock and CUDA-event time per step, the "
                        "settings it ran under and any recompile (see `interleave`)")  # fmt: skip
    p.add_argument(
        "--windows", type=int, default=12, help="with --interleave: timed windows (cycles) per row"
    )
    p.add_argument("--amp", choices=("none", "bf16"), default="none")
    p.add_argument("--probes", type=int, default=32, help="tc_probes of the sketched encoder")
    p.add_argument("--compile", choices=("eager", "compiled", "both"), default="eager",
                   help="torch.compile the forward + loss of every model")  # fmt: skip
    p.add_argument("--compile-mode", default="default", help="torch.compile mode")
    p.add_argument("--device", default="auto")
    p.add_argument("--acts", default=None, help="harvest directory to draw batches from")
    p.add_argument(
        "--fused",
        action="store_true",
        help="run each encoder with the fused InfoMax kernels and with the reference",
    )
    p.add_argument(
        "--bf16-gram",
        action="store_true",
        help="with --fused: add an exact-encoder row with the bf16 Gram (kernels.infomax.EXACT)",
    )
    p.add_argument("--gram-blocks-variants", default="",
                   help="with --bf16-gram: more bf16-Gram rows with other numbers of row "
                        "blocks (kernels.infomax.EXACT['blocks']), e.g. 1 (the full Gram)")  # fmt: skip
    p.add_argument("--wr", choices=("logged", "step"), default="logged",
                   help="the encoder's zero-weight wr metric: 'logged' leaves it out of the "
                        "timed step (distributed.train_steps computes it only on logged steps), "
                        "'step' computes it in every step (train_epoch)")  # fmt: skip
    p.add_argument("--skip", default="", help="comma-separated row names to leave out")
    p.add_argument("--stats-variants", default="",
                   help="with --fused: more sketched rows with other statistics-pass layouts "
                        "(kernels.triton_infomax.STATS), e.g. 256,64s (rows; s: shifted sums); "
                        "/gR: the gradient pass in strips of R rows (kernels.triton_infomax."
                        "GRAD; 0: one tile per program), e.g. 512s/g256; /b0: without the bias "
                        "fold (kernels.infomax.FOLD: the bias in the encoder's matmul, its "
                        "gradient by autograd), e.g. 256/b0+wr (the v2 step); /mm: the matmul "
                        "fold (the encoder's matmul inside the statistics pass, "
                        "kernels.triton_matmul_stats), e.g. 512s/mm; /mmc: the matmul fold "
                        "with cuBLAS's ReLU epilogue writing the codes; "
                        "-wr / +wr: without / with the zero-weight wr metric in the step "
                        "(overrides --wr), e.g. 256/g0+wr; +wr alone: the default layouts "
                        "with wr in the step")  # fmt: skip
    p.add_argument(
        "--models",
        default=None,
        help="comma-separated subset of: encoder, encoder_sketch, topk_sae, standard_sae",
    )
    p.add_argument("--whole-graph", action="store_true",
                   help="capture each row's whole step (forward, loss, backward, Adam) in one "
                        "CUDA graph and replay it (GPU only; not with --compile-mode "
                        "reduce-overhead)")  # fmt: skip
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.whole_graph and (args.compile_mode == "reduce-overhead" and args.compile != "eager"):
        raise SystemExit(WHOLE_GRAPH_NOT_RO)
    if args.interleave and (args.compile == "both" or args.interleave < 1 or args.windows < 1):
        raise SystemExit("--interleave W: W >= 1 steps per window, --windows >= 1 and one "
                         "--compile mode (eager or compiled, not both)")  # fmt: skip
    device = pick_device(args.device)
    if args.whole_graph and device.type != "cuda":
        raise SystemExit(f"--whole-graph captures CUDA graphs: it needs a CUDA device, not "
                         f"{device}; leave it out on the CPU")  # fmt: skip
    if device.type == "cpu" and args.K == 16384:  # smoke-sized shapes on CPU
        args.K, args.D, args.B, args.steps, args.warmup = 512, 64, 128, 3, 1
    torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls on tensor cores (all models)
    amp = args.amp == "bf16"
    B, D, K = args.B, args.D, args.K
    torch.manual_seed(0)
    if args.acts:
        from implicit_em.data.lm.activations import Normalization, read_split

        x, _ = read_split(args.acts, "train", max_tokens=8 * B,
                          norm=Normalization.from_manifest(args.acts))  # fmt: skip
        x_batches = [c.to(device) for c in x.split(B) if len(c) == B]
        D = x.shape[1]
    else:
        x_batches = [torch.randn(B, D, device=device) for _ in range(4)]
    exact, sketch = LossConfig(), LossConfig(tc_probes=args.probes)
    args.D = D
    models = {  # name -> (builder, loss, fused mode)
        "encoder": (lambda: Encoder(D, K), exact, None),
        f"encoder_sketch{args.probes}": (lambda: Encoder(D, K), sketch, None),
        f"topk_sae_k{args.topk}": (lambda: TopKSAE(D, K, args.topk), exact, None),
        "standard_sae": (lambda: StandardSAE(D, K), exact, None),
    }
    if args.models:  # "encoder_sketch" selects encoder_sketch32, "topk_sae" topk_sae_k32
        keep = args.models.split(",")
        models = {n: m for n, m in models.items()
                  if any(n == k or n.removeprefix(k).lstrip("_k").isdigit() for k in keep)}  # fmt: skip
    if args.fused:
        models = {
            f"{n}{tag}": (b, lo, mode)
            for n, (b, lo, _) in models.items()
            for tag, mode in (
                (("+fused", "on"), ("+ref", "off")) if n.startswith("encoder") else (("", None),)
            )
        }  # fmt: skip
        if args.bf16_gram and "encoder+fused" in models:
            models["encoder+fused_bf16gram"] = (*models["encoder+fused"][:2], "on-bf16gram")
            for n in filter(None, args.gram_blocks_variants.split(",")):
                models[f"encoder+fused_bf16gram[blocks={n}]"] = (
                    *models["encoder+fused"][:2], f"on-bf16gram{n}")  # fmt: skip
        for var in filter(None, args.stats_variants.split(",")):  # more sketched fused rows
            parse_variant(var)  # a bad one stops the run before any row
            for n in [n for n in models if n.startswith("encoder_sketch") and n.endswith("+fused")]:
                models[f"{n}[stats={var}]"] = (*models[n][:2], f"on-stats{var}")
    models = {n: m for n, m in models.items() if n not in args.skip.split(",")}
    if args.order:
        models = ordered(models, args.order)
    dtype = torch.bfloat16 if amp else torch.float32
    xa, wa = torch.randn(B, D, device=device, dtype=dtype), torch.randn(D, K, device=device,
                                                                        dtype=dtype)  # fmt: skip
    t_mm = timed(lambda: xa @ wa, args.steps * 5, args.warmup, device)
    mm_tflops = 2 * B * D * K / t_mm / 1e12
    res = {
        "compile_mode": args.compile_mode,
        "whole_graph": args.whole_graph,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "shape": {"B": B, "D": D, "K": K},
        "amp": args.amp,
        "tf32": True,
        "probes": args.probes,
        "data": args.acts or "random N(0,1)",
        "matmul_tflops": mm_tflops,
        "repeats": args.repeats,
        "autotune": os.environ.get("IMPLICIT_EM_AUTOTUNE", "1") != "0",
        "ops": fused_impl.OPS["kind"],  # the kernels' operators (IMPLICIT_EM_OPS; round 12)
        "row_order": list(models),
        "models": {},
    }
    res["wr"] = WR_LINES[args.wr]
    print(f"wr metric (encoder rows unless the row says otherwise): {res['wr']}", flush=True)
    modes = {"eager": None, "compiled": args.compile_mode}
    if args.compile != "both":
        modes = {args.compile: modes[args.compile]}
    if args.interleave:
        interleave(models, args, x_batches, amp, device, *next(iter(modes.items())), res)
    else:
        run_rows(models, modes, args, x_batches, amp, device, res)
    res["encoder_speedup"] = {}
    for key, row in res["models"].items():
        if key.startswith("encoder"):
            mode = key.split("/")[1]
            res["encoder_speedup"][key] = {
                n: row["tokens_per_s"] / r["tokens_per_s"]
                for n, r in res["models"].items()
                if n.endswith(f"/{mode}") and not n.startswith("encoder")
            }
    print(json.dumps(res, indent=1))
    print(summary_table(res))
    if args.out:
        write_json(res, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
