"""Each piece of the fused InfoMax terms on its own: kernels, the sketch's skinny products
(cuBLAS; --skinny adds the split-K Triton ones), the exact penalty's Gram matmuls (float32 vs
bf16), and the whole terms forward + backward, fused vs reference (exact penalty also with the
bf16 Gram; sketch also on pre-activations with ReLU's backward folded into the kernel).

Codes a (B, K) = ReLU(N(0, 1)) in bf16 (as the amp step feeds them) and float32; times in ms
(CUDA events around `--steps` calls after warm-up). Also the bytes of one read of a at the
GPU's measured copy bandwidth, the floor for any pass over the codes.

    python benchmarks/bench_infomax_kernels.py --compile-mode reduce-overhead --out kernels.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from implicit_em.kernels import fused_mode
from implicit_em.kernels import infomax as fused_impl
from implicit_em.losses import correlation_probes, infomax_terms

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: a smoke run (interpreter)


def timed_ms(fn, steps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    if DEVICE == "cpu":
        tic = time.perf_counter()
        for _ in range(steps):
            fn()
        return 1e3 * (time.perf_counter() - tic) / steps
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(steps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / steps


def graph_ms(fn, steps: int) -> float:
    """ms per call of fn() replayed from one CUDA graph of `steps` calls (no launch overhead:
    the kernels' own time, as in a reduce-overhead step). Warm-up (compile, autotune) first."""
    if DEVICE == "cpu":
        return timed_ms(fn, steps)
    fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(steps):
            fn()
    return timed_ms(graph.replay, 3, warmup=1) / steps


def measure_pieces(dtype: torch.dtype, args) -> dict:
    """Graph-replayed times (ms) of each statistics-pass layout (`triton_infomax.STATS`,
    with and without the ReLU write) and of each backward tile configuration."""
    from implicit_em.kernels import triton_infomax as tk

    B, K, m = args.B, args.K, args.probes
    a = torch.relu(torch.randn(B, K, device=DEVICE)).to(dtype)
    row: dict = {}
    saved = dict(tk.STATS)
    for rows, shift in ((64, False), (256, False), (64, True), (256, True), (512, True)):
        tk.STATS.update(rows=rows, shift=shift)
        tag = f"{rows}{'s' if shift else ''}"
        row[f"stats_{tag}"] = graph_ms(lambda: tk.stats_partials(a), args.steps)
        row[f"relu_stats_{tag}"] = graph_ms(lambda: tk.stats_partials(a, relu=True), args.steps)
        for cfg in tk.STATS_CONFIGS:
            if cfg["BM"] <= rows:
                name = f"relu_stats_{tag}_bm{cfg['BM']}_w{cfg['num_warps']}"
                row[name] = graph_ms(lambda c=cfg: tk.stats_partials(a, True, c), args.steps)
    tk.STATS.update(saved)
    _, row_lse, mean, _ = fused_impl.combine_stats(a)
    g, al, be = row_lse.clone(), mean.clone(), mean.clone()
    low = torch.randn(B, 2 * m, device=DEVICE).to(dtype)
    high = torch.randn(K, 2 * m, device=DEVICE).to(dtype)
    row["grad_autotuned"] = graph_ms(
        lambda: tk.grad(a, row_lse, g, al, be, mean, low, high, relu=True), args.steps
    )
    row["grad_no_lowrank_autotuned"] = graph_ms(
        lambda: tk.grad(a, row_lse, g, al, be, mean), args.steps
    )
    for cfg in tk.GRAD_CONFIGS:
        name = f"grad_bm{cfg['BM']}_bk{cfg['BK']}_w{cfg['num_warps']}"
        row[name] = graph_ms(
            lambda c=cfg: tk.grad(a, row_lse, g, al, be, mean, low, high, True, c), args.steps
        )
    saved = dict(tk.GRAD)
    for rows in (128, 256, 512):  # the looped gradient pass: strips of rows
        tk.GRAD.update(rows=rows)
        row[f"grad_loop{rows}_autotuned"] = graph_ms(
            lambda: tk.grad(a, row_lse, g, al, be, mean, low, high, relu=True), args.steps
        )
        for cfg in tk.GRAD_LOOP_CONFIGS:
            name = f"grad_loop{rows}_bm{cfg['BM']}_bk{cfg['BK']}_w{cfg['num_warps']}"
            row[name] = graph_ms(
                lambda c=cfg: tk.grad(a, row_lse, g, al, be, mean, low, high, True, c), args.steps
            )
    tk.GRAD.update(saved)
    row["relu_pass"] = graph_ms(lambda: torch.relu(a), args.steps)
    row["copy_pass"] = graph_ms(lambda: a.clone(), args.steps)
    row["cublas_rank2m_product"] = graph_ms(lambda: low @ high.mT, args.steps)
    vd, pd = torch.randn(K, m, device=DEVICE).to(dtype), torch.randn(B, m, device=DEVICE).to(dtype)
    row["cublas_a_v"] = graph_ms(lambda: a @ vd, args.steps)
    row["cublas_at_p"] = graph_ms(lambda: a.mT @ pd, args.steps)
    return row


def measure_fold(dtype: torch.dtype, args) -> dict:
    """Graph-replayed times (ms) of what the bias fold changes (issue 19, round 6): the
    statistics pass on z with and without adding the bias (default layout and 512 shifted),
    the gradient pass with and without its column-sum partials (+ their sum), and the
    separate bias-gradient pass it replaces (dz summed over rows into float32)."""
    from implicit_em.kernels import triton_infomax as tk

    B, K, m = args.B, args.K, args.probes
    z = torch.randn(B, K, device=DEVICE).to(dtype)
    bias = 0.1 * torch.randn(K, device=DEVICE)
    row: dict = {}
    saved = dict(tk.STATS)
    for layout in ({}, {"rows": 512, "shift": True}):
        tk.STATS.update(layout)
        tag = f"{tk.STATS['rows']}{'s' if tk.STATS['shift'] else ''}"
        row[f"relu_stats_{tag}"] = graph_ms(lambda: tk.stats_partials(z, relu=True), args.steps)
        row[f"relu_stats_{tag}_bias"] = graph_ms(
            lambda: tk.stats_partials(z, relu=True, bias=bias), args.steps
        )
        tk.STATS.clear()
        tk.STATS.update(saved)
    a = torch.relu(z)
    _, row_lse, mean, _ = fused_impl.combine_stats(a)
    g, al, be = torch.tensor(-1.0, device=DEVICE), mean.clone(), mean.clone()
    low = torch.randn(B, 2 * m, device=DEVICE).to(dtype)
    high = torch.randn(K, 2 * m, device=DEVICE).to(dtype)
    row["grad"] = graph_ms(lambda: tk.grad(a, row_lse, g, al, be, mean, low, high, True),
                           args.steps)  # fmt: skip
    row["grad_colsum"] = graph_ms(
        lambda: tk.grad(a, row_lse, g, al, be, mean, low, high, True, colsum=True), args.steps
    )
    row["grad_rows_g"] = graph_ms(  # g expanded to (B,): the kernel's per-row read
        lambda: tk.grad(a, row_lse, g.expand(B).contiguous(), al, be, mean, low, high, True),
        args.steps,
    )
    row["bias_grad_pass"] = graph_ms(lambda: a.sum(dim=0, dtype=torch.float32), args.steps)
    return row


def measure_dtype(dtype: torch.dtype, args, copy_gb_per_s: float) -> dict:
    """Times (ms) of each piece on codes of one dtype."""
    from implicit_em.kernels import triton_infomax as tk

    B, K, m = args.B, args.K, args.probes
    a = torch.relu(torch.randn(B, K, device=DEVICE)).to(dtype)
    v = correlation_probes(K, m, a).float()
    pm = torch.randn(B, m, device=DEVICE)
    row: dict = {"one_read_ms_at_copy_bw": a.numel() * a.element_size() / copy_gb_per_s / 1e6}
    row["stats_pass"] = timed_ms(lambda a=a: tk.stats_partials(a), args.steps)
    row["relu_stats_pass"] = timed_ms(lambda a=a: tk.stats_partials(a, relu=True), args.steps)
    row["stats_config"] = str(getattr(tk._stats_kernel, "best_config", None))
    _, row_lse, mean, _ = fused_impl.combine_stats(a)
    g, al, be = row_lse.clone(), mean.clone(), mean.clone()
    low = torch.randn(B, 2 * m, device=DEVICE).to(dtype)
    high = torch.randn(K, 2 * m, device=DEVICE).to(dtype)
    row["grad_pass"] = timed_ms(
        lambda a=a: tk.grad(a, row_lse, g, al, be, mean, low, high, relu=True), args.steps
    )
    row["grad_config"] = str(getattr(tk._grad_kernel, "best_config", None))
    row["grad_pass_no_lowrank"] = timed_ms(
        lambda a=a: tk.grad(a, row_lse, g, al, be, mean), args.steps
    )
    row["cublas_rank2m_product"] = timed_ms(lambda: low @ high.mT, args.steps)  # the old way
    row["relu_pass"] = timed_ms(lambda a=a: torch.relu(a), args.steps)  # read + write
    vd, pd = v.to(dtype), pm.to(dtype)
    row["cublas_a_v"] = timed_ms(lambda a=a: a @ vd, args.steps)
    row["cublas_at_p"] = timed_ms(lambda a=a: a.mT @ pd, args.steps)
    if args.skinny:
        for chunk in (1024, 2048):
            row[f"triton_a_v_chunk{chunk}"] = timed_ms(
                lambda a=a, c=chunk: tk.skinny(a, v, False, c), args.steps
            )
            row[f"triton_at_p_chunk{chunk}"] = timed_ms(
                lambda a=a, c=chunk: tk.skinny(a, pm, True, c), args.steps
            )
    # the exact penalty's Gram matmuls alone (B < K): float32 (TF32) vs bf16
    u32 = torch.randn(B, K, device=DEVICE)
    u16 = u32.to(torch.bfloat16)
    row["gram_f32_fwd_bwd"] = timed_ms(lambda: (u32 @ u32.mT) @ u32, args.steps)
    row["gram_bf16_fwd_bwd"] = timed_ms(lambda: (u16 @ u16.mT) @ u16, args.steps)
    cases = [
        ("sketch", v, "float32"),
        ("exact", None, "float32"),
        ("exact_bf16gram", None, "bfloat16"),
    ]
    for tag, probes, gram in cases:
        x = a.clone().requires_grad_(True)
        for path in ("on", "off"):
            if path == "off" and gram != "float32":
                continue
            name = f"terms_{tag}_{'fused' if path == 'on' else 'reference'}"
            with fused_mode(path):
                fused_impl.EXACT["gram"] = gram

                def step(x=x, probes=probes) -> None:
                    sum(infomax_terms(x, probes, 1e-6)).backward()
                    x.grad = None

                if args.eager:
                    row[f"{name}_eager"] = timed_ms(step, args.steps)
                torch._dynamo.reset()  # the mode is read at trace time
                comp = torch.compile(lambda x, probes=probes: sum(infomax_terms(x, probes)),
                                     mode=args.compile_mode)  # fmt: skip

                def cstep(x=x, comp=comp) -> None:
                    comp(x).backward()
                    x.grad = None

                row[f"{name}_compiled"] = timed_ms(cstep, args.steps)
                fused_impl.EXACT["gram"] = "float32"
    # at this size, on this GPU: fused (autotuned tiles) vs the float32 reference on the same
    # bf16 codes, and every tile configuration against the first one
    x = a.clone().requires_grad_(True)
    y = a.float().requires_grad_(True)
    for probes in (v, None):
        tag = "sketch" if probes is not None else "exact"
        tf = infomax_terms(x, probes, 1e-6, fused=True)
        tr = infomax_terms(y, probes, 1e-6, fused=False)
        (gf,) = torch.autograd.grad(sum(tf), x)
        (gr,) = torch.autograd.grad(sum(tr), y)
        row[f"check_{tag}_terms_rel_err"] = [
            abs(f.item() / r.item() - 1) for f, r in zip(tf, tr, strict=True)
        ]
        row[f"check_{tag}_grad_rel_err"] = ((gf.float() - gr).norm() / gr.norm()).item()
    lo, hi = low[:, :40].contiguous(), high[:, :40].contiguous()  # r = 40: padded to 64
    want_s = tk.stats_partials(a, relu=True, config=tk.STATS_CONFIGS[0])
    want_g = tk.grad(a, row_lse, g, al, be, mean, lo, hi, True, config=tk.GRAD_CONFIGS[0])
    row["check_configs_max_diff"] = max(
        [max((x - y).abs().max().item() for x, y in zip(tk.stats_partials(a, True, c), want_s, strict=True))
         for c in tk.STATS_CONFIGS[1:]]
        + [(tk.grad(a, row_lse, g, al, be, mean, lo, hi, True, config=c).float()
            - want_g.float()).abs().max().item() / want_g.float().abs().max().item()
           for c in tk.GRAD_CONFIGS[1:]]
    )  # fmt: skip
    # the sketched terms on pre-activations (a = ReLU(z) inside), fused with ReLU's backward
    # folded into the kernel vs the reference through autograd's ReLU
    z = torch.randn(B, K, device=DEVICE).to(dtype).requires_grad_(True)
    for path in ("on", "off"):
        with fused_mode(path):
            torch._dynamo.reset()
            comp = torch.compile(
                lambda z: sum(infomax_terms(torch.relu(z), v, 1e-6, preact=z)),
                mode=args.compile_mode,
            )

            def zstep(z=z, comp=comp) -> None:
                comp(z).backward()
                z.grad = None

            row[f"relu_sketch_{'fused' if path == 'on' else 'reference'}_compiled"] = timed_ms(
                zstep, args.steps
            )
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--K", type=int, default=16384)
    p.add_argument("--B", type=int, default=4096)
    p.add_argument("--probes", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--dtypes", default="bfloat16", help="comma-separated: bfloat16, float32")
    p.add_argument("--compile-mode", default="default", help="torch.compile mode of the terms")
    p.add_argument("--skinny", action="store_true", help="also time the split-K Triton products")
    p.add_argument("--eager", action="store_true", help="also time the terms without compile")
    p.add_argument("--pieces", action="store_true",
                   help="only the kernels, each layout and tile configuration, graph-replayed")  # fmt: skip
    p.add_argument("--fold", action="store_true",
                   help="only what the bias fold changes (measure_fold), graph-replayed")  # fmt: skip
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = True
    B, K, m = args.B, args.K, args.probes
    if DEVICE == "cpu":  # smoke-sized (Triton's interpreter)
        args.B, args.K, args.steps = 96, 200, 1
        B, K = args.B, args.K
    res: dict = {"shape": {"B": B, "K": K, "m": m}, "device": DEVICE if DEVICE == "cpu" else torch.cuda.get_device_name(),
                 "compile_mode": args.compile_mode}  # fmt: skip
    src = torch.empty(B * K * 2, dtype=torch.uint8, device=DEVICE)
    dst = torch.empty_like(src)
    t_copy = timed_ms(lambda: dst.copy_(src), args.steps)
    res["copy_gb_per_s"] = 2 * src.numel() / t_copy / 1e6  # read + write
    for name in args.dtypes.split(","):
        if args.fold:
            row = measure_fold(getattr(torch, name), args)
            res[f"{name}_fold_graph_replayed"] = row
            print(name, json.dumps(row, indent=1), flush=True)
            continue
        if args.pieces:
            row = measure_pieces(getattr(torch, name), args)
            res[f"{name}_graph_replayed"] = row
            print(name, json.dumps(row, indent=1), flush=True)
            continue
        row = measure_dtype(getattr(torch, name), args, res["copy_gb_per_s"])
        res[name] = row
        print(name, json.dumps(row, indent=1), flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
