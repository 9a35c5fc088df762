"""Tokens/s of the scale trainer's own step (`train.distributed.train_steps`, one rank): the
sketched encoder with the fused kernels against the plain formulas, beside the L1 SAE.

`train_steps` takes the fused InfoMax kernels at one rank only with
`train.distributed.TERMS["fused_one_rank"]` (docs/benchmarks.md, "Round 9" and "Round 9b":
off after round 9, on again after 9b), and inside a compiled step only with
`TERMS["fused_compiled"]` (off since round 11); each row here sets both (on for the fused
modes, off for "off"). bench_scale.py times
`train.loop`'s step instead. Rows: "encoder_sketch{P}+{mode}" for each
--fused-modes entry (`kernels.fused_mode`: "auto", "on" or "off"), with --bf16-codes also
"encoder_sketch{P}+{mode}/bf16" for each fused mode (the codes kept in bf16 for the kernels,
`TERMS["amp_codes"]`), with --triton-ops also "encoder_sketch{P}+{mode}/triton" for each
fused mode (the kernels called as torch.library.triton_op, `kernels.infomax.OPS`; issue 19's
round 12), and "standard_sae". A row that raises is recorded with its error and NaN tokens/s,
and the other rows go on. Every
row trains a fresh model from seed 0 on the same random N(0, 1) data (8 batches' worth),
--steps steps after --warmup (tokens/s as `train_steps` measures it, over the steps after the
warm-up); --repeats rounds, the rows' order turning by one each round. Prints a table of the
median tokens/s per row, the ratio of each fused mode to "off" per round (and of each bf16-codes
row to its float32-codes row, each triton-ops row to its custom-ops row), and writes the JSON
with --out after every row.

    python benchmarks/bench_train_steps.py --amp bf16 --repeats 3 --out r.json   # a GPU
    TRITON_INTERPRET=1 python benchmarks/bench_train_steps.py --device cpu --K 64 --D 8 \\
        --B 32 --steps 3 --warmup 1 --fused-modes on,off                        # CPU smoke
    python benchmarks/bench_train_steps.py --amp bf16 --repeats 5 --compile --triton-ops  # round 12
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import traceback

import torch
from bench_scale import pick_device, rotation, write_json  # the script's folder is on sys.path

from implicit_em.config import LossConfig
from implicit_em.kernels import fused_active, fused_mode
from implicit_em.kernels import infomax as fused_impl
from implicit_em.models import Encoder, StandardSAE
from implicit_em.train import distributed
from implicit_em.train.distributed import train_steps

# A row's suffix after "/": the settings it changes from its fused mode's row
VARIANTS = {"": {"codes": "float32", "ops": "custom"}, "bf16": {"codes": "bf16", "ops": "custom"},
            "triton": {"codes": "float32", "ops": "triton"}}  # fmt: skip
BASE_RATIO = {"bf16": "over_float32_codes", "triton": "over_custom_ops"}


@contextlib.contextmanager
def one_rank_terms(on: bool, codes: str = "float32", ops: str = "custom"):
    """`train.distributed.TERMS` set inside the block ("fused_one_rank" and "fused_compiled"
    to `on`, "amp_codes" to `codes`) and `kernels.infomax.OPS["kind"]` to `ops`, restored
    after (each row sets them, whatever the defaults: a fused row times the kernels under
    --compile too)."""
    old, old_ops = dict(distributed.TERMS), dict(fused_impl.OPS)
    distributed.TERMS.update(fused_one_rank=on, fused_compiled=on, amp_codes=codes)
    fused_impl.OPS.update(kind=ops)
    try:
        yield
    finally:
        distributed.TERMS.update(old)
        fused_impl.OPS.update(old_ops)


def run_row(name: str, args, x: torch.Tensor, amp: bool) -> dict:
    """One training run of row `name`: tokens/s and whether the fused path was active."""
    torch._dynamo.reset()  # the fused mode is read when a compiled step is traced
    torch.manual_seed(0)
    sae = name == "standard_sae"
    model = (StandardSAE if sae else Encoder)(args.D, args.K).to(x.device)
    loss = LossConfig() if sae else LossConfig(tc_probes=args.probes)
    mode, _, variant = ("off" if sae else name.rsplit("+", 1)[1]).partition("/")
    with fused_mode(mode), one_rank_terms(not sae and mode != "off", **VARIANTS[variant]):
        active = not sae and fused_active(torch.empty(1, device=x.device))
        res = train_steps(model, x, loss, global_batch=args.B, steps=args.warmup + args.steps,
                          warmup=args.warmup, amp=amp, compile=args.compile)  # fmt: skip
    return {"tokens_per_s": res["tokens_per_s"], "fused_active": active}


def try_row(name: str, args, x: torch.Tensor, amp: bool) -> dict:
    """`run_row`, or for a row that raises, its error (the traceback printed) and NaN
    tokens/s: a new path failing on a new machine leaves the other rows timed."""
    try:
        return run_row(name, args, x, amp)
    except Exception as e:  # any failure of one row is that row's result
        print(f"row {name} failed:\n{traceback.format_exc()}", flush=True)
        return {"tokens_per_s": math.nan, "fused_active": None,
                "error": f"{type(e).__name__}: {e}"[:2000]}  # fmt: skip


def shape_parser(doc: str, steps: int) -> argparse.ArgumentParser:
    """The parser of the scale trainer's scripts (this one, profile_train_steps.py): the shape
    (--K, --D, --B, --probes), --steps (default `steps`), --warmup and --device."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--K", type=int, default=16384)
    p.add_argument("--D", type=int, default=576)
    p.add_argument("--B", type=int, default=4096)
    p.add_argument("--probes", type=int, default=32)
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--device", default="auto")
    return p


