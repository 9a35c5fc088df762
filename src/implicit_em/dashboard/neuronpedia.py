"""Neuronpedia-style JSON export of a written dashboard site (the same numbers, another layout).

Neuronpedia takes feature dashboards as batches of features, the format SAEDashboard's
Neuronpedia runner writes (`NeuronpediaDashboardBatch`: model_id, layer, sae_set, features;
each feature: feature_index, pos_str / pos_values and neg_str / neg_values for the output
tokens, frac_nonzero, freq_hist_data_bar_values / _heights, correlated_features_indices /
_l1, n_prompts_total, n_tokens_in_prompt, dataset, activations). Each activation is one
example: its token strings and the latent's activation on each, with the bin it was drawn
from: bin_min = -1, bin_max = the latent's maximum, bin_contains = -1 for the top examples
(SAEDashboard's "TOP ACTIVATIONS" group); for a quantile group of the uniform sample of
firing events, bin_min / bin_max = the smallest / largest activation of its shown examples
and bin_contains = the fraction of the sample the group holds (equal-count groups: 1 / the
number of groups). Added to SAEDashboard's keys: target_index, the position in `tokens` of
the example's own token (the one the top-k or the sample picked), and target_value, its
activation at 4 significant digits (`values` keep 3, as the site does).

Differences from SAEDashboard's own output, by construction here: the activation histogram
uses this package's log10 grid (bar values are the bins' geometric centres, heights the exact
counts of non-zero activations); `correlated_features_*` hold the nearest latents by decoder
cosine (by encoder cosine for a model without decoder), cosines under the `_l1` key as
SAEDashboard stores its cosine similarities there; fields this package does not compute
(neuron alignment, correlated neurons, logit histograms, DFA) are empty lists.

    export_neuronpedia(site_dir, out_dir)   # writes out_dir/batch-<b>.json, one per block
"""

from __future__ import annotations

import json
import math
from pathlib import Path


def read_data_file(path: Path) -> dict:
    """The JSON inside a site data file `DASH.<fn>(<json>);`."""
    text = path.read_text()
    return json.loads(text[text.index("(") + 1 : text.rindex(")")])


def _activation(ex: list, strings: list[str], lo: float, hi: float, contains: float) -> dict:
    """An example record [value, r, first offset, token refs, acts, rs] -> one activation."""
    return {
        "bin_min": lo, "bin_max": hi, "bin_contains": contains,
        "tokens": [strings[t] for t in ex[3]],
        "values": [0.0 if v is None else float(v) for v in ex[4]],
        "target_index": -ex[2], "target_value": ex[0],
    }  # fmt: skip


def feature_json(rec: dict, strings: list[str], meta: dict, n_groups: int) -> dict:
    """One latent's Neuronpedia feature record from its site record."""
    acts = [_activation(ex, strings, -1, rec["max"], -1) for ex in rec["top"]]
    for group in rec["quantiles"]:
        values = [ex[0] for ex in group["examples"]]
        acts += [_activation(ex, strings, min(values), max(values), 1.0 / n_groups)
                 for ex in group["examples"]]  # fmt: skip
    edges = meta["hist_edges"]
    start, counts = rec["hist"]["start"], rec["hist"]["counts"]
    centres = [math.sqrt(edges[start + i] * edges[start + i + 1]) for i in range(len(counts))]
    near = rec["near"].get("decoder") or next(iter(rec["near"].values()), [])  # else encoder
    logits = rec.get("logits") or {"pos": [], "neg": []}
    return {
        "feature_index": rec["id"],
        "neuron_alignment_indices": [],
        "neuron_alignment_values": [],
        "neuron_alignment_l1": [],
        "correlated_neurons_indices": [],
        "correlated_neurons_l1": [],
        "correlated_neurons_pearson": [],
        "correlated_features_indices": [i for i, _ in near],
        "correlated_features_l1": [c for _, c in near],
        "correlated_features_pearson": [],
        "neg_str": [s for s, _ in logits["neg"]],
        "neg_values": [v for _, v in logits["neg"]],
        "pos_str": [s for s, _ in logits["pos"]],
        "pos_values": [v for _, v in logits["pos"]],
        "frac_nonzero": rec["freq"],
        "freq_hist_data_bar_values": [float(f"{c:.4g}") for c in centres],
        "freq_hist_data_bar_heights": counts,
        "logits_hist_data_bar_heights": [],
        "logits_hist_data_bar_values": [],
        "n_prompts_total": meta.get("n_contexts", 0),
        "n_tokens_in_prompt": meta.get("per_context", 0),
        "dataset": meta.get("dataset", ""),
        "decoder_weights_dist": [],
        "activations": acts,
    }


def model_id_of(language_model: str) -> str:
    """Neuronpedia's model_id for the harvested model: a hub id as it is
    (`HuggingFaceTB/SmolLM2-135M`), a local file or folder by its last path component (an
    absolute path names this machine, not a model)."""
    p = Path(language_model).expanduser()
    return p.name if p.is_absolute() or language_model.startswith((".", "~")) else language_model


def export_neuronpedia(
    site: str | Path,
    out: str | Path,
    model_id: str | None = None,
    layer: int | None = None,
    sae_set: str | None = None,
    dataset: str | None = None,
) -> list[Path]:
    """Write out/batch-<b>.json (one Neuronpedia batch per site block); return the paths.

    site: a folder written by `dashboard.write_site`. model_id, layer, sae_set: the batch
    header (default: the language model as `model_id_of` names it, the layer and the title
    the site recorded); dataset: each feature's `dataset` (default: the harvest's corpus as
    recorded). Refuses an `out` that already holds batch files.
    """
    site, out = Path(site), Path(out)
    index_path = site / "data" / "index.js"
    if not index_path.is_file():
        raise FileNotFoundError(f"{site} holds no dashboard (no data/index.js): build it first")
    if out.is_dir() and any(out.glob("batch-*.json")):
        raise FileExistsError(f"{out} already holds batch-*.json: choose another folder")
    meta = read_data_file(index_path)["meta"]
    if dataset is not None:
        meta["dataset"] = dataset
    header = {
        "model_id": model_id or model_id_of(str(meta.get("language_model", ""))),
        "layer": int(layer if layer is not None else meta.get("layer") or 0),
        "sae_set": sae_set if sae_set is not None else str(meta.get("title", site.name)),
    }
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for block in sorted((site / "data").glob("block_*.js")):
        data = read_data_file(block)
        feats = [feature_json(rec, data["strings"], meta, int(meta.get("quantile_groups", 5)))
                 for rec in data["latents"].values()]  # fmt: skip
        path = out / f"batch-{data['block']}.json"
        path.write_text(json.dumps({**header, "features": feats}, separators=(",", ":")))
        paths.append(path)
    return paths
