"""The fused kernels as torch.library.triton_op (`kernels.triton_ops`, picked by
`kernels.infomax.OPS`) against the custom ops and the reference formulas, float32.

On a CPU machine the ops run eagerly in Triton's interpreter (conftest sets TRITON_INTERPRET=1).
torch.compile cannot trace them there (torch.library.wrap_triton hands the interpreted kernel
back unchanged, and the fake-tensor pass then reaches the interpreter), so one test traces them
in a subprocess without the interpreter: the forward and backward graphs AOTAutograd would hand
Inductor, built from fake tensors and never run. What needs CUDA (Inductor's generated code,
`torch._dynamo.explain` on a compiled run, the compiled step's values) is in the tests marked
"GPU only", run on the H200 by docs/scale/round12_run.sh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from implicit_em.kernels import infomax as fused_impl
from implicit_em.losses import infomax_terms

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
WEIGHTS = (1.0, 0.7, 1.3)  # lse, var, tc: distinct, so a wrong term's gradient shows
SRC = Path(__file__).resolve().parents[1] / "src"
gpu_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU only: Inductor's code")


def degenerate_codes(b: int, k: int) -> torch.Tensor:
    """Codes (B, K) >= 0 with two dead units (all zero) and a constant column (1.5, exact in
    float32), as tests/test_kernels.py's degenerate cases."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(b, k, generator=g) + 0.3
    z[:, 0] += 0.8 * z[:, 1]  # some real correlation
    a = torch.relu(z)
    a[:, 3] = 0.0
    a[:, 10] = 0.0
    a[:, 5] = 1.5
    return a.to(DEVICE)


def probes(k: int, m: int | None) -> torch.Tensor | None:
    if m is None:
        return None
    return torch.randn(k, m, generator=torch.Generator().manual_seed(1)).to(DEVICE)


def weighted(out) -> torch.Tensor:
    return sum(w * t for w, t in zip(WEIGHTS, out, strict=True))


