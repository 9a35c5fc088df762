"""Do the two statistics layouts of the fused kernels give different numbers? (gpu6.md,
"Reproduction check"). Runs `kernels.infomax.combine_stats` under Triton's interpreter on the
CPU on one ReLU code a (1024, 64), float32, seed 0, with STATS {"rows": 256, "shift": False}
(gpu3's layout) and {"rows": 512, "shift": True} (gpu6's), and prints, per output, whether the
two are bitwise equal and their largest absolute difference.

    PYTHONPATH=src python docs/eval/probing/gpu6/checks/stats_layout_interp.py
"""

import os

os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported

import torch  # noqa: E402

from implicit_em.kernels import infomax as ki  # noqa: E402
from implicit_em.kernels import triton_infomax as ti  # noqa: E402

torch.manual_seed(0)
a = torch.relu(torch.randn(1024, 64) + 0.3)
old = dict(ti.STATS)
outs = []
try:
    for cfg in ({"rows": 256, "shift": False}, {"rows": 512, "shift": True}):
        ti.STATS.update(cfg)
        outs.append(ki.combine_stats(a.clone())[1:])  # row_lse (B,), mean (K,), ss (K,)
finally:
    ti.STATS.update(old)
for name, x, y in zip(("row_lse", "mean", "ss"), *outs, strict=True):
    print(f"{name}: bitwise equal {torch.equal(x, y)}, max abs difference "
          f"{(x - y).abs().max().item():.3g}")  # fmt: skip
