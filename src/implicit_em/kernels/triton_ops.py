"""The fused InfoMax kernels as torch.library.triton_op: operators torch.compile can see into.

Legend: B batch, K components, r = 2m (m probes). a (B, K) codes (float32 or bfloat16).

`kernels.infomax` reaches its Triton kernels through three torch.library.custom_op operators
(`infomax_stats`, `infomax_relu_stats`, `infomax_grad`; and the Triton matmul fold's
`infomax_mm_stats`, which has a twin here; the cuBLAS fold's `linear_relu_stats` has none and
stays a custom op under either kind). A custom op is opaque to
torch.compile: the graph holds one call per operator, and Inductor's generated code calls it
as an extern fallback (the dispatcher, then the operator's Python body, which allocates its
outputs and launches the kernels). The same three operators are registered here as
torch.library.triton_op, their bodies launching the same kernels through
torch.library.wrap_triton (`triton_infomax.stats_partials` / `grad` with traced=True). Under
torch.compile, AOTAutograd then decomposes each into its allocations, one
`triton_kernel_wrapper_functional` node per kernel launch and the torch operations around
them (the bias fold's column sums of the partials); Inductor emits the launches in its own
generated code, with its own choice among the kernels' autotuning configurations and its own
memory planning. It does not fuse its generated code into the kernels. Outside a compiled
region a triton op runs its body directly, as the custom op does.

`kernels.infomax.OPS` ("custom", the default, or "triton"; the environment variable
IMPLICIT_EM_OPS) picks which operators the fused path calls. The values are those of the
custom ops (tests/test_triton_ops.py). Issue 19's round 12 times this path in the scale
trainer's compiled step (docs/scale/round12-PLAN.md).

Under Triton's CPU interpreter (TRITON_INTERPRET=1) torch.library.wrap_triton hands back the
interpreted kernel unchanged: these operators then run eagerly only, and torch.compile fails
on them (its fake-tensor pass reaches the interpreter), so compiled use needs CUDA. Their
autograd is that of the callers (`infomax._Stats`, `infomax._SketchTerms`, whose backward
calls `infomax_grad`): the operators themselves are not differentiable.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.library import triton_op

from implicit_em.kernels.triton_infomax import grad, stats_partials
from implicit_em.kernels.triton_matmul_stats import mm_stats


@triton_op("implicit_em::infomax_stats_triton", mutates_args=())
def infomax_stats(a: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`kernels.infomax.infomax_stats` as a triton op: row max and row sum (nK, B), column
    mean and centred sum of squares (nC, K) of a (B, K), float32."""
    return stats_partials(a, traced=True)


@triton_op("implicit_em::infomax_relu_stats_triton", mutates_args=())
def infomax_relu_stats(
    z: Tensor, bias: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """`kernels.infomax.infomax_relu_stats` as a triton op: (a (B, K) = ReLU(z [+ bias]) in
    z's dtype, then the four partials of `infomax_stats`)."""
    return stats_partials(z, relu=True, bias=bias, traced=True)


@triton_op("implicit_em::infomax_grad_triton", mutates_args=())
def infomax_grad(
    a: Tensor, row_lse: Tensor, g: Tensor, alpha: Tensor, beta: Tensor, mean: Tensor,
    low: Tensor | None, high: Tensor | None, relu: bool, colsum: bool,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """`kernels.infomax.infomax_grad` as a triton op: (out (B, K) in a's dtype, its column
    sums (K,) float32 with colsum, else an empty (0,) tensor); low (B, r), high (K, r)."""
    out = grad(a, row_lse, g, alpha, beta, mean, low, high, relu, colsum=colsum, traced=True)
    if colsum:
        return out
    return out, torch.empty(0, device=a.device, dtype=torch.float32)


@triton_op("implicit_em::infomax_mm_stats_triton", mutates_args=())
def infomax_mm_stats(
    x: Tensor, w: Tensor, bias: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """`kernels.infomax.infomax_mm_stats` as a triton op: (a = ReLU(x W^T + b) (B, K) in x's
    dtype, row partials (nN, B) x 2, column partials (nM, K) x 2), float32 partials."""
    return mm_stats(x, w, bias, traced=True)


__all__ = ["infomax_grad", "infomax_mm_stats", "infomax_relu_stats", "infomax_stats"]
