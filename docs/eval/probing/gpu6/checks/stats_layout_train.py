"""Do the two statistics layouts change trained weights when the fused kernels are used?
(gpu6.md, "Reproduction check"). Trains Encoder(64, 256) for STEPS Adam steps (lr 1e-3,
B = 512 rows of one fixed N(0, 1) draw of 4,096 x 64, cycled; 8 sketch probes; wr out of the
step) through `losses.infomax_terms` with the fused path forced on, under Triton's
interpreter on the CPU, once with STATS {"rows": 256, "shift": False} (gpu3's layout) and
once with {"rows": 512, "shift": True} (gpu6's), from the same seed, and prints whether the
final weights are bitwise equal and their largest absolute difference. AMP: "fp32" or
"bf16" (bf16 autocast, as the probing study trains on the GPU).

    PYTHONPATH=src python docs/eval/probing/gpu6/checks/stats_layout_train.py fp32 30
    PYTHONPATH=src python docs/eval/probing/gpu6/checks/stats_layout_train.py bf16 30
"""

import os
import sys

os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported

import torch  # noqa: E402

from implicit_em.config import LossConfig  # noqa: E402
from implicit_em.kernels import fused_mode  # noqa: E402
from implicit_em.kernels import triton_infomax as ti  # noqa: E402
from implicit_em.models import Encoder  # noqa: E402
from implicit_em.train.loop import loss_terms, optimizer_step, term_weights  # noqa: E402


def train(stats: dict, amp: bool, steps: int) -> list[torch.Tensor]:
    old = dict(ti.STATS)
    ti.STATS.update(stats)
    try:
        torch.manual_seed(0)
        model = Encoder(64, 256)
        x = torch.randn(4096, 64)
        loss = LossConfig(tc_probes=8)
        w = term_weights("encoder", loss, 256)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        with fused_mode("on"):
            for i in range(steps):
                xb = x[(i % 8) * 512 : (i % 8 + 1) * 512]
                t = loss_terms(model, xb, loss, None, amp, with_wr=False)
                optimizer_step(model, opt, sum(w[k] * t[k] for k in w if k in t))
        return [p.detach().clone() for p in model.parameters()]
    finally:
        ti.STATS.update(old)


def main() -> None:
    amp, steps = sys.argv[1] == "bf16", int(sys.argv[2])
    torch.set_num_threads(1)
    a = train({"rows": 256, "shift": False}, amp, steps)
    b = train({"rows": 512, "shift": True}, amp, steps)
    same = all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    diff = max((u - v).abs().max().item() for u, v in zip(a, b, strict=True))
    print(f"{sys.argv[1]}, {steps} steps: bitwise equal {same}, max abs difference {diff:.3g}")


if __name__ == "__main__":
    main()
