"""Three seeds of the 16k headline rows at 49.1 M samples (docs/eval/synthetic/gpu16k-converged.md,
sections 4 and 5), from the files in docs/eval/synthetic/gpu16k-converged/:

- seed 0: `rows/results.json` (the first converged run, one stream with seed 0);
- seeds 1 and 2: `seeds/seed{1,2}.json` (`--role rows --seed-list S --steps 47927`, each seed its
  own stream and init), and `seeds/matryoshka_seed{1,2}.json` (the same, Matryoshka alone);
- gpu16k-next-PLAN.md call 1 (section 5): `seeds/call1/s0.json` (seed 0 of
  `matryoshka-k25-sl-all`, `jumprelu-0.001` and `matryoshka-k25`), `seeds/call1/s1.json` (seed 1
  of `matryoshka-k25-sl-all`); seed 2 of `matryoshka-k25-sl-all` from `seeds/call1/s2-report.md`
  (`eval.synthetic.rows_from_report`: its results.json did not come back from the device, so
  that row has only the report's printed numbers, MCC and F1 to 3 decimals, L0 to 1);
- gpu16k-jumprelu-PLAN.md (section 6): JumpReLU at matched L0, `seeds/jumprelu/jr1/s{1,2}.json`
  (`jumprelu-0.0005`, seeds 1 and 2), `seeds/jumprelu/jr2/s{0,1}.json` (`jumprelu-0.0007`,
  `-0.0008`, `-0.0009`, seeds 0 and 1) and `seeds/jumprelu/jr3/s2.json` (seed 2 of
  `jumprelu-0.0008`, run after the plan's rule had picked it on seeds 0 and 1); with
  `jumprelu-0.003` and `jumprelu-0.01` (seed 0, section 3's run) the JumpReLU L0 sweep runs
  from 9.1 to 101.5;
- gpu16k-variants-PLAN.md (gpu16k-variants.md): `encoder-wr` (the weight-redundancy term,
  decoder-free), seeds 0, 1, 2 from `gpu16k-variants/c2-f2.json`, `c3-s1.json` and
  `c4-s2.json`; that plan's other variants at the full length, one seed each:
  `encoder-softplus` and `encoder-unit-rows` (seed 0, `c1-f1.json`; its `encoder` row, the
  plan's reproduction check, is left out: section 4's seed 0 is the table's), `encoder-centred`
  and `encoder-wr-centred` (seed 0, `c5-p1.json`, `c5-p2.json`, gpu16k-centred-PLAN.md), and seed
  1 of `encoder-softplus` and `encoder-unit-rows` (`c7-s1.json`, `c7-u1.json`, ninth session,
  gpu16k-width16k-PLAN.md rule 5); rows
  short of 47,927 steps are in `gpu16k_variants_table.py` only;
- Standard L1 (`standard-l1-3.0`, `standard-l1-10.0`: the decoder-norm-weighted L1 at
  coefficients 3 and 10), seed 0, from section 3's `rows/results.json` (one seed each; the
  tenth session added them here: they were in that file but not in this table);
- gpu16k-matched-l0-PLAN.md (gpu16k-matched-l0.md, tenth session): TopK and tied TopK at the
  encoder's L0 (`topk-k214`, `tied-topk-k214`), seeds 0 and 1 (`gpu16k-matched-l0/m.json`,
  `m1.json`); decoder-free pre-training then TopK (`topk-pretrained`, `p.json`) and its
  control, TopK for the same second half of the steps from random init (`topk-half`,
  `h.json`), seed 0 each;
- gpu16k-next11-PLAN.md (gpu16k-next11.md, eleventh session): wr in combination
  (`encoder-wr-softplus`, `encoder-wr-unit-rows`), seeds 0-2 (`gpu16k-next11/n1-w0.json`,
  `n1-w1.json`, `n2-a2.json`, `n2-b2.json`); seed 2 of `encoder-softplus`, `encoder-unit-rows`,
  `topk-k214` and `tied-topk-k214` (`n2-a2.json`, `n2-b2.json`); seed 1 of `encoder-centred`
  and `encoder-wr-centred` (`n3-c1.json`, `n3-d1.json`); and from the thirteenth session (one
  H200, the same plan's commands): seed 2 of the centred rows (`n4-c2.json`, `n4-d2.json`) and
  seed 1 of `topk-pretrained` and `topk-half` (`n6-p1.json`); from the fourteenth session
  (nvidia-h200-x2) their seed 2 (`n8-p2.json`);
- gpu16k-k214-PLAN.md (gpu16k-k214.md, fifteenth session): BatchTopK and Matryoshka with
  sae-lens's protocol at the encoder's L0 (`batchtopk-k214-sl-all`, `matryoshka-k214-sl-all`),
  seeds 0-2 (`gpu16k-k214/a0.json`, `a1.json`, `b2.json`; every init check of that plan passed,
  gpu16k_k214_table.py);
- gpu16k-bt-seed0-PLAN.md (gpu16k-bt-seed0.md, fifteenth session): seed 0 of sae-lens's
  protocol (`batchtopk-k25-sl-all`) at 49.1 M, `gpu16k-bt-seed0/s0.json`, added by the plan's
  rules 1-3 (its untrained MCC exactly `BT_SEED0_INIT`, 47,927 steps; a row that fails either
  is printed and left out), so that row has seeds 0-2. Until then its seed 0 was only the
  50.0 M milestone of the 200 M run (harness-gap/gpu200m/ref.json); that milestone is still
  printed beside the table as the 200 M run's, not a row of it;
- gpu16k-k304-PLAN.md (gpu16k-k304.md, sixteenth session): TopK at `encoder-wr`'s L0
  (`topk-k304`), seeds 0-2 (`gpu16k-k304/k0.json`, `k1.json`, `k2.json`), added by the plan's
  rules 1-3 (`k304_rows`: its untrained MCC exactly `K304_INIT` of its seed, 47,927 steps, L0
  inside `K304_L0`; a row that fails one is printed and left out).
- gpu16k-wr-hybrid-PLAN.md (gpu16k-wr-hybrid.md, sixteenth session): the hybrid with the
  weight-redundancy term (`tied-topk-im-3.0-wr`), seeds 0-2 (`gpu16k-wr-hybrid/w0.json`-`w2.json`),
  and gpu16k-im001-PLAN.md (gpu16k-im001.md, sixteenth session): the encoder with a hundredth
  of the InfoMax weights (`encoder-im0.01`), seeds 0-2 (`gpu16k-im001/i0.json`-`i2.json`); each
  added by its plan's rules 1-2 (`planned_rows`: untrained MCC exactly `K304_INIT` of its
  seed, the init these rows share with the encoder and TopK families, and 47,927 steps).
- gpu16k-im-sweep-PLAN.md (gpu16k-im-sweep.md, seventeenth session): the encoder with both
  InfoMax weights at 0.02, 0.03 and 0.05 of their reference-K values (`encoder-im0.02`,
  `encoder-im0.03`, `encoder-im0.05`), seeds 0-2 (`gpu16k-im-sweep/w0.json`-`w2.json`;
  `w2.json` is the fourth call's re-run, S2's results.json having been lost), and TopK at
  `encoder-im0.01`'s L0 (`topk-k12`), seeds 0-2 (`t0.json`-`t2.json`); added by that plan's
  rules 1-2 (`planned_rows` with `K304_INIT`, 47,927 steps) and, for `topk-k12`, rule 6's L0
  window `K12_L0` (`k12_rows`; `planned_rows` prints a row outside it under its own "rule 3").
- gpu16k-im-low-PLAN.md (gpu16k-im-low.md, seventeenth session, its single-GPU fallback): the
  encoder with both InfoMax weights at 0.003 of their reference-K values and at 0, the LSE
  alone (`encoder-im0.003`, `encoder-im0`), seeds 0 and 1 (`gpu16k-im-low/l0.json`,
  `l1.json`) and seed 2 (`l2.json`, eighteenth session, run beside gpu16k-im-cliff-PLAN.md's
  call C2); added by that plan's rules 1-2 (`planned_rows` with `K304_INIT`, 47,927 steps).
  The plan's `encoder-im0.001`, seeds 0-2: `m0.json`-`m2.json` (eighteenth session) were cut
  by the clock at ~42,350 steps, so rule 2 prints each row and leaves it out;
  `n0.json`-`n2.json` (nineteenth session) ran the full length and are added.
- gpu16k-im-cliff-PLAN.md (gpu16k-im-cliff.md, eighteenth session): the encoder with both
  InfoMax weights at 0.005 and 0.007 (`encoder-im0.005`, `encoder-im0.007`), seeds 0-2
  (`gpu16k-im-cliff/c0.json`-`c2.json`); added by that plan's rules 1-2 (`planned_rows` with
  `K304_INIT`, 47,927 steps).

The verdict takes the best SAE baseline among the SAE rows at L0 within 25 % of the target
L0 25 (`synthetic_verdict(target_l0=K)`; the rule of gpu16k-next-PLAN.md, fixed before call 1).
The headline JumpReLU coefficient is the one of the second JumpReLU call whose mean L0 over
seeds 0 and 1 is inside [18.75, 31.25] and nearest 25 (`eval.verdict.nearest_in_window`; the
rule of gpu16k-jumprelu-PLAN.md, fixed before that call); the script stops if that is not
`jumprelu-0.0008`, the coefficient whose seed 2 was run after.

Beside the table, not in it (another width and length): the rows at width 16,384, 26,818 steps
(27.5 M samples), from gpu16k-width16k/ (gpu16k-width16k.md): seed 0 (`c1-p2.json`:
`encoder-wr`, `tied-topk-im-3.0`; `c2-e.json`: `encoder`; `c2-t.json`: `tied-topk`), seed 1
of `encoder` and `tied-topk` (`c3-e.json`, `c3-t.json`; gpu16k-width16k-3-PLAN.md, fifteenth
session), and, from gpu16k-width16k-4-PLAN.md (sixteenth session), seed 1 of `encoder-wr` and
the hybrid (`c4-w.json`, `c4-h.json`) and seed 2 of all four (`c5-e.json`, `c5-t.json`,
`c6-w.json`, `c6-h.json`), and, from gpu16k-width16k-im001-PLAN.md (seventeenth session),
seeds 0-2 of `encoder-im0.01` (`c7-i0.json`, `c7-i1.json`, `c8-i2.json`), in the JSON's
"width16k" entry with their own `synthetic_verdict`. Each is added by that plan's rules 1 and 2 (`wide_rows`: 26,818 steps; the untrained MCC exactly
`WIDE_INIT` of its seed, or, for a seed with no committed value, the same in every row of the
seed); a row that fails is printed and left out.

Run from the repository root: python docs/eval/synthetic/gpu16k_seeds_table.py
Prints the markdown table, the JumpReLU sweep and the verdict
(`implicit_em.eval.verdict.synthetic_verdict`); writes docs/eval/synthetic/gpu16k-seeds.json
and gpu16k_seeds_mcc_vs_l0.png (MCC against L0, the JumpReLU sweep joined; needs matplotlib).
"""

