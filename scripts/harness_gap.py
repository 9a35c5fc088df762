"""Issue 18: why our BatchTopK learns more slowly than sae-lens's (the harness-check gap).

The CPU side-by-side of docs/eval/synthetic/harness-gap-PLAN.md (fixed before the runs):
sae-lens's own BatchTopK trained by sae-lens's own SAETrainer, our `batchtopk` variant as the
harness trains it, ours with each part of sae-lens's protocol switched on (`Variant.saelens`)
and with all of them, every model stepping on the same batch (one draw per step). MCC
(sae-lens `mean_correlation_coefficient` of the decoder directions) at MARKS, beside the
untrained models and random directions.

usage: python scripts/harness_gap.py run OUT_DIR --rows saelens:0 batchtopk:0 ... [--tiny]
       python scripts/harness_gap.py table OUT_DIR      # markdown tables + the plan's rule

A row is NAME:SEED, NAME `saelens`, `saelens-bf16` (sae-lens's trainer under bf16 autocast
with the batches rounded to bf16, as the published runs' autocast_sae / autocast_data) or a
name of `eval.options.VARIANTS`. Rows may be split
over processes: each draws the same stream (STREAM_SEED) and writes OUT_DIR/<first row>.json,
rewritten at every mark, so that a run cut short keeps its curve.
"""

import argparse
import json
import time
from pathlib import Path

import torch

STREAM_SEED = 1234
RANDOM_SEED = 10_000
SMALL = dict(recipe="small", latents=512, k=8, steps=2000, dead_steps=250)
TINY = dict(recipe="tiny", latents=64, k=4, steps=60, dead_steps=10)
BATCH, LR = 1024, 3e-4


def marks(steps: int) -> list[int]:
    """Steps at which MCC is measured: the plan's 0, 250, 500, 1,000, 1,500, 2,000 (scaled for
    shorter runs), then every 1,000 steps for a longer run."""
    if steps < 2000:
        return [0] + [round(steps * f) for f in (0.125, 0.25, 0.5, 0.75, 1.0)]
    return [0, 250, 500, 1000, 1500, *range(2000, steps + 1, 1000)]


class SaeLensRow:
    """sae-lens's BatchTopKTrainingSAE (its config defaults) and its SAETrainer, configured as
    `sae_lens.synthetic.train_toy_sae` configures it, stepped one batch at a time."""

    def __init__(self, d: int, cfg: dict, seed: int, bf16: bool = False) -> None:
        from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, LoggingConfig
        from sae_lens.config import SAETrainerConfig
        from sae_lens.training.sae_trainer import SAETrainer

        torch.manual_seed(seed)
        self.sae = BatchTopKTrainingSAE(
            BatchTopKTrainingSAEConfig(d_in=d, d_sae=cfg["latents"], k=cfg["k"])
        )
        tcfg = SAETrainerConfig(
            n_checkpoints=0, checkpoint_path=None, save_final_checkpoint=False,
            total_training_samples=cfg["steps"] * BATCH, device="cpu", autocast=bf16, lr=LR,
            lr_end=LR, lr_scheduler_name="constant", lr_warm_up_steps=0, adam_beta1=0.9,
            adam_beta2=0.999, lr_decay_steps=0, n_restart_cycles=1,
            train_batch_size_samples=BATCH, dead_feature_window=cfg["dead_steps"],
            feature_sampling_window=2000,
            logger=LoggingConfig(log_to_wandb=False, eval_every_n_wandb_logs=2**31 - 1),
            n_batches_for_norm_estimate=1000,
        )  # fmt: skip
        self.trainer = SAETrainer(cfg=tcfg, sae=self.sae, data_provider=iter(()))
        self.last: dict = {}
        self.bf16 = bf16  # the published runs: autocast_sae and autocast_data (bf16)

    def step(self, x: torch.Tensor) -> None:
        self.trainer.maybe_reset_sparsity()
        out = self.trainer.step(x.bfloat16() if self.bf16 else x)
        self.trainer.n_training_steps += 1
        self.last = {k: float(v.detach()) for k, v in out.losses.items()}

    def directions(self) -> torch.Tensor:
        return self.sae.W_dec.detach()  # (K, D)

    def end(self, x: torch.Tensor) -> dict:
        dead = self.trainer.dead_neurons
        with torch.no_grad():
            _, pre = self.sae.encode_with_hidden_pre(x)  # (B, K), rescaled, not ReLU'd
        return {"dead": int(dead.sum()), "dead_with_positive_pre": int(((pre > 0).any(0) & dead).sum()),
                "decoder_norm_mean": float(self.sae.W_dec.detach().norm(dim=1).mean()),
                "encoder_norm_mean": float(self.sae.W_enc.detach().norm(dim=0).mean()),
                "losses": self.last}  # fmt: skip


