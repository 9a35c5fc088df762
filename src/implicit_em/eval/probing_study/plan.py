"""The plan of the GPU probing study and its data preparation (issue 18).

`Plan` holds every setting of the study (models, L0 rule, tasks, seeds, metrics), fixed in
docs/eval/probing/gpu_plan.md before the first run; later runs override fields with a plan
JSON (docs/eval/probing/gpu2/plan_K4096.json, gpu3/plan_*.json). `prepare` tokenizes once, on
the CPU: the probing passage pool and its tasks (`eval.probing_tasks`, split by document), the
training contexts (BOS first, from the pool's *train-side* documents) and the held-out contexts
(from its *test-side* documents), written to one .npz + .json, so that the GPU needs no corpus
and no tokenizer. Moved from scripts/probing_gpu.py, unchanged.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from implicit_em.families.registry import DEFAULT_FAMILY, FAMILIES, family_by_label, row_label


@dataclass(frozen=True)
class Plan:
    """Every setting of the GPU study (docs/eval/probing/gpu_plan.md)."""

    Ks: tuple[int, ...] = (4096, 16384)
    seeds: tuple[int, ...] = (0, 1, 2)
    families: tuple[str, ...] = (DEFAULT_FAMILY, *map(family_by_label, ("topk", "batchtopk",
                                 "matryoshka", "jumprelu", "l1")))  # fmt: skip
    """Run 1's families, in training order (the decoder-free encoder first: the L0 rule reads
    it): encoder, TopK, BatchTopK, Matryoshka BatchTopK, JumpReLU and L1 SAEs."""
    rows: tuple = ()
    """The trained rows of each block, in order, when not empty (else one row per family,
    each with its untrained twin): dicts with "family" (registry name), optional "label" (row
    name prefix; default the family's short name), "loss" (LossConfig overrides, e.g.
    {"l0_coef": 0.01} or {"lambda_wr": 1.0}), "model" (ModelConfig overrides, e.g.
    {"activation": "softplus"}, {"unit_norm_rows": true}, {"centre": true}), "l1_c"
    (standard_sae: l1_weight = l1_c K / D), "untrained" (False: no untrained-twin row, when
    another row or docs/eval/probing/gpu.md already holds the same control) and "pretrain"
    (decoder-free pre-training, then this row's family: a row dict of the encoder trained on
    the first `pretrain_fraction` (default 0.5) of the training rows, the model then started
    from it (`models.init_from_encoder_`) and trained on the rest; or "none", the control:
    this row's model from its random init on the same rest only), "readout" ("topk": the
    trained model and its untrained twin read out through `models.TopKReadout` at the block's
    k, so their L0 is at most k; training unchanged; the codes, L0, dead latents, probes and
    the least-squares splice all see the read-out), "twin_of" (the label of the row whose
    untrained twin is this row's control, read by `compare3`) and "weights_of" (the label of
    an earlier row trained the same way, i.e. with the same "family", "loss", "model" and
    "l1_c" and no "pretrain": this row is not trained again but starts from that row's trained
    weights, so a read-out row costs its evaluation only; same seed, same weights as training
    it again, which is what gpu4's read-out rows did) and "k_of" (the label of an earlier
    row: this row's k is that row's held-out L0 in the block, rounded, instead of the
    `l0_reference` row's; an SAE at a variant's own L0, docs/eval/probing/gpu8_plan.md). A
    family that uses k (registry `uses_k`) and a "topk" read-out take k = the L0 of the
    block's first `l0_reference` row, so that row comes first."""
    l0_reference: str = DEFAULT_FAMILY
    """The family whose held-out L0 (rounded) is the block's k for the families that use k."""
    resp_families: tuple[str, ...] = ()
    """Families whose responsibilities r = softmax(-a) (paper Eq. 4) are probed too, beside
    the codes a, trained and untrained (rows `<label>[r]`)."""
    centre_saes: bool = True
    """Every family that can be centred (registry `centres`) on mean-centred inputs, except
    those in `uncentred`; a row's "model" overrides win."""
    uncentred: tuple[str, ...] = (DEFAULT_FAMILY,)
    """Families left uncentred by default: the decoder-free encoder (gpu.md's reference row;
    its centred variant is a row with "model": {"centre": true})."""
    twin_mean: bool = False
    """Untrained twins of centred rows take the trained model's input mean (x_mean), so the
    control sees the same centred inputs; False: x_mean = 0, as gpu.md / gpu2 had it."""
    train_tokens: int = 2_000_000
    """Training tokens that `prepare` packs (contexts of ctx_len - 1 tokens, drawn from the
    train-side documents; at most all of them, 7,227,697 tokens for the five corpora); the run
    trains on every one it finds in the data."""
    epochs: int = 1
    """Passes over the harvested training tokens per trained stage: epochs * (N // batch_size)
    Adam steps, each pass in a fresh seeded order (`train.distributed.BatchStream`). 1 = the
    one pass of gpu.md - gpu4 (the same steps, bit for bit); docs/eval/probing/gpu5_plan.md
    trains longer with 2."""
    batch_size: int = 4096
    lr: float = 1e-3
    tc_probes: int = 32
    l1_c: float = 0.5
    """standard_sae l1_weight = l1_c * K / D (the scale study's parametrisation)."""
    jumprelu_l0_coef: float = 1e-3
    jump_threshold: float = 0.001
    jump_bandwidth: float = 0.001
    """JumpReLU's initial threshold and kernel bandwidth: the library defaults when this study
    ran (docs/eval/probing/gpu.md); the defaults have since become 1.0 and 0.1."""
    ks: tuple[int, ...] = (1, 2, 5, 10, 20)
    fit_tokens: int = 100_000
    """Train tokens that fit the post-hoc least-squares / scalar read-outs."""
    ce_contexts: int = 64
    held_contexts: int = 256
    layer: int = 15
    max_norm_ratio: float = 10.0
    # pool / tasks (prepare)
    corpora: tuple[str, ...] = ("sotu", "moby", "spam", "pydoc", "perldoc")
    quota: tuple[int, ...] = (1600, 400, 1400, 600, 600)
    n_tokens: int = 64
    per_doc: int = 8
    test_fraction: float = 0.3
    tasks: tuple[str, ...] = ("spam_vs_ham", "sotu_party", "sotu_era", "pydoc_vs_perldoc",
                              "source")  # fmt: skip
    max_per_class: int = 500
    ctx_len: int = 128
    data_seed: int = 0
    lm_batch: int = 128


