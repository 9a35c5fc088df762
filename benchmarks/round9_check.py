"""Issue 19, round 9: does the whole-step CUDA graph (`bench_scale.GraphStep`) train as the
plain step does? Run first in docs/scale/round9_run.sh, before any timing.

For the exact-penalty encoder and the L1 SAE (no random numbers in either step, so both paths
see the same arithmetic): two copies from one init, K = 1024, D = 64, B = 256, float32, TF32
on as in bench_scale, the forward and loss compiled in mode "default" on both paths. The
graphed copy takes `WHOLE_GRAPH_WARMUP` warm-up steps and one replay on batch 0, then one
replay on each of batches 1, 2, 3; the plain copy takes the same steps on the same batches.
It prints, per model, the largest absolute difference of any parameter over the largest
absolute parameter value, and "same" when that ratio is at most TOL (1e-5), else
"DIFFERENT". Exit 0 when both are the same, 1 otherwise, 2 without a CUDA device (one line).

    python benchmarks/round9_check.py
"""

from __future__ import annotations

import sys

import torch
from bench_scale import WHOLE_GRAPH_WARMUP, make_step  # the script's folder is on sys.path

from implicit_em.config import LossConfig
from implicit_em.models import Encoder, StandardSAE

TOL = 1e-5
K, D, B = 1024, 64, 256


def compare(build, device: torch.device) -> float:
    """Largest |plain - graphed| over all parameters, over the largest |parameter|."""
    torch.manual_seed(0)
    plain, graphed = build().to(device), build().to(device)
    graphed.load_state_dict(plain.state_dict())
    x = [torch.randn(B, D, device=device) for _ in range(4)]
    g = make_step(graphed, x, LossConfig(), amp=False, compile="default", with_wr=False,
                  whole_graph=True)  # fmt: skip
    seq = [x[0]] * (WHOLE_GRAPH_WARMUP + 1) + x[1:]
    p = make_step(plain, seq, LossConfig(), amp=False, compile="default", with_wr=False)
    for _ in range(len(x)):
        g()
    for _ in range(len(seq)):
        p()
    torch.cuda.synchronize(device)
    diff = max((a - b).abs().max().item() for a, b in
               zip(plain.parameters(), graphed.parameters(), strict=True))  # fmt: skip
    scale = max(a.abs().max().item() for a in plain.parameters())
    return diff / scale


def main() -> int:
    if not torch.cuda.is_available():
        print("round9_check: needs a CUDA device (the whole-step graph is GPU only)")
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True
    device = torch.device("cuda")
    ok = True
    for name, build in (("encoder (exact)", lambda: Encoder(D, K)),
                        ("standard_sae", lambda: StandardSAE(D, K))):  # fmt: skip
        r = compare(build, device)
        same = r <= TOL
        ok &= same
        print(f"round9_check {name}: max |plain - graphed| / max |param| = {r:.3g}: "
              f"{'same' if same else 'DIFFERENT'} (tolerance {TOL:g})")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
