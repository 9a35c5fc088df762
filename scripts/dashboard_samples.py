"""Build the sample dashboards committed under docs/dashboards/ (issue 17).

Inputs: a SmolLM2 layer-15 harvest and the two K = 1024 runs of docs/dashboards/README.md
(`implicit-em harvest`, `implicit-em llm-train`). For the decoder-free encoder a post-hoc
least-squares decoder is fitted on frozen train codes (`evaluate.fit_linear_decoder`, the
`lstsq` read-out of llm-eval) and shown as its output-token read-out, labelled as such.

    python scripts/dashboard_samples.py --acts runs/acts-smollm2-L15 \
        --runs runs/encoder-K1024 runs/topk-K1024-k32 --out docs/dashboards --latents sample:50
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from implicit_em.dashboard import DashboardOptions, run
from implicit_em.data.lm.activations import Normalization, norm_outliers, read_split
from implicit_em.lm_eval import encode, fit_linear_decoder
from implicit_em.runs import load_run

POSTHOC = "posthoc_decoder.safetensors"


def posthoc_decoder(run_dir: Path, acts: Path) -> Path:
    """Fit W_dec (D, K) by least squares on the run's train codes; save beside the run."""
    path = run_dir / POSTHOC
    if path.is_file():
        return path
    model, _ = load_run(run_dir)
    meta = json.loads((run_dir / "llm.json").read_text())
    nm = meta["normalization"]
    norm = Normalization.from_manifest(acts, nm["scale"] != 1.0, nm["center"])
    x, _ = read_split(acts, "train", norm=norm)
    ratio = meta["outliers"]["max_norm_ratio"]
    if ratio:
        median = meta["outliers"]["median_norm_model_units"] * norm.scale
        x = x[~norm_outliers(x, ratio, median)]
    V, _ = fit_linear_decoder(encode(model, x), x)  # (K, D)
    save_file({"W_dec": V.t().contiguous()}, path)  # (D, K)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--acts", required=True)
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--latents", default="sample:50")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for rd in map(Path, a.runs):
        cfg = json.loads((rd / "config.json").read_text())
        decoder, label = None, ""
        if cfg["model"]["type"] == "encoder":
            decoder = str(posthoc_decoder(rd, Path(a.acts)))
            label = "post-hoc least-squares decoder (fitted on frozen codes, not learned)"
        t0 = time.perf_counter()
        index = run(DashboardOptions(
            run_dir=str(rd), out=str(Path(a.out) / rd.name), acts=a.acts, latents=a.latents,
            decoder=decoder, decoder_label=label, title=f"{rd.name} on SmolLM2-135M layer 15",
            overwrite=a.overwrite,
        ))  # fmt: skip
        print(f"{index}  ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