TINY = dict(Ks=(16, 32), seeds=(0, 1), train_tokens=4000, batch_size=256, fit_tokens=2000,
            ce_contexts=4, held_contexts=8, layer=1, corpora=("spam", "pydoc", "perldoc"),
            quota=(30, 20, 20), n_tokens=16, per_doc=2, tasks=("spam_vs_ham", "source"),
            ks=(1, 2), ctx_len=32, tc_probes=4, lm_batch=8)  # fmt: skip
"""The CPU end-to-end check (tests/test_probing_gpu.py): every step at toy size."""


ROW_KEYS = ("family", "label", "loss", "model", "l1_c", "untrained", "pretrain",
            "pretrain_fraction", "readout", "twin_of", "weights_of", "k_of")  # fmt: skip
"""The keys a `Plan.rows` entry may hold (their meaning: `Plan.rows`)."""
PRETRAIN_KEYS = ("family", "label", "loss", "model", "l1_c")
"""The keys of a row's "pretrain" row dict (the pre-training stage's `run_config` reads them)."""
READOUTS = ("topk",)
"""A row's "readout" values: "topk" = `models.TopKReadout` at the block's k."""


WEIGHTS_KEYS = ("family", "loss", "model", "l1_c", "pretrain", "pretrain_fraction")
"""The row keys that decide a row's training: a "weights_of" row and its source agree on all."""


