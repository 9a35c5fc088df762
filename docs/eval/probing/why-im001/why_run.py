"""The CPU study why-im001 (docs/eval/probing/why-im001-PLAN.md): why encoder-im0.01 loses at
LLM scale. The probing study's own run path (`eval.probing_study.run.main_run`) at K = 1024 on
a reduced SmolLM2 harvest, one arm per call, one thread.

    export PYTHONPATH=src HF_HUB_OFFLINE=1
    python docs/eval/probing/why-im001/why_run.py harvest        # once: /tmp/why_im001/harvest.pt
    python docs/eval/probing/why-im001/why_run.py arm x1         # then each arm, in the plan's order

Each arm writes docs/eval/probing/why-im001/<arm>/: results.json (main_run's), diag.json (the
plan's diagnostics of every trained row and of the untrained twin) and arm.json (settings,
steps, seconds). Legend: D input dim (576), K latents (1024), M held-out tokens, P passages,
T tokens per passage.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[4]
HERE = Path(__file__).resolve().parent
DATA = ROOT / ".carry/g8/data/data"  # gpu2's data, as gpu8 carried it
GGUF = Path("/tmp/g8_p4/SmolLM2-135M-Instruct.Q4_1.gguf")
CACHE = Path("/tmp/why_im001/harvest.pt")
SHA = {DATA.with_suffix(".npz"): "182ceaa088d1f6878d9d2a03c628a19124efccd903e7169c4fe321b46a73b225",
       GGUF: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"}  # fmt: skip
N_TRAIN_CTX, N_HELD_CTX = 1500, 64
K = 1024
TARGET_STEPS = 488  # gpu3's / gpu8's: one pass over 1,999,602 tokens at B = 4096
SETTINGS = dict(Ks=(K,), held_contexts=N_HELD_CTX, ce_contexts=8, fit_tokens=20_000,
                batch_size=4096, lr=1e-3, tc_probes=32, twin_mean=True, resp_families=())  # fmt: skip
"""Plan fields of every arm (the plan's table "here"); the rest is gpu2's stored plan."""

ENC = {"family": "encoder"}
IM01 = {"family": "encoder", "label": "encoder-im0.01", "untrained": False, "twin_of": "encoder",
        "loss": {"lambda_var": 0.01, "lambda_tc": 0.01}}  # fmt: skip
IM04 = {"family": "encoder", "label": "encoder-im0.04", "untrained": False, "twin_of": "encoder",
        "loss": {"lambda_var": 0.04, "lambda_tc": 0.04}}  # fmt: skip


def alone(row: dict) -> dict:
    """A row without the encoder beside it: its own untrained twin (the same init as the
    encoder's: the weights change only the loss)."""
    return {k: v for k, v in row.items() if k not in ("untrained", "twin_of")}


ARMS = {
    "x1": dict(rows=(ENC, IM01, IM04), mult=1),
    "x4-im0.01": dict(rows=(alone(IM01),), mult=4),
    "b1024": dict(rows=(alone(IM01),), mult=1, batch=1024),
    "tokennorm": dict(rows=(ENC, IM01), mult=1, tokennorm=True),
    "x4-encoder": dict(rows=(ENC,), mult=4),
    "x4-im0.04": dict(rows=(alone(IM04),), mult=4),
    "x1-s1": dict(rows=(ENC, IM01, IM04), mult=1, seed=1),
    "b1024-x4": dict(rows=(alone(IM01),), mult=4, batch=1024),
}
"""The plan's arms, in its order: rows, steps (mult x 488 at B = 4096), batch (default 4096;
b1024 keeps x1's passes, so the same tokens; b1024-x4, a follow-up arm, keeps the x4 arms'
passes), seed (default 0), tokennorm (every residual divided by its own norm before main_run)."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def inputs():
    """(plan, meta, arrays) with the plan's reduced contexts; sha256 of data and GGUF checked."""
    from implicit_em.eval.probing_study.plan import Plan, load_data, plan_fields

    for path, want in SHA.items():
        if sha256(path) != want:
            sys.exit(f"{path}: sha256 is not {want[:8]}...: use gpu2's data and the Q4_1 GGUF")
    meta, arrays = load_data(DATA)
    arrays = {**arrays, "train_ctx": arrays["train_ctx"][:N_TRAIN_CTX],
              "held_ctx": arrays["held_ctx"][:N_HELD_CTX]}  # fmt: skip
    plan = replace(Plan(**plan_fields(meta["plan"])), **SETTINGS)
    return plan, meta, arrays


def load_lm():
    from implicit_em.data.lm import load_lm as load

    lm, _, info = load(str(GGUF), progress=False)
    return lm, info


def passes_for(n_rows: int, batch: int, steps: int) -> int:
    """The number of passes whose steps (passes * (n_rows // batch)) come nearest `steps`."""
    per = n_rows // batch
    return min(range(1, 10 * steps // per + 2), key=lambda e: (abs(e * per - steps), e))


def n_train(x: torch.Tensor, plan) -> int:
    """Training rows main_run keeps after its outlier drop (the same rule, on x (N, D))."""
    from implicit_em.data.lm.activations import norm_outliers

    median = float(x[:200_000].float().norm(dim=1).median())
    return int((~norm_outliers(x.float(), plan.max_norm_ratio, median)).sum())


def spearman(u: torch.Tensor, v: torch.Tensor) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(u.numpy(), v.numpy()).statistic)


@torch.no_grad()
def diagnostics(model, held: torch.Tensor, acts: torch.Tensor, scale: float) -> dict:
    """The plan's diagnostics of one model's code: held (M, D) and acts (P, T, D) in model
    units (scaled by `scale` as main_run scales them)."""
    from implicit_em.lm_eval import encode

    xh = held.float() * scale  # (M, D)
    norms = held.float().norm(dim=1)  # (M,)
    a = encode(model, xh)  # (M, K)
    l0_tok = (a > 0).sum(1).float()  # (M,)
    mass_tok = a.sum(1)  # (M,)
    top = norms.topk(max(1, len(norms) // 100)).indices
    p = a.sum(0) / a.sum().clamp_min(1e-30)  # (K,) activation mass over latents
    ent = -(p[p > 0] * p[p > 0].log()).sum()
    P, T, D = acts.shape
    pooled, first = [], 0.0
    for i in range(0, P, 256):
        ap = encode(model, acts[i : i + 256].reshape(-1, D).float() * scale).reshape(
            -1, T, a.shape[1]
        )
        pooled.append(ap.mean(1))  # (chunk, K)
        first += float(ap[:, 0].sum())  # the first token after BOS
    pooled = torch.cat(pooled)  # (P, K)
    fires = pooled > 0  # (P, K)
    g = torch.Generator().manual_seed(0)
    i, j = torch.randint(P, (1000,), generator=g), torch.randint(P, (1000,), generator=g)
    unit = pooled / pooled.norm(dim=1, keepdim=True).clamp_min(1e-30)  # (P, K); zero rows stay 0
    return {
        "zero_code_tokens": float((l0_tok == 0).float().mean()),
        "spearman_l0_norm": spearman(l0_tok, norms),
        "spearman_mass_norm": spearman(mass_tok, norms),
        "mass_share_top1pct_norm": float(a[top].sum() / a.sum().clamp_min(1e-30)),
        "mass_share_first_token_held": float(
            a.reshape(N_HELD_CTX, -1, a.shape[1])[:, 0].sum() / a.sum().clamp_min(1e-30)
        ),  # uniform: 1 / 127
        "mass_share_first_token_passages": first / max(float(pooled.sum()) * T, 1e-30),  # 1 / 64
        "effective_latents": float(ent.exp()),
        "latents_on_any_passage": int(fires.any(0).sum()),
        "latents_on_1pct_passages": int((fires.float().mean(0) >= 0.01).sum()),
        "zero_pooled_passages": float((~fires.any(1)).float().mean()),
        "pooled_cosine_1000_pairs": float((unit[i] * unit[j]).sum(1).mean()),
    }


def cmd_harvest() -> None:
    from implicit_em.eval.probing_study.run import harvest

    torch.set_num_threads(1)
    plan, _, arrays = inputs()
    t = time.perf_counter()
    lm, info = load_lm()
    t_lm = time.perf_counter() - t
    x, acts, held = harvest(lm, arrays, plan, torch.device("cpu"))
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"x": x, "acts": acts, "held": held, "lm": info}, CACHE)
    print(f"harvest: LM {t_lm:.1f} s, residuals {time.perf_counter() - t - t_lm:.1f} s; x "
          f"{tuple(x.shape)} acts {tuple(acts.shape)} held {tuple(held.shape)} -> {CACHE}")  # fmt: skip


def cmd_arm(name: str) -> None:
    from implicit_em import runs
    from implicit_em.eval.probing_study.plan import run_config
    from implicit_em.eval.probing_study.run import main_run

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    arm = ARMS[name]
    plan, meta, arrays = inputs()
    h = torch.load(CACHE)
    x, acts, held = h["x"], h["acts"], h["held"]
    if arm.get("tokennorm"):  # every token to norm 1; main_run's norm_scale then makes it sqrt(D)
        x, acts, held = ((v.float() / v.float().norm(dim=-1, keepdim=True)).to(torch.float16)
                         for v in (x, acts, held))  # fmt: skip
    n = n_train(x, plan)
    passes = passes_for(n, 4096, arm["mult"] * TARGET_STEPS)  # b1024: x1's passes, so x1's tokens
    batch = arm.get("batch", 4096)
    seed = arm.get("seed", 0)
    plan = replace(plan, rows=arm["rows"], epochs=passes, batch_size=batch, seeds=(seed,))
    lm, info = load_lm()
    out = HERE / name
    models: dict = {}
    res = main_run(plan, meta, arrays, lm, out, "cpu", lm_info=info, harvested=(x, acts, held),
                   models=models)  # fmt: skip
    scale = res["tokens"]["norm_scale"]
    twin = runs.build_model(run_config("encoder", K, x.shape[1], plan, seed), seed=seed).eval()
    diag = {n: diagnostics(m, held, acts, scale) for n, m in models.items()}
    diag[f"encoder-K{K}-s{seed} (untrained)"] = diagnostics(twin, held, acts, scale)
    (out / "diag.json").write_text(json.dumps(diag, indent=1))
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    info = {"arm": name, "rows": [r.get("label", r["family"]) for r in arm["rows"]],
            "batch": batch, "seed": seed, "passes": passes, "train_rows": n,
            "steps": passes * (n // batch), "target_steps": arm["mult"] * TARGET_STEPS,
            "tokennorm": bool(arm.get("tokennorm")), "threads": torch.get_num_threads(),
            "seconds": round(time.perf_counter() - t0, 1), "commit": commit}  # fmt: skip
    (out / "arm.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("harvest", "arm"))
    ap.add_argument("arm", nargs="?", choices=tuple(ARMS))
    a = ap.parse_args()
    if a.step == "harvest":
        cmd_harvest()
    elif a.arm is None:
        ap.error("arm: name the arm (one of " + ", ".join(ARMS) + ")")
    else:
        cmd_arm(a.arm)


if __name__ == "__main__":
    main()