import json
import math
from pathlib import Path

from implicit_em.eval.synthetic import _fmt, rows_from_report, summarise
from implicit_em.eval.verdict import (
    DECODER_FREE,
    L0_TOLERANCE,
    MARGIN,
    SAE,
    apart,
    at_own_l0,
    ground_truth_rows,
    matched_l0,
    nearest_in_window,
    synthetic_verdict,
)

ROOT = Path("docs/eval/synthetic")
RUN = ROOT / "gpu16k-converged"
HEADLINE = ("tied-topk", "tied-topk-im-3.0", "batchtopk-k25-sl-all", "topk-k25",
            "matryoshka-k25", "encoder", "matryoshka-k25-sl-all", "encoder-wr")  # fmt: skip
ONE_SEED = {"c1-f1.json": ("encoder-softplus", "encoder-unit-rows"),
            "c5-p1.json": ("encoder-centred",), "c5-p2.json": ("encoder-wr-centred",),
            "c7-s1.json": ("encoder-softplus",), "c7-u1.json": ("encoder-unit-rows",)}  # fmt: skip
"""The variant rows of gpu16k-variants/ at full length, by file: seed 0 of each (c1, c5) and
seed 1 of softplus and unit rows (c7, ninth session); the name is from when each had one seed."""
MATCHED = ROOT / "gpu16k-matched-l0"
MATCHED_FILES = {"m.json": ("topk-k214", "tied-topk-k214"), "m1.json": ("topk-k214", "tied-topk-k214"),
                 "p.json": ("topk-pretrained",), "h.json": ("topk-half",)}  # fmt: skip
"""gpu16k-matched-l0.md's rows (49.1 M samples, width 4,096), by file."""
NEXT11 = ROOT / "gpu16k-next11"
NEXT11_FILES = {"n1-w0.json": ("encoder-wr-softplus", "encoder-wr-unit-rows"),
                "n1-w1.json": ("encoder-wr-softplus", "encoder-wr-unit-rows"),
                "n2-a2.json": ("encoder-wr-softplus", "encoder-softplus", "topk-k214"),
                "n2-b2.json": ("encoder-wr-unit-rows", "encoder-unit-rows", "tied-topk-k214"),
                "n3-c1.json": ("encoder-centred",), "n3-d1.json": ("encoder-wr-centred",),
                "n4-c2.json": ("encoder-centred",), "n4-d2.json": ("encoder-wr-centred",),
                "n6-p1.json": ("topk-pretrained", "topk-half"),
                "n8-p2.json": ("topk-pretrained", "topk-half")}  # fmt: skip
