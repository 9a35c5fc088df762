"""The Python half of the per-plan CPU checks (docs/eval/synthetic/*/cpu-check*/run_checks.sh,
with cpu_check.sh):

- `init-check`: does each variant draw its reference's init? The untrained model as
  `eval.synthetic.untrained_model` draws it (torch.manual_seed(seed), then `make_model`), at the
  16k recipe's sizes (D = 768, true L0 34.3, the width given), compared parameter by parameter;
  one line per seed and variant (a check's init.log).
- `summary`: one line per row of the processes' results files, their untrained and trained MCC,
  L0, dead latents and steps (a check's summary.txt).

Run from the repository root with PYTHONPATH=src, e.g.
python docs/eval/synthetic/cpu_check.py init-check --width 4096 --same encoder encoder-im0.01
python docs/eval/synthetic/cpu_check.py summary "$TMP" i0 i1 e0 e1
"""

import argparse
import json
from pathlib import Path

import torch

from implicit_em.eval.options import VARIANTS
from implicit_em.eval.synthetic import make_model

D = 768  # the 16k recipe's input dim
TRUE_L0 = 34.3  # the 16k recipe's true L0


def draw(name: str, seed: int, width: int) -> dict[str, torch.Tensor]:
    """The state dict of variant `name`'s untrained model for `seed` at width `width`."""
    torch.manual_seed(seed)
    return make_model(VARIANTS[name], D, width, TRUE_L0).state_dict()


def init_check(width: int, groups: list[list[str]], seeds: list[int]) -> None:
    """Print, seed by seed, whether each group's variants draw its first variant's init."""
    for seed in seeds:
        for ref, *names in groups:
            want = draw(ref, seed, width)
            for name in names:
                got = draw(name, seed, width)
                same = got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
                print(f"seed {seed}: {name} init == {ref} init (D {D}, width {width:,}): {same}")


def summary(runs: Path, processes: list[str], dead: bool, trained_digits: int | None) -> None:
    """Print a header, then one line per row of runs/<process>/rows/results.json."""
    dead_column = ["dead"] if dead else []
    print("process variant seed untrained_mcc trained_mcc L0", *dead_column, "steps_done latents")
    for p in processes:
        d = json.loads((runs / p / "rows" / "results.json").read_text())
        for r in d["rows"]:
            trained = r["trained"]["mcc"]
            if trained_digits is not None:
                trained = round(trained, trained_digits)
            dead_latents = [r["trained"]["dead_latents"]] if dead else []
            print(
                p,
                r["variant"],
                r["seed"],
                r["untrained"]["mcc"],  # a float prints as its repr: every digit
                trained,
                round(r["trained"]["l0"], 1),
                *dead_latents,
                r["steps_done"],
                d["options"]["latents"],
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init-check", help="the shared inits, parameter by parameter")
    init.add_argument("--width", type=int, required=True, help="latents (4096 or 16384)")
    init.add_argument(
        "--same",
        nargs="+",
        action="append",
        required=True,
        metavar="VARIANT",
        help="a reference variant, then the variants that must draw its init (repeatable)",
    )
    init.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    rows = commands.add_parser("summary", help="the rows of the processes' results files")
    rows.add_argument("runs", type=Path, help="the folder of the processes' output folders")
    rows.add_argument("processes", nargs="+", help="the processes, in the order printed")
    rows.add_argument("--no-dead", dest="dead", action="store_false", help="no dead column")
    rows.add_argument(
        "--trained-digits", type=int, help="round the trained MCC to this many digits"
    )
    args = parser.parse_args()
    if args.command == "init-check":
        if any(len(group) < 2 for group in args.same):
            parser.error("each --same needs a reference and at least one variant to compare")
        unknown = sorted({name for group in args.same for name in group} - VARIANTS.keys())
        if unknown:
            parser.error(f"unknown variants {unknown}: the names are eval.options.VARIANTS's")
        init_check(args.width, args.same, args.seeds)
    else:
        summary(args.runs, args.processes, args.dead, args.trained_digits)


if __name__ == "__main__":
    main()
