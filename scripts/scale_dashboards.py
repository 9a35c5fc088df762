"""One GPU session for issues 17 and 18: K = 16384 models of the scale study, their dead latents
beside centred SAE baselines, and their dashboards.

Steps (each logs its wall time; results are written as they come, so a time-out keeps them):

1. Harvest SmolLM2-135M-Instruct layer-15 `resid_pre` on the scale study's corpus
   (`sotu,moby,spam,pydoc,perldoc`, `implicit_em.experiments.scale`), up to --harvest-tokens.
2. Train, one pass at B = 4096 with Adam 1e-3 and bf16 autocast, exactly the scale study's
   settings (`scale.spec_config`; inputs scaled by the manifest's norm_scale, massive
   activations above 10x the median norm dropped): the decoder-free Encoder (sketched
   correlation, 32 probes), TopK SAE k = 32 uncentred (as in the scale study) and centred
   (`model.centre`), BatchTopK k = 32 centred when that family exists.
3. Evaluate on held-out documents: FVU of each read-out on --eval-tokens tokens
   (`lm_eval.evaluate_model`, no CE: the carried LM stops after block 15), and dead latents
   = latents that fire on none of ALL held-out tokens, beside the same count for the
   untrained (random-init) model of each family.
4. Dashboards (`implicit_em.dashboard.run`, on the GPU) of --sample latents for each model in
   --dashboards, over --dash-tokens train tokens; the Encoder's output tokens use a post-hoc
   least-squares decoder fitted on --fit-tokens frozen train codes.

    python scripts/scale_dashboards.py --model L16.gguf --work /tmp/w --out $OUT/res
"""

from __future__ import annotations

import argparse
import json
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import torch

T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f} s] {msg}", flush=True)


def specs(K: int, k: int, d: int, families: set[str]) -> list[dict]:
    out = [
        {"name": f"encoder-K{K}", "type": "encoder", "K": K, "tc_probes": 32},
        {"name": f"topk-K{K}-k{k}", "type": "topk_sae", "K": K, "k": k},
        {"name": f"topk-K{K}-k{k}-centred", "type": "topk_sae", "K": K, "k": k, "centre": True},
    ]
    if "batchtopk_sae" in families:
        out.append({"name": f"batchtopk-K{K}-k{k}-centred", "type": "batchtopk_sae", "K": K,
                    "k": k, "centre": True})  # fmt: skip
    return out


