"""All-reduce time and bus bandwidth between the ranks of one host, at the sizes DDP moves.

The decoder-free step at K = 16384, D = 576 all-reduces one fp32 gradient of K x D
(37.7 MB; 18.9 MB in bf16) and a (K, m) sketch (2 MB); this prints what each costs here, so
that the data-parallel speedup can be read against it.

    torchrun --standalone --nproc-per-node 2 benchmarks/bench_allreduce.py
"""

from __future__ import annotations

import json
import os
import time

import torch
import torch.distributed as dist


def main() -> int:
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, n = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    rows = []
    for label, numel, dtype in [
        ("sketch (16384 x 32) fp32", 16384 * 32, torch.float32),
        ("grad W (16384 x 576) bf16", 16384 * 576, torch.bfloat16),
        ("grad W (16384 x 576) fp32", 16384 * 576, torch.float32),
        ("grad W+W_dec fp32", 2 * 16384 * 576, torch.float32),
    ]:
        x = torch.ones(numel, dtype=dtype, device=device)
        for _ in range(5):
            dist.all_reduce(x)
        if cuda:
            torch.cuda.synchronize()
        reps = 20
        tic = time.perf_counter()
        for _ in range(reps):
            dist.all_reduce(x)
        if cuda:
            torch.cuda.synchronize()
        sec = (time.perf_counter() - tic) / reps
        nbytes = numel * x.element_size()
        rows.append({"what": label, "MB": nbytes / 1e6, "ms": 1e3 * sec,
                     "bus_GBps": 2 * (n - 1) / n * nbytes / sec / 1e9})  # fmt: skip
    if rank == 0:
        print(json.dumps({"world_size": n, "backend": dist.get_backend(), "rows": rows}, indent=1))
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
