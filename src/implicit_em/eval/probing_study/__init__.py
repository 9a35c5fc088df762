"""The GPU probing study of issue 18: k-sparse probing and CE-loss recovered of every model
family on SmolLM2-135M's residual stream, beside controls, over seeds and K
(docs/eval/probing/README.md; results in docs/eval/probing/gpu*.md).

Modules, in the order the study runs:

- `plan`: `Plan` (every setting, fixed before each run; overrides from a plan JSON), the run
  config of each row, and `prepare` / `load_data` (tokenized pool, tasks and contexts).
- `run`: `main_run` (harvest, train each row, its controls, probe, splice; results.json) and
  `harvest` (the residuals it reads, which a caller may compute once and pass in).
- `report`: `merge_results`, `summarize`, `render` (tables) and `plot` (probing vs k).
- `compare`: the verdicts of run 2 (`compare`), run 3 (`compare3`) and run 4 (`compare4`).
- `commands`: the five steps as commands (`implicit-em eval-suite probing-study ...`).

`eval.probing_suite` is the small CPU-scale suite (`implicit-em eval-suite probing`); this
study reuses its `downstream` splice, `eval.sparse_probing`'s probes and random directions,
`eval.probing_tasks`' passages and `eval.verdict`'s kinds and margins.
"""

from __future__ import annotations

from implicit_em.eval.probing_study.compare import (
    OLD_ROWS,
    TIED_FAMILIES,
    compare,
    compare3,
    compare4,
    row_stats,
)
from implicit_em.eval.probing_study.plan import (
    SHORT,
    TINY,
    Plan,
    load_data,
    plan_fields,
    plan_rows,
    prepare,
    read_plan_json,
    run_config,
)
from implicit_em.eval.probing_study.report import (
    dataset_mean,
    merge_results,
    plot,
    render,
    row_id,
    summarize,
)
from implicit_em.eval.probing_study.run import (
    Fitter,
    fit_task,
    harvest,
    harvest_rows,
    log,
    main_run,
    train_row,
)

__all__ = [
    "OLD_ROWS", "SHORT", "TIED_FAMILIES", "TINY", "Fitter", "Plan", "compare", "compare3",
    "compare4", "dataset_mean", "fit_task", "harvest", "harvest_rows", "load_data", "log", "main_run",
    "merge_results",
    "plan_fields", "plan_rows", "plot", "prepare", "read_plan_json", "render", "row_id",
    "row_stats", "run_config", "summarize", "train_row",
]  # fmt: skip