"""gpu16k-next11.md's rows (49.1 M samples, width 4,096), by file."""
K214 = ROOT / "gpu16k-k214"
K214_ROWS = ("batchtopk-k214-sl-all", "matryoshka-k214-sl-all")
K214_FILES = {"a0.json": K214_ROWS, "a1.json": K214_ROWS, "b2.json": K214_ROWS}
"""gpu16k-k214.md's rows (49.1 M samples, width 4,096), by file."""
K304 = ROOT / "gpu16k-k304"
K304_ROWS = ("topk-k304",)
K304_FILES = {"k0.json": K304_ROWS, "k1.json": K304_ROWS, "k2.json": K304_ROWS}
"""gpu16k-k304.md's rows (49.1 M samples, width 4,096), by file: seed 0 (k0), 1 (k1), 2 (k2)."""
K304_INIT = {0: 0.14807778596878052, 1: 0.14800229668617249, 2: 0.14777010679244995}
"""gpu16k-k304-PLAN.md rule 1: the TopK family's untrained MCC at width 4,096 per seed (exact)."""
K304_L0 = (228, 380)  # gpu16k-k304-PLAN.md rule 3: 304 +- 25 %
WRH = ROOT / "gpu16k-wr-hybrid"
WRH_ROWS = ("tied-topk-im-3.0-wr",)
WRH_FILES = {"w0.json": WRH_ROWS, "w1.json": WRH_ROWS, "w2.json": WRH_ROWS}
"""gpu16k-wr-hybrid.md's rows (49.1 M samples, width 4,096), by file: seeds 0 (w0), 1 (w1),
2 (w2). Rules 1-2 of its plan: the hybrid's untrained MCC per seed, which is K304_INIT."""
IM001 = ROOT / "gpu16k-im001"
IM001_ROWS = ("encoder-im0.01",)
IM001_FILES = {"i0.json": IM001_ROWS, "i1.json": IM001_ROWS, "i2.json": IM001_ROWS}
"""gpu16k-im001.md's rows (49.1 M samples, width 4,096), by file: seeds 0-2. Rules 1-2 of its
plan: the encoder's untrained MCC per seed, which is K304_INIT."""
IMS = ROOT / "gpu16k-im-sweep"
IMS_ROWS = ("encoder-im0.02", "encoder-im0.03", "encoder-im0.05")
IMS_FILES = {"w0.json": IMS_ROWS, "w1.json": IMS_ROWS, "w2.json": IMS_ROWS}
"""gpu16k-im-sweep.md's InfoMax-weight rows (49.1 M samples, width 4,096), by file: seeds 0-2,
the three weights in lockstep in each process. Rules 1-2 of its plan: K304_INIT, 47,927 steps."""
IML = ROOT / "gpu16k-im-low"
IML_ROWS = ("encoder-im0.003", "encoder-im0")
IML_001 = ("encoder-im0.001",)
IML_FILES = {"l0.json": IML_ROWS, "l1.json": IML_ROWS, "l2.json": IML_ROWS,
             "m0.json": IML_001, "m1.json": IML_001, "m2.json": IML_001,
             "n0.json": IML_001, "n1.json": IML_001, "n2.json": IML_001}  # fmt: skip
"""gpu16k-im-low.md's rows (49.1 M samples, width 4,096), by file: seeds 0 (l0), 1 (l1) and 2
(l2, run beside gpu16k-im-cliff's C2), the two weights in lockstep in each process; and
`encoder-im0.001` seeds 0-2, one row a process: m0-m2 (eighteenth session, each short of the
full length: rule 2 leaves them out) and n0-n2 (nineteenth session, the full length). Rules
1-2 of its plan: K304_INIT, 47,927 steps."""
IMC = ROOT / "gpu16k-im-cliff"
IMC_ROWS = ("encoder-im0.005", "encoder-im0.007")
IMC_FILES = {"c0.json": IMC_ROWS, "c1.json": IMC_ROWS, "c2.json": IMC_ROWS}
"""gpu16k-im-cliff.md's rows (49.1 M samples, width 4,096), by file: seeds 0-2 (c0 and c1 from
call C1, c2 from C2), the two weights in lockstep in each process. Rules 1-2 of its plan:
K304_INIT, 47,927 steps."""
K12_ROWS = ("topk-k12",)
K12_FILES = {"t0.json": K12_ROWS, "t1.json": K12_ROWS, "t2.json": K12_ROWS}
"""gpu16k-im-sweep.md's TopK rows at k = 12 (49.1 M samples, width 4,096), by file: seeds 0-2."""
K12_L0 = (9.15, 16.3)  # gpu16k-im-sweep-PLAN.md rule 6: 0.75 x 12.2 to 12.2 / 0.75, as written
L1 = ("standard-l1-3.0", "standard-l1-10.0")  # section 3, seed 0 (rows/results.json)
BT_SEED0 = ROOT / "gpu16k-bt-seed0" / "s0.json"
BT = "batchtopk-k25-sl-all"
BT_SEED0_INIT = 0.1481378674507141
"""gpu16k-bt-seed0-PLAN.md rule 1: seed 0's untrained MCC with sae-lens's protocol (exact)."""
WIDE = ROOT / "gpu16k-width16k"
WIDE_FILES = {"c1-p2.json": ("encoder-wr", "tied-topk-im-3.0"), "c2-e.json": ("encoder",),
              "c2-t.json": ("tied-topk",), "c3-e.json": ("encoder",),
              "c3-t.json": ("tied-topk",), "c4-w.json": ("encoder-wr",),
              "c4-h.json": ("tied-topk-im-3.0",), "c5-e.json": ("encoder",),
              "c5-t.json": ("tied-topk",), "c6-w.json": ("encoder-wr",),
              "c6-h.json": ("tied-topk-im-3.0",), "c7-i0.json": ("encoder-im0.01",),
              "c7-i1.json": ("encoder-im0.01",), "c8-i2.json": ("encoder-im0.01",)}  # fmt: skip
"""gpu16k-width16k.md's rows (width 16,384), by file: seed 0 (c1, c2), seed 1 (c3, c4) and
seed 2 (c5, c6); `encoder-im0.01` seeds 0 and 1 (c7) and 2 (c8)."""
WIDE_STEPS, WIDE_LATENTS = 26818, 16384
WIDE_INIT = {0: 0.14494764804840088, 1: 0.14484603703022003}
"""The untrained MCC every width-16,384 row of a seed starts from (exact): seed 0 from
gpu16k-width16k-2-PLAN.md rule 1 (c1-p2.json), seed 1 from gpu16k-width16k-4-PLAN.md rule 2
(c3-e.json, c3-t.json). Seed 2 has no committed value: its rows must agree with one another."""
JUMPRELU = ("jumprelu-0.01", "jumprelu-0.003", "jumprelu-0.001", "jumprelu-0.0009",
            "jumprelu-0.0008", "jumprelu-0.0007", "jumprelu-0.0005")  # fmt: skip
SECOND_CALL = ("jumprelu-0.0007", "jumprelu-0.0008", "jumprelu-0.0009")  # the rule's candidates
RULE_SEEDS = (0, 1)  # the seeds the rule was fixed for (seed 2 of its pick was run after)
PICKED = "jumprelu-0.0008"  # what the rule picked; its seed 2 is jr3
STEPS = 47927  # the length of every row here (49.1 M samples at batch 1,024)
LATENTS = 4096  # the width of every row here
K = 25  # the target L0 of the table (k of the TopK families)
LOST = RUN / "seeds" / "call1" / "s2-report.md"
# (header, summarise key, decimals): the columns of this table, also used by
# gpu16k_variants_table.py and cpu_wr_hybrid_table.py
COLUMNS = [("MCC", "mcc", 3), ("MCC untrained", "mcc_untrained", 3),
           ("MCC random@L0", "mcc_random_at_l0", 3), ("L0", "l0", 1),
           ("dead", "dead_latents", 0), ("F1", "f1", 3),
           ("features covered", "features_covered", 0),
           ("features cos>=0.9", "features_cos_0.9", 0)]  # fmt: skip  # seed 2 of call 1: report.md only
