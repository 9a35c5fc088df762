"""DDP with global-batch InfoMax terms against one process on the concatenated batch.

Two CPU processes (gloo) in float64; each case compares the global loss terms and every
parameter gradient after DDP's averaging with the single-process reference to 1e-5.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as fc
from gloo_ranks import run_on_ranks
from torch.nn.parallel import DistributedDataParallel as DDP

from implicit_em.config import LossConfig
from implicit_em.losses import combined_loss
from implicit_em.models import Encoder, StandardSAE, TopKSAE
from implicit_em.train.distributed import GradAverage, reduce_terms, step_terms
from implicit_em.train.loop import loss_terms, model_type, term_weights

WORLD, ROWS, D = 2, 4, 6  # 2 ranks x 4 rows: global batch 8
LOSS = LossConfig(lambda_lse=1.0, lambda_var=0.7, lambda_tc=1.3, lambda_wr=0.4, reference_k=8)
# (model family, K): K = 12 > B = 8 takes the sharded Gram path, K = 5 < B the K x K path.
CASES = [("encoder", 12), ("encoder", 5), ("standard_sae", 12), ("topk_sae", 12)]
SKETCH_KS = [12, 5]
OBJECTIVE_KS = [64, 128, 1024]  # issue 13: the DDP total is combined_loss's at every K
# gradient averaging: the trainer's one flat all-reduce (`GradAverage`) and DDP's reducer
SYNCS = ["flat", "ddp"]


def build(kind: str, k: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "encoder":
        return Encoder(D, k).double()
    if kind == "standard_sae":
        return StandardSAE(D, k).double()
    return TopKSAE(D, k, k=3).double()


def batch() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(WORLD * ROWS, D, dtype=torch.float64)  # (B, D)


def probes(k: int) -> torch.Tensor:
    """Fixed probes for the sketched correlation (equal on every rank)."""
    return torch.randn(k, 3, generator=torch.Generator().manual_seed(k), dtype=torch.float64)


def reference(kind: str, k: int, sketch: bool = False) -> tuple[dict, dict]:
    """Global terms, total and gradients of one process on the whole batch."""
    model = build(kind, k)
    if sketch:
        terms = combined_loss(model(batch())[0], model.W, LOSS, probes=probes(k))
    else:
        terms = loss_terms(model, batch(), LOSS)
        terms.pop("a")
    w = term_weights(kind, LOSS, k)
    total = sum(w[n] * terms[n] for n in w)
    total.backward()
    vals = {n: float(terms[n].detach()) for n in w} | {"total": float(total.detach())}
    return vals, {n: p.grad.clone() for n, p in model.named_parameters()}


def sharded(kind: str, k: int, sync: str) -> tuple[torch.nn.Module, torch.nn.Module, object]:
    """(net, model, average): the model in DDP ("ddp", average None) or bare with the
    trainer's flat gradient all-reduce ("flat", `GradAverage`)."""
    model = build(kind, k)
    if sync == "ddp":
        return DDP(model), model, None
    return model, model, GradAverage(model)


def _worker(rank: int) -> dict:
    results = {}
    for sync in SYNCS:
        for kind, k in CASES:
            net, model, average = sharded(kind, k, sync)
            x = batch()[rank * ROWS : (rank + 1) * ROWS]  # (b, D) this rank's shard
            terms, _, scale = step_terms(net, x, LOSS)
            w = term_weights(kind, LOSS, k)
            total = sum(w[n] * terms[n] for n in w)
            (total * scale).backward()
            if average is not None:
                average()
            glob = {n: float(v) for n, v in reduce_terms(terms, model_type(model)).items()}
            glob["total"] = sum(w[n] * glob[n] for n in w)
            grads = {n: p.grad.clone() for n, p in model.named_parameters()}
            results[(sync, kind, k)] = (glob, grads)
        for k in SKETCH_KS:  # the sketched correlation: only sufficient statistics cross ranks
            net, model, average = sharded("encoder", k, sync)
            x = batch()[rank * ROWS : (rank + 1) * ROWS]
            terms, _, scale = step_terms(net, x, LOSS, probes=probes(k))
            w = term_weights("encoder", LOSS, k)
            (sum(w[n] * terms[n] for n in w) * scale).backward()
            if average is not None:
                average()
            glob = {n: float(v) for n, v in reduce_terms(terms, "encoder").items()}
            glob["total"] = sum(w[n] * glob[n] for n in w)
            grads = {n: p.grad.clone() for n, p in model.named_parameters()}
            results[(sync, "sketch", k)] = (glob, grads)
    for k in OBJECTIVE_KS:
        net = DDP(build("encoder", k))
        x = batch()[rank * ROWS : (rank + 1) * ROWS]
        terms, _, _ = step_terms(net, x, LossConfig())
        w = term_weights("encoder", LossConfig(), k)
        glob = {n: float(v) for n, v in reduce_terms(terms, "encoder").items()}
        results[("objective", k)] = sum(w[n] * glob[n] for n in w)
    return results