@torch.no_grad()
def fire_counts(model, x: torch.Tensor, batch: int = 8192) -> torch.Tensor:
    """(K,) number of rows of x on which each latent fires (code > 0)."""
    from implicit_em.lm_eval import encode

    counts = None
    for s in range(0, x.shape[0], batch):
        c = (encode(model, x[s : s + batch]) > 0).sum(0)
        counts = c if counts is None else counts + c
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="GGUF (full or trimmed to >= 16 blocks)")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--harvest-tokens", type=int, default=10_000_000)
    p.add_argument("--K", type=int, default=16384)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--eval-tokens", type=int, default=50_000)
    p.add_argument("--fit-tokens", type=int, default=100_000)
    p.add_argument("--dashboards", nargs="*", default=["encoder", "topk"])
    p.add_argument("--sample", type=int, default=50)
    p.add_argument("--dash-tokens", type=int, default=None)
    p.add_argument("--skip", nargs="*", default=[], help="spec names not to train")
    p.add_argument("--device", default="cuda")
    p.add_argument("--time-limit", type=float, default=0, help="start no step after (s)")
    p.add_argument("--batch-size", type=int, default=4096)
    a = p.parse_args()

    from implicit_em import runs
    from implicit_em.dashboard import DashboardOptions, run
    from implicit_em.dashboard.run import lm_unembedding
    from implicit_em.data.lm import load_lm
    from implicit_em.data.lm.activations import HarvestConfig, harvest
    from implicit_em.data.lm.corpus import load_corpus
    from implicit_em.experiments.scale import (
        CORPUS,
        ScaleOptions,
        prepare_heldout,
        prepare_training_data,
        spec_config,
    )
    from implicit_em.families.registry import FAMILIES
    from implicit_em.lm_eval import encode, evaluate_model, fit_linear_decoder
    from implicit_em.train.distributed import train_steps

    torch.backends.cuda.matmul.allow_tf32 = True
    dev = torch.device(a.device)
    work, out = Path(a.work), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name() if dev.type == "cuda" else None
    results: dict = {"args": vars(a), "gpu": gpu, "runs": {}}

    def save() -> None:
        (out / "results.json").write_text(json.dumps(results, indent=1))

    def over(what: str) -> bool:
        if a.time_limit and time.perf_counter() - T0 > a.time_limit:
            log(f"time limit {a.time_limit} s reached: {what} not run")
            results.setdefault("not_run", []).append(what)
            save()
            return True
        return False

    lm, tok, info = load_lm(a.model)
    lm.to(dev)
    results["lm"] = info
    log(f"LM loaded: {info}")
    hdir = work / "acts"
    cfg = HarvestConfig(model=a.model, corpus=CORPUS, layer=15, n_tokens=a.harvest_tokens,
                        batch_size=128, shard_contexts=1024)  # fmt: skip
    m = harvest(cfg, hdir, lm, tok, info, docs=load_corpus(CORPUS), progress=False)
    results["harvest"] = {s: m["splits"][s]["n_tokens"] for s in ("train", "heldout")}
    results["harvest"]["throughput"] = m.get("throughput")
    log(f"harvest: {results['harvest']}")
    save()

    data = prepare_training_data([hdir], a.fit_tokens, dev)
    norm, median, x_fit, x_train = data.norm, data.median, data.x_fit, data.x_train
    n_train, d = x_train.shape
    x_held_all, typical, _ = prepare_heldout(hdir, data, dev)  # every held-out token (dead)
    typical, x_held = typical[: a.eval_tokens], x_held_all[: a.eval_tokens]
    results["data"] = {"train_tokens": n_train, "outliers_dropped": data.dropped,
                       "heldout_tokens_dead_window": int(x_held_all.shape[0]),
                       "heldout_tokens_fvu": int(x_held.shape[0]),
                       "median_norm_model_units": median, "norm_scale": norm.scale}  # fmt: skip
    log(f"data: {results['data']}")
    save()

    sargs = ScaleOptions(batch_size=a.batch_size, lr=1e-3, amp=dev.type == "cuda")
    dirs: dict[str, Path] = {}

    def train_one(spec: dict) -> None:
        name = spec["name"]
        try:
            cfg = spec_config(spec, d, sargs)
            if spec.get("centre"):
                cfg = replace(cfg, model=replace(cfg.model, centre=True))
        except (TypeError, ValueError) as e:
            results["runs"][name] = {"skipped": f"{type(e).__name__}: {e}"}
            log(f"{name}: skipped ({e})")
            return
        torch.manual_seed(1)
        model = runs.build_model(cfg).to(dev)
        dead_init = int((fire_counts(model.eval(), x_held_all) == 0).sum())
        model.train()
        steps = n_train // sargs.batch_size
        t = time.perf_counter()
        res = train_steps(model, x_train, cfg.loss, global_batch=sargs.batch_size, steps=steps,
                          lr=sargs.lr, seed=1, amp=sargs.amp, log_every=max(1, steps // 5),
                          warmup=5)  # fmt: skip
        t_train = time.perf_counter() - t
        model.eval()
        run_dir = runs.prepare_run_dir(work / "runs" / name, resume=False, overwrite=True)
        runs.save_model(model, cfg, run_dir)
        runs.write_history(run_dir, res["history"])
        (run_dir / "llm.json").write_text(json.dumps({
            "harvest_dir": str(hdir.resolve()), "normalization": norm.to_dict(),
            "outliers": {"max_norm_ratio": 10.0, "median_norm_model_units": median},
        }))  # fmt: skip
        dirs[name] = run_dir
        counts = fire_counts(model, x_held_all)
        ev = evaluate_model(model, x_fit, x_held, typical=typical.to(dev))
        c = ev["codes"]
        results["runs"][name] = {
            "spec": spec, "steps": steps, "train_s": round(t_train, 1),
            "tokens_per_s": res["tokens_per_s"], "last": res["history"][-1],
            "dead_heldout_all": int((counts == 0).sum()),
            "dead_fraction_heldout_all": float((counts == 0).double().mean()),
            "dead_untrained_heldout_all": dead_init,
            "l0": c["l0"], "dead_fraction_eval_tokens": c["dead_fraction"],
            "fvu": ev["fvu"], "fvu_typical": ev.get("fvu_typical"),
            "responsibility_entropy": c["responsibility_entropy"],
            "density_histogram": c["density_histogram"],
        }  # fmt: skip
        (run_dir / "llm_metrics.json").write_text(json.dumps(ev, indent=1))
        r = results["runs"][name]
        log(f"{name}: {t_train:.1f} s train, L0 {r['l0']:.1f}, dead {r['dead_heldout_all']} "
            f"of {a.K} (untrained {dead_init}), FVU {json.dumps(r['fvu'])}")  # fmt: skip
        save()
        del model
        if dev.type == "cuda":
            torch.cuda.empty_cache()

    all_specs = [sp for sp in specs(a.K, a.k, d, set(FAMILIES)) if sp["name"] not in a.skip]
    late = [sp for sp in all_specs if sp["type"] not in ("encoder", "topk_sae")]
    for spec in all_specs:
        if spec not in late and not over(spec["name"]):
            train_one(spec)
    W_U = lm_unembedding(lm)
    for which in a.dashboards:
        if over(f"dashboard {which}"):
            break
        name = next((n for n in dirs if n.startswith(which + "-") and "centred" not in n), None)
        name = name or next((n for n in dirs if n.startswith(which)), None)
        if name is None:
            continue
        run_dir = dirs[name]
        decoder, label = None, ""
        if which == "encoder":
            model, _ = runs.load_run(run_dir, str(dev))
            V, _ = fit_linear_decoder(encode(model, x_fit), x_fit)  # (K, D)
            from safetensors.torch import save_file

            decoder = str(run_dir / "posthoc_decoder.safetensors")
            save_file({"W_dec": V.t().contiguous().cpu()}, decoder)
            label = "post-hoc least-squares decoder (fitted on frozen codes, not learned)"
            del model
        t = time.perf_counter()
        site = work / "dash" / name
        run(DashboardOptions(run_dir=str(run_dir), out=str(site), acts=str(hdir),
                             latents=f"sample:{a.sample}", device=str(dev), decoder=decoder,
                             decoder_label=label, max_tokens=a.dash_tokens, progress=False,
                             title=f"{name} on SmolLM2-135M-Instruct layer 15 (scale study corpus)"),
            tokenizer=tok, W_U=W_U)  # fmt: skip
        wall = time.perf_counter() - t
        html = (site / "index.html").read_text()
        key = "streaming pass (s)"
        i = html.index(key)
        t_pass = float(html[html.index("<td>", i) + 4 : html.index("</td>", i)])
        results.setdefault("dashboards", {})[name] = {"wall_s": round(wall, 1),
                                                      "pass_s": t_pass}  # fmt: skip
        with tarfile.open(out / f"dash-{name}.tar.gz", "w:gz") as tf:
            tf.add(site, arcname=name)
        log(f"dashboard {name}: {wall:.1f} s (pass {t_pass:.1f} s)")
        save()
    for spec in late:
        if not over(spec["name"]):
            train_one(spec)
    log("done")


if __name__ == "__main__":
    main()
