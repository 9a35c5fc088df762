"""Fused GPU kernels for the InfoMax terms, with the pure-PyTorch formulas as the reference.

`losses.infomax_terms(a, probes, eps)` returns the unweighted (lse, var, tc) of
`losses.combined_loss` and picks the path with `fused_active` below:
- fused: Triton kernels (`triton_infomax`) wrapped as torch.library custom ops (or, with
  `infomax.OPS`, as triton ops that torch.compile sees into: `triton_ops`) and
  autograd.Functions (`infomax`). Forward: ONE pass over a (B, K) gives every row's
  log-sum-exp and every column's mean and centred sum of squares (given the pre-activations z
  of a = ReLU(z), it reads z and writes a as it goes); the sketch's two skinny products
  a (s V) and a^T P stay in cuBLAS. Backward: the products a (s R) and a^T Q in cuBLAS, then
  ONE pass writing dL/da, or dL/dz with ReLU's mask, for all three terms together (softmax,
  column terms, and the rank-2m correction formed per tile with tl.dot). The exact penalty
  takes the fused LSE and statistics, and for the unit columns either the Gram (B < K) formed
  from its upper block rows (`infomax._GramBlocked`; optionally in bf16, `infomax.EXACT`) or
  the reference's K x K path.
- the matmul fold (`infomax.fused_encoder_terms`; off unless `infomax.FOLD["matmul"]` names
  its forward): "triton", the encoder's own matmul in a Triton GEMM whose epilogue writes a
  and the statistics (`triton_matmul_stats`; bit for bit cuBLAS's codes on the H200, but
  slower: issue 19's round 14), or "cublas", cuBLAS's ReLU epilogue writing a and the
  statistics pass reading it (round 15: no measurable gain). docs/benchmarks.md.
- reference: `losses.infomax_reference`, used on the CPU, under vmap (the stacked trainer), and
  whenever Triton is missing.

Choosing: the `fused` argument, else the mode set by `set_fused_mode` / the environment
variable IMPLICIT_EM_FUSED: "auto" (default: fused on CUDA tensors when Triton imports and no
functorch transform is active), "on" (always fused; on the CPU only under TRITON_INTERPRET=1,
Triton's interpreter, which the tests use), "off" (always the reference).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os

import torch
from torch import Tensor

MODES = ("auto", "on", "off")
_mode = {"value": os.environ.get("IMPLICIT_EM_FUSED", "auto")}
_TRITON = importlib.util.find_spec("triton") is not None  # looked up once: torch.compile
# reads the constant instead of tracing the import machinery


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"fused mode must be one of {MODES}, got {mode!r}: "
                         "set IMPLICIT_EM_FUSED to auto, on or off")  # fmt: skip
    return mode


def triton_available() -> bool:
    """Whether Triton can be imported (it ships with CUDA builds of PyTorch on Linux)."""
    return _TRITON


def interpreted() -> bool:
    """Whether Triton kernels run in its CPU interpreter (TRITON_INTERPRET=1 at import)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def set_fused_mode(mode: str) -> None:
    """Set the default path of `infomax_terms`: "auto", "on" or "off" (see the module doc)."""
    _mode["value"] = _check_mode(mode)


@contextlib.contextmanager
def fused_mode(mode: str):
    """Context manager form of `set_fused_mode`; restores the previous mode on exit."""
    old = _mode["value"]
    set_fused_mode(mode)
    try:
        yield
    finally:
        _mode["value"] = old


def fused_active(a: Tensor, fused: bool | None = None) -> bool:
    """Whether `infomax_terms(a, ...)` takes the fused path. Raises RuntimeError when the fused
    path is forced but cannot run here."""
    if fused is None:
        mode = _check_mode(_mode["value"])
        if mode == "off":
            return False
        # under vmap (the stacked trainer) the codes are batched tensors: the reference runs
        transformed = not torch.compiler.is_compiling() and torch._C._functorch.is_batchedtensor(a)
        if mode == "auto":
            return a.is_cuda and triton_available() and not transformed
        fused = True
    if fused and not triton_available():
        raise RuntimeError("the fused InfoMax path needs Triton: pip install triton, or set "
                           "IMPLICIT_EM_FUSED=off")  # fmt: skip
    if fused and not a.is_cuda and not interpreted():
        raise RuntimeError("the fused InfoMax path runs on CUDA tensors, or on the CPU with "
                           "TRITON_INTERPRET=1 set before import: set IMPLICIT_EM_FUSED=off")  # fmt: skip
    return bool(fused)


__all__ = ["MODES", "fused_active", "fused_mode", "interpreted",
           "set_fused_mode", "triton_available"]  # fmt: skip