@pytest.fixture(scope="module")
def ddp_results() -> dict:
    return run_on_ranks(_worker, WORLD)


@pytest.mark.parametrize("sync", SYNCS)
@pytest.mark.parametrize(("kind", "k"), CASES)
def test_ddp_loss_and_grads_equal_single_process(ddp_results, kind, k, sync):
    ref_vals, ref_grads = reference(kind, k)
    for rank in range(WORLD):
        vals, grads = ddp_results[rank][(sync, kind, k)]
        for name, v in ref_vals.items():
            assert vals[name] == pytest.approx(v, rel=1e-5, abs=1e-8), (rank, name)
        assert grads.keys() == ref_grads.keys()
        for name, g in ref_grads.items():
            torch.testing.assert_close(grads[name], g, rtol=1e-5, atol=1e-8, msg=name)


@pytest.mark.parametrize("sync", SYNCS)
@pytest.mark.parametrize("k", SKETCH_KS)
def test_ddp_sketched_correlation_equals_single_process(ddp_results, k, sync):
    ref_vals, ref_grads = reference("encoder", k, sketch=True)
    for rank in range(WORLD):
        vals, grads = ddp_results[rank][(sync, "sketch", k)]
        for name, v in ref_vals.items():
            assert vals[name] == pytest.approx(v, rel=1e-5, abs=1e-8), (rank, name)
        for name, g in ref_grads.items():
            torch.testing.assert_close(grads[name], g, rtol=1e-5, atol=1e-8, msg=name)


def test_grad_scale_matters(ddp_results):
    """Without the R x factor (DDP averages), the encoder gradients would be half as large."""
    _, ref_grads = reference("encoder", 12)
    _, grads = ddp_results[0][("flat", "encoder", 12)]
    g, r = grads["linear.weight"], ref_grads["linear.weight"]
    assert not torch.allclose(g / WORLD, r, rtol=1e-3)


@pytest.mark.parametrize("k", OBJECTIVE_KS)
def test_ddp_total_is_combined_loss_total(ddp_results, k):
    model = build("encoder", k)
    with torch.no_grad():
        expected = float(combined_loss(model(batch())[0], model.W, LossConfig())["total"])
    for rank in range(WORLD):
        # reduce_terms sums the shares in float32
        assert ddp_results[rank][("objective", k)] == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------ collectives per step (issue 20)
# One optimizer step of `ModelStepper` (the trainer's step) on 2 gloo ranks, every
# collective counted: torch.distributed's all-reduce and all-gathers patched, DDP's gradient
# buckets counted by a comm hook. Expected: the InfoMax statistics take one collective per
# dependency level (sketch: stats gather, U^T U V forward; dL/d(stats) backward; exact: the
# codes' gather forward, dL/d(stats) backward), SAEs none; TopK one asynchronous MAX; plus
# the gradients: one asynchronous all-reduce of all of them (the trainer's `GradAverage`),
# or with DDP one all-reduce per bucket.
COUNT_CASES = {
    ("encoder", 12, 3): {"all_gather": 1, "all_reduce": 2, "async": 0},  # sketch
    ("encoder", 12, None): {"all_gather": 1, "all_reduce": 1, "async": 0},  # exact, Gram
    ("encoder", 5, None): {"all_gather": 1, "all_reduce": 1, "async": 0},  # exact, K x K
    ("standard_sae", 12, None): {"all_gather": 0, "all_reduce": 0, "async": 0},
    ("topk_sae", 12, None): {"all_gather": 0, "all_reduce": 0, "async": 1},
}


