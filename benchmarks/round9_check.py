"""Issue 19, round 9: does the whole-step CUDA graph (`bench_scale.GraphStep`) train as the
plain step does? Run first in docs/scale/round9_run.sh, before any timing.

For the exact-penalty encoder and the L1 SAE (no random numbers in either step, so both paths
see the same arithmetic): two copies from one init, K = 1024, D = 64, B = 256, float32, TF32
on as in bench_scale, the forward and loss compiled in mode "default" on both paths. The
graphed copy takes `WHOLE_GRAPH_WARMUP` warm-up steps and one replay on batch 0, then one
replay on each of batches 1, 2, 3; the plain copy takes the same steps on the same batches.
Per model it prints r = sum |plain - graphed| / sum |plain - init| over all parameters (how
far apart the two copies ended, against how far training moved them) and the largest
absolute difference, and "same" when r <= TOL (1e-3): a stale batch or a frozen step
counter moves r to 0.04 or more, while one rounding difference that flips the sign of an
Adam update moves it by about 1e-5. Exit 0 when both are the same, 1 otherwise, 2 without a
CUDA device (one line).

Reported beside, deciding nothing: the same comparison for the sketched encoder (32 probes)
under bf16 autocast, the timed row's loss, with torch's seed reset before each copy trains
(the graph-safe RNG should give replay k the random numbers of eager step k).

    python benchmarks/round9_check.py
"""

from __future__ import annotations

import sys

import torch
from bench_scale import WHOLE_GRAPH_WARMUP, make_step  # the script's folder is on sys.path

from implicit_em.config import LossConfig
from implicit_em.models import Encoder, StandardSAE

TOL = 1e-3
K, D, B = 1024, 64, 256


def compare(build, device: torch.device, loss: LossConfig, amp: bool) -> tuple[float, float]:
    """(sum |plain - graphed| / sum |plain - init|, max |plain - graphed|) over all parameters
    after the same 7 steps on both paths."""
    torch.manual_seed(0)
    plain, graphed = build().to(device), build().to(device)
    graphed.load_state_dict(plain.state_dict())
    init = [p.detach().clone() for p in plain.parameters()]
    x = [torch.randn(B, D, device=device) for _ in range(4)]
    g = make_step(graphed, x, loss, amp=amp, compile="default", with_wr=False, whole_graph=True)
    seq = [x[0]] * (WHOLE_GRAPH_WARMUP + 1) + x[1:]
    p = make_step(plain, seq, loss, amp=amp, compile="default", with_wr=False)
    torch.manual_seed(1)  # the sketch's probes: the same stream for both copies
    for _ in range(len(x)):
        g()
    torch.manual_seed(1)
    for _ in range(len(seq)):
        p()
    torch.cuda.synchronize(device)
    pairs = list(zip(plain.parameters(), graphed.parameters(), init, strict=True))
    diff = sum((a - b).abs().sum().item() for a, b, _ in pairs)
    moved = sum((a - i).abs().sum().item() for a, _, i in pairs)
    return diff / moved, max((a - b).abs().max().item() for a, b, _ in pairs)


def main() -> int:
    if not torch.cuda.is_available():
        print("round9_check: needs a CUDA device (the whole-step graph is GPU only)")
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True
    device = torch.device("cuda")
    ok = True
    rows = (("encoder (exact)", lambda: Encoder(D, K), LossConfig(), False, True),
            ("standard_sae", lambda: StandardSAE(D, K), LossConfig(), False, True),
            ("encoder (sketched 32, bf16; reported only)", lambda: Encoder(D, K),
             LossConfig(tc_probes=32), True, False))  # fmt: skip
    for name, build, loss, amp, decides in rows:
        r, top = compare(build, device, loss, amp)
        same = r <= TOL
        ok &= same or not decides
        print(f"round9_check {name}: sum |plain - graphed| / sum |plain - init| = {r:.3g}, "
              f"max |plain - graphed| = {top:.3g}: {'same' if same else 'DIFFERENT'} "
              f"(tolerance {TOL:g})")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