def scale_data(args, device: torch.device) -> torch.Tensor:
    """8 batches of N(0, 1) rows (8 B, D) on `device`, seeded; TF32 matmuls allowed (as
    bench_scale)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    return torch.randn(8 * args.B, args.D, generator=torch.Generator().manual_seed(1)).to(device)


def main(argv: list[str] | None = None) -> int:
    p = shape_parser(__doc__, steps=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--amp", choices=("none", "bf16"), default="none")
    p.add_argument("--compile", action="store_true", help="train_steps(compile=True)")
    p.add_argument("--fused-modes", default="auto,off",
                   help="comma-separated kernels.fused_mode values, one encoder row each")  # fmt: skip
    p.add_argument("--bf16-codes", action="store_true",
                   help="also a row per fused mode with TERMS['amp_codes'] = 'bf16' "
                        "(named '+MODE/bf16'; needs --amp bf16)")  # fmt: skip
    p.add_argument("--triton-ops", action="store_true",
                   help="also a row per fused mode with the kernels called as "
                        "torch.library.triton_op, kernels.infomax.OPS (named '+MODE/triton')")  # fmt: skip
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    modes = [m for m in args.fused_modes.split(",") if m]
    bad = [m for m in modes if m not in ("auto", "on", "off")]
    if bad or not modes:
        raise SystemExit(f"--fused-modes {args.fused_modes!r}: give auto, on or off, "
                         "comma-separated")  # fmt: skip
    if args.bf16_codes and args.amp != "bf16":
        raise SystemExit("--bf16-codes needs --amp bf16: without autocast the codes are float32")
    device = pick_device(args.device)
    x = scale_data(args, device)
    names = [f"encoder_sketch{args.probes}+{m}" for m in modes]
    names += [f"encoder_sketch{args.probes}+{m}/bf16" for m in modes
              if m != "off" and args.bf16_codes]  # fmt: skip
    names += [f"encoder_sketch{args.probes}+{m}/triton" for m in modes
              if m != "off" and args.triton_ops]  # fmt: skip
    names += ["standard_sae"]
    res = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "torch": torch.__version__, "shape": {"B": args.B, "D": args.D, "K": args.K},
           "amp": args.amp, "compile": args.compile, "steps": args.steps, "warmup": args.warmup,
           "rounds": [], "rows": {}}  # fmt: skip
    for order in rotation(names, args.repeats):
        res["rounds"].append({})
        for n in order:  # the JSON after every row: a run cut short keeps what it timed
            res["rounds"][-1][n] = try_row(n, args, x, args.amp == "bf16")
            if args.out:
                write_json(res, args.out)
    for n in names:
        tps = [r[n]["tokens_per_s"] for r in res["rounds"]]
        res["rows"][n] = {"tokens_per_s": tps, "median": statistics.median(tps),
                          "fused_active": res["rounds"][0][n]["fused_active"]}  # fmt: skip
        errors = [r[n]["error"] for r in res["rounds"] if "error" in r[n]]
        if errors:
            res["rows"][n]["errors"] = errors
    off = f"encoder_sketch{args.probes}+off"
    lines = ["| row | fused active | tokens/s (median) | per round | over +off, per round |",
             "|---|---|---|---|---|"]  # fmt: skip
    for n, r in res["rows"].items():
        ratio = ([a / b for a, b in zip(r["tokens_per_s"], res["rows"][off]["tokens_per_s"],
                                        strict=True)] if off in res["rows"] and n != off
                 and n != "standard_sae" else None)  # fmt: skip
        r["over_off"] = ratio
        lines.append(f"| {n} | {r['fused_active']} | {r['median']:,.0f} | "
                     + ", ".join(f"{t:,.0f}" for t in r["tokens_per_s"]) + " | "
                     + (", ".join(f"{q:.2f}x" for q in ratio) if ratio else "-") + " |")  # fmt: skip
    for n, r in res["rows"].items():  # a variant against its fused mode's row
        base_name, _, variant = n.partition("/")
        base = res["rows"].get(base_name)
        if variant and base:
            key = BASE_RATIO[variant]
            r[key] = [a / b for a, b in zip(r["tokens_per_s"], base["tokens_per_s"], strict=True)]
            lines.append(f"\n{n} over {base_name}, per round: "
                         + ", ".join(f"{q:.3f}x" for q in r[key]))  # fmt: skip
    for n, r in res["rows"].items():
        if "errors" in r:
            lines.append(f"\n{n} FAILED in {len(r['errors'])} of {len(r['tokens_per_s'])} "
                         f"rounds: {r['errors'][0][:300]}")  # fmt: skip
    print(json.dumps(res, indent=1))
    print("\n".join(lines))
    if args.out:
        write_json(res, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