@contextlib.contextmanager
def counted_collectives(counts: dict[str, int], grad_numel: list[int] | None = None):
    """Patch torch.distributed's all-reduce, all-gathers and broadcast to count their calls
    into `counts` (all_reduce, async, all_gather, broadcast; list_gather must stay unused);
    an asynchronous all-reduce of a tensor with as many elements as the model's parameters
    (grad_numel, a one-element list the caller sets) counts as "grads". A tensor handed to a
    collective that is not contiguous counts as "noncontiguous": gloo accepts it, NCCL raises
    "Tensors must be contiguous" (the 2-GPU TopK run of 2026-11-29 failed so)."""
    real_reduce, real_broadcast, other = dist.all_reduce, dist.broadcast, dist.all_gather
    gather_name = (
        "all_gather_single" if hasattr(dist, "all_gather_single") else "all_gather_into_tensor"
    )
    real_gather = getattr(dist, gather_name)

    def check(*tensors):
        if any(isinstance(t, torch.Tensor) and not t.is_contiguous() for t in tensors):
            counts["noncontiguous"] = counts.get("noncontiguous", 0) + 1

    def reduce(t, *args, async_op=False, **kw):
        check(t)
        grads = async_op and t.numel() in (grad_numel or ())
        counts["grads" if grads else "async" if async_op else "all_reduce"] += 1
        return real_reduce(t, *args, async_op=async_op, **kw)

    def gather(*args, **kw):
        check(*args)
        counts["all_gather"] += 1
        return real_gather(*args, **kw)

    def broadcast(*args, **kw):
        check(*args)
        counts["broadcast"] = counts.get("broadcast", 0) + 1
        return real_broadcast(*args, **kw)

    # the InfoMax statistics go through functional collectives (traceable by torch.compile)
    fc_reduce = fc.all_reduce
    fc_gathers = {n: getattr(fc, n) for n in ("all_gather_single", "all_gather_tensor")
                  if hasattr(fc, n)}  # fmt: skip

    def functional_reduce(t, *args, **kw):
        check(t)
        counts["all_reduce"] += 1
        return fc_reduce(t, *args, **kw)

    def functional_gather(name):
        def gather_(t, *args, **kw):
            check(t)
            counts["all_gather"] += 1
            return fc_gathers[name](t, *args, **kw)

        return gather_

    dist.all_reduce, dist.broadcast = reduce, broadcast
    dist.all_gather = lambda *a, **k: counts.__setitem__("list_gather", 1)
    setattr(dist, gather_name, gather)
    fc.all_reduce = functional_reduce
    for n in fc_gathers:
        setattr(fc, n, functional_gather(n))
    try:
        yield real_reduce
    finally:
        dist.all_reduce, dist.broadcast, dist.all_gather = real_reduce, real_broadcast, other
        setattr(dist, gather_name, real_gather)
        fc.all_reduce = fc_reduce
        for n, f in fc_gathers.items():
            setattr(fc, n, f)


def _count_worker(rank: int) -> dict:
    from implicit_em.train.distributed import ModelStepper

    counts: dict[str, int] = {}
    grad_numel: list[int] = []
    results = {}
    with counted_collectives(counts, grad_numel) as real_reduce:

        def bucket_hook(state, bucket):
            counts["buckets"] += 1
            work = real_reduce(bucket.buffer().div_(WORLD), async_op=True)
            return work.get_future().then(lambda f: f.value()[0])

        for sync in SYNCS:
            for kind, k, m in COUNT_CASES:
                net = model = build(kind, k)
                if sync == "ddp":
                    net = DDP(model)
                    net.register_comm_hook(None, bucket_hook)
                grad_numel[:] = [sum(p.numel() for p in model.parameters())]
                loss = LossConfig(tc_probes=m)
                counts.clear()
                stepper = ModelStepper(net, loss, lr=1e-3, probe_seed=0)
                built_noncontiguous = counts.get("noncontiguous", 0)
                x = batch()[rank * ROWS : (rank + 1) * ROWS]
                counts.clear()
                counts.update(all_reduce=0, all_gather=0, buckets=0, grads=0, **{"async": 0})
                stepper.step(x)
                stepper.settle()
                counts["noncontiguous"] = counts.get("noncontiguous", 0) + built_noncontiguous
                results[(sync, kind, k, m)] = dict(counts)
    return results


@pytest.fixture(scope="module")
def step_counts() -> dict:
    return run_on_ranks(_count_worker, WORLD)


