"""Per-latent statistics for feature dashboards, gathered in one streaming pass over shards.

Legend: N tokens, D input dim, K latents, P activations per context (T - 1 with drop_bos),
C contexts in a chunk, W = 2 * context + 1 tokens in an example window, k top examples,
R reservoir samples. a (C, P, K) codes (largest = strongest), r (C, P, K) responsibilities.

What is kept per latent, all merged batch by batch with `torch.topk` (so the pass runs on a
GPU as well as on a CPU, and memory does not grow with N):

- the k largest activations, each with its token's global index and the latent's
  activation (and responsibility) over the W tokens around it;
- a uniform sample without replacement of R firing events (a > 0), by the bottom-k / priority
  sampling trick: every event draws u ~ U(0, 1) and the R largest u are kept (Efraimidis and
  Spirakis, 2006, with equal weights), again with their windows. Sorted by value it is a
  quantile sketch of the non-zero activations, and its quantile groups are the examples of
  weak, middling and strong firing that dashboards show beside the top (Bricken et al.,
  "Towards Monosemanticity", 2023, and SAEDashboard show interval samples the same way);
- exact counts: firings (a > 0), sum of activations, sum of responsibilities
  (usage E[r_j], paper Eq. 4 for the decoder-free model), and a histogram of the non-zero
  activations on a fixed log10 grid (`HIST_LOG10_RANGE`, `HIST_BINS` bins; values outside are
  clamped into the end bins).

Windows never cross contexts: positions outside the context hold NaN (no token).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from implicit_em.dashboard.options import StatsConfig
from implicit_em.data.lm.activations import Normalization, load_manifest, load_shard

Codes = Callable[[Tensor], Tensor]

HIST_LOG10_RANGE = (-5.0, 5.0)
HIST_BINS = 100


def responsibilities(a: Tensor) -> Tensor:
    """r = softmax(-a) over latents (paper Eq. 4; energies, lower = better match). (.., K)."""
    return torch.softmax(-a, dim=-1)


def log10_bins(v: Tensor) -> Tensor:
    """Bin index in [0, HIST_BINS) of positive values on the fixed log10 grid. Same shape."""
    lo, hi = HIST_LOG10_RANGE
    scaled = (v.clamp_min(1e-30).log10() - lo) * (HIST_BINS / (hi - lo))
    return scaled.floor().clamp(0, HIST_BINS - 1).long()


def hist_edges() -> list[float]:
    """The HIST_BINS + 1 edges of the histogram grid, in activation units."""
    lo, hi = HIST_LOG10_RANGE
    return [10 ** (lo + (hi - lo) * i / HIST_BINS) for i in range(HIST_BINS + 1)]


class _Kept:
    """Per-latent kept events: score (K, n), value (K, n), token index (K, n), windows."""

    def __init__(self, K: int, n: int, W: int, with_r: bool, device: torch.device) -> None:
        self.score = torch.full((K, n), -math.inf, device=device)
        self.value = torch.zeros(K, n, device=device)
        self.index = torch.full((K, n), -1, dtype=torch.long, device=device)
        self.win = torch.full((K, n, W), math.nan, device=device)
        self.win_r = torch.full((K, n, W), math.nan, device=device) if with_r else None

    def merge(self, score: Tensor, value: Tensor, index: Tensor, win: Tensor, win_r) -> None:
        """Merge candidates given as (K, m) (windows (K, m, W)); keep the n best scores."""
        n = self.score.shape[1]
        s = torch.cat([self.score, score], 1)  # (K, n + m)
        best, pos = s.topk(n, dim=1)  # (K, n)
        self.score = best
        self.value = torch.cat([self.value, value], 1).gather(1, pos)
        self.index = torch.cat([self.index, index], 1).gather(1, pos)
        wpos = pos[..., None].expand(-1, -1, win.shape[2])  # (K, n, W)
        self.win = torch.cat([self.win, win], 1).gather(1, wpos)
        if self.win_r is not None:
            self.win_r = torch.cat([self.win_r, win_r], 1).gather(1, wpos)


class LatentStats:
    """Streaming accumulator of per-latent statistics; feed it `update`, read `result()`.

    n_latents: K. All state lives on `device`; `result()` returns CPU tensors.
    """

    def __init__(
        self, n_latents: int, cfg: StatsConfig, device: str | torch.device = "cpu"
    ) -> None:
        self.K, self.cfg, self.device = int(n_latents), cfg, torch.device(device)
        K, W, dev = self.K, cfg.window, self.device
        self.n_tokens = 0
        self.fires = torch.zeros(K, dtype=torch.long, device=dev)
        self.act_sum = torch.zeros(K, dtype=torch.float64, device=dev)
        self.r_sum = torch.zeros(K, dtype=torch.float64, device=dev)
        self.hist = torch.zeros(K * HIST_BINS, dtype=torch.long, device=dev)
        self.top = _Kept(K, cfg.top_k, W, cfg.responsibilities, dev)
        self.res = _Kept(K, cfg.n_samples, W, cfg.responsibilities, dev)
        self.gen = torch.Generator(device=dev).manual_seed(cfg.seed)

    @torch.no_grad()
    def update(self, a: Tensor, first_token: int, keep: Tensor | None = None) -> None:
        """Add a chunk of whole contexts.

        a: (C, P, K) codes of C contexts, float. first_token: global index of a[0, 0]
        (token g lives at context g // P, position g % P). keep: optional (C, P) bool; tokens
        with keep False are left out of every statistic (their codes still show in windows).

        Every step is a whole-tensor operation on `a`'s device (no Python loop over tokens or
        latents), laid out latent-major, (K, B): the top-k, the reservoir's keys and the
        windows are row-wise operations on that one transposed copy, and r = softmax(-a) is
        never stored: its windows come from the code windows and the per-token log-partition.
        """
        C, P, K = a.shape
        if K != self.K:
            raise ValueError(f"codes have {K} latents, the accumulator {self.K}")
        B = C * P
        flat = a.reshape(B, K).float()  # (B, K)
        lt = flat.t().contiguous()  # (K, B): row-wise topk / gather are fast on CPU and GPU
        live = lt if keep is None else lt.masked_fill(~keep.reshape(1, B), 0.0)  # (K, B)
        self.n_tokens += B if keep is None else int(keep.sum())
        # Sparse bookkeeping over the firing entries only (codes are mostly zero).
        fire = live > 0  # (K, B)
        nz = fire.view(-1).nonzero().squeeze(1)  # (nnz,) flat positions in (K, B)
        del fire
        lat = nz // B  # (nnz,) latent of each firing entry
        vals = live.view(-1)[nz]  # (nnz,)
        self.fires += torch.bincount(lat, minlength=K)
        self.act_sum.index_add_(0, lat, vals.double())
        self.hist += torch.bincount(log10_bins(vals) + lat * HIST_BINS, minlength=K * HIST_BINS)
        log_z = None
        if self.cfg.responsibilities:
            r = flat.neg()  # (B, K), becomes r in place
            log_z = torch.logsumexp(r, dim=1)  # (B,) log sum_j exp(-a_j) per token
            r.sub_(log_z[:, None]).exp_()  # r = exp(-a - log Z) = softmax(-a), paper Eq. 4
            w_tok = torch.ones(B, device=a.device) if keep is None else keep.reshape(B).float()
            self.r_sum += (w_tok @ r).double()  # (B,) @ (B, K) -> (K,)
            del r

        c = self.cfg.context
        offs = torch.arange(-c, c + 1, device=a.device)  # (W,)

        def windows(rows: Tensor) -> tuple[Tensor, Tensor | None]:
            """rows (K, m) token rows in the chunk -> windows (K, m, W) of a (and of r)."""
            m = rows.shape[1]
            pos = (rows % P)[..., None] + offs  # (K, m, W) positions in the context
            ok = (pos >= 0) & (pos < P)
            tok = (rows - rows % P)[..., None] + pos.clamp(0, P - 1)  # (K, m, W) chunk rows
            w = lt.gather(1, tok.view(K, m * offs.numel())).view(K, m, -1)
            w = w.masked_fill(~ok, math.nan)
            if log_z is None:
                return w, None
            return w, torch.exp(-w - log_z[tok])  # r = exp(-a - log Z); NaN stays NaN

        val, rows = live.topk(min(self.cfg.top_k, B), dim=1)  # (K, m)
        ok = val > 0  # a latent that never fires keeps no examples
        w, wr = windows(rows)
        self.top.merge(val.masked_fill(~ok, -math.inf), val,
                       (rows + first_token).masked_fill(~ok, -1), w, wr)  # fmt: skip

        if self.cfg.n_samples:
            keys = torch.full((K, B), -1.0, device=a.device)  # (K, B); -1 = not firing
            keys.view(-1)[nz] = torch.rand(nz.shape[0], generator=self.gen, device=a.device)
            key, rows = keys.topk(min(self.cfg.n_samples, B), dim=1)  # (K, m)
            del keys
            ok = key >= 0
            w, wr = windows(rows)
            self.res.merge(key.masked_fill(~ok, -math.inf), live.gather(1, rows),
                           (rows + first_token).masked_fill(~ok, -1), w, wr)  # fmt: skip

    def result(self) -> dict[str, Tensor | int]:
        """CPU tensors: n_tokens, fires (K,), act_sum (K,), r_sum (K,), hist (K, HIST_BINS),
        top_value/top_index (K, k), top_win (K, k, W) [top_win_r], sample_value/sample_index
        (K, R) sorted by value ascending, sample_win (K, R, W) [sample_win_r]. Empty slots
        have index -1."""
        out: dict[str, Tensor | int] = {
            "n_tokens": self.n_tokens,
            "fires": self.fires.cpu(),
            "act_sum": self.act_sum.cpu(),
            "r_sum": self.r_sum.cpu(),
            "hist": self.hist.view(self.K, HIST_BINS).cpu(),
        }
        for name, kept, order in (("top", self.top, None), ("sample", self.res, "value")):
            idx = kept.index
            if order is not None:  # sort the sample by value, empty slots last
                key = kept.value.masked_fill(idx < 0, math.inf)
                pos = key.argsort(dim=1)
            else:
                pos = torch.arange(idx.shape[1], device=idx.device).expand_as(idx)
            wpos = pos[..., None].expand(-1, -1, kept.win.shape[2])
            out[f"{name}_value"] = kept.value.gather(1, pos).cpu()
            out[f"{name}_index"] = idx.gather(1, pos).cpu()
            out[f"{name}_win"] = kept.win.gather(1, wpos).cpu()
            if kept.win_r is not None:
                out[f"{name}_win_r"] = kept.win_r.gather(1, wpos).cpu()
        return out


def chunks(n_contexts: int, per_context: int, n_latents: int, budget: int) -> Iterator[slice]:
    """Slices of whole contexts with about `budget` code entries (C * P * K) each."""
    step = max(1, budget // max(1, per_context * n_latents))
    for s in range(0, n_contexts, step):
        yield slice(s, min(s + step, n_contexts))


@torch.no_grad()
def nearest_by_cosine(V: Tensor, n: int = 8, block: int = 1024) -> tuple[Tensor, Tensor]:
    """The n nearest rows of V (K, D) to each row by cosine similarity, self excluded.

    Returns (cosines (K, n), indices (K, n)), computed over row blocks (never a (K, K)
    matrix in memory at once). Zero rows have cosine 0 to everything.
    """
    K = V.shape[0]
    n = min(n, K - 1)
    U = F.normalize(V.float(), dim=1)
    cos, idx = [], []
    for s in range(0, K, block):
        sim = U[s : s + block] @ U.t()  # (b, D) @ (D, K) -> (b, K)
        rows = torch.arange(s, min(s + block, K), device=V.device)
        sim[rows - s, rows] = -math.inf
        c, i = sim.topk(n, dim=1)
        cos.append(c.cpu())
        idx.append(i.cpu())
    return torch.cat(cos), torch.cat(idx)


@torch.no_grad()
def logit_effects(
    W_dec: Tensor, W_U: Tensor, n: int = 10, block: int = 512
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Output tokens a latent promotes and suppresses through the unembedding (logit lens).

    W_dec: (D, K) decoder columns; W_U: (V, D) unembedding (fold the final norm's gain in
    beforehand). The effect of latent j on the logits is W_U W_dec[:, j] (V,). Returns
    (top values (K, n), top token ids (K, n), bottom values (K, n), bottom ids (K, n)),
    computed over blocks of latents.
    """
    out: list[list[Tensor]] = [[], [], [], []]
    Wd = W_dec.float().t()  # (K, D)
    Wu = W_U.float().to(Wd.device)
    for s in range(0, Wd.shape[0], block):
        logits = Wd[s : s + block] @ Wu.t()  # (b, D) @ (D, V) -> (b, V)
        tv, ti = logits.topk(n, dim=1)
        bv, bi = (-logits).topk(n, dim=1)
        for lst, t in zip(out, (tv, ti, -bv, bi), strict=True):
            lst.append(t.cpu())
    return tuple(torch.cat(lst) for lst in out)  # type: ignore[return-value]


