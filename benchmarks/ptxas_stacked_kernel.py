"""Registers and spills of the stacked block kernel v2, compiled for an H200 on a CPU machine.

Issue 19, round 4: the block kernel v1 (one program per model, removed since) took 213 us per
launch on an H200; v2 (`kernels.triton_stacked_v2`) splits each model over column strips.
Round 4's run of this script (docs/scale/ptxas_stacked_kernel.txt) counted both; v1's rows
there come from its removed source. Without a GPU this script compiles v2 ahead of time for sm_90a (Triton's own
`triton.compile` with a CUDA target: no device needed) at the MNIST shapes (B = 128, K = 64)
and runs the ptxas that ships with Triton with -v on the PTX, printing per (kernel, strip,
warps) its registers per thread and its spill stores / loads (bytes per thread of local-memory
traffic: the register pressure the round is about). A static count, not a time: the GPU call
of benchmarks/bench_stacked_kernel.py times them. The PTX version Triton emits may be newer
than its plain `ptxas` accepts: the newest ptxas found in Triton's backend is used.

    python benchmarks/ptxas_stacked_kernel.py
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from implicit_em.kernels.triton_stacked_v2 import STRIPS, _strip_kernel

B, K = 128, 64
ARGS = ["z_ptr", "dz_ptr", "w_ptr", "out_ptr", "N", "B", "G", "K"]
TYPES = ["*fp32"] * 4 + ["i32"] * 4


def signature(names: list[str], types: list[str], consts: list[str]) -> dict[str, str]:
    return dict(zip(names, types, strict=True)) | {c: "constexpr" for c in consts}


V2 = signature([*ARGS[:3], "part_ptr", *ARGS[4:], "NP", "stride_zs", "stride_zb", "eps", "tol"],
               [*TYPES, "i32", "i32", "i32", "fp32", "fp32"], ["BB", "P"])  # fmt: skip


def ptxas() -> str:
    """The ptxas in Triton's NVIDIA backend that reports the newest CUDA release."""
    found = sorted(Path(triton.__file__).parent.glob("backends/nvidia/bin/ptxas*"))
    if not found:
        sys.exit("no ptxas in Triton's NVIDIA backend: install a Triton wheel with CUDA support")

    def release(p: Path) -> tuple[int, ...]:
        out = subprocess.run([p, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"release (\d+)\.(\d+)", out)
        return tuple(map(int, m.groups())) if m else (0,)

    return str(max(found, key=release))


def report(label: str, fn, sig: dict, consts: dict, warps: int, tool: str, tmp: Path) -> None:
    src = ASTSource(fn=fn, signature=sig, constexprs=consts)
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
    ptx = tmp / f"{label.replace('/', '_')}.ptx"
    ptx.write_text(compiled.asm["ptx"])
    err = subprocess.run([tool, "-v", "--gpu-name=sm_90a", ptx, "-o", os.devnull],
                         capture_output=True, text=True).stderr  # fmt: skip
    regs = re.search(r"Used (\d+) registers", err)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", err)
    if not (regs and spill):
        sys.exit(f"{label}: ptxas printed no register count:\n{err}")
    print(f"{label:12s} {regs[1]:>4s} registers/thread, spill stores {spill[1]:>6s} B, "
          f"spill loads {spill[2]:>6s} B", flush=True)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strips", type=int, nargs="+", default=[16, 32], choices=STRIPS)
    p.add_argument("--warps", type=int, nargs="+", default=[2, 4, 8], help="warps per program")
    args = p.parse_args()
    tool = ptxas()
    print(f"triton {triton.__version__}, {Path(tool).name}, sm_90a, B = {B}, K = {K}")
    with tempfile.TemporaryDirectory() as tmp:
        for strip in args.strips:
            for nw in args.warps:
                report(f"v2/p{strip}/w{nw}", _strip_kernel, V2, {"BB": B, "P": strip}, nw,
                       tool, Path(tmp))  # fmt: skip


if __name__ == "__main__":
    main()
