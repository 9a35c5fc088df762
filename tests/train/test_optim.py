"""StackedOptimizer against torch.optim: each model's slices move as its own optimizer moves
them (float64, several steps, different learning rates, a frozen model, fused and not)."""

from __future__ import annotations

import pytest
import torch

from implicit_em.train.optim import StackedOptimizer


@pytest.mark.parametrize(("name", "fused"), [("adam", False), ("adam", True), ("sgd", False)])
def test_each_model_steps_like_torch_optim(name, fused):
    if fused and not hasattr(torch, "_fused_adam_"):
        pytest.skip("this torch has no fused Adam kernel")
    gen = torch.Generator().manual_seed(0)
    # Learning rates are held as float32 (as the trainer always did): powers of two keep the
    # float64 comparison exact.
    n, lrs = 4, [2**-10, 2**-7, 2**-10, 2**-4]
    dtype = torch.float32 if fused else torch.float64  # the fused CPU kernel: float32 only
    shapes = {"w": (n, 5, 3), "b": (n, 5)}
    params = {k: torch.randn(*s, generator=gen, dtype=dtype) for k, s in shapes.items()}
    singles = [{k: v[i].clone().requires_grad_() for k, v in params.items()} for i in range(n)]
    make = torch.optim.Adam if name == "adam" else torch.optim.SGD
    refs = [make(list(p.values()), lr=lr) for p, lr in zip(singles, lrs, strict=True)]
    alive = torch.ones(n, dtype=torch.bool)
    opt = StackedOptimizer(params, lrs, alive, name, fused=fused)
    frozen = {k: v[2].clone() for k, v in params.items()}
    for step in range(5):
        grads = {k: torch.randn(*s, generator=gen, dtype=dtype) for k, s in shapes.items()}
        for k, v in params.items():
            v.grad = grads[k].clone()
        if step == 2:
            alive[2] = False  # model 2 diverged: frozen from here on
            frozen = {k: v[2].clone() for k, v in params.items()}
        opt.step()
        for i, (p, ref) in enumerate(zip(singles, refs, strict=True)):
            if step >= 2 and i == 2:
                continue
            for k in p:
                p[k].grad = grads[k][i].clone()
            ref.step()
    tol = {"rtol": 1e-5, "atol": 1e-6} if fused else {"rtol": 1e-12, "atol": 1e-14}
    for i in range(n):
        for k, v in params.items():
            want = frozen[k] if i == 2 else singles[i][k].detach()
            if i == 2:
                torch.testing.assert_close(v[i], want, rtol=0, atol=0)
            elif i != 2:
                torch.testing.assert_close(v[i], want, **tol, msg=f"model {i} {k}")


def test_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="adam or sgd"):
        StackedOptimizer({"w": torch.zeros(2, 3)}, [0.1, 0.1], torch.ones(2, dtype=bool), "rmsprop")


def test_multi_tensor_adam_matches_the_tensor_only_update():
    """The opt-in multi-tensor Adam (torch's fused kernel over all models of a learning rate,
    no host reads) against the per-parameter tensor-only update, float32, 50 steps: equal to
    float32 rounding (bias corrections included); a model frozen mid-way stays bitwise frozen."""
    gen = torch.Generator().manual_seed(1)
    n, lrs = 5, [1e-3, 1e-3, 3e-3, 1e-3, 1e-2]  # runs of equal rates, one rate in two runs
    shapes = {"w": (n, 6, 4), "b": (n, 6)}
    start = {k: torch.randn(*s, generator=gen) for k, s in shapes.items()}
    ref = {k: v.clone() for k, v in start.items()}
    new = {k: v.clone() for k, v in start.items()}
    alive_ref, alive_new = torch.ones(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)
    opt_ref = StackedOptimizer(ref, lrs, alive_ref, "adam", fused=False)
    opt_new = StackedOptimizer(new, lrs, alive_new, "adam", multi_tensor=True)
    for step in range(50):
        grads = {k: torch.randn(*s, generator=gen) for k, s in shapes.items()}
        if step == 20:
            alive_ref[3] = alive_new[3] = False  # model 3 diverged: frozen from here on
            frozen = {k: v[3].clone() for k, v in new.items()}
            grads["w"][3] = float("nan")  # what a diverged model's gradient may hold
        for k in shapes:
            ref[k].grad, new[k].grad = grads[k].clone(), grads[k].clone()
        opt_ref.step()
        opt_new.step()
    for k in shapes:
        torch.testing.assert_close(new[k][3], frozen[k], rtol=0, atol=0)
        live = [0, 1, 2, 4]
        torch.testing.assert_close(new[k][live], ref[k][live], rtol=1e-6, atol=1e-7)
        assert not torch.equal(new[k][live], start[k][live])  # they did move
    assert len(opt_new._groups) == 3  # one fused call per learning rate