PLAN_COLUMNS = [COLUMNS[0], ("MCC enc. rows", "mcc_encoder_rows", 3), *COLUMNS[1:6],
                ("feature F1", "feature_f1", 3), *COLUMNS[6:]]  # fmt: skip
"""The columns of the plans' tables of the InfoMax weights (gpu16k_im_sweep_table.py and its
kind): COLUMNS with the SAE's encoder-row MCC and the per-feature F1."""


def read_rows(path: Path, names: tuple[str, ...], latents: int = LATENTS) -> list[dict]:
    """The rows named `names` of a results file (`eval.synthetic.write_report`'s results.json
    shape: {"options": {"latents", ...}, "rows": [{"variant", "seed", "steps_done", "trained",
    "untrained"}, ...]}). Exits with one line naming the file when it is not one, has another
    width, or lacks a named row."""
    try:
        d = json.loads(path.read_text())
        ok = isinstance(d["rows"], list) and d["options"]["latents"] == latents and all(
            {"variant", "seed", "steps_done", "trained", "untrained"} <= set(r) for r in d["rows"])  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"{path}: not a results file of eval-suite synthetic ({e!r}); restore "
                         "it from git") from None  # fmt: skip
    if not ok:
        raise SystemExit(f"{path}: not a width-{latents} results file with rows (variant, seed, "
                         "steps_done, trained, untrained); restore it from git")  # fmt: skip
    rows = [r for r in d["rows"] if r["variant"] in names]
    missing = sorted(set(names) - {r["variant"] for r in rows})
    if missing:
        raise SystemExit(f"{path}: no row {missing}; restore it from git")
    return rows


def load_wide() -> list[dict]:
    """The width-16,384 rows (WIDE_FILES) that pass the checks of `wide_rows`."""
    return wide_rows({f: read_rows(WIDE / f, names, WIDE_LATENTS)
                      for f, names in WIDE_FILES.items()})  # fmt: skip


def wide_rows(by_file: dict[str, list[dict]]) -> list[dict]:
    """The rows of `by_file` (file name -> its rows) that pass gpu16k-width16k-4-PLAN.md rules
    1 and 2: WIDE_STEPS steps, and an untrained MCC exactly WIDE_INIT of the row's seed or, for
    a seed not in WIDE_INIT, the same in every row of that seed (else no row of that seed is
    kept: rows from different calls are not compared). Each row that fails is printed in one
    line (reported, not added)."""
    found: dict[int, set[float]] = {}  # seed -> the untrained MCCs of its rows
    for r in (r for rows in by_file.values() for r in rows):
        found.setdefault(r["seed"], set()).add(r["untrained"]["mcc"])
    kept = []
    for f, rows in by_file.items():
        for r in rows:
            failed, init = [], r["untrained"]["mcc"]
            if r["steps_done"] != WIDE_STEPS:
                failed.append(f"rule 1: {r['steps_done']} steps, not {WIDE_STEPS}")
            if r["seed"] in WIDE_INIT and init != WIDE_INIT[r["seed"]]:
                failed.append(f"rule 2: untrained MCC {init!r}, not {WIDE_INIT[r['seed']]!r}")
            elif r["seed"] not in WIDE_INIT and len(found[r["seed"]]) > 1:
                failed.append(f"rule 2: untrained MCC {init!r}; seed {r['seed']}'s rows "
                              f"disagree ({sorted(found[r['seed']])})")  # fmt: skip
            if failed:
                print(f"{WIDE / f}: {r['variant']} seed {r['seed']} reported, not added "
                      f"({'; '.join(failed)}): MCC {r['trained']['mcc']:.4f} at "
                      f"{r['samples'] / 1e6:.1f} M samples")  # fmt: skip
            else:
                kept.append(r)
    return kept


def load_rows() -> list[dict]:
    files = [RUN / "rows" / "results.json", RUN / "seeds" / "seed1.json",
             RUN / "seeds" / "seed2.json", RUN / "seeds" / "matryoshka_seed1.json",
             RUN / "seeds" / "matryoshka_seed2.json", RUN / "seeds" / "call1" / "s0.json",
             RUN / "seeds" / "call1" / "s1.json"]  # fmt: skip
    jr = RUN / "seeds" / "jumprelu"
    files += [jr / "jr1" / "s1.json", jr / "jr1" / "s2.json", jr / "jr2" / "s0.json",
              jr / "jr2" / "s1.json", jr / "jr3" / "s2.json"]  # fmt: skip
    var = ROOT / "gpu16k-variants"  # encoder-wr, gpu16k-variants-PLAN.md (seeds 0, 1, 2)
    files += [var / "c2-f2.json", var / "c3-s1.json", var / "c4-s2.json"]
    rows = [r for f in files for r in json.loads(f.read_text())["rows"]]
    rows += [r for f, names in ONE_SEED.items() for r in json.loads((var / f).read_text())["rows"]
             if r["variant"] in names]  # fmt: skip
    rows += [r for f, names in MATCHED_FILES.items() for r in read_rows(MATCHED / f, names)]
    rows += [r for f, names in NEXT11_FILES.items() for r in read_rows(NEXT11 / f, names)]
    rows += [r for f, names in K214_FILES.items() for r in read_rows(K214 / f, names)]
    rows += bt_seed0()
    rows += k304_rows({f: read_rows(K304 / f, names) for f, names in K304_FILES.items()})
    planned = ((WRH, WRH_FILES), (IM001, IM001_FILES), (IML, IML_FILES), (IMC, IMC_FILES))
    for folder, files in planned:
        rows += planned_rows(folder, {f: read_rows(folder / f, names)
                                      for f, names in files.items()}, K304_INIT)  # fmt: skip
    rows += planned_rows(IMS, {f: read_rows(IMS / f, names) for f, names in IMS_FILES.items()},
                         K304_INIT)  # fmt: skip
    rows += k12_rows({f: read_rows(IMS / f, names) for f, names in K12_FILES.items()})
    bad = [(r["variant"], r["seed"]) for r in rows if r["steps_done"] != STEPS]
    # The report gives the planned length only. Its training could not have stopped early: the
    # time limit (max_seconds 495 s from the run's start, as in s0.json and s1.json of the same
    # call) is past the whole call's 430.8 s wall, and its log fixed the run at 47927 steps.
    lost = rows_from_report(LOST.read_text(), str(LOST.relative_to(ROOT)))
    bad += [(r["variant"], r["seed"]) for r in lost if r["steps"] != STEPS]
    if bad:
        raise SystemExit(f"rows not at {STEPS} steps: {bad}")
    keep = (HEADLINE + JUMPRELU + L1 + tuple(n for names in ONE_SEED.values() for n in names)
            + tuple(n for names in MATCHED_FILES.values() for n in names)
            + tuple(n for names in NEXT11_FILES.values() for n in names) + K214_ROWS
            + K304_ROWS + WRH_ROWS + IM001_ROWS + IMS_ROWS + K12_ROWS + IML_ROWS + IML_001
            + IMC_ROWS)  # fmt: skip
    return [r for r in rows + lost if r["variant"] in keep]