@torch.no_grad()
def collect_stats(
    acts_dir: str | Path,
    codes: Codes,
    n_latents: int,
    cfg: StatsConfig,
    split: str = "train",
    max_tokens: int | None = None,
    norm: Normalization | None = None,
    max_norm: float | None = None,
    device: str | torch.device = "cpu",
    chunk_entries: int = 1 << 24,
    progress: bool = True,
) -> tuple[dict, Tensor]:
    """One streaming pass over a harvest split: (stats from `LatentStats.result()`, tokens).

    acts_dir: harvest directory (see implicit_em.data.lm.activations). codes: x (B, D) -> (B, K)
    read-out, largest = strongest, called on `device`. norm: applied to the fp16 activations
    first (use the normalization the model was trained with). max_norm: tokens whose raw
    activation norm (model units) exceeds it are left out of the statistics (massive
    activations). Reads whole shards in manifest order, up to max_tokens (whole contexts).
    chunk_entries bounds C * P * K per `update` (memory). Returns the stats dict plus
    "n_contexts", "per_context", "bos_offset", and tokens (C_total, T) int32 on the CPU.
    """
    from tqdm import tqdm

    manifest = load_manifest(acts_dir)
    if split not in manifest["splits"]:
        raise ValueError(f"unknown split {split!r}: use one of {sorted(manifest['splits'])}")
    entries = manifest["splits"][split]["shards"]
    if not entries:
        raise ValueError(f"split {split!r} of {acts_dir} has no shards: finish the harvest first")
    bos_offset = int(bool(manifest["identity"]["config"].get("drop_bos", True)))
    total = sum(e["n_tokens"] for e in entries)
    if max_tokens is not None:
        total = min(total, max_tokens)
    acc = LatentStats(n_latents, cfg, device)
    tokens, seen, n_ctx = [], 0, 0
    per = None
    bar = tqdm(total=total, unit="tok", unit_scale=True, desc="dashboard", disable=not progress)
    dev = torch.device(device)
    for x, toks in _prefetched(acts_dir, entries, pin=dev.type == "cuda"):
        if seen >= total:
            break
        per = x.shape[0] // toks.shape[0]
        n_take = min(toks.shape[0], math.ceil((total - seen) / per))
        x, toks = x[: n_take * per].view(n_take, per, -1), toks[:n_take]
        for sl in chunks(n_take, per, n_latents, chunk_entries):
            xc = x[sl].to(device, non_blocking=True).float()  # (C, P, D)
            keep = None
            if max_norm is not None:
                keep = xc.norm(dim=2) <= max_norm  # (C, P)
            xn = xc.view(-1, xc.shape[2])  # (C * P, D)
            xn = norm.apply(xn) if norm is not None else xn
            a = codes(xn)  # (C * P, K)
            if a.shape != (xn.shape[0], n_latents):
                raise ValueError(
                    f"codes returned shape {tuple(a.shape)} for {xn.shape[0]} tokens; expected "
                    f"({xn.shape[0]}, {n_latents}): pass a read-out x (B, D) -> (B, K)"
                )
            acc.update(a.view(xc.shape[0], per, n_latents), (n_ctx + sl.start) * per, keep)
            bar.update(xc.shape[0] * per)
        tokens.append(toks)
        n_ctx += n_take
        seen += n_take * per
    bar.close()
    out = acc.result()
    out.update(n_contexts=n_ctx, per_context=per, bos_offset=bos_offset)
    return out, torch.cat(tokens)


def _prefetched(
    acts_dir: str | Path, entries: list[dict], pin: bool, ahead: int = 2
) -> Iterator[tuple[Tensor, Tensor]]:
    """(acts (N, D) fp16, tokens (C, T)) of each shard in order, read (and sha256-checked)
    by a background thread up to `ahead` shards ahead, so that disk, hashing and the
    host-to-device copy overlap the device's work. pin: page-locked acts (for CUDA)."""
    from concurrent.futures import ThreadPoolExecutor

    def load(entry: dict) -> tuple[Tensor, Tensor]:
        shard = load_shard(acts_dir, entry)
        x = shard["acts"]
        return (x.pin_memory() if pin else x), shard["tokens"]

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = [pool.submit(load, e) for e in entries[:ahead]]
        for i in range(len(entries)):
            x, toks = pending.pop(0).result()
            if i + ahead < len(entries):
                pending.append(pool.submit(load, entries[i + ahead]))
            yield x, toks
        for f in pending:
            f.cancel()
