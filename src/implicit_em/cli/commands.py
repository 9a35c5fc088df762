"""The subcommands of `implicit-em`: one line each.

A command is an options dataclass (one field per flag, a docstring under each field: that is
its --help) and a function `run(opts) -> int | None`, both named as "module:attribute" strings
so that nothing is imported until the command is chosen (`implicit-em --help` stays instant).
To add a command, append one `Command(...)` line below; `docs/architecture.md` says more.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str
    """Words after `implicit-em` ("train", or "data fetch" for a command in a group)."""
    options: str
    """"module:Class" of the options dataclass."""
    run: str
    """"module:function" called with the options; returns the exit status (None: 0)."""
    help: str
    """One line for `implicit-em --help`."""


_EXP = "implicit_em.experiments"
_EO = "implicit_em.eval.options"
_PS = "implicit_em.eval.probing_study.commands"

COMMANDS: list[Command] = [
    Command("reproduce", f"{_EXP}:ReproduceOptions", f"{_EXP}.reproduce:run_command", "run every experiment of the paper and write the report"),
    Command("theorem", f"{_EXP}:ExperimentOptions", f"{_EXP}.reproduce:run_theorem", "run the theorem experiment alone"),
    Command("ablation", f"{_EXP}:ExperimentOptions", f"{_EXP}.reproduce:run_ablation", "run the ablation experiment alone"),
    Command("benchmark", f"{_EXP}:ExperimentOptions", f"{_EXP}.reproduce:run_benchmark", "run the benchmark experiment alone"),
    Command("features", f"{_EXP}:ExperimentOptions", f"{_EXP}.reproduce:run_features", "run the features experiment alone"),
    Command("dynamics", f"{_EXP}:ExperimentOptions", f"{_EXP}.reproduce:run_dynamics", "run the dynamics experiment alone"),
    Command("train", "implicit_em.workflows:TrainOptions", "implicit_em.workflows:run_train", "train one model from a YAML config"),
    Command("evaluate", "implicit_em.workflows:EvaluateOptions", "implicit_em.workflows:run_evaluate", "evaluate a run directory on its test set"),
    Command("data fetch", "implicit_em.data.tasks:FetchOptions", "implicit_em.data.tasks:run_fetch", "fill the cache with a verified data set"),
    Command("data pack-corpora", "implicit_em.data.tasks:PackCorporaOptions", "implicit_em.data.tasks:run_pack_corpora", "write text corpora to one tarball for machines without network"),
    Command("harvest", f"{_EXP}.options:HarvestOptions", f"{_EXP}.llm:run_harvest", "harvest LM residual-stream activations to fp16 shards (resumable)"),
    Command("llm-train", f"{_EXP}.options:LlmTrainOptions", f"{_EXP}.llm:run_train", "train an encoder or SAE on harvested activations"),
    Command("llm-eval", f"{_EXP}.options:LlmEvalOptions", f"{_EXP}.llm:run_eval", "FVU, codes, and CE/KL with reconstructions spliced into the LM"),
    Command("ood", f"{_EXP}.options:OodOptions", f"{_EXP}.ood:run_command", "beyond the paper: LSE energy as an anomaly score, MNIST vs Fashion-MNIST"),
    Command("ddp", "implicit_em.train.options:DistributedOptions", "implicit_em.train.distributed:run_ddp", "data-parallel training under torchrun (one rank without it), timed"),
    Command("ddp-modules", "implicit_em.train.options:ModulesOptions", "implicit_em.train.modules:run_modules", "train a grid of models (families x K x seeds x layers), each rank its own, from one activation stream (torchrun)"),
    Command("scale", f"{_EXP}.options:ScaleOptions", f"{_EXP}.scale:run_scale", "GPU study: harvest, train Encoder / TopK / L1 SAEs at large K, evaluate"),
    Command("harvest-hf", "implicit_em.data.lm.harvest_config:HFHarvestOptions", "implicit_em.data.hf_harvest:run", "harvest activations of any Hugging Face causal LM at several hooks (resumable)"),
    Command("export", "implicit_em.interop.options:ExportOptions", "implicit_em.interop.commands:run_export", "write a run in the SAELens or sparsify format"),
    Command("import", "implicit_em.interop.options:ImportOptions", "implicit_em.interop.commands:run_import", "load an SAELens / sparsify SAE as a model of ours (and evaluate it)"),
    Command("dashboard", "implicit_em.dashboard.options:DashboardOptions", "implicit_em.dashboard.run:run", "static feature dashboards of a run on harvested activations"),
    Command("eval-suite synthetic", "implicit_em.eval.options:SyntheticEvalOptions", "implicit_em.eval.synthetic:run_command", "ground-truth feature recovery on SynthSAEBench data, beside controls"),
    Command("eval-suite probing", "implicit_em.eval.options:ProbingOptions", "implicit_em.eval.probing_suite:run", "k-sparse probing and CE-loss recovered on SmolLM2 activations, beside controls"),
    Command("eval-suite probing-study prepare", f"{_EO}:StudyPrepareOptions", f"{_PS}:prepare_command", "tokenize the passage pool, tasks and contexts once (CPU)"),
    Command("eval-suite probing-study run", f"{_EO}:StudyRunOptions", f"{_PS}:run_command", "train every row per seed and K with its controls, probe, splice into the LM (GPU)"),
    Command("eval-suite probing-study report", f"{_EO}:StudyReportOptions", f"{_PS}:report_command", "tables beside the controls and the probing-vs-k plot from results.json files"),
    Command("eval-suite probing-study compare", f"{_EO}:StudyCompareOptions", f"{_PS}:compare_command", "run 2's rows beside run 1's and their verdict (gpu2_plan.md)"),
    Command("eval-suite probing-study compare3", f"{_EO}:StudyCompare3Options", f"{_PS}:compare3_command", "run 3's variant rows, their controls and the verdict (gpu3_plan.md)"),
    Command("eval-suite probing-study compare4", f"{_EO}:StudyCompare4Options", f"{_PS}:compare4_command", "run 4's centred / uncentred SAEs and TopK read-out rows by gpu4_plan.md's rules"),
    Command("eval-suite verdict", f"{_EO}:VerdictOptions", "implicit_em.eval.summary:run", "the cross-study verdict of issue 18 (target criteria per model) from the studies' JSON"),
]  # fmt: skip

GROUPS = {
    "data": "obtain and verify data sets",
    "eval-suite": "evaluations that do not presuppose a decoder (issue 18)",
    "eval-suite probing-study": (
        "the GPU probing study over seeds and K (docs/eval/probing/README.md): "
        "prepare, run, report, compare, compare3, compare4"
    ),
}
"""Help lines of the first words shared by several commands."""