def bt_seed0() -> list[dict]:
    """Seed 0 of `batchtopk-k25-sl-all` at 49.1 M (gpu16k-bt-seed0-PLAN.md): [the row] when its
    untrained MCC is exactly BT_SEED0_INIT (rule 1) and it ran STEPS steps (rule 2), else []
    with one printed line saying which rule it failed (reported, not added)."""
    (r,) = read_rows(BT_SEED0, (BT,))
    failed = []
    if r["untrained"]["mcc"] != BT_SEED0_INIT:
        failed.append(f"rule 1: untrained MCC {r['untrained']['mcc']!r}, not {BT_SEED0_INIT!r}")
    if r["steps_done"] != STEPS:
        failed.append(f"rule 2: {r['steps_done']} steps, not {STEPS}")
    if failed:
        print(f"{BT_SEED0}: {BT} seed {r['seed']} reported, not added ({'; '.join(failed)}): "
              f"MCC {r['trained']['mcc']:.4f} at {r['samples'] / 1e6:.1f} M samples")  # fmt: skip
        return []
    return [r]


def planned_rows(folder: Path, by_file: dict[str, list[dict]], init: dict[int, float],
                 l0: tuple[float, float] | None = None, report=None) -> list[dict]:  # fmt: skip
    """The rows of `by_file` (file name in `folder` -> its rows) that pass a plan's checks:
    rule 1, untrained MCC exactly `init` of the row's seed; rule 2, STEPS steps; rule 3 (when
    `l0` is given), mean L0 inside the window `l0`. Each row that fails is reported, not added:
    printed in one line, or passed to `report(row, failed)` when given (failed: the failing
    rules' texts, "rule 1: ...", in rule order)."""
    kept = []
    for f, rows in by_file.items():
        for r in rows:
            failed, start, got = [], r["untrained"]["mcc"], r["trained"]["l0"]
            if start != init.get(r["seed"]):
                failed.append(f"rule 1: untrained MCC {start!r}, not {init.get(r['seed'])!r}")
            if r["steps_done"] != STEPS:
                failed.append(f"rule 2: {r['steps_done']} steps, not {STEPS}")
            if l0 is not None and not l0[0] <= got <= l0[1]:
                failed.append(f"rule 3: L0 {got:.1f}, outside {l0[0]}-{l0[1]}")
            if failed and report is not None:
                report(r, failed)
            elif failed:
                print(f"{folder / f}: {r['variant']} seed {r['seed']} reported, not added "
                      f"({'; '.join(failed)}): MCC {r['trained']['mcc']:.4f} at "
                      f"{r['samples'] / 1e6:.1f} M samples")  # fmt: skip
            else:
                kept.append(r)
    return kept


def k304_rows(by_file: dict[str, list[dict]]) -> list[dict]:
    """The `topk-k304` rows of `by_file` that pass gpu16k-k304-PLAN.md rules 1-3 (`planned_rows`
    with K304_INIT and the window K304_L0)."""
    return planned_rows(K304, by_file, K304_INIT, K304_L0)


def k12_rows(by_file: dict[str, list[dict]]) -> list[dict]:
    """The `topk-k12` rows of `by_file` that pass gpu16k-im-sweep-PLAN.md rules 1-2 and rule 6's
    L0 window (`planned_rows` with K304_INIT and K12_L0)."""
    return planned_rows(IMS, by_file, K304_INIT, K12_L0)


def jumprelu_headline(rows: list[dict]) -> tuple[str | None, dict[str, float]]:
    """The plan's rule on the rows: (the picked coefficient or None, each candidate's mean L0
    over RULE_SEEDS)."""
    l0 = {}
    for name in SECOND_CALL:
        got = {r["seed"]: r["trained"]["l0"] for r in rows
               if r["variant"] == name and r["seed"] in RULE_SEEDS}  # fmt: skip
        if sorted(got) != list(RULE_SEEDS):
            raise SystemExit(f"{name}: the rule needs seeds {RULE_SEEDS}, found {sorted(got)}")
        l0[name] = sum(got.values()) / len(got)
    return nearest_in_window(l0, K, L0_TOLERANCE), l0