def run(fn, *inputs: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """(the three terms stacked, the gradients of their weighted sum for each input)."""
    xs = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = fn(*xs)
    return torch.stack([t.detach() for t in out]), torch.autograd.grad(weighted(out), xs)


def assert_close_rel(got, want, rtol: float = 1e-5) -> None:
    """Each of the terms to rtol relative; each gradient to rtol relative to its largest entry."""
    torch.testing.assert_close(got[0], want[0], rtol=rtol, atol=0.0)
    for g, w in zip(got[1], want[1], strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        err = float((g - w).abs().max() / w.abs().max())
        assert err < rtol, f"gradient off by {err:.2e} relative"


def by_kind(monkeypatch, fn, *inputs):
    """fn's terms and gradients with OPS "custom" and "triton", and how many times the triton
    ops' bodies launched the statistics and the gradient pass (traced=True each time)."""
    from implicit_em.kernels import triton_ops

    launched = []
    for name in ("stats_partials", "grad"):
        real = getattr(triton_ops, name)

        def spy(*a, _real=real, _name=name, **k):
            assert k.get("traced") is True
            launched.append(_name)
            return _real(*a, **k)

        monkeypatch.setattr(triton_ops, name, spy)
    got = {}
    for kind in ("custom", "triton"):
        monkeypatch.setitem(fused_impl.OPS, "kind", kind)
        got[kind] = run(fn, *inputs)
        if kind == "custom":
            assert launched == []  # the custom ops never reach the triton ops
    return got, launched


def test_default_is_the_custom_ops_and_a_bad_kind_is_one_line(monkeypatch):
    if "IMPLICIT_EM_OPS" not in os.environ:
        assert fused_impl.OPS["kind"] == "custom"  # round 12 decides; until then no change
    monkeypatch.setitem(fused_impl.OPS, "kind", "fast")
    a = degenerate_codes(8, 16)
    with pytest.raises(ValueError, match="set IMPLICIT_EM_OPS") as e:
        infomax_terms(a, probes(16, 4), 1e-6, fused=True)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("b,k,m", [(70, 300, 8), (70, 300, None), (200, 130, 4)])
def test_triton_ops_match_the_custom_ops_and_the_reference(monkeypatch, b, k, m):
    """Sketched (m probes) and exact penalties, B < K and B > K, with dead units and a constant
    column: the triton ops give the custom ops' terms and gradient, and both the reference's,
    to 1e-5 relative; one statistics launch and one gradient launch through the triton ops."""
    a, v = degenerate_codes(b, k), probes(k, m)
    got, launched = by_kind(monkeypatch, lambda x: infomax_terms(x, v, 1e-6, fused=True), a)
    ref = run(lambda x: infomax_terms(x, v, 1e-6, fused=False), a)
    assert launched == ["stats_partials", "grad"]
    assert_close_rel(got["triton"], got["custom"])
    assert_close_rel(got["triton"], ref)
    assert torch.isfinite(got["triton"][1][0]).all()


def test_relu_and_bias_folds_through_the_triton_ops(monkeypatch):
    """The ReLU fold (preact z) and the bias fold (z0 and b, the gradient pass's column sums)
    through `infomax_relu_stats` / `infomax_grad` as triton ops: dL/dz0 and dL/db as the custom
    ops' and the reference's through autograd, to 1e-5 relative; a dead unit gets nothing."""
    g = torch.Generator().manual_seed(3)
    z0 = torch.randn(70, 300, generator=g)
    bias = 0.1 * torch.randn(300, generator=g)
    z0[:, 4], bias[4] = 0.5 * torch.rand(70, generator=g), -2.0  # dead: z < 0
    z0[:, 6], bias[6] = 0.75, 0.75  # constant: a = 1.5
    z0, bias, v = z0.to(DEVICE), bias.to(DEVICE), probes(300, 8)

    def folded(fused):
        return lambda z, b: infomax_terms(torch.relu(z + b), v, 1e-6, fused=fused, preact=z,
                                          bias=b)  # fmt: skip

    got, launched = by_kind(monkeypatch, folded(True), z0, bias)
    ref = run(folded(False), z0, bias)
    assert launched == ["stats_partials", "grad"]
    assert_close_rel(got["triton"], got["custom"])
    assert_close_rel(got["triton"], ref)
    gz, gb = got["triton"][1]
    assert gb[4] == 0 and (gz[:, 4] == 0).all()


# Traced in a process of its own without Triton's interpreter: torch.compile with
# fullgraph=True (any graph break raises) and AOTAutograd, whose partition is recorded and whose
# compiled functions are never called (the kernels cannot run on a CPU without the interpreter).
TRACE = r"""
import json, logging, sys
import torch
from torch._dynamo.backends.common import aot_autograd
from torch._functorch.partitioners import default_partition
from implicit_em.kernels import infomax as fi

# without a GPU driver torch cannot read which arguments a kernel writes and says so at
# length; it then assumes every one (the graph's launches are the same)
logging.getLogger("torch._higher_order_ops.triton_kernel_wrap").setLevel(logging.ERROR)


class Stop(Exception):
    pass


def stop(gm, example_inputs):
    def never(*args):
        raise Stop
    return never


g = torch.Generator().manual_seed(0)
a = torch.relu(torch.randn(70, 300, generator=g) + 0.3)
bias = 0.1 * torch.randn(300, generator=g)
v = torch.randn(300, 8, generator=g)
paths = {
    "sketch": (lambda x: fi.fused_terms(x, v, 1e-6), (a,)),
    "exact": (lambda x: fi.fused_terms(x, None, 1e-6), (a,)),
    "fold": (lambda z, b: fi.fused_terms(torch.relu(z + b), v, 1e-6, preact=z, bias=b),
             (a - 0.3, bias)),
}
found = {}
for kind in ("custom", "triton"):
    fi.OPS["kind"] = kind
    for path, (fn, inputs) in paths.items():
        torch._dynamo.reset()
        graphs = {}

        def partition(joint, joint_inputs, **kw):
            graphs["fw"], graphs["bw"] = default_partition(joint, joint_inputs, **kw)
            return graphs["fw"], graphs["bw"]

        backend = aot_autograd(fw_compiler=stop, bw_compiler=stop, partition_fn=partition)
        compiled = torch.compile(lambda *xs: sum(fn(*xs)), backend=backend, fullgraph=True)
        try:
            compiled(*[x.clone().requires_grad_(True) for x in inputs])
        except Stop:
            pass
        found[f"{kind}/{path}"] = {
            side: [str(n.target) for n in gm.graph.nodes if n.op == "call_function"
                   and ("triton" in str(n.target) or "implicit_em" in str(n.target))]
            for side, gm in graphs.items()
        }
print(json.dumps(found))
"""


def test_triton_ops_enter_the_compiled_graphs_as_kernel_launches():
    """Under torch.compile (fullgraph: no graph break) the triton ops reach Inductor decomposed:
    the forward graph holds one Triton launch (the statistics pass), the backward one (the
    gradient pass), and no opaque implicit_em operator; with the custom ops (the default) each
    pass is one opaque implicit_em operator and no launch is visible. Sketched, exact and
    bias-folded paths."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", TRACE], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    launch = "triton_kernel_wrapper_functional"
    stats = {"sketch": "infomax_stats", "exact": "infomax_stats", "fold": "infomax_relu_stats"}
    for path, op in stats.items():
        assert found[f"triton/{path}"] == {"fw": [launch], "bw": [launch]}, path
        assert found[f"custom/{path}"] == {"fw": [f"implicit_em.{op}.default"],
                                           "bw": ["implicit_em.infomax_grad.default"]}, path  # fmt: skip


@gpu_only
@pytest.mark.parametrize("m", [8, None])
def test_compiled_triton_ops_no_graph_break_inductor_launches_them_same_values(monkeypatch, m):
    """GPU only. With OPS "triton", `torch._dynamo.explain` finds one graph and no break;
    Inductor's generated code (forward and backward) launches the statistics and gradient
    kernels itself and calls no implicit_em operator; the compiled terms and gradient equal the
    eager custom ops' and the reference's to 1e-5 relative (dead units, a constant column)."""
    from torch._inductor.utils import run_and_get_code

    a, v = degenerate_codes(70, 300), probes(300, m)

    def terms(x):
        return infomax_terms(x, v, 1e-6, fused=True)

    monkeypatch.setitem(fused_impl.OPS, "kind", "custom")
    eager = run(terms, a)
    ref = run(lambda x: infomax_terms(x, v, 1e-6, fused=False), a)
    monkeypatch.setitem(fused_impl.OPS, "kind", "triton")
    torch._dynamo.reset()
    explained = torch._dynamo.explain(lambda x: weighted(terms(x)))(a.clone().requires_grad_(True))
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    torch._dynamo.reset()
    compiled = torch.compile(terms, fullgraph=True)
    got, codes = run_and_get_code(run, compiled, a)
    code = "\n".join(codes)
    # no call of an opaque operator (the comments of Inductor's code may name the triton ops)
    assert "torch.ops.implicit_em" not in code
    assert "_stats_shift_kernel" in code or "_stats_kernel" in code
    assert "_grad_kernel" in code or "_grad_loop_kernel" in code
    assert_close_rel(got, eager)
    assert_close_rel(got, ref)


@gpu_only
def test_compiled_scale_step_with_triton_ops_has_no_break_and_equals_eager(monkeypatch):
    """GPU only. The scale trainer's step (`ModelStepper`, forward and loss compiled) with the
    fused kernels inside the compiled step (`TERMS["fused_compiled"]`) as triton ops: one graph,
    no break; one step's terms and parameter gradients equal the eager step's (custom ops) to
    1e-5 relative."""
    from implicit_em.config import LossConfig
    from implicit_em.kernels import fused_mode
    from implicit_em.losses import correlation_probes
    from implicit_em.models import Encoder
    from implicit_em.train import distributed

    monkeypatch.setitem(distributed.TERMS, "fused_compiled", True)
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    loss = LossConfig(tc_probes=4)
    v = correlation_probes(16, 4, x, torch.Generator(DEVICE).manual_seed(0))
    got = {}
    for kind, compile in (("custom", False), ("triton", True)):
        monkeypatch.setitem(fused_impl.OPS, "kind", kind)
        torch._dynamo.reset()
        torch.manual_seed(0)
        model = Encoder(8, 16).to(DEVICE)
        stepper = distributed.ModelStepper(model, loss, lr=1e-2, probe_seed=0, compile=compile)
        with fused_mode("on"):
            if compile:
                explained = torch._dynamo.explain(stepper._forward)(x, None, v)
                assert explained.graph_break_count == 0 and explained.graph_count == 1
                torch._dynamo.reset()
            total, terms, _ = stepper.forward(x, None, v)
            total.backward()
        got[kind] = (torch.stack([terms[k].detach() for k in ("lse", "var", "tc")]),
                     tuple(p.grad for p in model.parameters()))  # fmt: skip
    assert_close_rel(got["triton"], got["custom"])
