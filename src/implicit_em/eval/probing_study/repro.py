"""The numbers a reproduction check compares, run against run (docs/eval/probing/gpu5 and gpu6
`check_repro.py`): one flat dict per results file, so that two runs can be compared entry by
entry."""

from __future__ import annotations

from collections.abc import Callable

from implicit_em.eval.verdict import probing_row_label


def numbers(res: dict, mine: Callable[[str], bool]) -> dict[str, float]:
    """Every number of a probing-study results dict (`probing_study.run`'s results.json) whose
    row `mine` accepts, keyed "part :: ... :: name": held-out L0 and dead fraction
    ("l0 :: KEY", "dead_fraction :: KEY"); CE, KL and CE-loss recovered of each splice, the
    model's own ("orig") and the zero splice always included ("ce :: BLOCK :: KEY :: METRIC");
    probe accuracies of both probe variants, every task and k, and the full probe where
    stored ("probe :: VARIANT :: ROW :: TASK :: K|full"); the last training record ("train ::
    KEY :: METRIC"). Probing rows are keyed by their current name
    (`eval.verdict.probing_row_label`), so a run that names the raw residual `RAW_ROW` reads
    against an older file that names it `OLD_RAW_ROW`; `mine` is called with that name. A
    None L0 or dead fraction is left out."""
    out: dict[str, float] = {}
    for part in ("l0", "dead_fraction"):
        for k, v in res.get(part, {}).items():
            if mine(k) and v is not None:
                out[f"{part} :: {k}"] = float(v)
    for block, d in res.get("downstream", {}).items():
        for k, v in d.items():
            if k in ("orig", "zero") or mine(k):
                for m in ("ce", "kl", "ce_loss_recovered"):
                    out[f"ce :: {block} :: {k} :: {m}"] = float(v[m])
    for variant, rows in res.get("probing", {}).items():
        for name, tasks in rows.items():
            row = probing_row_label(name)
            if mine(row):
                for task, r in tasks.items():
                    for k, acc in r["k"].items():
                        out[f"probe :: {variant} :: {row} :: {task} :: {k}"] = float(acc)
                    if r.get("full") is not None:
                        out[f"probe :: {variant} :: {row} :: {task} :: full"] = float(r["full"])
    for k, v in res.get("train", {}).items():
        if mine(k) and v.get("last"):
            for m, x in v["last"].items():
                out[f"train :: {k} :: {m}"] = float(x)
    return out


def raw_probes_equal(a: dict[str, float], b: dict[str, float], common: list[str],
                     tol: float) -> tuple[int, int]:  # fmt: skip
    """(equal, total): of the raw residual's probe accuracies among `common` keys of two
    `numbers` dicts, how many agree within `tol` (the check's raw-residual rule: the same
    activations and probes give the same accuracies)."""
    raw = [k for k in common if k.startswith("probe :: ") and " :: raw residual" in k]
    return sum(abs(a[k] - b[k]) <= tol for k in raw), len(raw)


def repro_word(ok: bool, n_same: int, n_common: int) -> str:
    """The check's last word: "bit-identical" when every rule passed and every shared number is
    equal, "comparable" when the rules passed, else "NOT comparable"."""
    if not ok:
        return "NOT comparable"
    return "bit-identical" if n_same == n_common else "comparable"
