"""Dashboard build time: one streaming pass plus the site, on synthetic activations.

Writes a synthetic harvest in the project's shard format (random normal fp16 activations,
random token ids; every shard a hard link to one random shard when --distinct-shards is 0, so
that writing 10M tokens of input does not dominate a short GPU session), a randomly
initialised model of the chosen family as a run directory, and times `dashboard.run`.
Targets (issue 17): 1,024 latents x 200k tokens under 5 min on a 2-core CPU; 16,384 latents
x 10M tokens under 10 min on one H200. With --browser, opens the built site in headless
Chromium and reports how long the index and one latent page take to draw.

    python benchmarks/bench_dashboard.py --latents 1024 --tokens 200000 --threads 2
    python benchmarks/bench_dashboard.py --latents 16384 --tokens 10000000 --device cuda
    python benchmarks/bench_dashboard.py --latents 16384 --tokens 20000 --browser
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from implicit_em.config import ModelConfig, RunConfig
from implicit_em.dashboard import DashboardOptions, run
from implicit_em.data.lm import file_sha256
from implicit_em.runs import build_model, save_model


class IdTokenizer:
    """Decodes token id t as ` t<t>` (no vocabulary needed)."""

    def decode(self, ids: list[int]) -> str:
        return "".join(f" t{t}" for t in ids)


def synthetic_harvest(out: Path, n_tokens: int, d: int, ctx_len: int, vocab: int,
                      shard_contexts: int, distinct: int, seed: int) -> float:  # fmt: skip
    """A harvest directory (manifest + train shards). Returns the seconds it took."""
    t0 = time.perf_counter()
    per = ctx_len - 1
    n_ctx = -(-n_tokens // per)
    (out / "train").mkdir(parents=True)
    g = torch.Generator().manual_seed(seed)
    entries, made = [], []
    for s, c0 in enumerate(range(0, n_ctx, shard_contexts)):
        c = min(shard_contexts, n_ctx - c0)
        path = out / "train" / f"shard_{s:05d}.safetensors"
        src = next((m for m in made if m[1] == c), None) if len(made) >= max(distinct, 1) else None
        if src is None:
            acts = torch.randn(c * per, d, generator=g).half()  # (N, D)
            toks = torch.randint(0, vocab, (c, ctx_len), generator=g, dtype=torch.int32)
            save_file({"acts": acts, "tokens": toks}, path)
            made.append((path, c, file_sha256(path)))
            sha = made[-1][2]
        else:
            os.link(src[0], path)
            sha = src[2]
        entries.append({"file": f"train/{path.name}", "n_tokens": c * per, "n_contexts": c,
                        "sha256": sha})  # fmt: skip
    manifest = {
        "identity": {
            "config": {
                "model": "synthetic",
                "layer": 0,
                "hook_point": "resid_pre",
                "ctx_len": ctx_len,
                "drop_bos": True,
            }
        },  # fmt: skip
        "complete": True,
        "splits": {"train": {"shards": entries}, "heldout": {"shards": []}},
        "stats": {"norm_scale": 1.0},
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return time.perf_counter() - t0


def open_times(site: Path, latent: int) -> dict:
    """Seconds from navigation to a drawn page (body[data-ready]) in headless Chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(a)
    d = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    out = {}
    try:
        for name, url, ready in (
            ("index", (site / "index.html").as_uri(), "index"),
            ("latent", (site / "latent.html").as_uri() + f"#{latent}", str(latent)),
        ):
            t0 = time.perf_counter()
            d.get(url)
            WebDriverWait(d, 60, poll_frequency=0.02).until(
                lambda d, r=ready: d.execute_script("return document.body.dataset.ready") == r
            )
            wall = time.perf_counter() - t0
            nav = d.execute_script(
                "const n = performance.getEntriesByType('navigation')[0];"
                "return [n.domContentLoadedEventEnd, n.loadEventEnd];"
            )
            out[name] = {"wall_s": round(wall, 3), "dom_content_loaded_ms": round(nav[0], 1),
                         "load_event_ms": round(nav[1], 1)}  # fmt: skip
    finally:
        d.quit()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latents", type=int, default=1024)
    p.add_argument("--tokens", type=int, default=200_000)
    p.add_argument("--d-model", type=int, default=576)
    p.add_argument("--ctx-len", type=int, default=128)
    p.add_argument("--vocab", type=int, default=49_152)
    p.add_argument("--family", default="topk_sae", choices=("encoder", "topk_sae", "standard_sae"))
    p.add_argument("--k", type=int, default=32, help="active latents of topk_sae")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--shard-contexts", type=int, default=1024)
    p.add_argument(
        "--distinct-shards",
        type=int,
        default=0,
        help="random shards written (the rest hard links to them); 0 = all distinct",
    )
    p.add_argument("--site-latents", default="all", help="DashboardOptions.latents")
    p.add_argument("--browser", action="store_true", help="time opening the site in Chromium")
    p.add_argument("--work", default=None, help="folder for the harvest and site (default: temp)")
    p.add_argument("--json", default=None, help="write the results here")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    work = Path(a.work or tempfile.mkdtemp(prefix="bench_dashboard_"))
    acts, site, run_dir = work / "acts", work / "site", work / "run"
    distinct = a.distinct_shards if a.distinct_shards > 0 else 10**9
    t_data = synthetic_harvest(acts, a.tokens, a.d_model, a.ctx_len, a.vocab,
                               a.shard_contexts, distinct, seed=0)  # fmt: skip
    cfg = RunConfig(model=ModelConfig(type=a.family, input_dim=a.d_model,
                                      hidden_dim=a.latents, k=a.k))  # fmt: skip
    model = build_model(cfg)
    save_model(model, cfg, run_dir)
    W_U = torch.randn(a.vocab, a.d_model) if a.family != "encoder" else None
    opts = DashboardOptions(run_dir=str(run_dir), out=str(site), acts=str(acts), device=a.device,
                            latents=a.site_latents, unembed="none")  # fmt: skip
    t0 = time.perf_counter()
    run(opts, tokenizer=IdTokenizer(), W_U=W_U)
    total = time.perf_counter() - t0
    index = (site / "data" / "index.js").read_text()
    meta = json.loads(index[index.index("(") + 1 : index.rindex(")")])["meta"]
    summary = {}
    html = (site / "index.html").read_text()
    for key in ("streaming pass (s)", "neighbours + output tokens (s)"):
        i = html.index(key)
        summary[key] = float(html[html.index("<td>", i) + 4 : html.index("</td>", i)])
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
    res = {
        "latents": a.latents, "tokens": meta["n_tokens"], "family": a.family,
        "device": opts.device if opts.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"),
        "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg(),
        "synthetic_data_s": round(t_data, 1), "dashboard_total_s": round(total, 1),
        "streaming_pass_s": summary["streaming pass (s)"],
        "neighbours_and_logits_s": summary["neighbours + output tokens (s)"],
        "site_writing_s": round(total - sum(summary.values()), 1),
        "site_mb": round(size / 2**20, 1), "pages": meta["n_shown"],
        "tokens_per_s_pass": round(meta["n_tokens"] / max(summary["streaming pass (s)"], 1e-9)),
    }  # fmt: skip
    if torch.cuda.is_available():
        res["gpu"] = torch.cuda.get_device_name()
        res["gpu_peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    if a.browser:
        res["browser"] = open_times(site, latent=a.latents - 1)
    print(json.dumps(res, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    if a.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
