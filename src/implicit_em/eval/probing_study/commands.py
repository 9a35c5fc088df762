"""The steps of the GPU probing study as commands: `implicit-em eval-suite probing-study
prepare | run | report | compare | compare3 | compare4` (options in `eval.options`: `StudyPrepareOptions`,
...), and scripts/probing_gpu.py under its old command line.

Each checks its inputs first (one error naming the problem and the fix: a missing plan,
data or results file, a results file that is not this study's, a seed outside the plan) and
refuses to replace files it would write unless `overwrite`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from implicit_em.atomic import free_paths
from implicit_em.eval.options import (
    StudyCompare3Options,
    StudyCompare4Options,
    StudyCompareOptions,
    StudyPrepareOptions,
    StudyReportOptions,
    StudyRunOptions,
)

RESULT_KEYS = ("plan", "kinds", "l0", "probing", "downstream", "blocks_done")
"""Keys every results.json of `run.main_run` holds."""

REPORT_FILES = ("gpu_tables.md", "gpu_summary.json", "gpu_probing_vs_k.png")
COMPARE_FILES = ("gpu2_compare.md", "gpu2_compare.json")
COMPARE3_FILES = ("gpu3_compare.md", "gpu3_compare.json")
COMPARE4_FILES = ("gpu4_compare.md", "gpu4_compare.json")


def read_json(path: str | Path, what: str, made_by: str):
    """The JSON in `path`; FileNotFoundError / ValueError naming `what` and the command that
    writes it (`made_by`) when the file is missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found: pass the file that {made_by} wrote")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{what} {path} is not JSON ({e}): pass the file that {made_by} wrote"
        ) from None


def load_results(paths: list[str]) -> dict:
    """The results.json files of a run, checked to be this study's, merged in order
    (`report.merge_results`)."""
    from implicit_em.eval.probing_study.report import merge_results

    made_by = "`implicit-em eval-suite probing-study run`"
    parts = []
    for p in paths:
        res = read_json(p, "results file", made_by)
        missing = [k for k in RESULT_KEYS if not isinstance(res, dict) or k not in res]
        if missing:
            raise ValueError(f"{p} is not a results.json of the probing study (no "
                             f"{', '.join(missing)}): pass the results.json that {made_by} wrote")  # fmt: skip
        parts.append(res)
    return merge_results(parts)


def prepare_command(opts: StudyPrepareOptions) -> None:
    """Tokenize pool, tasks and contexts (`plan.prepare`); prints the metadata."""
    from implicit_em.data.lm import load_lm
    from implicit_em.data.lm.corpus import load_corpus
    from implicit_em.eval.probing_study.plan import Plan, plan_fields, prepare, read_plan_json

    plan = Plan(**plan_fields(read_plan_json(opts.plan_json)))
    stem = Path(opts.out)
    free_paths(
        stem.parent, (stem.with_suffix(".npz").name, stem.with_suffix(".json").name), opts.overwrite
    )
    _, tok, _ = load_lm(opts.model)
    meta = prepare(plan, {c: load_corpus(c) for c in plan.corpora}, tok, stem)
    print(json.dumps({k: v for k, v in meta.items() if not k.startswith("pool_")}, indent=1))


def run_command(opts: StudyRunOptions) -> None:
    """The study on one device (`run.main_run`): the plan `prepare` stored, with --plan-json
    on top and --seeds chosen from it."""
    import torch

    from implicit_em.data.lm import load_lm
    from implicit_em.eval.probing_study.plan import Plan, load_data, plan_fields, read_plan_json
    from implicit_em.eval.probing_study.run import log, main_run

    over = read_plan_json(opts.plan_json)
    meta, arrays = load_data(Path(opts.data))
    plan = replace(Plan(**plan_fields(meta["plan"], f"{opts.data}.json")), **plan_fields(over))
    if opts.seeds is not None:
        if not set(opts.seeds) <= set(plan.seeds):
            raise ValueError(f"--seeds {opts.seeds} not all in the plan's seeds {plan.seeds}: "
                             "choose among those, or change the plan's seeds with --plan-json")  # fmt: skip
        plan = replace(plan, seeds=tuple(opts.seeds))
    if opts.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {opts.device}: this torch sees no CUDA device: pass --device cpu "
                         "or run on a machine with a GPU")  # fmt: skip
    out = Path(opts.out)
    free_paths(out, ("results.json",), opts.overwrite)
    lm, _, info = load_lm(opts.model, progress=False)
    log(f"LM loaded: {info}")
    torch.set_num_threads(opts.threads)
    main_run(plan, meta, arrays, lm, out, opts.device, opts.time_limit, opts.workers, info)


