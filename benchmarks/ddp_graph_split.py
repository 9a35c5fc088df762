"""Issue 20 diagnosis: is the data-parallel trainer slow on one GPU because dynamo splits the
compiled graph at DDP bucket boundaries (`torch._dynamo.config.optimize_ddp`, on by default)?

Runs `implicit_em.train.distributed` with that switch set by the first argument, the other
arguments passed through; compare the tokens/s of the JSON it writes for "split" and "nosplit"
with the same command, and with `implicit_em.train.modules` (the same model and loss, no DDP):

    torchrun --standalone --nproc-per-node 1 benchmarks/ddp_graph_split.py nosplit \
        --random-tokens 500000 --hidden-dim 16384 --batch-size 4096 --steps 220 --warmup 20 \
        --amp --compile --tc-probes 32 --out enc_nosplit.json
"""

import runpy
import sys

import torch._dynamo

if len(sys.argv) < 2 or sys.argv[1] not in ("split", "nosplit"):
    sys.exit("usage: ddp_graph_split.py split|nosplit [implicit_em.train.distributed options]")
torch._dynamo.config.optimize_ddp = sys.argv.pop(1) == "split"
runpy.run_module("implicit_em.train.distributed", run_name="__main__", alter_sys=True)