class OurRow:
    """A variant of the harness, trained by `synthetic.VariantTrainer`."""

    def __init__(self, name: str, synth, cfg: dict, seed: int) -> None:
        from implicit_em.eval import synthetic as S

        opts = S.SyntheticEvalOptions(
            recipe=cfg["recipe"], latents=cfg["latents"], k=cfg["k"], steps=cfg["steps"],
            dead_steps=cfg["dead_steps"], batch_size=BATCH, lr=LR, log_every=cfg["steps"] // 8,
            gradient_shares=False, lstsq=False,
        )  # fmt: skip
        self.tr = S.VariantTrainer(S.VARIANTS[name], synth, opts, seed, None)
        self.S = S

    def step(self, x: torch.Tensor) -> None:
        self.tr.step(x)

    def directions(self) -> torch.Tensor:
        return self.S.directions(self.tr.model)[0]  # (K, D)

    def end(self, x: torch.Tensor) -> dict:
        m, tr = self.tr.model, self.tr
        dead = tr.since_fired >= tr.loss.dead_steps
        with torch.no_grad():
            pre = m.encoder(x - m.b_dec)  # (B, K) raw pre-activations (before any rescale)
        return {"dead": int(dead.sum()), "dead_with_positive_pre": int(((pre > 0).any(0) & dead).sum()),
                "decoder_norm_mean": float(m.W_dec.detach().norm(dim=0).mean()),
                "encoder_norm_mean": float(m.encoder.weight.detach().norm(dim=1).mean()),
                "last_log": tr.history[-1] if tr.history else {}}  # fmt: skip


def run(args) -> None:
    from sae_lens.synthetic import mean_correlation_coefficient

    from implicit_em.eval import synthetic as S

    torch.set_num_threads(1)
    cfg = dict(TINY if args.tiny else SMALL)
    if args.steps:  # a longer run than the plan's (post hoc, harness-gap.md says which)
        cfg["steps"] = args.steps
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / (args.rows[0].replace(":", "-s") + ".json")
    if path.exists():
        raise FileExistsError(f"{path} exists: choose a new OUT_DIR")
    t = time.perf_counter()
    synth = S.build_synthetic_model(cfg["recipe"], 42)
    gt = synth.feature_dict.feature_vectors.detach()  # (N, D)
    d = synth.cfg.hidden_dim
    g = torch.Generator().manual_seed(RANDOM_SEED)
    rec = {"config": {**cfg, "batch": BATCH, "lr": LR, "stream_seed": STREAM_SEED},
           "true_l0": S._true_l0(synth), "build_seconds": time.perf_counter() - t,
           "random_mcc": mean_correlation_coefficient(torch.randn(cfg["latents"], d, generator=g), gt),
           "rows": []}  # fmt: skip
    models = []
    for row in args.rows:
        name, seed = row.split(":")
        if name.startswith("saelens"):  # saelens-bf16: bf16 autocast, data rounded to bf16
            m = SaeLensRow(d, cfg, int(seed), bf16=name == "saelens-bf16")
        else:
            m = OurRow(name, synth, cfg, int(seed))
        models.append(m)
        rec["rows"].append({"name": name, "seed": int(seed), "mcc": {}})
    torch.manual_seed(STREAM_SEED)
    t0, ms = time.perf_counter(), marks(cfg["steps"])
    for step in range(cfg["steps"] + 1):
        if step in ms:
            for r, m in zip(rec["rows"], models, strict=True):
                r["mcc"][str(step * BATCH)] = mean_correlation_coefficient(m.directions(), gt)
            rec["train_seconds"] = time.perf_counter() - t0
            path.write_text(json.dumps(rec, indent=1))
            print(step, [round(r["mcc"][str(step * BATCH)], 4) for r in rec["rows"]], flush=True)
        if step == cfg["steps"]:
            break
        x = synth.sample(BATCH)  # (B, D), one draw for every model
        for m in models:
            m.step(x)
    with torch.random.fork_rng():
        torch.manual_seed(STREAM_SEED + 1)
        x = synth.sample(4096)
    for r, m in zip(rec["rows"], models, strict=True):
        r["end"] = m.end(x)
    path.write_text(json.dumps(rec, indent=1))
    print(json.dumps([(r["name"], r["seed"], r["end"]["dead"], r["end"]["dead_with_positive_pre"])
                      for r in rec["rows"]]))  # fmt: skip