def check_epochs(epochs, where: str = "the plan") -> None:
    """ValueError, one line, unless `epochs` (`Plan.epochs`) is an integer >= 1."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"{where}: epochs must be a whole number of passes >= 1 over the "
                         f"harvested training tokens (1 = one pass, as gpu.md - gpu4), got "
                         f"{epochs!r}")  # fmt: skip


def check_rows(rows, where: str = "the plan") -> None:
    """ValueError, one line naming the row (1-based, with its label), the bad key or value and
    the allowed ones, unless every entry of `rows` (`Plan.rows`) is a dict with a registry
    "family", only `ROW_KEYS`, "loss" / "model" keys that are `LossConfig` / `ModelConfig`
    fields, "readout" in `READOUTS` (or absent), "untrained" true or false, "twin_of" the label
    of another row, "k_of" the label of an earlier row on a row that uses k (a family with
    `uses_k` or a "topk" read-out), "weights_of" the label of an earlier row that agrees with it on every
    `WEIGHTS_KEYS` key and has no "pretrain", "pretrain_fraction" in (0, 1) and "pretrain"
    "none" or a row dict of `PRETRAIN_KEYS` (checked the same way). `plan_fields` calls it, so a typo in a plan file
    stops the command when the plan is read, before any data or language-model work (an
    unknown key would otherwise be ignored: {"read_out": "topk"} trained a plain row)."""
    from implicit_em.config import LossConfig, ModelConfig

    if not isinstance(rows, list | tuple):
        raise ValueError(f"{where}: rows must be a list of row dicts, got {type(rows).__name__}")
    sub = {"loss": {f.name for f in fields(LossConfig)},
           "model": {f.name for f in fields(ModelConfig)}}  # fmt: skip

    def check(row, name: str, allowed: tuple[str, ...]) -> None:
        if not isinstance(row, dict):
            raise ValueError(f'{where}: {name} must be a JSON object with a "family", got {row!r}')
        bad = sorted(set(row) - set(allowed))
        if bad:
            raise ValueError(f"{where}: {name} has unknown key(s) {', '.join(bad)}: choose from "
                             f"{', '.join(allowed)}")  # fmt: skip
        if not isinstance(row.get("family"), str) or row["family"] not in FAMILIES:
            raise ValueError(f"{where}: {name} has family {row.get('family')!r}: choose from "
                             f"{', '.join(FAMILIES)}")  # fmt: skip
        for part, known in sub.items():
            over = row.get(part, {})
            if not isinstance(over, dict):
                raise ValueError(f"{where}: {name}: {part} must be a JSON object of "
                                 f"{part.capitalize()}Config fields, got {over!r}")  # fmt: skip
            bad = sorted(set(over) - known)
            if bad:
                raise ValueError(f"{where}: {name}: {part} sets unknown {part.capitalize()}Config "
                                 f"field(s) {', '.join(bad)}: choose from {', '.join(sorted(known))}")  # fmt: skip

    labels = [(r.get("label") or SHORT.get(r.get("family"))) if isinstance(r, dict)
              and isinstance(r.get("family"), str) else None for r in rows]  # fmt: skip
    for i, row in enumerate(rows):
        name = f"row {i + 1}" + (f" ({labels[i]})" if labels[i] else "")
        check(row, name, ROW_KEYS)
        if row.get("readout") not in (None, *READOUTS):
            raise ValueError(f"{where}: {name}: readout {row['readout']!r} is not known: use "
                             "\"topk\" (the codes read out at the block's k, models.TopKReadout) "
                             "or leave it out")  # fmt: skip
        if row.get("untrained", True) not in (True, False):
            raise ValueError(f"{where}: {name}: untrained must be true or false, got "
                             f"{row['untrained']!r}")  # fmt: skip
        if "twin_of" in row and row["twin_of"] not in labels[:i] + labels[i + 1 :]:
            raise ValueError(f"{where}: {name}: twin_of {row['twin_of']!r} is not the label of "
                             f"another row: choose from {', '.join(map(str, labels))}")  # fmt: skip
        if "k_of" in row:
            if row["k_of"] not in labels[:i]:
                earlier = ", ".join(map(str, labels[:i])) or "none (it is the first row)"
                raise ValueError(f"{where}: {name}: k_of {row['k_of']!r} is not the label of an "
                                 f"earlier row: choose from {earlier}")  # fmt: skip
            if not (FAMILIES[row["family"]].uses_k or row.get("readout") == "topk"):
                raise ValueError(f"{where}: {name}: k_of sets k, which family "
                                 f"{row['family']!r} does not use: give it to a family that "
                                 "uses k (e.g. topk_sae) or a row with \"readout\": \"topk\"")  # fmt: skip
        if "weights_of" in row:
            src = row["weights_of"]
            if src not in labels[:i]:
                earlier = ", ".join(map(str, labels[:i])) or "none (it is the first row)"
                raise ValueError(f"{where}: {name}: weights_of {src!r} is not the label of an "
                                 f"earlier row: choose from {earlier}")  # fmt: skip
            j = labels.index(src)
            diff = [key for key in WEIGHTS_KEYS if row.get(key) != rows[j].get(key)]
            if diff or "pretrain" in row:
                why = (f"differs from it in {', '.join(diff)}" if diff else
                       "has a pretrain stage")  # fmt: skip
                raise ValueError(f"{where}: {name}: weights_of {src!r}: this row {why}; a row "
                                 "takes another's trained weights only when both are trained the "
                                 "same way without pretrain (same family, loss, model, l1_c)")  # fmt: skip
        frac = row.get("pretrain_fraction", 0.5)
        if isinstance(frac, bool) or not isinstance(frac, int | float) or not 0 < frac < 1:
            raise ValueError(f"{where}: {name}: pretrain_fraction must be a number in (0, 1), "
                             f"got {frac!r}")  # fmt: skip
        pre = row.get("pretrain")
        if pre is not None and pre != "none":
            if not isinstance(pre, dict):
                raise ValueError(f"{where}: {name}: pretrain must be a row dict or \"none\", "
                                 f"got {pre!r}")  # fmt: skip
            check(pre, f"{name}: pretrain", PRETRAIN_KEYS)


def plan_fields(overrides: dict, where: str = "the plan") -> dict:
    """`overrides` (JSON values: lists for tuples) as keyword arguments of `Plan`; ValueError
    naming an unknown field, or a bad row of "rows" (`check_rows`)."""
    known = {f.name for f in fields(Plan)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ValueError(f"{where} sets unknown Plan field(s) {', '.join(bad)}: "
                         f"choose from {', '.join(sorted(known))}")  # fmt: skip
    if "rows" in overrides:
        check_rows(overrides["rows"], where)
    if "epochs" in overrides:
        check_epochs(overrides["epochs"], where)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}


def read_plan_json(text: str | None) -> dict:
    """The Plan overrides of `--plan-json`: JSON text, or "@FILE" naming a file that holds it
    (e.g. @docs/eval/probing/gpu3/plan_K4096.json); None -> {}. FileNotFoundError for a missing
    file, ValueError for text that is not a JSON object of Plan fields."""
    if not text:
        return {}
    where = "--plan-json"
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise FileNotFoundError(f"plan file {path} not found: pass --plan-json @FILE with an "
                                    "existing JSON file (e.g. @docs/eval/probing/gpu3/plan_K4096.json)")  # fmt: skip
        text, where = path.read_text(), f"plan file {path}"
    try:
        over = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where} is not valid JSON ({e.msg} at line {e.lineno}): pass a JSON "
                         'object of Plan fields, e.g. {"Ks": [4096]}') from None  # fmt: skip
    if not isinstance(over, dict):
        raise ValueError(f'{where} must hold a JSON object of Plan fields, e.g. {{"Ks": [4096]}}: '
                         f"got {type(over).__name__}")  # fmt: skip
    plan_fields(over, where)
    return over


def plan_rows(plan: Plan) -> list[dict]:
    """The trained rows of a block: plan.rows, or one per family with its untrained twin."""
    if plan.rows:
        return [dict(r) for r in plan.rows]
    return [{"family": f} for f in plan.families]


def run_config(family: str, K: int, d: int, plan: Plan, seed: int, k: int = 16,
               row: dict | None = None):  # fmt: skip
    """The run config of one row. Every family gets loss.tc_probes (only the families whose
    terms include the decorrelation penalty read it); SAE families are centred when the
    registry says they can be (plan.centre_saes). row: a `Plan.rows` entry (its "loss"
    overrides and "l1_c"), or None for the plan's defaults."""
    from implicit_em.config import LossConfig, ModelConfig, RunConfig, TrainConfig

    row = row or {}
    l1_c = row.get("l1_c") or plan.l1_c
    loss = LossConfig(l1_weight=l1_c * K / d, dead_steps=250, tc_probes=plan.tc_probes,
                      l0_coef=plan.jumprelu_l0_coef)  # fmt: skip
    loss = replace(loss, **row.get("loss", {}))
    model = ModelConfig(
        type=family,
        input_dim=d,
        hidden_dim=K,
        k=k,
        centre=plan.centre_saes and FAMILIES[family].centres and family not in plan.uncentred,
        jump_threshold=plan.jump_threshold,
        jump_bandwidth=plan.jump_bandwidth,
    )  # fmt: skip
    return RunConfig(
        model=replace(model, **row.get("model", {})),
        loss=loss,
        training=TrainConfig(
            epochs=plan.epochs, batch_size=plan.batch_size, lr=plan.lr, seed=seed
        ),  # fmt: skip
    )