def main() -> None:
    rows = load_rows()
    summary = sorted(summarise(rows), key=lambda s: -s["mcc"]["mean"])
    cols = COLUMNS
    print("| variant | seeds | " + " | ".join(c[0] for c in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for s in summary:
        cells = " | ".join(_fmt(s[key], nd) for _, key, nd in cols)
        print(f"| {s['variant']} | {s['seeds']} | {cells} |")
    ref = json.loads((ROOT / "harness-gap" / "gpu200m" / "ref.json").read_text())
    at50 = next(p for p in ref["snapshots"] if p["samples"] >= 50e6)
    print(f"\n{BT}: the 200 M run's milestone (seed 0, its own stream): MCC {at50['mcc']:.4f} "
          f"at {at50['samples'] / 1e6:.1f} M samples, beside the table's seed 0 at 49.1 M "
          "(gpu16k-bt-seed0/s0.json); not in the mean above\n")  # fmt: skip
    rebuilt = [(r["variant"], r["seed"], r["reconstructed_from"]) for r in rows
               if "reconstructed_from" in r]  # fmt: skip
    for variant, seed, src in rebuilt:
        print(f"{variant} seed {seed}: from {src} (results.json lost), its numbers as printed "
              "there (MCC, F1 to 3 decimals; L0 to 1)")  # fmt: skip
    picked, rule_l0 = jumprelu_headline(rows)
    if picked != PICKED:
        raise SystemExit(f"the plan's rule picks {picked}, not {PICKED} (whose seed 2 ran)")
    sweep = jumprelu_sweep(summary, picked)
    print("\n".join(sweep["lines"]) + "\n")
    verdict = synthetic_verdict(summary, target_l0=K)
    print("\n".join(verdict))
    plot(summary, picked)
    wide = sorted(summarise(load_wide()), key=lambda s: -s["mcc"]["mean"])
    print(f"\nWidth {WIDE_LATENTS:,}, {WIDE_STEPS} steps (not in the table above):\n")
    for s in wide:
        print(f"| {s['variant']} | {s['seeds']} | "
              + " | ".join(_fmt(s[key], nd) for _, key, nd in cols) + " |")  # fmt: skip
    out = {"latents": LATENTS, "steps": STEPS, "samples": STEPS * 1024, "target_l0": K,
           "summary": summary,
           "jumprelu": {"rule": "mean L0 over seeds 0 and 1 inside [18.75, 31.25], nearest 25",
                        "rule_mean_l0": rule_l0, "headline": picked,
                        "sweep": sweep["rows"]},
           "sl_all_seed0_at_50M": at50,
           "reconstructed_from_report": [{"variant": v, "seed": s, "source": src}
                                         for v, s, src in rebuilt],
           "verdict": verdict,
           "width16k": {"latents": WIDE_LATENTS, "steps": WIDE_STEPS,
                        "samples": WIDE_STEPS * 1024,
                        "files": [str((WIDE / f).relative_to(ROOT)) for f in WIDE_FILES],
                        "summary": wide, "verdict": synthetic_verdict(wide)}}  # fmt: skip
    text = json.dumps(_no_nan(out), indent=1, allow_nan=False)  # strict JSON: NaN as null
    (ROOT / "gpu16k-seeds.json").write_text(text + "\n")


def _coef(name: str) -> float:
    return float(name.removeprefix("jumprelu-"))


def jumprelu_sweep(summary: list[dict], picked: str) -> dict:
    """The JumpReLU rows by coefficient (largest first): markdown lines and plain rows."""
    lo, hi = K * (1 - L0_TOLERANCE), K * (1 + L0_TOLERANCE)
    rows, lines = [], [
        f"JumpReLU by L0 coefficient (window [{lo:g}, {hi:g}] around L0 {K}; headline by the "
        f"plan's rule: {picked}, its seed 2 run after the rule picked it on seeds 0 and 1):",
        "",
        "| coefficient | seeds | L0 | MCC | MCC enc. rows | dead | F1 | features cos>=0.9 | "
        "L0 window |",
        "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in sorted((s for s in summary if s["variant"] in JUMPRELU),
                    key=lambda s: -_coef(s["variant"])):  # fmt: skip
        inside = lo <= s["l0"]["mean"] <= hi
        where = "headline" if s["variant"] == picked else "inside" if inside else "outside"
        rows.append({"variant": s["variant"], "coefficient": _coef(s["variant"]),
                     "seeds": s["seeds"], "l0": s["l0"]["mean"], "mcc": s["mcc"]["mean"],
                     "window": where})  # fmt: skip
        cells = " | ".join(_fmt(s[k], nd) for k, nd in (
            ("l0", 1), ("mcc", 3), ("mcc_encoder_rows", 3), ("dead_latents", 0), ("f1", 3),
            ("features_cos_0.9", 0)))  # fmt: skip
        lines.append(f"| {_coef(s['variant']):g} | {s['seeds']} | {cells} | {where} |")
    return {"lines": lines, "rows": rows}


def plot(summary: list[dict], picked: str) -> None:
    """gpu16k_seeds_mcc_vs_l0.png: mean MCC against mean L0 of every row (seed range as
    error bars), the JumpReLU coefficients joined, the window around K shaded, the controls
    (random directions at each row's L0) as grey crosses. Skipped without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: gpu16k_seeds_mcc_vs_l0.png not written")
        return
    fig, ax = plt.subplots(figsize=(8.5, 6))  # the legend's height: one line per row
    ax.axvspan(K * (1 - L0_TOLERANCE), K * (1 + L0_TOLERANCE), color="0.92",
               label=f"L0 within 25 % of {K}")  # fmt: skip

    def err(s: dict) -> list[list[float]]:
        m = s["mcc"]
        return [[m["mean"] - m["min"]], [m["max"] - m["mean"]]]

    jr = sorted((s for s in summary if s["variant"] in JUMPRELU), key=lambda s: s["l0"]["mean"])
    ax.plot([s["l0"]["mean"] for s in jr], [s["mcc"]["mean"] for s in jr], "-", color="C3",
            lw=1, label="JumpReLU, L0 coefficient 0.01 to 0.0005")  # fmt: skip
    nudge = {"jumprelu-0.001": (-34, 7), "jumprelu-0.0009": (-14, -13)}  # the crowded labels
    for s in jr:
        head = s["variant"] == picked
        ax.errorbar(s["l0"]["mean"], s["mcc"]["mean"], yerr=err(s), fmt="*" if head else "o",
                    color="C3", ms=11 if head else 4, zorder=3,
                    label=f"{picked} (headline JumpReLU)" if head else None)  # fmt: skip
        ax.annotate(f"{_coef(s['variant']):g} ({s['seeds']})", (s["l0"]["mean"], s["mcc"]["mean"]),
                    textcoords="offset points", xytext=nudge.get(s["variant"], (5, -11)),
                    fontsize=6, color="C3")  # fmt: skip
    others = [s for s in summary if s["variant"] not in JUMPRELU]
    for i, s in enumerate(others):
        ax.errorbar(s["l0"]["mean"], s["mcc"]["mean"], yerr=err(s), fmt="sD"[i // 20 % 2],
                    color=plt.cm.tab20(i % 20),
                    label=f"{s['variant']} ({s['seeds']} seed{'s' * (s['seeds'] > 1)})")  # fmt: skip
    ax.scatter([s["l0"]["mean"] for s in summary],
               [s["mcc_random_at_l0"]["mean"] for s in summary], marker="x", color="grey",
               label="random directions at each row's L0")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("L0 (latents firing per sample; mean over seeds)")
    ax.set_ylabel("MCC (sae-lens; mean, bars: seed range)")
    ax.set_title(f"SynthSAEBench-16k (v2), width 4,096, {STEPS * 1024 / 1e6:.1f} M samples: "
                 "MCC against L0 (JumpReLU labels: coefficient (seeds))", fontsize=8)  # fmt: skip
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(ROOT / "gpu16k_seeds_mcc_vs_l0.png", dpi=120)
    plt.close(fig)


DETECTION = ("feature_f1", "features_f1_0.5", "uniqueness")
"""The per-feature detection numbers of a trained row (`eval.synthetic` scoring)."""


def mccs(rows: list[dict], name: str) -> list[float]:
    """The trained MCC of every row named `name`, one per seed."""
    return [r["trained"]["mcc"] for r in rows if r["variant"] == name]


def span(rows: list[dict], name: str) -> str:
    """'N seeds, min-max' of `name`'s trained MCC, to 4 decimals."""
    v = mccs(rows, name)
    return f"{len(v)} seed{'s' * (len(v) != 1)}, {min(v):.4f}-{max(v):.4f}"


def controls(s: dict) -> dict:
    """One `summarise` entry against its controls (the plans' controls rule): "above" when the
    worst seed exceeds the best control seed (untrained init, random directions at the row's
    L0) by more than MARGIN, "below" when the best seed is under the worst control seed by more
    than MARGIN, else "level"; with the seeds and controls it read."""
    best = max(s["mcc_untrained"]["max"], s["mcc_random_at_l0"]["max"])
    worst = min(s["mcc_untrained"]["min"], s["mcc_random_at_l0"]["min"])
    side = ("above" if s["mcc"]["min"] > best + MARGIN
            else "below" if s["mcc"]["max"] < worst - MARGIN else "level")  # fmt: skip
    return {"reading": side, "worst_seed": s["mcc"]["min"], "best_seed": s["mcc"]["max"],
            "best_control": best, "worst_control": worst}  # fmt: skip


def per_seed(rows: list[dict]) -> list[dict]:
    """One flat record per row, in `rows`' order: variant, seed, MCC (trained, untrained,
    random directions at its L0), L0, dead latents, F1, features covered and at |cos| >= 0.9."""
    return [{"variant": r["variant"], "seed": r["seed"], "mcc": r["trained"]["mcc"],
             "mcc_untrained": r["untrained"]["mcc"],
             "mcc_random_at_l0": r["trained"]["random_at_l0"]["mcc"],
             "l0": r["trained"]["l0"], "dead_latents": r["trained"]["dead_latents"],
             "f1": r["trained"]["f1"], "features_covered": r["trained"]["features_covered"],
             "features_cos_0.9": r["trained"]["features_cos_0.9"]} for r in rows]  # fmt: skip


def best_decoder_free(table: list[dict]) -> tuple[str, float, list[str]]:
    """Among the decoder-free rows of `ground_truth_rows`' table: (the row with the highest
    mean MCC, that MCC, the names within MARGIN of it, sorted)."""
    free = [r for r in table if r["kind"] == DECODER_FREE]
    top = max(free, key=lambda r: r["mcc"])
    level = sorted(r["name"] for r in free if r["mcc"] >= top["mcc"] - MARGIN)
    return top["name"], top["mcc"], level


def detection_rows(rows: list[dict], names: tuple[str, ...]) -> list[dict]:
    """Per-seed detection of the rows named `names` (in that order, then by seed): variant,
    seed, DETECTION, and the per-feature F1 of the row's untrained init and of random
    directions at its L0 (the controls)."""
    return [{"variant": r["variant"], "seed": r["seed"], **{k: r["trained"][k] for k in DETECTION},
             "feature_f1_untrained": r["untrained"]["feature_f1"],
             "feature_f1_random_at_l0": r["trained"]["random_at_l0"]["feature_f1"]}
            for r in sorted((r for r in rows if r["variant"] in names),
                            key=lambda r: (names.index(r["variant"]), r["seed"]))]  # fmt: skip


IM_WEIGHTS = ("encoder", "encoder-im0.05", "encoder-im0.03", "encoder-im0.02", "encoder-im0.01",
              "encoder-im0.007", "encoder-im0.005", "encoder-im0.003", "encoder-im0.001",
              "encoder-im0")  # fmt: skip
"""The InfoMax weights of the 16k recipe, largest first (`encoder`: the default, x 1); the
curve (`weight_curve`) lists those a table holds."""
IM_BEST = "encoder-im0.01"  # the best weight measured before gpu16k-im-cliff-PLAN.md


def im_weight(name: str) -> float:
    """The InfoMax weights' fraction of their reference-K values in a row of IM_WEIGHTS."""
    return 1.0 if name == "encoder" else float(name.removeprefix("encoder-im"))


def checked_rows(folder: Path, files: dict[str, tuple[str, ...]], lines: list[str]) -> list[dict]:
    """A plan's rules 1-2 on the rows of `files` (file name in `folder` -> its rows' names):
    `planned_rows` with K304_INIT, the rows that pass. A failing row gets a line in `lines`
    and is left out; a first line counts them."""

    def note(r: dict, failed: list[str]) -> None:
        lines.append(f"{r['variant']} seed {r['seed']}: {'; '.join(failed)}: reported, not "
                     f"compared (MCC {r['trained']['mcc']:.4f} at {r['samples'] / 1e6:.1f} M "
                     "samples).")  # fmt: skip

    raw = {f: read_rows(folder / f, names) for f, names in files.items()}
    kept = planned_rows(folder, raw, K304_INIT, report=note)
    n = sum(len(v) for v in raw.values())
    lines.insert(0, f"Rules 1-2 (init exactly K304_INIT of the seed, {STEPS:,} steps): "
                    f"{len(kept)} of {n} rows pass.")  # fmt: skip
    return kept


def plan_tables(folder: Path, files: dict[str, tuple[str, ...]], names: tuple[str, ...],
                seeds: tuple[int, ...], lines: list[str]) -> dict:  # fmt: skip
    """A plan's new rows (`names`, from `files` in `folder`) beside the seeds table's
    (`load_rows`): rules 1-2 (`checked_rows`) and what is owed (`owed`), each with its lines in
    `lines`. Returns {"new": the rows that pass, "owed", "measured": the names with a row,
    "rows": the table's other rows and the new ones, "gt": `ground_truth_rows` of the other
    rows alone (the committed rows before the plan), "by": `summarise` of rows by name}."""
    new = checked_rows(folder, files, lines)
    missing = owed(new, names, seeds)
    lines.append(owed_line(missing))
    have = {r["variant"] for r in new}
    old = [r for r in load_rows() if r["variant"] not in names]
    rows = old + new
    return {"new": new, "owed": missing, "measured": [n for n in names if n in have],
            "rows": rows, "gt": ground_truth_rows(summarise(old)),
            "by": {s["variant"]: s for s in summarise(rows)}}  # fmt: skip


def against(name: str, ref: str, by: dict[str, dict], rows: list[dict]) -> tuple[str, dict, str]:
    """`name`'s seeds in `rows` against `ref`'s (`apart`): (the reading, {"gap" between the
    nearer seeds, "seeds"}, a line with `name`'s range and `beside` numbers)."""
    a = apart(mccs(rows, name), mccs(rows, ref), MARGIN)
    gap = (by[name]["mcc"]["min"] - by[ref]["mcc"]["max"] if a == "above"
           else by[ref]["mcc"]["min"] - by[name]["mcc"]["max"])  # fmt: skip
    line = (f"{name} ({span(rows, name)}, mean {by[name]['mcc']['mean']:.4f}; {beside(by[name])}) "
            f"against {ref} ({span(rows, ref)}): {a}, by {gap:.4f} between the nearer seeds.")  # fmt: skip
    return a, {"gap": gap, "seeds": by[name]["seeds"]}, line


def owed(rows: list[dict], names: tuple[str, ...], seeds: tuple[int, ...] = (0, 1, 2)) -> dict:
    """The rows of `names` with the seeds of `seeds` that `rows` lacks: {name: [seed, ...]},
    the names with every seed present left out."""
    have = {(r["variant"], r["seed"]) for r in rows}
    missing = {n: [s for s in seeds if (n, s) not in have] for n in names}
    return {n: s for n, s in missing.items() if s}


def owed_line(missing: dict[str, list[int]]) -> str:
    """'Owed under the plan: ...' from `owed`."""
    if not missing:
        return "Owed under the plan: nothing."
    return "Owed under the plan: " + "; ".join(
        f"{n} seed{'s' * (len(s) > 1)} {', '.join(map(str, s))}" for n, s in missing.items()) + "."  # fmt: skip


def beside(s: dict) -> str:
    """L0, dead latents, F1, per-feature F1 and features covered of one `summarise` entry."""

    def rng(key: str, nd: int) -> str:
        v = s[key]
        return f"{v['min']:,.{nd}f}-{v['max']:,.{nd}f}"

    return (f"L0 {rng('l0', 3)}, dead {rng('dead_latents', 0)}, F1 {rng('f1', 3)}, feature F1 "
            f"{rng('feature_f1', 3)}, features covered {rng('features_covered', 0)}")  # fmt: skip


def saes_at_l0(name: str, by: dict[str, dict], gt: list[dict], rows: list[dict]) -> list[dict]:
    """The SAE rows of `gt` (`ground_truth_rows`) whose L0 is matched to `name`'s mean L0 in
    `by` (`matched_l0`), highest MCC first: name, mcc, l0, seeds, dead, and `apart` of
    `name`'s seeds in `rows` against theirs."""
    l0 = by[name]["l0"]["mean"]
    near = sorted((r for r in gt if r["kind"] == SAE and matched_l0(l0, r["l0"])),
                  key=lambda r: -r["mcc"])  # fmt: skip
    return [{"name": r["name"], "mcc": r["mcc"], "l0": r["l0"], "seeds": r["seeds"],
             "dead": r["dead"], "apart": apart(mccs(rows, name), mccs(rows, r["name"]), MARGIN)}
            for r in near]  # fmt: skip


def own_l0_words(name: str, by: dict[str, dict], near: list[dict], rows: list[dict]) -> str:
    """One line of a plan's own-L0 rule: `name`'s L0, then each row of `saes_at_l0` with its
    seeds and reading, or 'no SAE at its L0'."""
    return (f"{name} (L0 {by[name]['l0']['mean']:.3f}): " + ("; ".join(
        f"{r['name']} ({span(rows, r['name'])}, L0 {r['l0']:.2f}, {r['dead']:,.0f} dead): "
        f"{r['apart']}" for r in near) if near else "no SAE at its L0") + ".")  # fmt: skip


def verdict_reading(rows: list[dict], names: list[str], beats: list[str]) -> tuple[dict, str]:
    """What gpu16k-seeds.json's verdict reads of a plan's new rows `names` (`synthetic_verdict`'s
    own-L0 and best decoder-free lines, on `rows`, the table with them), `beats` being the new
    weights above IM_BEST: (the reading, its line)."""
    table = ground_truth_rows(summarise(rows))
    named = {r["name"]: r for r in table}
    _, top, level = best_decoder_free(table)
    own = {n: at_own_l0(named[n], table) for n in names}
    measured = [n for n in IM_WEIGHTS if n in named]
    got = {"own_l0": {n: None if s is None else s["name"] for n, s in own.items()},
           "beats_im0.01": beats, "best_decoder_free_within_margin": level,
           "weights_measured": measured}  # fmt: skip
    line = (f"decoder-free rows within {MARGIN} of the highest mean MCC ({top:.4f}) in the seeds "
            f"table: {', '.join(level)}; a new weight above {IM_BEST}: "
            f"{', '.join(beats) if beats else 'none'}. The best is a pick among {len(measured)} "
            f"weights measured ({', '.join(f'{im_weight(n):g}' for n in measured)}).")  # fmt: skip
    return got, line


def weight_curve(by: dict[str, dict]) -> list[dict]:
    """Every weight of IM_WEIGHTS in `by` (`summarise` entries by name), largest first:
    variant, weight, seeds, MCC (mean, min, max), mean L0 and dead latents, and the reading
    against its controls (`controls`)."""
    return [{"variant": n, "weight": im_weight(n), "seeds": by[n]["seeds"],
             "mcc": by[n]["mcc"]["mean"], "mcc_min": by[n]["mcc"]["min"],
             "mcc_max": by[n]["mcc"]["max"], "l0": by[n]["l0"]["mean"],
             "dead_latents": by[n]["dead_latents"]["mean"],
             "controls": controls(by[n])["reading"]} for n in IM_WEIGHTS if n in by]  # fmt: skip


def print_curve(curve: list[dict]) -> None:
    """`weight_curve` as a markdown table."""
    print("\n| weight | variant | seeds | MCC | L0 | dead | controls |")
    print("|---|---|---|---|---|---|---|")
    for s in curve:
        print(f"| {s['weight']:g} | {s['variant']} | {s['seeds']} | {s['mcc']:.3f} "
              f"[{s['mcc_min']:.3f}, {s['mcc_max']:.3f}] | {s['l0']:.2f} | "
              f"{s['dead_latents']:,.0f} | {s['controls']} |")  # fmt: skip


def weight_plan_output(t: dict, names: tuple[str, ...], shown: tuple[str, ...], rules: dict,
                       lines: list[str]) -> dict:  # fmt: skip
    """What an InfoMax-weight plan's table script writes (gpu16k_im_low_table.py and its kind),
    from `plan_tables`' `t` and the plan's new row names `names`: {"steps", "summary" (the
    entries of `shown` in `t["by"]`, in that order), "sweep" (`weight_curve`), "detection",
    "per_seed" (the new rows by `names`' order, then seed), "owed", "rules", "lines"}."""
    by, new = t["by"], t["new"]
    seeds = per_seed(sorted(new, key=lambda r: (names.index(r["variant"]), r["seed"])))
    return {"steps": STEPS, "summary": [by[n] for n in dict.fromkeys(shown) if n in by],
            "sweep": weight_curve(by), "detection": detection_rows(new, names),
            "per_seed": seeds, "owed": t["owed"], "rules": rules, "lines": lines}  # fmt: skip


def print_weight_plan(out: dict, json_name: str) -> None:
    """`print_report` of `weight_plan_output` in PLAN_COLUMNS, then its weight curve."""
    print_report(out, PLAN_COLUMNS, json_name)
    print_curve(out["sweep"])


def print_report(out: dict, cols: list[tuple], json_name: str,
                 table: list[dict] | None = None) -> None:  # fmt: skip
    """The output of a plan's table script (gpu16k_k214_table.py and its kind): prints the
    markdown table of `table` (default out["summary"]; `summarise` rows) in the columns `cols`
    ((header, key, decimals)), out["detection"] as a per-seed table when present, and
    out["lines"] as a list; writes out as strict JSON (NaN as null) to ROOT / json_name."""
    print("| variant | seeds | " + " | ".join(c[0] for c in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for s in out["summary"] if table is None else table:
        cells = [_fmt(s[key], nd) if key in s else "-" for _, key, nd in cols]
        print(f"| {s['variant']} | {s['seeds']} | " + " | ".join(cells) + " |")
    if out.get("detection"):
        print("\n| variant | seed | feature F1 (untrained, random@L0) | features with a latent at "
              "F1 >= 0.5 | uniqueness |\n|---|---|---|---|---|")  # fmt: skip
        for d in out["detection"]:
            print(f"| {d['variant']} | {d['seed']} | {d['feature_f1']:.3f} "
                  f"({d['feature_f1_untrained']:.3f}, {d['feature_f1_random_at_l0']:.3f}) | "
                  f"{d['features_f1_0.5']:,} | {d['uniqueness']:.3f} |")  # fmt: skip
    print()
    print("\n".join(f"- {x}" for x in out["lines"]))
    text = json.dumps(_no_nan(out), indent=1, allow_nan=False)
    (ROOT / json_name).write_text(text + "\n")


def _no_nan(x):
    """x with every float NaN (a row with no encoder-rows MCC) replaced by None."""
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_no_nan(v) for v in x]
    return None if isinstance(x, float) and math.isnan(x) else x


if __name__ == "__main__":
    main()
