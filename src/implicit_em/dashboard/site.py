"""Write a feature-dashboard site: static HTML shells (Jinja2) plus data as small .js files.

Legend: K latents, k top examples, W window tokens, V vocabulary.

Layout of a site::

    index.html                 sortable, searchable latent list; density histogram; run summary
    latent.html#<j>            one latent, rendered in the browser from its block
    assets/dashboard.js, .css  the viewer (no network, no framework)
    data/index.js              one row per shown latent (frequency, max, usage, top tokens)
    data/block_00000.js        full data of `block_size` latents, loaded on demand

Every data file is a script that calls `DASH.index(...)` or `DASH.block(...)`, so the site
opens from file:// (browsers block fetch() of local files but not <script src>), and a page
loads only the index plus the one block it shows: a 16k-latent site opens as fast as a small
one.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from implicit_em.dashboard.stats import HIST_LOG10_RANGE, hist_edges

TEMPLATES = Path(__file__).with_name("templates")
ASSETS = ("dashboard.js", "dashboard.css")


def _jinja():
    try:
        import jinja2
    except ImportError as e:  # pragma: no cover - jinja2 is a dependency
        raise ImportError("the dashboard needs jinja2: pip install 'jinja2>=3.1'") from e
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _num(x: float, digits: int = 4) -> float | None:
    """A float rounded to `digits` significant digits for JSON; NaN/inf -> None."""
    x = float(x)
    if not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


class TokenTable:
    """Per-block table of decoded token strings: ids -> small integers into `strings`."""

    def __init__(self, decode: Callable[[int], str]) -> None:
        self.decode, self.strings, self._pos = decode, [], {}

    def __call__(self, tid: int) -> int:
        if tid not in self._pos:
            self._pos[tid] = len(self.strings)
            self.strings.append(self.decode(tid))
        return self._pos[tid]


def sig_round(t: Tensor, digits: int) -> Tensor:
    """Round to `digits` significant digits, elementwise, in float64 (zeros and NaN kept)."""
    t = t.double()
    e = t.abs().clamp_min(1e-300).log10().floor()
    m = torch.pow(10.0, digits - 1 - e)
    out = torch.round(t * m) / m
    return torch.where(torch.isfinite(out) & (t != 0), out, t)


def _example(
    table: TokenTable, toks: list[int], win: list[float], win_r: list[float] | None, value: float
) -> list:
    """[value, r at the token, first offset, token refs, activations, responsibilities].

    toks: (W,) ids with -1 where the context has no token (where win is NaN too).
    """
    keep = [i for i, t in enumerate(toks) if t >= 0]
    lo, hi = (keep[0], keep[-1] + 1) if keep else (0, 0)
    centre = len(toks) // 2
    return [
        value,
        win_r[centre] if win_r is not None else None,
        lo - centre,
        [table(t) for t in toks[lo:hi]],
        win[lo:hi],
        win_r[lo:hi] if win_r is not None else None,
    ]


def window_tokens(
    tokens: Tensor, index: Tensor, per_context: int, bos_offset: int, context: int
) -> Tensor:
    """Token ids around global token indices: index (...) -> (..., 2 * context + 1), -1 where
    there is no token (outside the context, or an empty slot with index -1).

    tokens: (C, T) as stored; activation g is token [g // P, g % P + bos_offset].
    """
    c, p = index.clamp_min(0) // per_context, index.clamp_min(0) % per_context + bos_offset
    pos = p[..., None] + torch.arange(-context, context + 1)  # (..., W)
    ok = (pos >= bos_offset) & (pos < tokens.shape[1]) & (index[..., None] >= 0)
    got = tokens[c[..., None].expand_as(pos), pos.clamp(0, tokens.shape[1] - 1)].long()
    return got.masked_fill(~ok, -1)


def quantile_groups(m: int, n_groups: int, per_group: int) -> list[tuple[int, list[int]]]:
    """Split a sorted sample of m values into n_groups equal-count quantile groups and pick
    per_group evenly spaced members of each. Returns [(group, [positions])]."""
    out = []
    for g in range(n_groups):
        lo, hi = (g * m) // n_groups, ((g + 1) * m) // n_groups
        if hi <= lo:
            continue
        n = min(per_group, hi - lo)
        pos = sorted({lo + (i * (hi - lo)) // n for i in range(n)}, reverse=True)
        out.append((g, pos))
    return out


class BlockView:
    """The stats of a block of latents as plain Python lists (rounded), so that building the
    records is list work rather than per-element tensor indexing."""

    def __init__(self, stats: dict, tokens: Tensor, latents: list[int], context: int) -> None:
        L = torch.tensor(latents, dtype=torch.long)
        per, bos = int(stats["per_context"]), int(stats["bos_offset"])
        self.has_r = "top_win_r" in stats
        for kind in ("top", "sample"):
            idx = stats[f"{kind}_index"][L]  # (b, n)
            setattr(self, f"{kind}_index", idx.tolist())
            setattr(self, f"{kind}_tok", window_tokens(tokens, idx, per, bos, context).tolist())
            setattr(self, f"{kind}_value", sig_round(stats[f"{kind}_value"][L], 4).tolist())
            setattr(self, f"{kind}_win", sig_round(stats[f"{kind}_win"][L], 3).tolist())
            wr = sig_round(stats[f"{kind}_win_r"][L], 3).tolist() if self.has_r else None
            setattr(self, f"{kind}_win_r", wr)


def latent_record(
    j: int,
    row: int,
    view: BlockView,
    stats: dict,
    table: TokenTable,
    n_groups: int,
    per_group: int,
    near: dict[str, tuple[Tensor, Tensor]],
    logits: tuple[Tensor, Tensor, Tensor, Tensor] | None,
    decode_vocab: Callable[[int], str],
) -> dict:
    """Everything the latent page shows for latent j (row `row` of the block view)."""
    n_tok = max(int(stats["n_tokens"]), 1)
    fires = int(stats["fires"][j])
    has_r = view.has_r
    top = []
    for i, g in enumerate(view.top_index[row]):
        if g < 0:
            continue
        wr = view.top_win_r[row][i] if has_r else None
        top.append(
            _example(table, view.top_tok[row][i], view.top_win[row][i], wr, view.top_value[row][i])
        )
    sidx = view.sample_index[row]
    valid = sum(1 for g in sidx if g >= 0)
    groups = []
    for g, positions in quantile_groups(valid, n_groups, per_group):
        lo_q, hi_q = 100 * g // n_groups, 100 * (g + 1) // n_groups
        ex = []
        for p in positions:
            wr = view.sample_win_r[row][p] if has_r else None
            ex.append(
                _example(
                    table,
                    view.sample_tok[row][p],
                    view.sample_win[row][p],
                    wr,
                    view.sample_value[row][p],
                )
            )
        groups.append({"label": f"{lo_q}-{hi_q}%", "examples": ex})
    hist = stats["hist"][j]
    nz = torch.nonzero(hist).flatten()
    h0, h1 = (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, 0)
    rec: dict[str, Any] = {
        "id": j,
        "fires": fires,
        "freq": _num(fires / n_tok),
        "max": view.top_value[row][0] if fires else 0.0,
        "mean": _num(float(stats["act_sum"][j]) / fires) if fires else None,
        "usage": _num(float(stats["r_sum"][j]) / n_tok) if has_r else None,
        "hist": {"start": h0, "counts": hist[h0:h1].tolist()},
        "n_sample": valid,
        "top": top,
        "quantiles": groups,
        "near": {
            name: [
                [int(i), _num(c, 3)] for c, i in zip(cos[j].tolist(), ids[j].tolist(), strict=True)
            ]
            for name, (cos, ids) in near.items()
        },
    }
    if logits is not None:
        tv, ti, bv, bi = logits
        rec["logits"] = {
            "pos": [
                [decode_vocab(int(t)), _num(v, 3)]
                for v, t in zip(tv[j].tolist(), ti[j].tolist(), strict=True)
            ],
            "neg": [
                [decode_vocab(int(t)), _num(v, 3)]
                for v, t in zip(bv[j].tolist(), bi[j].tolist(), strict=True)
            ],
        }
    return rec


def top_tokens(rec: dict, strings: list[str], n: int = 8) -> str:
    """The distinct tokens at the centre of a latent's top examples, most frequent first."""
    counts: dict[str, int] = {}
    for ex in rec["top"]:
        off, refs = ex[2], ex[3]
        if 0 <= -off < len(refs):
            s = strings[refs[-off]].strip() or strings[refs[-off]]
            counts[s] = counts.get(s, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
    return " ".join(s for s, _ in ranked)


def density_histogram(freq: Tensor, low: float = -7.0, width: float = 0.25) -> dict:
    """Histogram of log10 firing frequency over all K latents; never-firing ones apart."""
    alive = freq[freq > 0].double().log10()
    n_bins = int(round(-low / width))
    edges = [low + i * width for i in range(n_bins + 1)]
    counts = [0] * n_bins
    for v in alive.clamp(low, -1e-12).tolist():
        counts[min(n_bins - 1, int((v - low) // width))] += 1
    return {"edges": edges, "counts": counts, "dead": int((freq == 0).sum())}


def write_site(
    out: str | Path,
    stats: dict,
    tokens: Tensor,
    decode: Callable[[int], str],
    latents: Sequence[int],
    meta: dict,
    near: dict[str, tuple[Tensor, Tensor]] | None = None,
    logits: tuple[Tensor, Tensor, Tensor, Tensor] | None = None,
    context: int = 8,
    n_groups: int = 5,
    per_group: int = 4,
    block_size: int = 64,
    overwrite: bool = False,
    workers: int = 1,
) -> Path:
    """Write the site for `latents` (K' indices into the stats) under `out`; return index.html.

    stats, tokens: from `collect_stats`. decode: token id -> display string. meta: title,
    family, summary dicts (shown as tables on the index). near: name -> (cosines (K, n),
    ids (K, n)). logits: from `logit_effects`. Refuses a non-empty `out` unless overwrite.
    workers: processes writing blocks in parallel (0: one per CPU, at most one per block;
    POSIX fork only, else 1); the files do not depend on it.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out} is not empty: choose another output folder or pass overwrite"
            )
        if not (out / "index.html").is_file():
            raise FileExistsError(
                f"{out} is not empty and holds no dashboard: refusing to clear it"
            )
        shutil.rmtree(out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "assets").mkdir(exist_ok=True)
    near = near or {}
    n_tok = max(int(stats["n_tokens"]), 1)
    freq = stats["fires"].double() / n_tok
    has_r = "top_win_r" in stats
    cache: dict[int, str] = {}

    def dec(t: int) -> str:
        if t not in cache:
            cache[t] = decode(t)
        return cache[t]

    latents = [int(j) for j in latents]
    _predecode(dec, stats, tokens, latents, context, logits)
    starts = list(range(0, len(latents), block_size))
    job = {
        "out": out, "stats": stats, "tokens": tokens, "dec": dec, "latents": latents,
        "block_size": block_size, "context": context, "n_groups": n_groups,
        "per_group": per_group, "near": near, "logits": logits,
    }  # fmt: skip
    workers = _n_workers(workers, len(starts))
    if workers <= 1:
        parts = [_write_block(job, b) for b in range(len(starts))]
    else:  # blocks are independent: fork workers that inherit `job` (no pickling of stats)
        import multiprocessing as mp

        _JOB.update(job)
        try:
            ctx = mp.get_context("fork")
            with ctx.Pool(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                parts = pool.map(_write_block_forked, range(len(starts)), chunksize=1)
        finally:
            _JOB.clear()
    rows: dict[str, list] = {
        k: [] for k in ("id", "freq", "max", "mean", "usage", "tokens", "block")
    }
    for part in parts:
        for key, vals in part.items():
            rows[key] += vals
    hist = density_histogram(freq)
    index = {
        "meta": {
            **{k: v for k, v in meta.items() if k not in ("summary",)},
            "n_latents": int(freq.numel()),
            "n_shown": len(latents),
            "n_tokens": int(stats["n_tokens"]),
            "responsibilities": has_r,
            "hist_edges": [_num(e, 3) for e in hist_edges()],
            "hist_log10_range": list(HIST_LOG10_RANGE),
            "near": list(near),
            "logits": logits is not None,
            "context": context,
        },
        "rows": rows,
        "density": hist,
    }
    _write_js(out / "data" / "index.js", "index", index)
    for name in ASSETS:
        shutil.copyfile(TEMPLATES / name, out / "assets" / name)
    env = _jinja()
    summary = meta.get("summary", {})
    page = {
        "title": meta.get("title", "dashboard"),
        "meta": index["meta"],
        "summary": summary,
        "density": hist,
    }
    (out / "index.html").write_text(env.get_template("index.html").render(**page))
    (out / "latent.html").write_text(env.get_template("latent.html").render(**page))
    return out / "index.html"


def _write_js(path: Path, fn: str, obj: dict) -> None:
    """A data file: `DASH.<fn>(<json>);`, JSON with no NaN (allow_nan=False)."""
    body = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    path.write_text(f"DASH.{fn}({body});\n")


_JOB: dict = {}
"""The job of `write_site`'s forked workers (set in the parent before forking)."""


def _n_workers(workers: int, n_blocks: int) -> int:
    import multiprocessing as mp
    import os

    if "fork" not in mp.get_all_start_methods():
        return 1
    if workers <= 0:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return max(1, min(workers, n_blocks))


def _predecode(
    dec: Callable[[int], str], stats: dict, tokens: Tensor, latents: list[int], context: int,
    logits: tuple[Tensor, Tensor, Tensor, Tensor] | None,
) -> None:  # fmt: skip
    """Decode, once, every token the pages will show (fills `dec`'s cache before forking)."""
    L = torch.tensor(latents, dtype=torch.long)
    per, bos = int(stats["per_context"]), int(stats["bos_offset"])
    ids = [window_tokens(tokens, stats[f"{k}_index"][L], per, bos, context).flatten()
           for k in ("top", "sample")]  # fmt: skip
    if logits is not None:
        ids += [logits[1][L].flatten(), logits[3][L].flatten()]
    for t in torch.unique(torch.cat(ids)).tolist():
        if t >= 0:
            dec(int(t))


def _write_block_forked(b: int) -> dict[str, list]:
    return _write_block(_JOB, b)


def _write_block(job: dict, b: int) -> dict[str, list]:
    """Write data/block_<b>.js; return the block's index rows."""
    bs = job["block_size"]
    chunk = job["latents"][b * bs : (b + 1) * bs]
    stats, dec = job["stats"], job["dec"]
    table = TokenTable(dec)
    view = BlockView(stats, job["tokens"], chunk, job["context"])
    recs = {}
    rows: dict[str, list] = {
        k: [] for k in ("id", "freq", "max", "mean", "usage", "tokens", "block")
    }
    for row, j in enumerate(chunk):
        rec = latent_record(j, row, view, stats, table, job["n_groups"], job["per_group"],
                            job["near"], job["logits"], dec)  # fmt: skip
        recs[j] = rec
        for key in ("id", "freq", "max", "mean", "usage"):
            rows[key].append(rec[key])
        rows["block"].append(b)
    for j in recs:
        rows["tokens"].append(top_tokens(recs[j], table.strings))
    _write_js(
        job["out"] / "data" / f"block_{b:05d}.js",
        "block",
        {"block": b, "strings": table.strings, "latents": recs},
    )
    return rows
