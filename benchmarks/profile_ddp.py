"""Where a data-parallel step's time goes: torch.profiler over a few steps of
`distributed.train_steps` on rank 0 (random data), top ops by CUDA and by CPU time.

    torchrun --standalone --nproc-per-node 2 benchmarks/profile_ddp.py --tc-probes 32
"""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.profiler import ProfilerActivity, profile

from implicit_em import runs
from implicit_em.config import LossConfig, ModelConfig, RunConfig
from implicit_em.train.distributed import init_device, train_steps, world


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--type", default="encoder")
    p.add_argument("--hidden-dim", type=int, default=16384)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--tc-probes", type=int, default=32)
    p.add_argument("--rows", type=int, default=20)
    args = p.parse_args()
    cuda = torch.cuda.is_available()
    device, local = init_device()
    rank, _ = world()
    x = torch.randn(200_000, 576, device=device, dtype=torch.bfloat16 if cuda else torch.float32)
    cfg = RunConfig(model=ModelConfig(type=args.type, input_dim=576, hidden_dim=args.hidden_dim),
                    loss=LossConfig(tc_probes=args.tc_probes))  # fmt: skip
    torch.manual_seed(0)
    net = DDP(runs.build_model(cfg).to(device), device_ids=[local] if cuda else None)
    kw = dict(global_batch=args.batch_size, lr=1e-3, seed=1, amp=cuda)
    train_steps(net, x, cfg.loss, steps=10, **kw)  # warm-up
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        train_steps(net, x, cfg.loss, steps=5, **kw)
    if rank == 0:
        for key in (("cuda_time_total",) if cuda else ()) + ("cpu_time_total",):
            print(prof.key_averages().table(sort_by=key, row_limit=args.rows,
                                            max_name_column_width=60))  # fmt: skip
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