@pytest.mark.parametrize("sync", SYNCS)
@pytest.mark.parametrize("case", list(COUNT_CASES))
def test_collectives_per_step(step_counts, case, sync):
    """flat: one all-reduce of all gradients per step; ddp: one bucket (tiny models)."""
    grads = {"grads": 1, "buckets": 0} if sync == "flat" else {"grads": 0, "buckets": 1}
    grads["noncontiguous"] = 0  # NCCL takes contiguous tensors only
    for rank in range(WORLD):
        got = step_counts[rank][(sync, *case)]
        assert got == {**COUNT_CASES[case], **grads}, (rank, got)


# ------------------------------------------------ one rank is the plain model (issue 20)
# `torchrun --nproc-per-node 1`: the data-parallel trainer must take the plain path (no
# wrapper, no collective), so that one GPU runs at the plain model's speed.
SINGLE_CASES = [("encoder", 12, 3), ("encoder", 12, None), ("topk_sae", 12, None)]
SINGLE_ROWS, SINGLE_STEPS = 24, 4


def _single_run(kind: str, k: int, m: int | None, wrap) -> tuple[dict, list]:
    """train_steps for SINGLE_STEPS on fixed rows, logging every step; (weights, history)."""
    from implicit_em.train.distributed import train_steps

    model = build(kind, k).float()  # train_steps feeds float32 rows
    torch.manual_seed(2)
    rows = torch.randn(SINGLE_ROWS, D)
    res = train_steps(wrap(model), rows, LossConfig(tc_probes=m), global_batch=WORLD * ROWS,
                      steps=SINGLE_STEPS, seed=3, log_every=1)  # fmt: skip
    return {n: p.detach().clone() for n, p in model.named_parameters()}, res["history"]


def _single_rank_worker(rank: int) -> dict:
    from implicit_em.train.distributed import wrap_ddp

    counts: dict[str, int] = {}
    wrapped: list[bool] = []
    out = {}

    def wrap(model):
        net = wrap_ddp(model, torch.device("cpu"))
        wrapped.append(net is not model)
        return net

    with counted_collectives(counts):
        for case in SINGLE_CASES:
            counts.clear()
            counts.update(all_reduce=0, all_gather=0, broadcast=0, **{"async": 0})
            weights, history = _single_run(*case, wrap)
            out[case] = (weights, history, dict(counts), wrapped[-1])
    return out


@pytest.fixture(scope="module")
def single_rank() -> dict:
    return run_on_ranks(_single_rank_worker, 1)[0]


@pytest.mark.parametrize("case", SINGLE_CASES)
def test_one_rank_is_the_plain_path(single_rank, case):
    """World size 1: no wrapper, no collective, and weights and logged terms bitwise equal to
    the same steps without torch.distributed."""
    weights, history, counts, wrapped = single_rank[case]
    assert not wrapped
    assert counts == {"all_reduce": 0, "all_gather": 0, "broadcast": 0, "async": 0}, counts
    ref_weights, ref_history = _single_run(*case, lambda model: model)
    assert weights.keys() == ref_weights.keys()
    for name, w in ref_weights.items():
        assert torch.equal(weights[name], w), name
    assert history == ref_history


# ------------------------------------------------ one compiled graph at world size 2 (issue 20)
GRAPH_CASES = [(12, 3), (12, None), (5, None)]  # sketch; exact through the Gram; exact K x K


def _graph_worker(rank: int) -> dict:
    from implicit_em.train.distributed import ModelStepper, correlation_probes

    out = {}
    for k, m in GRAPH_CASES:
        model = build("encoder", k)
        stepper = ModelStepper(model, LossConfig(tc_probes=m), lr=1e-3, probe_seed=0)
        x = batch()[rank * ROWS : (rank + 1) * ROWS]
        v = None if m is None else correlation_probes(k, m, x, torch.Generator().manual_seed(0))
        torch._dynamo.reset()
        ex = torch._dynamo.explain(stepper._forward)(x, None, v)
        out[(k, m)] = (ex.graph_count, ex.graph_break_count)
    return out


def test_the_sharded_step_is_one_compiled_graph():
    """The InfoMax collectives are functional collectives that torch.compile traces, so the
    step's forward (and the loss) is one graph with no break on every rank; with eager
    `dist.all_reduce` inside autograd Functions it was 7 graphs (6 breaks) for the sketch,
    and two H200s ran slower than one (docs/scale/ddp/README.md)."""
    got = run_on_ranks(_graph_worker, WORLD)
    for rank in range(WORLD):
        assert got[rank] == {case: (1, 0) for case in GRAPH_CASES}, (rank, got[rank])