def table(args) -> None:
    """The tables of harness-gap.md and the plan's comparison rule, from OUT_DIR/*.json."""
    recs = [json.loads(p.read_text()) for p in sorted(Path(args.out_dir).glob("*.json"))]
    rows = {(r["name"], r["seed"]): r for rec in recs for r in rec["rows"]}
    counts = sorted({int(c) for r in rows.values() for c in r["mcc"]})
    names = ["saelens", "batchtopk"] + sorted({n for n, _ in rows if n.startswith("batchtopk-")})
    fmt = lambda c: f"{c / 1e6:.2f} M" if c else "0 (untrained)"  # noqa: E731
    print("| row | seed | " + " | ".join(fmt(c) for c in counts) + " |")
    print("|---|---|" + "---|" * len(counts))
    for n in names:
        for (m, s), r in sorted(rows.items()):
            if m == n:
                print(f"| {n} | {s} | " + " | ".join(f"{r['mcc'].get(str(c), float('nan')):.4f}"
                                                    for c in counts) + " |")  # fmt: skip
    print(f"\nrandom directions: {recs[0]['random_mcc']:.4f}; true L0 {recs[0]['true_l0']:.2f}\n")
    need = [(n, s) for n in ("saelens", "batchtopk") for s in (0, 1) if (n, s) not in rows]
    if need:
        raise SystemExit(f"harness_gap.py table: the comparison rule needs rows {need}: run them "
                         f"into {args.out_dir} first (the tables above are printed)")  # fmt: skip

    def mcc(n, s, c):
        r = rows.get((n, s))
        return r["mcc"].get(str(c)) if r else None

    def mean(n, c):
        v = [x for x in (mcc(n, 0, c), mcc(n, 1, c)) if x is not None]
        return sum(v) / len(v)

    print("| samples | spread s | mean(A) - mean(B) | " +
          " | ".join(f"{n[10:]} - B0 (share)" for n in names[2:]) + " |")  # fmt: skip
    print("|---|---|---|" + "---|" * len(names[2:]))
    for c in counts[1:]:
        s = max(abs(mcc(n, 0, c) - mcc(n, 1, c)) for n in ("saelens", "batchtopk"))
        gap = mean("saelens", c) - mean("batchtopk", c)
        b0 = mcc("batchtopk", 0, c)
        cells = []
        for n in names[2:]:
            v = mcc(n, 0, c)
            cells.append("-" if v is None else f"{v - b0:+.4f} ({(v - b0) / gap:.2f})")
        print(f"| {fmt(c)} | {s:.4f} | {gap:+.4f} | " + " | ".join(cells) + " |")
    print(
        "\n| row | seed | dead | dead with a positive pre-activation | decoder norm | encoder norm |"
    )
    print("|---|---|---|---|---|---|")
    for (n, s), r in sorted(rows.items()):
        e = r.get("end", {})
        if e:
            print(f"| {n} | {s} | {e['dead']} | {e['dead_with_positive_pre']} | "
                  f"{e['decoder_norm_mean']:.3f} | {e['encoder_norm_mean']:.3f} |")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("out_dir")
    r.add_argument("--rows", nargs="+", required=True, help="NAME:SEED, NAME saelens or a variant")
    r.add_argument("--tiny", action="store_true", help="the CI recipe, seconds")
    r.add_argument("--steps", type=int, default=None, help="steps instead of the plan's 2,000")
    t = sub.add_parser("table")
    t.add_argument("out_dir")
    a = p.parse_args()
    run(a) if a.cmd == "run" else table(a)


if __name__ == "__main__":
    main()