SHORT = {name: row_label(name) for name in FAMILIES}
"""Row-name prefixes (the names gpu.md's rows carry; `families.registry.LABELS`)."""


def label_of(row: dict) -> str:
    """A `Plan.rows` entry's label: its "label", else its family's `SHORT` name."""
    return row.get("label") or SHORT[row["family"]]


def prepare(plan: Plan, corpora: dict, tokenizer, out: Path) -> dict:
    """Pool, tasks, train and held-out contexts -> out.npz + out.json. Returns the metadata."""
    import torch

    from implicit_em.data.lm.activations import pack_documents
    from implicit_em.data.lm.corpus import split_documents
    from implicit_em.eval.probing_tasks import build_pool, build_tasks

    quota = dict(zip(plan.corpora, plan.quota, strict=True))
    pool = build_pool({c: corpora[c] for c in plan.corpora}, tokenizer, quota, plan.n_tokens,
                      plan.per_doc, plan.test_fraction, plan.data_seed)  # fmt: skip
    tasks = build_tasks(pool, plan.tasks, plan.max_per_class, plan.data_seed)
    train_docs, test_docs = [], []
    for c in plan.corpora:  # the pool's own document split: no probing test text in training
        tr, te = split_documents(corpora[c], plan.test_fraction, plan.data_seed)
        train_docs += tr
        test_docs += te
    g = torch.Generator().manual_seed(plan.data_seed)
    train_ctx = pack_documents(train_docs, tokenizer, plan.ctx_len)
    need = math.ceil(plan.train_tokens / (plan.ctx_len - 1))
    train_ctx = train_ctx[torch.randperm(len(train_ctx), generator=g)[:need]]
    held = pack_documents(test_docs, tokenizer, plan.ctx_len)
    held = held[torch.randperm(len(held), generator=g)[: plan.held_contexts]]
    arrays = {"pool_tokens": pool.tokens.numpy().astype(np.int32),
              "train_ctx": train_ctx.numpy().astype(np.int32),
              "held_ctx": held.numpy().astype(np.int32)}  # fmt: skip
    for t in tasks:
        for part in ("train_idx", "train_y", "test_idx", "test_y"):
            arrays[f"task:{t.name}:{part}"] = getattr(t, part)
    meta = {"plan": asdict(plan), "pool_split": pool.split, "pool_corpus": pool.corpus,
            "tasks": [t.summary() for t in tasks],
            "train_tokens": int(train_ctx.shape[0] * (plan.ctx_len - 1)),
            "held_tokens": int(held.shape[0] * (plan.ctx_len - 1)),
            "train_docs": len(train_docs), "test_docs": len(test_docs)}  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out.with_suffix(".npz"), **arrays)
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return meta


def load_data(path: Path) -> tuple[dict, dict]:
    """(metadata, arrays) of the files `prepare` wrote at the stem `path` (STEM.json, STEM.npz);
    FileNotFoundError naming the one that is missing."""
    for part in (path.with_suffix(".json"), path.with_suffix(".npz")):
        if not part.is_file():
            raise FileNotFoundError(f"{part} not found: pass --data the stem that `implicit-em "
                                    "eval-suite probing-study prepare --out STEM` wrote")  # fmt: skip
    meta = json.loads(path.with_suffix(".json").read_text())
    with np.load(path.with_suffix(".npz")) as z:
        arrays = {k: z[k] for k in z.files}
    return meta, arrays
