"""Harness check against a published SynthSAEBench-16k number (issue 18), on one GPU.

Published (SAELens documentation, docs/synth_sae_bench.md, "Raw results for SynthSAEBench-16k
at selected L0s", table "L0 = 25"): a BatchTopK SAE of width 4,096 on SynthSAEBench-16k (v2),
MCC 0.7574 +- 0.0003 and F1 0.7316 +- 0.0010 (mean +- standard deviation over seeds),
trained on 200 M samples at batch 1,024 and lr 3e-4 ("Quickstart" on the same page).

Here: the same recipe built locally (`eval.synthetic` recipe synthsaebench-16k-v2, seed 42),
our BatchTopK family (`families.batchtopk_sae`, k = 25, AuxK as the TopK SAE) at the published
width, batch and learning rate, trained for a fixed wall-clock budget (whatever number of
samples fits), then scored by the harness's `score_model` (sae-lens MCC, F1, L0, dead latents,
random directions at the same L0). The decoder, encoder rows and true features are written
to OUT_DIR first (float16, in files under 16 MiB), so that the MCCs (Hungarian matchings on
the CPU) can be recomputed elsewhere if the evaluation does not finish.

usage: python scripts/synthsaebench_check.py OUT_DIR [--train-seconds 70] [--sae-lens-src sl]
       [--recipe synthsaebench-16k-v2] [--latents 4096] [--k 25] [--eval-samples 50000]
"""

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out_dir")
    p.add_argument("--train-seconds", type=float, default=70.0)
    p.add_argument("--sae-lens-src", default=None)
    p.add_argument("--recipe", default="synthsaebench-16k-v2")
    p.add_argument("--latents", type=int, default=4096)
    p.add_argument("--k", type=int, default=25)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--eval-samples", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    if args.sae_lens_src:
        from synthetic_eval import install_sae_lens_shim

        install_sae_lens_shim(args.sae_lens_src)
    from implicit_em.config import LossConfig
    from implicit_em.eval import synthetic as S
    from implicit_em.families import family_of
    from implicit_em.train.loop import optimizer_step

    torch.backends.cuda.matmul.allow_tf32 = True
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = {"args": vars(args)}
    t0 = time.perf_counter()
    synth = S.build_synthetic_model(args.recipe, 42, args.device)
    log["build_seconds"] = time.perf_counter() - t0
    log["true_l0"] = S._true_l0(synth)
    variant = replace(S.VARIANTS["batchtopk-k25"], k=args.k)
    opts = S.SyntheticEvalOptions(recipe=args.recipe, variants=("batchtopk-k25",),
                                  latents=args.latents, lr=args.lr, batch_size=args.batch_size,
                                  eval_samples=args.eval_samples, device=args.device)  # fmt: skip
    torch.manual_seed(args.seed)
    model = S.make_model(variant, synth.cfg.hidden_dim, args.latents, log["true_l0"])
    model = model.to(args.device)
    fam, loss = family_of(model), LossConfig()
    weights, state = fam.weights(loss, model.hidden_dim), fam.init_state(model)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    history, step, t1 = [], 0, time.perf_counter()
    while time.perf_counter() - t1 < args.train_seconds:
        x = synth.sample(args.batch_size)  # (B, D)
        terms = fam.loss_terms(model, x, loss, fam.dead_mask(state, loss))
        a = terms.pop("a")  # (B, K)
        total = sum(weights[t] * terms[t] for t in weights)
        optimizer_step(model, opt, total)
        fam.track(state, (a > 0).any(dim=0))
        step += 1
        if step % 2000 == 0:
            history.append({"step": step, "seconds": time.perf_counter() - t1,
                            **{t: float(v) for t, v in terms.items()},
                            "threshold": float(model.threshold)})  # fmt: skip
            print(json.dumps(history[-1]), flush=True)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    log.update(steps=step, samples=step * args.batch_size, history=history,
               train_seconds=time.perf_counter() - t1, threshold=float(model.threshold))  # fmt: skip
    print(f"trained {step} steps ({step * args.batch_size} samples) in "
          f"{log['train_seconds']:.1f} s", flush=True)  # fmt: skip
    gt = synth.feature_dict.feature_vectors.detach().half().cpu()  # (N, D)
    half = gt.shape[0] // 2
    torch.save({"W_dec": model.W_dec.detach().half().cpu(), "W_enc": model.W.detach().half().cpu(),
                "threshold": model.threshold.detach().cpu(), "b_enc": model.encoder.bias.detach().cpu(),
                "b_dec": model.b_dec.detach().cpu()}, out / "sae.pt")  # fmt: skip
    torch.save(gt[:half].clone(), out / "features_a.pt")
    torch.save(gt[half:].clone(), out / "features_b.pt")
    (out / "log.json").write_text(json.dumps(log, indent=1))
    t2 = time.perf_counter()
    res = S.score_model(model, variant, synth, opts, None, args.seed)
    log.update(trained=res, eval_seconds=time.perf_counter() - t2, options=asdict(opts))
    (out / "log.json").write_text(json.dumps(log, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "random_at_l0"}), flush=True)
    print("random@L0 mcc", res["random_at_l0"]["mcc"], "f1", res["random_at_l0"]["f1"])


if __name__ == "__main__":
    main()