def report_command(opts: StudyReportOptions) -> Path:
    """gpu_tables.md, gpu_summary.json and gpu_probing_vs_k.png in --out; returns the tables'
    path."""
    from implicit_em.eval.probing_study.report import plot, render, summarize

    res = load_results(opts.results)
    tables, summary, png = free_paths(Path(opts.out), REPORT_FILES, opts.overwrite)
    summ = summarize(res)
    tables.write_text(render(res, summ))
    summary.write_text(json.dumps(summ, indent=1))
    plot(res, summ, png)
    return tables


def compare_command(opts: StudyCompareOptions) -> None:
    """gpu2_compare.md / .json in --out (`compare.compare`); prints the markdown."""
    from implicit_em.eval.probing_study.compare import compare

    new = load_results(opts.results)
    old = load_results([opts.old])
    write_compare(opts.out, COMPARE_FILES, lambda: compare(new, old), opts.overwrite)


def write_compare(
    out: str | Path,
    files: tuple[str, str],
    make: Callable[[], tuple[str, dict]],
    overwrite: bool = False,
) -> int:
    """make()'s (markdown, numbers) written to out / files[0] and, as JSON (indent 1), to
    out / files[1]; prints the markdown. Refuses to replace either file unless `overwrite`
    (`atomic.free_paths`, checked before make() runs). Returns 0, the per-run scripts' exit
    status (docs/eval/probing/gpu5-8/compareN.py)."""
    md_path, json_path = free_paths(Path(out), files, overwrite)
    md, nums = make()
    md_path.write_text(md)
    json_path.write_text(json.dumps(nums, indent=1))
    print(md)
    return 0


def compare_to_baseline(
    results: list[str],
    baseline: str,
    out: str | Path,
    files: tuple[str, str],
    compare: Callable[[dict, dict], tuple[str, dict]],
) -> int:
    """The body of docs/eval/probing/gpu6-8/compareN.py: `compare(merged results, gpu2's
    gpu2_compare.json)` written by `write_compare` (refusing to replace `files` in `out`)."""
    res = load_results(results)
    base = read_json(baseline, "baseline", "`implicit-em eval-suite probing-study compare`")
    return write_compare(out, files, lambda: compare(res, base))


def _rows_and_baseline(opts, run: int, example: str) -> tuple[dict, dict]:
    """The merged results (with plan rows) and the gpu2_compare.json baseline of compare3 /
    compare4, each checked (one error naming the file and the fix)."""
    new = load_results(opts.results)
    base = read_json(opts.baseline, "baseline", "`implicit-em eval-suite probing-study compare`")
    if not isinstance(base, dict) or not all(
        k.startswith("K") and isinstance(v, dict) for k, v in base.items()
    ):
        raise ValueError(f"baseline {opts.baseline} is not a gpu2_compare.json (an object of "
                         '"K<latents>" entries): pass the gpu2_compare.json that '
                         "`implicit-em eval-suite probing-study compare` wrote")  # fmt: skip
    if not all(r.get("family") for r in new["plan"].get("rows") or [{}]):
        raise ValueError(f"compare{run} reads run {run}'s plan rows, and these results have none: pass "
                         f"results of a run with Plan.rows (e.g. {example})")  # fmt: skip
    return new, base


def _compare_n(opts, run: int, example: str, files: tuple[str, str], compare) -> None:
    """Shared body of the compareN commands: the new rows and the baseline
    (`_rows_and_baseline`), the markdown and the numbers of `compare(new, base)` written to
    --out (`files`: md, json; atomic, never over an existing file without --overwrite); prints
    the markdown."""
    from implicit_em.atomic import atomic_write_bytes

    new, base = _rows_and_baseline(opts, run, example)
    md_path, json_path = free_paths(Path(opts.out), files, opts.overwrite)
    md, nums = compare(new, base)
    atomic_write_bytes(md_path, md.encode())
    atomic_write_bytes(json_path, json.dumps(nums, indent=1).encode())
    print(md)


def compare3_command(opts: StudyCompare3Options) -> None:
    """gpu3_compare.md / .json in --out (`compare.compare3`); prints the markdown."""
    from implicit_em.eval.probing_study.compare import compare3

    _compare_n(opts, 3, "docs/eval/probing/gpu3/plan_K4096.json", COMPARE3_FILES, compare3)


def compare4_command(opts: StudyCompare4Options) -> None:
    """gpu4_compare.md / .json in --out (`compare.compare4`, rules of gpu4_plan.md); prints
    the markdown."""
    from implicit_em.eval.probing_study.compare import compare4

    _compare_n(opts, 4, "docs/eval/probing/gpu4/plan.json", COMPARE4_FILES, compare4)
