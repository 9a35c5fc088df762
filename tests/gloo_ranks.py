"""Run a function on R CPU processes joined by gloo, for the distributed tests.

out = run_on_ranks(fn, 2, arg)   # fn(rank, arg) on each rank; out[rank] its result
"""

from __future__ import annotations

import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, port: int, world: int, fn, args: tuple, out: dict) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    torch.set_num_threads(1)
    try:
        out[rank] = fn(rank, *args)
    finally:
        dist.destroy_process_group()


def run_on_ranks(fn, world: int, *args) -> dict:
    """{rank: fn(rank, *args)} from `world` spawned processes (fn: a module-level function)."""
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_entry, args=(_free_port(), world, fn, args, out), nprocs=world, join=True)
    return dict(out)
