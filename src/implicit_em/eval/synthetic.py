"""Ground-truth feature recovery on sae-lens synthetic data (SynthSAEBench), beside controls.

Legend: B batch, D hidden size of the synthetic model (= the models' input dim), K latents,
N ground-truth features. x (B, D) activations, f (B, N) ground-truth feature activations,
a (B, K) codes, directions (K, D) one vector per latent.

The synthetic model is sae-lens's `SyntheticModel` (Chanin et al. 2026, "SynthSAEBench",
arXiv 2602.14687), built locally from a recipe (nothing downloaded). Every model is scored with
sae-lens's own evaluations: `mean_correlation_coefficient` (MCC, Hungarian matching of
|cos| between latent directions and true features), `feature_uniqueness`, and
`ClassificationMetricsCalculator` (per-latent precision / recall / F1 of "latent fires" against
"its best-matching feature fires"), plus L0 and dead latents. Each trained model is reported
beside two controls: the same family untrained (its random initialisation) and K random unit
directions read out at the trained model's L0 (top-L0 projections per sample). With
`SyntheticEvalOptions.readout_k` every model's codes are also read out through TopK at that k
(`models.TopKReadout`; `matched_l0_metrics`), beside its untrained init and random directions
read out at the same k: precision / recall / F1 at a matched L0 (MCC, a property of the
directions alone, is the same under any read-out and is not scored again).

Directions: rows of W for the decoder-free encoder; decoder columns for SAEs (their encoder
rows are reported too, as `mcc_encoder_rows`, since the decoder-free model has only those).
"""

from __future__ import annotations

import atexit
import io
import math
import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext, redirect_stderr
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from implicit_em.config import LossConfig
from implicit_em.eval.feature_f1 import add_counts, empty_counts, feature_f1_scores
from implicit_em.eval.options import (
    RECIPES,
    VARIANTS,
    SyntheticEvalOptions,
    Variant,
    check_device,
    check_out_dir,
    fast_step_covers,
    option_error,
)
from implicit_em.eval.variants import (
    decoder_norm_l1,
    extra_term,
    match_energy,
    tied_reconstruction_loss,
    topk_codes,
)
from implicit_em.losses import combined_loss, correlation_probes
from implicit_em.models import Encoder, TopKReadout, TopKSAE, init_from_encoder_
from implicit_em.options import set_threads
from implicit_em.train.loop import loss_terms, model_type, optimizer_step, term_weights


def _sae_lens_synthetic():
    try:
        from sae_lens import synthetic
    except ImportError as err:  # optional dependency
        raise ImportError(
            "the synthetic evaluation needs sae-lens: pip install 'sae-lens>=6.54'"
        ) from err
    return synthetic


def recipe_config(recipe: str, seed: int = 42, num_features: int | None = None,
                  ortho: tuple[int, float] | None = None):  # fmt: skip
    """sae-lens `SyntheticModelConfig` for a named recipe (see RECIPES); seed fixes the model.

    num_features: N, overriding the recipe's (None: the recipe's); D and every other setting
    stay, so the overcompleteness N / D changes alone (the true L0 follows N, since the Zipf
    firing probabilities span the same range over N features). ortho: (steps, lr) of
    sae-lens's feature orthogonalisation, overriding the recipe's (None: the recipe's).
    Errors: ValueError for an unknown recipe or num_features < 1.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}: choose one of {sorted(RECIPES)}")
    if num_features is not None and num_features < 1:
        raise ValueError(f"num_features must be >= 1 (got {num_features}); None keeps the recipe's")
    s = _sae_lens_synthetic()
    from sae_lens.synthetic.firing_magnitudes import (
        FoldedNormalMagnitudeConfig,
        LinearMagnitudeConfig,
    )

    r = dict(RECIPES[recipe])
    if num_features is not None:
        r["num_features"] = num_features
    ortho_steps, ortho_lr = ortho or (r["ortho_steps"], 3e-4)
    scale = r.get("prob_scale", 1.0)
    hierarchy = None
    if r["roots"]:
        hierarchy = s.HierarchyConfig(
            total_root_nodes=r["roots"], branching_factor=r["branching"],
            max_depth=r["depth"], mutually_exclusive_portion=1.0,
            compensate_probabilities=r.get("compensate", False),
            scale_children_by_parent=r.get("scale_children", False),
        )  # fmt: skip
    return s.SyntheticModelConfig(
        num_features=r["num_features"],
        hidden_dim=r["hidden_dim"],
        firing_probability=s.ZipfianFiringProbabilityConfig(
            exponent=0.5, max_prob=0.4 * scale, min_prob=5e-4 * scale
        ),
        hierarchy=hierarchy,
        orthogonalization=s.OrthogonalizationConfig(num_steps=ortho_steps, lr=ortho_lr),
        correlation=(
            s.LowRankCorrelationConfig(rank=r["rank"], correlation_scale=0.1) if r["rank"] else None
        ),
        mean_firing_magnitudes=LinearMagnitudeConfig(start=5.0, end=4.0),
        std_firing_magnitudes=FoldedNormalMagnitudeConfig(mean=0.5, std=0.5),
        bias=r.get("bias", 1.0),
        seed=seed,
    )


def build_synthetic_model(recipe: str, seed: int = 42, device: str = "cpu",
                          num_features: int | None = None,
                          ortho: tuple[int, float] | None = None):  # fmt: skip
    """A sae-lens `SyntheticModel` for the recipe, built locally. `.sample(B)` -> x (B, D).
    num_features, ortho: overrides of the recipe (see `recipe_config`)."""
    s = _sae_lens_synthetic()
    cfg = recipe_config(recipe, seed, num_features, ortho)
    # sae-lens draws its orthogonalisation's tqdm bar with show_progress=True fixed (one line
    # per chunk and step: ~2,000 lines in a log at 16k features); keep the rest of stderr
    with redirect_stderr(_WithoutLines(sys.stderr, "Orthogonalizing vectors")):
        return s.SyntheticModel(cfg, device=device)


class _WithoutLines(io.TextIOBase):
    """A text stream that forwards writes to `out` except those containing `marker` (and the
    bare line end that closes them): tqdm writes each redraw of a bar as one chunk."""

    def __init__(self, out, marker: str) -> None:
        self.out, self.marker, self.dropped = out, marker, False

    def write(self, text: str) -> int:
        if self.marker in text or (self.dropped and text in ("\n", "\r")):
            self.dropped = self.marker in text
            return len(text)
        self.dropped = False
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


# ---------------------------------------------------------------------------------------
# Models, read-outs and training
# ---------------------------------------------------------------------------------------


def make_model(variant: Variant, d: int, k_latents: int, true_l0: float) -> nn.Module:
    """The family's model, freshly initialised (the 'untrained' control is this, unchanged)."""
    if variant.family == "encoder":
        # unit_norm_rows: unit rows at init and after every step (the family's after_step)
        enc = Encoder(d, k_latents, variant.activation, unit_norm_rows=variant.unit_norm_rows)
        if not variant.bias:
            enc.linear.bias.data.zero_()
            enc.linear.bias.requires_grad_(False)
        enc.tied_k = variant.k or max(1, round(true_l0))
        return enc
    k = variant.k or max(1, round(true_l0))
    if variant.family != "hybrid":
        from implicit_em.config import ModelConfig  # lazy: keeps this module's imports as they were
        from implicit_em.families import family

        m = ModelConfig(type=variant.family, input_dim=d, hidden_dim=k_latents, k=k,
                        jump_threshold=variant.jump_threshold,
                        jump_bandwidth=variant.jump_bandwidth)  # fmt: skip
        model = family(variant.family).build(m)
        parts = tuple(p for p in variant.saelens if p != "clip")  # clip: the trainer's
        if parts:
            if not hasattr(model, "saelens_protocol_"):
                raise ValueError(f"Variant.saelens {parts}: the {variant.family} family has no "
                                 "sae-lens protocol; use it with a BatchTopK family")  # fmt: skip
            model.saelens_protocol_(parts)
        return model
    return TopKSAE(d, k_latents, k)


def with_opts_k(v: Variant, opts: SyntheticEvalOptions) -> Variant:
    """v with opts.k as its number of active latents when the variant sets none."""
    return replace(v, k=opts.k) if opts.k is not None and v.k is None else v


def untrained_model(v: Variant, synth, opts: SyntheticEvalOptions, seed: int) -> nn.Module:
    """The untrained control of variant v for seed: `make_model` after torch.manual_seed(seed)
    (the start `VariantTrainer` draws, before any init-at-truth, filters or pre-training), on
    opts.device. v: as given or `with_opts_k`'d (the same model either way)."""
    torch.manual_seed(seed)
    v = with_opts_k(v, opts)
    k_latents = opts.latents or synth.cfg.num_features
    return make_model(v, synth.cfg.hidden_dim, k_latents, _true_l0(synth)).to(opts.device)


def directions(model: nn.Module) -> tuple[Tensor, Tensor | None]:
    """(directions (K, D), encoder rows (K, D) or None): decoder columns for SAEs, W rows for
    the decoder-free encoder."""
    if hasattr(model, "W_dec"):  # TopK, BatchTopK, JumpReLU: W_dec (D, K)
        return model.W_dec.detach().t(), model.W.detach()
    if hasattr(model, "decoder"):  # the L1 SAE: decoder.weight (D, K)
        return model.decoder.weight.detach().t(), model.W.detach()
    return model.W.detach(), None


def _loss_config(v: Variant, batch_size: int, dead_steps: int = 1000) -> LossConfig:
    """The LossConfig of variant v at batch size batch_size: lambda_lse is 1 (the LSE summed
    over the batch), 1 / B (lse_mean) or lse_ref_batch / B. ValueError on lse_mean with
    lse_ref_batch, or lse_ref_batch < 1."""
    if v.lse_ref_batch is not None and (v.lse_mean or v.lse_ref_batch < 1):
        raise ValueError(f"lse_ref_batch={v.lse_ref_batch} needs lse_mean=False and a batch "
                         ">= 1: set one of the two")  # fmt: skip
    lse = 1.0 / batch_size if v.lse_mean else 1.0
    if v.lse_ref_batch is not None:
        lse = v.lse_ref_batch / batch_size
    return LossConfig(
        lambda_lse=lse,
        lambda_var=v.lambda_var, lambda_tc=v.lambda_tc, lambda_wr=v.lambda_wr,
        reference_k=v.reference_k, l0_coef=v.l0_coef, l1_weight=v.l1_weight,
        aux_coef=1.0 if "auxk" in v.saelens else LossConfig.aux_coef, dead_steps=dead_steps,
    )  # fmt: skip


class ChunkedSampler:
    """B -> x (B, D): fresh samples of `synth`, drawn `chunk` at a time and served in order.

    Every sample is drawn once and used once; the samples of a chunk are independent, so a
    batch sliced from it has the same distribution as `synth.sample(B)`. What changes is the
    cost: sae-lens's sampler pays a fixed overhead per call (a few dozen kernels over dense
    (B, N) tensors and several host synchronisations: `nonzero`, `.any()`, `torch.where`), which
    at B = 1,024 on a GPU dominates a training step; one call per chunk amortises it.
    chunk: samples per draw (>= 1). Batches larger than a chunk are drawn directly.
    prefetch (CUDA only; ignored on a CPU): when the last batch of a chunk is served, the next
    chunk is drawn on a side CUDA stream, so that its kernels (and its host synchronisations,
    which then wait for the side stream only) overlap the training steps still queued on the
    main stream. The draws and their order are the same; only the stream they run on changes.
    """

    def __init__(self, synth, chunk: int, prefetch: bool = False) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1 (got {chunk})")
        self.synth, self.chunk = synth, chunk
        self.buf: Tensor | None = None  # (chunk, D)
        self.pos = 0
        self.side = None  # the side stream of prefetch on CUDA
        if prefetch and synth.feature_dict.feature_vectors.device.type == "cuda":
            self.side = torch.cuda.Stream(synth.feature_dict.feature_vectors.device)
        self.next: Tensor | None = None  # (chunk, D), drawn ahead on the side stream

    def _take(self) -> Tensor:
        if self.side is None:
            return self.synth.sample(self.chunk)
        if self.next is None:
            self._draw_ahead()
        main = torch.cuda.current_stream()
        main.wait_stream(self.side)
        buf, self.next = self.next, None
        buf.record_stream(main)  # allocated on the side stream, read on the main one
        return buf

    def _draw_ahead(self) -> None:
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):
            self.next = self.synth.sample(self.chunk)

    def __call__(self, b: int) -> Tensor:
        if b > self.chunk:
            return self.synth.sample(b)
        if self.buf is None or self.pos + b > len(self.buf):
            self.buf, self.pos = self._take(), 0
        self.pos += b
        out = self.buf[self.pos - b : self.pos]
        if self.side is not None and self.pos + b > len(self.buf):
            self._draw_ahead()  # the chunk's earlier steps are queued: overlap them
        return out

    def close(self) -> None:
        """Nothing to stop here (`BackgroundSampler.close` stops its thread)."""


class BackgroundSampler(ChunkedSampler):
    """B -> x (B, D): `ChunkedSampler`'s batches, with the chunks drawn ahead by a background
    thread, on the device `synth` lives on (for example a second GPU), and copied to `device`.

    The draws are `synth.sample(chunk)` one after another, in order, as in ChunkedSampler
    without prefetch, so with the same RNG state (torch's generator of synth's device) and the
    same model the batches are the same (tested on the CPU). Only synth's device is used for
    sampling, so nothing else may draw random numbers there while the sampler runs; a batch
    larger than a chunk is refused for that reason (ValueError). depth: chunks held ready
    (>= 1). An error inside the thread is raised again by the next call. The thread is a
    daemon; `close()` stops it after the chunk it is drawing.
    """

    def __init__(self, synth, chunk: int, device: str | torch.device, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1 (got {depth})")
        super().__init__(synth, chunk)
        self.device = torch.device(device)
        self.src = synth.feature_dict.feature_vectors.device
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._fill, daemon=True)
        self.thread.start()
        atexit.register(self.close)  # no thread left inside torch when the interpreter exits

    def _fill(self) -> None:
        try:
            copy = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
            on_src = torch.cuda.device(self.src) if self.src.type == "cuda" else nullcontext()
            while not self.stop.is_set():
                with on_src:
                    x = self.synth.sample(self.chunk)
                event = None
                if copy is not None:
                    with torch.cuda.stream(copy):
                        if self.src.type == "cuda":
                            copy.wait_stream(torch.cuda.current_stream(self.src))
                        x = x.to(self.device, non_blocking=True)
                        event = torch.cuda.Event()
                        event.record(copy)
                else:
                    x = x.to(self.device)
                self.q.put((x, event))
        except BaseException as e:  # handed to the caller, who raises it
            self.q.put((e, None))

    def _take(self) -> Tensor:
        x, event = self.q.get()
        if isinstance(x, BaseException):
            raise RuntimeError(f"the background sampler failed: {x!r}") from x
        if event is not None:
            main = torch.cuda.current_stream(self.device)
            main.wait_event(event)
            x.record_stream(main)  # made on the copy stream, read on the main one
        return x

    def __call__(self, b: int) -> Tensor:
        if b > self.chunk:
            raise ValueError(f"batch {b} is larger than the sampler's chunk {self.chunk}")
        return super().__call__(b)

    def close(self) -> None:
        """Stop the thread once it has drawn its current chunk (frees the queue)."""
        atexit.unregister(self.close)
        self.stop.set()
        while self.thread.is_alive():
            try:
                self.q.get(timeout=0.1)
            except queue.Empty:
                pass
        self.thread.join()


class VariantTrainer:
    """One model of a variant, trained one batch at a time (`step(x)`), so that several
    models can share one stream of samples (`run` with opts.shared_stream). `train_variant`
    is this trainer fed by its own sampler; see there for the objectives."""

    def __init__(self, variant: Variant, synth, opts: SyntheticEvalOptions, seed: int,
                 mean: Tensor | None) -> None:  # fmt: skip
        variant = with_opts_k(variant, opts)
        self.variant, self.synth, self.opts, self.mean = variant, synth, opts, mean
        d = synth.cfg.hidden_dim
        self.model = model = untrained_model(variant, synth, opts, seed)
        self.start, self.history, self.step_no = 0, [], 0
        self.inner: VariantTrainer | None = None
        if variant.pretrain_fraction:
            self.start = round(opts.steps * variant.pretrain_fraction)
            if variant.pretrain == "encoder":
                self.inner = VariantTrainer(Variant(), synth, replace(opts, steps=self.start),
                                            seed, mean)  # fmt: skip
        if variant.tied_recon:
            model.b_dec = nn.Parameter(torch.zeros(d, device=opts.device))  # (D,)
        self.params = params = [p for p in model.parameters() if p.requires_grad]
        lr = variant.lr or opts.lr
        if opts.fast_step:  # one fused kernel; capturable keeps the step count on the GPU
            cuda = opts.device.startswith("cuda")
            self.opt = torch.optim.Adam(params, lr=lr, fused=True, capturable=cuda)
        else:
            self.opt = torch.optim.Adam(params, lr=lr)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warm = 0  # eager steps taken on the fast path before the capture
        loss = replace(_loss_config(variant, opts.batch_size, opts.dead_steps),
                       tc_probes=opts.tc_probes)  # fmt: skip
        self.loss = loss
        self.kind = model_type(model)  # the family's registry name (hybrid: its TopK SAE)
        self.aux = hasattr(model, "aux_reconstruction")  # AuxK on dead latents
        self.weights = term_weights(self.kind, loss, model.hidden_dim)
        self.enc_loss = replace(_loss_config(variant, opts.batch_size),
                                lambda_lse=1.0 / opts.batch_size)  # fmt: skip
        self.enc_weights = term_weights("encoder", self.enc_loss, model.hidden_dim)
        k = model.hidden_dim
        self.since_fired = torch.zeros(k, dtype=torch.long, device=opts.device)
        self.fired_window = torch.zeros(k, dtype=torch.bool, device=opts.device)
        if variant.init_at_truth is not None:
            init_at_truth_(model, synth.feature_dict.feature_vectors.detach(),
                           variant.init_at_truth)  # fmt: skip
        if variant.init_at_filters is not None:
            filt, icpt = wiener_filters(synth)
            init_at_truth_(model, filt, variant.init_at_filters)
            with torch.no_grad():
                model.linear.bias.add_(icpt)
                if variant.filters_at_rate:
                    model.linear.bias.copy_(icpt - firing_thresholds(synth, filt, icpt))
        if not variant.lse:
            self.weights = {**self.weights, "lse": 0.0}
        self.sample = gaussian_sampler(synth) if variant.gaussian else synth.sample
        if opts.sample_chunk and not variant.gaussian:
            self.sample = ChunkedSampler(synth, opts.sample_chunk, prefetch=opts.fast_step)
        self.sums: dict[str, Tensor] = {}  # running sums of the terms, updated in place
        if opts.fast_step and not fast_step_covers(variant):
            raise ValueError(
                "fast_step does not cover pre-trained or centred variants (their first steps "
                "change the step itself): train them without fast_step"
            )

    def retarget(self, steps: int) -> None:
        """Change the run length to `steps` before it is reached (the pre-training switch
        moves with it, to the next step at the earliest); used when a time budget fixes the
        length after a few steps."""
        self.opts = replace(self.opts, steps=steps)
        if self.variant.pretrain_fraction:
            # never before the current step (a short run then switches at the next one)
            self.start = max(round(steps * self.variant.pretrain_fraction), self.step_no + 1)
            if self.inner is not None:
                self.inner.retarget(self.start)

    def step(self, x: Tensor | None) -> None:
        """One optimizer step on the batch x (B, D) (uncentred; the trainer centres it).
        During a pretrain="none" prefix the step is skipped and x may be None."""
        self.step_no += 1
        step, opts, model = self.step_no, self.opts, self.model
        if step <= self.start:  # pre-training phase (or, for pretrain="none", skipped steps)
            if self.inner is not None:
                self.inner.step(x)
                if step == self.start:
                    init_from_encoder_(model, self.inner.model)
                    self.history = self.inner.history
                    self.inner = None
            return
        log = step % opts.log_every == 0 or step == opts.steps
        if self._graphed():
            terms, grads = self._graph_step(x), {}
        else:
            terms, grads = self._update(x, log and opts.gradient_shares)
        if log:
            rec = {"step": step, "samples": step * opts.batch_size,
                   "dead_in_window": int((~self.fired_window).sum()),
                   "w_row_norm": float(model.W.detach().norm(dim=1).mean())}  # fmt: skip
            if opts.history_mcc:
                rec["mcc"] = _sae_lens_synthetic().mean_correlation_coefficient(
                    directions(model)[0], self.synth.feature_dict.feature_vectors.detach()
                )
            rec.update({t: float(v) / opts.log_every for t, v in self.sums.items()})
            rec.update(grads)
            self.history.append(rec)
            self.fired_window.zero_()
            for v in self.sums.values():
                v.zero_()

    def _update(self, x: Tensor, shares: bool) -> tuple[dict[str, Tensor], dict[str, float]]:
        """One optimizer step on x (B, D), trainer state updated in place (no host
        synchronisation unless shares, so that it can be captured in a CUDA graph). Returns
        (the unweighted terms, gradient shares when shares)."""
        opts, variant, model = self.opts, self.variant, self.model
        loss, weights = self.loss, self.weights
        x = _prep(x, self.mean)  # (B, D)
        dead = self.since_fired >= loss.dead_steps if self.aux else None
        if variant.match:
            z = model.linear(x)  # (B, K)
            a = match_energy(z, variant.match)  # (B, K), zero where active
            probes = correlation_probes(a.shape[1], opts.tc_probes, a) if opts.tc_probes else None
            terms = combined_loss(a, model.W, loss, validate=False, probes=probes,
                                  responsibilities=False)  # fmt: skip
            terms.pop("total")
            a = torch.relu(z)  # fired = active units
        else:
            terms = loss_terms(model, x, loss, dead)
            a = terms.pop("a")  # (B, K)
            if variant.tied_topk:
                a = topk_codes(a, model.tied_k)  # (B, K), k non-zero per row
        total = sum(weights[t] * terms[t] for t in weights) if variant.encoder_terms else 0.0
        parts = {t: weights[t] * terms[t] for t in weights if weights[t] and variant.encoder_terms}
        if variant.extra:
            z = model.linear(x)  # (B, K)
            for name, w in variant.extra:
                terms[name] = extra_term(name, z, a)
                parts[name] = w * terms[name]
                total = total + parts[name]
        if variant.tied_recon:
            terms["tied_recon"] = tied_reconstruction_loss(x, a, model.W, model.b_dec)
            total = total + variant.tied_recon * terms["tied_recon"]
        if variant.l1_decoder_norm:
            terms["l1_dec"] = decoder_norm_l1(a, model.decoder_matrix())
            total = total + variant.l1_decoder_norm * terms["l1_dec"]
        if variant.family == "hybrid":
            z = model.pre_activations(x)  # (B, K) ReLU pre-activations
            probes = correlation_probes(z.shape[1], opts.tc_probes, z) if opts.tc_probes else None
            enc = combined_loss(z, model.W, self.enc_loss, validate=False, probes=probes,
                                responsibilities=False)  # fmt: skip
            total = total + variant.hybrid_weight * sum(
                self.enc_weights[t] * enc[t] for t in self.enc_weights
            )
        grads = gradient_shares(model.W, parts) if shares else {}
        clip = None
        if "clip" in variant.saelens:  # sae-lens: MSE summed over D, gradient norm <= 1
            total = total * x.shape[1]
            clip = lambda: nn.utils.clip_grad_norm_(self.params, SAELENS_CLIP)  # noqa: E731
        optimizer_step(model, self.opt, total, after_backward=clip)  # unit rows: after_step
        fired = (a != 0).any(dim=0)  # (K,)
        self.since_fired.copy_(torch.where(fired, 0, self.since_fired + 1))
        self.fired_window |= fired
        for t in terms:
            if t in self.sums:
                self.sums[t].add_(terms[t].detach())
            else:
                self.sums[t] = terms[t].detach().clone()
        return terms, grads

    def _graphed(self) -> bool:
        return self.opts.fast_step and self.opts.device.startswith("cuda")

    def _graph_step(self, x: Tensor) -> dict[str, Tensor]:
        """The fast path on CUDA: GRAPH_WARMUP eager steps on a side stream (lazy
        initialisation, autotuning), then the step captured once in a CUDA graph (its input
        a static copy of the batch) and replayed for every later step. Returns the step's
        terms (static tensors, overwritten by the next replay)."""
        if self.graph is None and self.warm < GRAPH_WARMUP:
            self.warm += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                terms, _ = self._update(x, False)
            torch.cuda.current_stream().wait_stream(side)
            return terms
        if self.graph is None:
            self.static_x = x.clone()  # (B, D)
            self.graph = torch.cuda.CUDAGraph()
            # thread_local: a BackgroundSampler thread may copy onto this device meanwhile
            with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                self.static_terms, _ = self._update(self.static_x, False)
        self.static_x.copy_(x)
        self.graph.replay()
        return self.static_terms


def train_variant(
    variant: Variant,
    synth,
    opts: SyntheticEvalOptions,
    seed: int,
    mean: Tensor | None,
) -> tuple[nn.Module, list[dict]]:
    """Train one model on a fresh stream from `synth` with the library's own losses.

    Encoder: `training.loss_terms` (combined_loss, sketched tc when opts.tc_probes) weighted by
    `training.term_weights`. TopK: the same with `topk_loss` and AuxK. hybrid: TopK terms plus
    hybrid_weight * the encoder terms on the ReLU pre-activations. Returns (model, history):
    one record per log_every steps with the units dead over that window.
    """
    tr = VariantTrainer(variant, synth, opts, seed, mean)
    for _ in range(opts.steps):
        skipped = tr.step_no < tr.start and tr.inner is None  # pretrain="none": no batch drawn
        tr.step(None if skipped else tr.sample(opts.batch_size))
    return tr.model, tr.history


@torch.no_grad()
def init_at_truth_(model: nn.Module, features: Tensor, threshold: float) -> None:
    """Set the latents to the true features (N, D): needs K = N. In place."""
    if model.hidden_dim != features.shape[0]:
        raise ValueError(f"init_at_truth needs K = N = {features.shape[0]} latents")
    lin = model.linear if isinstance(model, Encoder) else model.encoder
    lin.weight.copy_(features)  # (K, D)
    lin.bias.fill_(-threshold)
    if isinstance(model, TopKSAE):
        model.W_dec.copy_(features.t())  # (D, K)
        model.normalize_decoder_()


def gradient_shares(W: Tensor, parts: dict[str, Tensor]) -> dict[str, float]:
    """How much of the step each weighted term drives, measured on the weight W (K, D).

    parts: name -> weighted scalar term (in the graph of W). Returns, per name, gnorm_<name>
    = ||dL_t/dW|| and gshare_<name> = <dL_t/dW, g> / ||g||^2 with g the total gradient (the
    shares sum to 1: each term's component along the step). Terms without a path to W count 0.
    """
    names = list(parts)
    gs = [torch.autograd.grad(parts[n], W, retain_graph=True, allow_unused=True)[0]
          if isinstance(parts[n], Tensor) and parts[n].requires_grad else None
          for n in names]  # fmt: skip
    gs = [torch.zeros_like(W) if g is None else g for g in gs]
    tot = sum(gs) if gs else torch.zeros_like(W)
    den = float(tot.square().sum()) or 1.0
    out = {}
    for n, g in zip(names, gs, strict=True):
        out[f"gnorm_{n}"] = float(g.norm())
        out[f"gshare_{n}"] = float((g * tot).sum()) / den
    return out


@torch.no_grad()
def wiener_filters(synth, n: int = 100_000) -> tuple[Tensor, Tensor]:
    """The best linear detector of every true feature: w_j, c_j = argmin E(f_j - w_j.x - c_j)^2
    on n samples (least squares, float64). Returns filters (N, D) and intercepts (N,). In
    superposition these are not the feature directions (they cancel interfering features);
    they are what a perfect filter (encoder-row) model would learn."""
    with torch.random.fork_rng(devices=_rng_devices(synth.feature_dict.feature_vectors)):
        torch.manual_seed(779)
        x, f = synth.sample_with_features(n)  # (n, D), (n, N)
    xm, fm = x.double().mean(0), f.double().mean(0)
    xc, fc = x.double() - xm, f.double() - fm
    filt = torch.linalg.solve(xc.t() @ xc, xc.t() @ fc).t()  # (N, D)
    return filt.float(), (fm - filt @ xm).float()


@torch.no_grad()
def firing_thresholds(synth, filt: Tensor, icpt: Tensor, n: int = 20_000) -> Tensor:
    """(N,): per filter the (1 - p_j) quantile of w_j.x + c_j over n samples, p_j its feature's
    firing probability, so that ReLU(w_j.x + c_j - t_j) fires at about the feature's rate."""
    with torch.random.fork_rng(devices=_rng_devices(filt)):
        torch.manual_seed(780)
        x = synth.sample(n)  # (n, D)
    pred = x @ filt.t() + icpt  # (n, N)
    p = synth.activation_generator.firing_probabilities.to(pred)  # (N,)
    srt = pred.sort(dim=0).values  # (n, N)
    idx = ((1 - p) * (n - 1)).round().long().clamp(0, n - 1)  # (N,)
    return srt.gather(0, idx[None]).squeeze(0)


def gaussian_sampler(synth, n: int = 131072) -> Callable[[int], Tensor]:
    """B -> x (B, D): Gaussian samples with the mean and covariance of n samples of synth
    (estimated once, without disturbing the global RNG stream). The second-order surrogate:
    every statistic up to the covariance matches, nothing higher does."""
    with torch.random.fork_rng(devices=_rng_devices(synth.feature_dict.feature_vectors)):
        torch.manual_seed(778)
        x = synth.sample(n).double()  # (n, D)
    mu = x.mean(dim=0)  # (D,)
    cov = torch.cov(x.t())  # (D, D)
    chol = torch.linalg.cholesky(cov + 1e-9 * cov.diagonal().mean() * torch.eye(len(mu)).to(cov))
    mu, chol = mu.float(), chol.float()

    def sample(b: int) -> Tensor:
        return mu + torch.randn(b, len(mu), device=mu.device) @ chol.t()

    return sample


def _prep(x: Tensor, mean: Tensor | None) -> Tensor:
    return x if mean is None else x - mean


def _true_l0(synth) -> float:
    if not hasattr(synth, "_ie_true_l0"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(12345)
            _, f = synth.sample_with_features(8192)
        synth._ie_true_l0 = float((f > 0).float().sum(dim=1).mean())
    return synth._ie_true_l0


def topk_readout(dirs: Tensor, k: int) -> Callable[[Tensor], Tensor]:
    """Codes of K random directions at a given L0: the top-k projections x . v per sample."""
    dirs = dirs / dirs.norm(dim=1, keepdim=True)

    def encode(x: Tensor) -> Tensor:
        z = x @ dirs.t()  # (B, D) @ (D, K) -> (B, K)
        vals, idx = z.topk(k, dim=-1)
        return torch.zeros_like(z).scatter(-1, idx, vals.clamp_min(1e-6))

    return encode


# ---------------------------------------------------------------------------------------
# MCC in worker processes (the Hungarian matchings run on the CPU; at 4,096 x 16,384 each
# takes seconds, so a GPU run scores many models in parallel while it trains)
# ---------------------------------------------------------------------------------------

_POOL = None  # concurrent.futures.ProcessPoolExecutor while `run` has opts.mcc_workers > 0
_RUN_T0 = 0.0  # time.perf_counter() when `run` began (opts.max_seconds counts from there)
PROBE_STEPS = 200
"""shared_stream with max_seconds: steps timed before the run length is fixed."""
SAELENS_CLIP = 1.0
"""sae-lens's SAETrainer clips the gradient norm at 1.0 (`Variant.saelens` "clip")."""
GRAPH_WARMUP = 3
"""fast_step on CUDA: eager steps (on a side stream) before the step is captured."""
TIME_SAFETY = 0.85
"""Fraction of the measured step rate assumed for the rest of a timed run."""
_GT = None  # the true features (N, D) in a worker, float32 on the CPU


def _pool_init(gt) -> None:
    global _GT
    torch.set_num_threads(1)
    _GT = torch.as_tensor(gt)


def mcc_plain(dirs: Tensor, gt: Tensor) -> float:
    """MCC as sae-lens's `mean_correlation_coefficient` computes it (rows normalised with
    norms clamped at 1e-8, |cos|, scipy's Hungarian matching on 1 - |cos|, mean of the
    matched |cos|), without importing sae-lens: for worker processes. dirs (K, D), gt (N, D)."""
    from scipy.optimize import linear_sum_assignment

    a = dirs / dirs.norm(dim=1, keepdim=True).clamp(min=1e-8)
    b = gt / gt.norm(dim=1, keepdim=True).clamp(min=1e-8)
    cos = (a @ b.t()).abs()  # (K, N)
    rows, cols = linear_sum_assignment(1 - cos.numpy())
    return float(cos[rows, cols].mean())


def _pool_mcc(dirs) -> float:
    return mcc_plain(torch.as_tensor(dirs), _GT)


def _mcc(dirs: Tensor, gt: Tensor):
    """sae-lens MCC now, or a Future of it when a worker pool is running (`_resolve`)."""
    if _POOL is None:
        return _sae_lens_synthetic().mean_correlation_coefficient(dirs, gt)
    return _POOL.submit(_pool_mcc, dirs.detach().float().cpu().numpy())


def _resolve(obj):
    """obj with every Future in it (nested dicts / lists) replaced by its result."""
    if isinstance(obj, dict):
        return {k: _resolve(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve(v) for v in obj]
    if hasattr(obj, "result") and callable(obj.result):
        return obj.result()
    return obj


# ---------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_latents(
    dirs: Tensor,
    encode: Callable[[Tensor], Tensor],
    synth,
    n_samples: int = 100_000,
    batch_size: int = 4096,
    mean: Tensor | None = None,
    encoder_rows: Tensor | None = None,
    seed: int = 2026,
) -> dict:
    """sae-lens's synthetic metrics for one set of latents.

    dirs (K, D): one direction per latent; encode: x (B, D) -> codes (B, K) (a latent "fires"
    where its code is non-zero, as in sae-lens). mean (D,): subtracted from x before encode.
    Returns a dict: mcc (sae-lens `mean_correlation_coefficient`), mcc_encoder_rows (when
    given), uniqueness, features_covered (distinct best-matching features), features_cos_0.9
    (true features with some latent at |cos| >= 0.9), l0, dead_latents, precision, recall, f1.
    """
    s = _sae_lens_synthetic()
    gt = synth.feature_dict.feature_vectors.detach()  # (N, D)
    dirs = dirs.to(gt.device, gt.dtype)
    codes = code_metrics(dirs, encode, synth, n_samples, batch_size, mean, seed)
    cos = _abs_cos(dirs, gt)  # (K, N)
    probs = synth.activation_generator.firing_probabilities.to(gt.device)  # (N,)
    best = cos.argmax(dim=1).unique()
    out = {
        "mcc": _mcc(dirs, gt),
        "uniqueness": s.feature_uniqueness(dirs, gt),
        "features_covered": int(cos.argmax(dim=1).unique().numel()),
        "features_cos_0.9": int((cos.max(dim=0).values >= 0.9).sum()),
        # firing probability of the covered features against all features: do the latents
        # cover only the frequent (high-variance) ones?
        "covered_median_prob": float(probs[best].median()),
        "all_median_prob": float(probs.median()),
        **codes,
    }
    if encoder_rows is not None:
        out["mcc_encoder_rows"] = _mcc(encoder_rows.to(gt), gt)
    return out


@torch.no_grad()
def code_metrics(
    dirs: Tensor,
    encode: Callable[[Tensor], Tensor],
    synth,
    n_samples: int = 100_000,
    batch_size: int = 4096,
    mean: Tensor | None = None,
    seed: int = 2026,
) -> dict:
    """sae-lens's metrics of the codes alone: l0 (`L0Calculator`), dead_latents
    (`DeadLatentsCalculator`), precision, recall, f1 (`ClassificationMetricsCalculator`: per
    latent, "its code is non-zero" as a classifier of "its best-matching feature by |cos| of
    dirs fires", then the mean over all K latents, a latent that never fires counting 0); and
    the per-feature best-latent F1 on the same samples (`eval.feature_f1`: feature_f1, the mean
    over the features that fire of their best latent's F1, duplicates and dead latents adding
    nothing; features_f1_0.5, features_firing).

    dirs (K, D) only pick each latent's feature; encode: x (B, D) -> codes (B, K). The n_samples
    evaluation samples are drawn with torch seeded by `seed` inside a forked RNG (the global
    stream is untouched), so two calls with the same seed score the same samples.
    """
    s = _sae_lens_synthetic()
    gt = synth.feature_dict.feature_vectors.detach()  # (N, D)
    dirs = dirs.to(gt.device, gt.dtype)
    l0 = s.L0Calculator()
    dead = s.DeadLatentsCalculator(dirs.shape[0])
    cls = s.ClassificationMetricsCalculator(dirs, gt)
    counts = empty_counts(dirs.shape[0], gt.shape[0], gt.device)
    with torch.random.fork_rng(devices=_rng_devices(gt)):
        torch.manual_seed(seed)
        done = 0
        while done < n_samples:
            b = min(batch_size, n_samples - done)
            x, f = synth.sample_with_features(b)  # (b, D), (b, N)
            a = encode(_prep(x, mean))  # (b, K)
            l0.add_batch(a)
            dead.add_batch(a)
            cls.add_batch(a, f)
            add_counts(counts, a, f)
            done += b
    c = cls.compute()
    return {"l0": l0.compute(), "dead_latents": dead.compute(), "precision": c.precision,
            "recall": c.recall, "f1": c.f1_score, **feature_f1_scores(counts)}  # fmt: skip


def _rng_devices(t: Tensor) -> list[int]:
    return [] if t.device.type == "cpu" else [t.device.index or 0]


def _abs_cos(a: Tensor, b: Tensor, chunk: int = 4096) -> Tensor:
    an = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    bn = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.cat([(an[i : i + chunk] @ bn.t()).abs() for i in range(0, len(an), chunk)])


def readout(model: nn.Module, variant: Variant) -> Callable[[Tensor], Tensor]:
    """x (B, D) -> codes (B, K) scored for L0 / F1 (see Variant.readout)."""
    if variant.readout == "neg_relu":
        return lambda x: torch.relu(-model.encode(x))
    if variant.readout == "topk_z":
        return lambda x: topk_codes(model.encode(x), model.tied_k)
    if variant.readout == "pos_z":
        return lambda x: torch.relu(model.linear(x))
    if variant.readout == "abs_topk":
        return lambda x: topk_codes(model.linear(x).abs(), model.tied_k)
    return model.encode


class VariantCodes(nn.Module):
    """A model whose `encode` is the codes a variant is scored on (`readout`), so that
    `models.TopKReadout` can wrap any variant: x (B, D) -> codes (B, K). Nothing is learned;
    input_dim, hidden_dim and W (K, D) are the model's."""

    def __init__(self, model: nn.Module, variant: Variant) -> None:
        super().__init__()
        self.inner, self.codes = model, readout(model, variant)
        self.input_dim, self.hidden_dim = model.input_dim, model.hidden_dim

    @property
    def W(self) -> Tensor:  # (K, D)
        return self.inner.W

    def encode(self, x: Tensor) -> Tensor:
        return self.codes(x)  # (B, K)


def matched_readout(model: nn.Module, variant: Variant, k: int) -> TopKReadout:
    """The variant's codes (`readout`) read out through TopK at k (`models.TopKReadout`): each
    sample keeps its k largest codes. The codes are non-negative for every read-out of
    `Variant.readout` with a non-negative activation (the encoder's codes are its energies
    a = ReLU(W x + b) or softplus(W x + b), read as activations: larger = fires), so a sample
    keeps min(k, its number of non-zero codes) latents: exactly k for softplus and for every
    SAE or random read-out with k or more positive codes, fewer where fewer are positive.
    For a TopK SAE or a tied TopK variant at its own k the read-out changes nothing.
    ValueError unless k is an int in [1, K]."""
    return TopKReadout(VariantCodes(model, variant), k).eval()


def random_directions(shape: torch.Size, seed: int, like: Tensor) -> Tensor:
    """The random-directions control of seed: Gaussian (K, D) from a CPU generator seeded
    10,000 + seed (unit-normalised by `topk_readout`), on like's device and dtype."""
    g = torch.Generator(device="cpu").manual_seed(10_000 + seed)
    return torch.randn(shape, generator=g).to(like)


def matched_l0_metrics(model: nn.Module, init: nn.Module, variant: Variant, synth, k: int,
                       n_samples: int, mean: Tensor | None, seed: int) -> dict:  # fmt: skip
    """Precision / recall / F1 (`code_metrics`) at a matched L0: the trained model's codes
    read out through TopK at k (`matched_readout`), beside the same read-out of its untrained
    init and K random unit directions read out at k (`topk_readout`, the directions of the
    random-at-L0 control of `score_model`). Every latent keeps its own best-matching feature
    (by its directions), so MCC does not change with the read-out and is not scored here.

    Returns {"k", "trained", "untrained", "random"}, each of the last three {l0, dead_latents,
    precision, recall, f1, feature_f1, features_f1_0.5, features_firing} (`code_metrics`) on
    the same n_samples evaluation samples as the native metrics.
    """
    out: dict = {"k": k}
    for name, m in (("trained", model), ("untrained", init)):
        m.eval()
        dirs = directions(m)[0]
        out[name] = code_metrics(dirs, matched_readout(m, variant, k).encode, synth, n_samples,
                                 mean=mean)  # fmt: skip
    dirs = directions(model)[0]
    rand = random_directions(dirs.shape, seed, dirs)
    out["random"] = code_metrics(rand, topk_readout(rand, k), synth, n_samples, mean=mean)
    return out


def score_model(model: nn.Module, variant: Variant, synth, opts: SyntheticEvalOptions,
                mean: Tensor | None, seed: int) -> dict:  # fmt: skip
    """The model's metrics with the random-directions control inside (untrained: caller)."""
    model.eval()
    dirs, enc_rows = directions(model)
    res = evaluate_latents(dirs, readout(model, variant), synth, opts.eval_samples, mean=mean,
                           encoder_rows=enc_rows)  # fmt: skip
    rand = random_directions(dirs.shape, seed, dirs)
    k = max(1, min(dirs.shape[0], round(res["l0"])))
    if opts.lstsq:
        res["mcc_lstsq"] = lstsq_mcc(readout(model, variant), synth, opts.eval_samples, mean)
    res["random_at_l0"] = evaluate_latents(rand, topk_readout(rand, k), synth,
                                           opts.eval_samples, mean=mean)  # fmt: skip
    return res


@torch.no_grad()
def lstsq_mcc(encode: Callable[[Tensor], Tensor], synth, n: int, mean: Tensor | None) -> float:
    """MCC of a least-squares linear read-out fitted post hoc on the codes: x ~ a V + v on n
    fresh samples (`lm_eval.fit_linear_decoder`, the decoder-free read-out of docs/interop.md),
    the rows of V (K, D) scored as directions. Separates "the codes carry the features" from
    "the encoder rows point at them"."""
    from implicit_em.lm_eval import fit_linear_decoder

    gt = synth.feature_dict.feature_vectors.detach()
    with torch.random.fork_rng(devices=_rng_devices(gt)):
        torch.manual_seed(4242)
        x = synth.sample(n)  # (n, D)
    V, _ = fit_linear_decoder(encode(_prep(x, mean)), x)
    return _sae_lens_synthetic().mean_correlation_coefficient(V.to(gt), gt)


def data_mean(synth, n: int = 65536) -> Tensor:
    """Mean of n fresh samples (D,), drawn without disturbing the global RNG stream."""
    with torch.random.fork_rng(devices=_rng_devices(synth.feature_dict.feature_vectors)):
        torch.manual_seed(777)
        return synth.sample(n).mean(dim=0)


def run(opts: SyntheticEvalOptions) -> dict:
    """Train every variant for every seed, score it beside its controls, write the report.

    Returns {"options", "true_l0", "rows": [...]}; each row has variant, seed, seconds,
    trained (metrics), untrained (metrics), random_at_l0 (inside trained), history, and with
    opts.shared_stream steps_done (below opts.steps when opts.max_seconds cut training short),
    and with opts.readout_k matched (`matched_l0_metrics`: the codes read out through TopK at
    that k, beside the untrained init and random directions read out at the same k).
    With opts.out_dir: results.json, report.md and mcc_vs_l0.png there (refuses, before
    anything is built, a folder that holds one of them or a path that is a file). With
    opts.mcc_workers > 0 the MCC matchings run in that many worker processes.
    """
    set_threads(opts.threads)
    global _POOL, _RUN_T0
    _RUN_T0 = time.perf_counter()
    opts, out_dir = check_run(opts)
    synth = build_synthetic_model(opts.recipe, opts.model_seed, opts.device,
                                  opts.num_features, opts.ortho)  # fmt: skip
    result = {"options": asdict(opts), "true_l0": _true_l0(synth), "rows": []}
    mu = data_mean(synth)
    if opts.mcc_workers:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        gt = synth.feature_dict.feature_vectors.detach().float().cpu().numpy()
        _POOL = ProcessPoolExecutor(opts.mcc_workers, multiprocessing.get_context("spawn"),
                                    initializer=_pool_init, initargs=(gt,))  # fmt: skip
    try:
        if opts.shared_stream:
            rows = _train_shared(opts, synth, mu)
        else:
            rows = (row for seed in opts.seeds for row in _train_each(opts, synth, mu, seed))
        for row in rows:
            row = _resolve(row)
            result["rows"].append(row)
            print(_row_line(row) + f" [scored by {time.perf_counter() - _RUN_T0:.1f} s]",
                  flush=True)  # fmt: skip
            if out_dir is not None:  # partial results survive a run cut short
                write_report(result, out_dir, plot=False)
    finally:
        if _POOL is not None:
            _POOL.shutdown(cancel_futures=True)
            _POOL = None
    if out_dir is not None:
        write_report(result, out_dir)
        return {**result, "report": str(out_dir / "report.md")}  # the CLI prints where it went
    return result


def check_run(opts: SyntheticEvalOptions) -> tuple[SyntheticEvalOptions, Path | None]:
    """The checks of `run` that need the machine or the disk, before any model is built (the
    option values themselves are checked when opts is made; fast_step's cover is checked here
    because scripts set it after the variants). Returns opts with its devices resolved
    ("auto") and the output folder, created (None without opts.out_dir)."""
    opts = replace(opts, device=check_device(opts))
    if opts.sampler_device is not None:
        opts = replace(opts, sampler_device=check_device(opts, "sampler_device"))
    slow = [v for v in opts.variants if not fast_step_covers(VARIANTS[v])]
    if opts.fast_step and slow:
        raise option_error(
            f"`fast_step` does not cover {slow[0]!r} (a pre-trained or centred variant: its "
            "first steps change the step itself): drop `fast_step` or the variant"
        )
    return opts, check_out_dir(opts.out_dir, REPORT_FILES) if opts.out_dir else None


def run_command(opts: SyntheticEvalOptions) -> dict:
    """`implicit-em eval-suite synthetic`: `run`, saying on stderr before it trains (once the
    input is checked) when no out_dir is given: the rows are then printed, nothing written."""
    check_run(opts)
    if opts.out_dir is None:
        import sys

        print(
            "implicit-em: note: no --out-dir: the rows are printed as they finish and "
            f"nothing is written; pass --out-dir DIR to keep {', '.join(REPORT_FILES)}",
            file=sys.stderr,
        )
    return run(opts)


def _untrained_metrics(init: nn.Module, v: Variant, synth, opts, mean) -> dict:
    d0, e0 = directions(init)
    n = opts.untrained_samples or opts.eval_samples
    return evaluate_latents(d0, readout(init, v), synth, n, mean=mean, encoder_rows=e0)


def _train_each(opts: SyntheticEvalOptions, synth, mu: Tensor, seed: int):
    """Rows of one seed, each variant on its own stream (yields rows, Futures inside)."""
    for name in opts.variants:
        v = VARIANTS[name]
        mean = mu if v.centre else None
        t0 = time.perf_counter()
        model, hist = train_variant(v, synth, opts, seed, mean)
        secs = time.perf_counter() - t0
        trained = score_model(model, v, synth, opts, mean, seed)
        init = untrained_model(v, synth, opts, seed)
        untrained = _untrained_metrics(init, v, synth, opts, mean)
        matched = _matched(model, init, v, synth, opts, mean, seed)
        yield {"variant": name, "seed": seed, "seconds": round(secs, 1),
               "eval_seconds": round(time.perf_counter() - t0 - secs, 1),
               "trained": trained, "untrained": untrained, **matched,
               "history": hist}  # fmt: skip


def _matched(model: nn.Module, init: nn.Module, v: Variant, synth, opts, mean,
             seed: int) -> dict:  # fmt: skip
    """{"matched": `matched_l0_metrics`} with opts.readout_k, else {} (rows as before)."""
    if opts.readout_k is None:
        return {}
    return {"matched": matched_l0_metrics(model, init, v, synth, opts.readout_k,
                                          opts.eval_samples, mean, seed)}  # fmt: skip


def model_checksum(synth) -> float:
    """The absolute sum of a synthetic model's feature dictionary (N, D), in float64: equal
    for two builds of the same recipe and seed on devices that draw the same numbers."""
    return float(synth.feature_dict.feature_vectors.detach().double().abs().sum())


def background_sampler_model(opts: SyntheticEvalOptions, synth, device: str):
    """The synthetic model of `synth` built again on `device` (the same recipe, model seed
    and overrides), for a `BackgroundSampler` there. ValueError when the two differ (their
    feature dictionaries' absolute sums, float64, are compared: another RNG would give
    another draw of the recipe)."""
    other = build_synthetic_model(opts.recipe, opts.model_seed, device, opts.num_features,
                                  opts.ortho)  # fmt: skip
    a, b = model_checksum(synth), model_checksum(other)
    if a != b:
        raise ValueError(f"the synthetic model built on {device} differs from the one on "
                         f"{synth.feature_dict.feature_vectors.device} (checksums {b} and {a}): "
                         "sample on a device of the same kind, or leave sampler_device unset")  # fmt: skip
    return other


class NoTrainingTime(ValueError):
    """A shared-stream run whose opts.max_seconds ended before its first training step."""


def _train_shared(opts: SyntheticEvalOptions, synth, mu: Tensor):
    """All variants and seeds trained side by side, in lockstep (every model at the same step,
    so their budgets match). Each seed has its own stream of batches (one chunked sampler per
    seed, drawn in turn from the global stream seeded with opts.seeds[0]); all variants of a
    seed step on the same batch. Runs opts.steps steps, or what fits in opts.max_seconds.
    With opts.one_stream every seed steps on the first seed's stream (seeds differ in their
    initialisation only); opts.seed_variants limits the later seeds to those variants.
    The untrained controls are scored before training (their matchings then run in the
    workers while the models train). Yields rows, Futures inside."""
    trainers, untrained, inits = [], [], []
    for seed in opts.seeds:
        for name in opts.variants:
            if opts.seed_variants is not None and seed != opts.seeds[0]:
                if name not in opts.seed_variants:
                    continue
            v = VARIANTS[name]  # a Gaussian-surrogate variant is refused by the options
            mean = mu if v.centre else None
            tr = VariantTrainer(v, synth, opts, seed, mean)
            init = untrained_model(v, synth, opts, seed)
            untrained.append(_untrained_metrics(init, tr.variant, synth, opts, mean))
            inits.append(init)
            trainers.append((seed, name, tr))
    other = None
    if opts.sampler_device is not None:
        other = background_sampler_model(opts, synth, opts.sampler_device)
    torch.manual_seed(opts.seeds[0])
    streams = opts.seeds[:1] if opts.one_stream else opts.seeds
    chunk = opts.sample_chunk or opts.batch_size
    if other is not None:  # the same stream, drawn by a thread on the other device
        samplers = {s: BackgroundSampler(other, chunk, opts.device) for s in streams}
    else:
        samplers = {s: ChunkedSampler(synth, chunk, prefetch=opts.fast_step) for s in streams}
    t0, done, steps = time.perf_counter(), 0, opts.steps
    cuda = opts.device.startswith("cuda")
    while done < steps:
        if opts.max_seconds is not None and time.perf_counter() - _RUN_T0 > opts.max_seconds:
            break
        xs = {s: samplers[s](opts.batch_size) for s in streams}  # (B, D) each
        for seed, _, tr in trainers:
            tr.step(xs[seed if seed in xs else streams[0]])
        done += 1
        if done == PROBE_STEPS and opts.max_seconds is not None:
            if cuda:
                torch.cuda.synchronize()
            t_probe = time.perf_counter()  # the rate is timed after start-up (graph captures)
        if done == 2 * PROBE_STEPS and opts.max_seconds is not None:
            # fix the run length from the measured rate, so that the whole schedule (the
            # pre-training switch included) fits in the time left
            if cuda:
                torch.cuda.synchronize()
            rate = PROBE_STEPS / (time.perf_counter() - t_probe)
            left = opts.max_seconds - (time.perf_counter() - _RUN_T0)
            steps = min(opts.steps, done + 1 + int(TIME_SAFETY * rate * max(left, 0.0)))
            for _, _, tr in trainers:
                tr.retarget(steps)
            print(f"{rate:.1f} steps/s, run fixed at {steps} steps", flush=True)
    if cuda:
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    for sampler in samplers.values():
        sampler.close()
    if done == 0:  # scoring the inits as "trained" rows would mislead
        raise NoTrainingTime(f"no training step fit in max_seconds = {opts.max_seconds:.1f} s "
                             "(the start-up used it): give the run more time")  # fmt: skip
    # the log says when training ended, so that a run cut in its scoring shows where time went
    print(f"trained {done} steps in {secs:.1f} s; scoring from "
          f"{time.perf_counter() - _RUN_T0:.1f} s after the run's start", flush=True)
    rows = []  # all scored (matchings submitted) before the first is waited on
    for (seed, name, tr), u, init in zip(trainers, untrained, inits, strict=True):
        t1 = time.perf_counter()
        trained = score_model(tr.model, tr.variant, synth, opts, tr.mean, seed)
        matched = _matched(tr.model, init, tr.variant, synth, opts, tr.mean, seed)
        rows.append({"variant": name, "seed": seed, "seconds": round(secs, 1),
                     "steps_done": done, "samples": done * opts.batch_size,
                     "eval_seconds": round(time.perf_counter() - t1, 1),
                     "trained": trained, "untrained": u, **matched,
                     "history": tr.history})  # fmt: skip
    yield from rows


def _row_line(row: dict) -> str:
    t, u, r = row["trained"], row["untrained"], row["trained"]["random_at_l0"]
    return (f"{row['variant']:>28s} s{row['seed']} mcc {t['mcc']:.3f} (untrained {u['mcc']:.3f}, "
            f"random {r['mcc']:.3f}) L0 {t['l0']:.1f} dead {t['dead_latents']} "
            f"f1 {t['f1']:.3f} covered {t['features_covered']} {row['seconds']}s"
            + _matched_line(row))  # fmt: skip


def _matched_line(row: dict) -> str:
    if "matched" not in row:
        return ""
    m = row["matched"]
    return (f" | at k={m['k']}: f1 {m['trained']['f1']:.3f} (untrained "
            f"{m['untrained']['f1']:.3f}, random {m['random']['f1']:.3f}) feature f1 "
            f"{m['trained'].get('feature_f1', math.nan):.3f} precision "
            f"{m['trained']['precision']:.3f} L0 {m['trained']['l0']:.1f}")  # fmt: skip


_AT_K_KEYS = ("l0", "dead_latents", "precision", "recall", "f1", "feature_f1", "features_f1_0.5")


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and spread (min, max) over seeds of each variant's headline numbers."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["variant"], []).append(r)
    out = []
    for name, rs in by.items():

        def stat(get, rs=rs):
            vals = [get(r) for r in rs]
            return {"mean": sum(vals) / len(vals), "min": min(vals), "max": max(vals)}

        out.append({
            "variant": name, "seeds": len(rs),
            "mcc": stat(lambda r: r["trained"]["mcc"]),
            "mcc_encoder_rows": stat(lambda r: r["trained"].get("mcc_encoder_rows", math.nan)),
            "mcc_untrained": stat(lambda r: r["untrained"]["mcc"]),
            "mcc_random_at_l0": stat(lambda r: r["trained"]["random_at_l0"]["mcc"]),
            "l0": stat(lambda r: r["trained"]["l0"]),
            "dead_latents": stat(lambda r: r["trained"]["dead_latents"]),
            "f1": stat(lambda r: r["trained"]["f1"]),
            "f1_random_at_l0": stat(lambda r: r["trained"]["random_at_l0"]["f1"]),
            "features_covered": stat(lambda r: r["trained"]["features_covered"]),
            "features_cos_0.9": stat(lambda r: r["trained"]["features_cos_0.9"]),
        })  # fmt: skip
        if all("feature_f1" in r["trained"] for r in rs):  # absent in older results
            out[-1].update({
                "feature_f1": stat(lambda r: r["trained"]["feature_f1"]),
                "feature_f1_untrained": stat(lambda r: r["untrained"]["feature_f1"]),
                "feature_f1_random_at_l0": stat(
                    lambda r: r["trained"]["random_at_l0"]["feature_f1"]),
            })  # fmt: skip
        if all("matched" in r for r in rs):  # SyntheticEvalOptions.readout_k
            out[-1].update({"k_readout": stat(lambda r: r["matched"]["k"]),
                            "precision": stat(lambda r: r["trained"]["precision"]),
                            "recall": stat(lambda r: r["trained"]["recall"])})  # fmt: skip
            for part, tag in (("trained", ""), ("untrained", "_untrained"), ("random", "_random")):
                for key in _AT_K_KEYS:
                    if all(key in r["matched"][part] for r in rs):  # older results: fewer
                        out[-1][f"{key}{tag}_at_k"] = stat(
                            lambda r, part=part, key=key: r["matched"][part][key]
                        )
    return out


def _fmt(s: dict, nd: int = 3) -> str:
    """mean [min, max] over seeds; the mean alone for one value; "-" where nothing was measured
    (NaN: e.g. "MCC enc. rows" of a model without a decoder)."""
    if math.isnan(s["mean"]):
        return "-"
    if s["min"] == s["max"]:
        return f"{s['mean']:.{nd}f}"
    return f"{s['mean']:.{nd}f} [{s['min']:.{nd}f}, {s['max']:.{nd}f}]"


TABLE_COLUMNS = (  # (header, summarise key, decimals) of `markdown_table`
    ("MCC", "mcc", 3), ("MCC enc. rows", "mcc_encoder_rows", 3),
    ("MCC untrained", "mcc_untrained", 3), ("MCC random@L0", "mcc_random_at_l0", 3),
    ("L0", "l0", 1), ("dead", "dead_latents", 0), ("F1", "f1", 3),
    ("F1 random@L0", "f1_random_at_l0", 3), ("feature F1", "feature_f1", 3),
    ("feature F1 untrained", "feature_f1_untrained", 3),
    ("feature F1 random@L0", "feature_f1_random_at_l0", 3),
    ("features covered", "features_covered", 0),
    ("features cos>=0.9", "features_cos_0.9", 0),
)  # fmt: skip


def summary_table(summaries: list[dict], columns) -> str:
    """`summarise` entries as a markdown table: variant, seeds, then one cell per (header,
    key, decimals) of `columns` (`_fmt`: mean [min, max] over seeds). A column whose key no
    entry has (a metric added after the results were written, e.g. feature_f1) is left out;
    an entry without a key another has shows "-"."""
    columns = [c for c in columns if any(c[1] in s for s in summaries)]
    nan = {"mean": math.nan}
    head = ("| variant | seeds | " + " | ".join(c[0] for c in columns) + " |\n"
            + "|---|---|" + "---|" * len(columns) + "\n")  # fmt: skip
    lines = ["| " + " | ".join([s["variant"], str(s["seeds"])]
                               + [_fmt(s.get(key, nan), nd) for _, key, nd in columns]) + " |"
             for s in summaries]  # fmt: skip
    return head + "\n".join(lines) + "\n"


def markdown_table(result: dict) -> str:
    """The summary as a markdown table: mean [min, max] over seeds, controls beside."""
    return summary_table(summarise(result["rows"]), TABLE_COLUMNS)


MATCHED_COLUMNS = (  # (header, summarise key, decimals) of `matched_table`
    ("k", "k_readout", 0), ("L0", "l0", 1), ("precision", "precision", 3),
    ("recall", "recall", 3), ("F1", "f1", 3), ("L0@k", "l0_at_k", 1),
    ("dead@k", "dead_latents_at_k", 0), ("precision@k", "precision_at_k", 3),
    ("recall@k", "recall_at_k", 3), ("F1@k", "f1_at_k", 3),
    ("F1 untrained@k", "f1_untrained_at_k", 3), ("F1 random@k", "f1_random_at_k", 3),
    ("precision untrained@k", "precision_untrained_at_k", 3),
    ("precision random@k", "precision_random_at_k", 3),
)  # fmt: skip
FEATURE_F1_AT_K_COLUMNS = (  # `matched_table`'s per-feature F1 columns (eval.feature_f1)
    ("feature F1", "feature_f1", 3), ("feature F1@k", "feature_f1_at_k", 3),
    ("feature F1 untrained@k", "feature_f1_untrained_at_k", 3),
    ("feature F1 random@k", "feature_f1_random_at_k", 3),
)  # fmt: skip


def matched_table(result: dict) -> str:
    """The read-out at a matched L0 (rows with "matched", `SyntheticEvalOptions.readout_k`) as
    a markdown table: native L0 / precision / recall / F1 beside the same at k (the codes read
    out through TopK at k) and the controls read out at k; mean [min, max] over seeds. "" when
    no row has it. MCC is not repeated: the read-out does not change it."""
    rows = [s for s in summarise(result["rows"]) if "f1_at_k" in s]
    cols = (*MATCHED_COLUMNS, *FEATURE_F1_AT_K_COLUMNS)  # the latter only where measured
    return summary_table(rows, cols) if rows else ""


_REPORT_FIELDS = {  # markdown_table's columns -> where each sits in a row of results.json
    "MCC": ("trained", "mcc"), "MCC enc. rows": ("trained", "mcc_encoder_rows"),
    "MCC untrained": ("untrained", "mcc"), "MCC random@L0": ("random_at_l0", "mcc"),
    "L0": ("trained", "l0"), "dead": ("trained", "dead_latents"), "F1": ("trained", "f1"),
    "F1 random@L0": ("random_at_l0", "f1"), "features covered": ("trained", "features_covered"),
    "features cos>=0.9": ("trained", "features_cos_0.9"),
}  # fmt: skip


def rows_from_report(text: str, source: str = "report.md") -> list[dict]:
    """The rows of a one-seed report.md (`write_report`), for when its results.json is lost.

    Each row has "variant", "seed", "steps" (the run's planned length from the header),
    "steps_done" only where the report has the "Steps done: N" line (`write_report` writes it
    when a time limit cut training short; older reports do not say), "reconstructed_from"
    (source) and only the table's numbers, rounded as printed (3 decimals; L0 1): "trained"
    {mcc, mcc_encoder_rows (absent where the table shows "-"), l0, dead_latents, f1,
    features_covered, features_cos_0.9, random_at_l0 {mcc, f1}}, "untrained" {mcc}. Enough
    for `summarise`; nothing else (no history, precision, recall, uniqueness, timings).
    Raises ValueError for a report over several seeds (its cells are means, not one run's).
    """
    head = re.search(r"^(\d+) steps x batch \d+, .*?seeds \((\d+),\),", text, re.M)
    done = re.search(r"^Steps done: (\d+) \(a time limit", text, re.M)  # newer reports only
    if head is None:
        raise ValueError(f"{source}: no one-seed header ('N steps x batch B, ..., seeds (S,),'):"
                         " only a one-seed report can be read back into rows")  # fmt: skip
    lines = []  # the first table only (a matched-L0 table may follow it)
    for ln in text.splitlines():
        if ln.startswith("|"):
            lines.append(ln)
        elif lines:
            break
    cols = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = []
    for ln in lines[2:]:
        cells = dict(zip(cols, (c.strip() for c in ln.strip("|").split("|")), strict=True))
        parts: dict[str, dict] = {"trained": {}, "untrained": {}, "random_at_l0": {}}
        for col, (part, key) in _REPORT_FIELDS.items():
            if cells[col] != "-":
                counts = ("dead_latents", "features_covered", "features_cos_0.9")
                parts[part][key] = int(cells[col]) if key in counts else float(cells[col])
        parts["trained"]["random_at_l0"] = parts.pop("random_at_l0")
        row = {"variant": cells["variant"], "seed": int(head[2]), "steps": int(head[1]),
               "reconstructed_from": source, **parts}
        if done is not None:  # the report says a time limit cut training short
            row["steps_done"] = int(done[1])
        rows.append(row)
    return rows


def _scale_note(recipe: str) -> str:
    """A line for the CPU-sized recipes (fewer features than the study's 16k recipe): their
    verdict need not hold at the 16k recipe."""
    study = RECIPES["synthsaebench-16k-v2"]["num_features"]
    if RECIPES.get(recipe, {}).get("num_features", study) < study:
        return (f"Recipe `{recipe}` is a CPU-sized check of the harness, not the study's answer: "
                "at the SynthSAEBench-16k recipe the decoder-free encoder is far below the SAEs "
                "(docs/eval/README.md).\n\n")  # fmt: skip
    return ""


REPORT_FILES = ("results.json", "report.md", "mcc_vs_l0.png")
"""What `run` writes in opts.out_dir (`write_report`); it refuses a folder holding one."""


def write_report(result: dict, out_dir: Path, plot: bool = True) -> None:
    """results.json, report.md and mcc_vs_l0.png (matplotlib, when installed) in out_dir."""
    from implicit_em.atomic import atomic_save, atomic_write_bytes, atomic_write_json
    from implicit_em.eval.verdict import synthetic_verdict

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "results.json", result)
    o = result["options"]
    done = sorted({r["steps_done"] for r in result["rows"] if "steps_done" in r})
    short = (f"Steps done: {', '.join(map(str, done))} (a time limit stopped training before "
             f"the planned {o['steps']}).\n\n" if done and done[0] < o["steps"] else "")
    md = (f"# Ground-truth recovery: recipe {o['recipe']}, true L0 {result['true_l0']:.1f}\n\n"
          f"{o['steps']} steps x batch {o['batch_size']}, lr {o['lr']}, seeds {o['seeds']}, "
          f"{o['eval_samples']} evaluation samples. Mean [min, max] over seeds. "
          "\"MCC enc. rows\" scores a model's encoder rows where it also has a decoder (whose "
          "columns give \"MCC\"); \"-\" where it has none.\n\n"
          f"{_scale_note(o['recipe'])}{short}"
          + markdown_table(result) + "\n"
          + "\n".join(synthetic_verdict(summarise(result["rows"]))) + "\n")  # fmt: skip
    matched = matched_table(result)
    if matched:
        k = sorted({r["matched"]["k"] for r in result["rows"] if "matched" in r})
        md += (f"\n## Read out at k = {', '.join(map(str, k))} (matched L0)\n\n"
               "Each model's codes read out through TopK at k (`models.TopKReadout`), beside "
               "its untrained init and random unit directions read out at the same k; native "
               "L0 / precision / recall / F1 as trained. MCC does not change with the read-out "
               "(directions only).\n\n" + matched)  # fmt: skip
    atomic_write_bytes(out_dir / "report.md", md.encode())
    if not (plot and o.get("plot", True)):
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, s in enumerate(summarise(result["rows"])):
        color = plt.cm.tab20(i % 20)
        ax.scatter(s["l0"]["mean"], s["mcc"]["mean"], label=s["variant"], color=color,
                   marker="os^D"[i // 20 % 4], zorder=3)  # fmt: skip
        # its controls at its L0, in its colour: random directions (x), untrained init (+)
        ax.scatter(s["l0"]["mean"], s["mcc_random_at_l0"]["mean"], marker="x", color=color, s=20)
        ax.scatter(s["l0"]["mean"], s["mcc_untrained"]["mean"], marker="+", color=color, s=30)
    for marker, what in (("x", "random directions at its L0"), ("+", "its untrained init")):
        ax.scatter([], [], marker=marker, color="grey", label=f"{what} (in its colour)")
    ax.axvline(result["true_l0"], ls="--", color="grey", lw=1,
               label=f"true L0 {result['true_l0']:.1f}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("L0 (latents firing per sample)")
    ax.set_ylabel("MCC (sae-lens)")
    ax.set_title(f"recipe {o['recipe']}: each model beside its controls", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    atomic_save(lambda p: fig.savefig(p, dpi=120, format="png"), out_dir / "mcc_vs_l0.png")
    plt.close(fig)


__all__ = [
    "BackgroundSampler",
    "RECIPES",
    "VARIANTS",
    "SyntheticEvalOptions",
    "Variant",
    "build_synthetic_model",
    "code_metrics",
    "evaluate_latents",
    "matched_l0_metrics",
    "matched_readout",
    "recipe_config",
    "rows_from_report",
    "run",
    "summarise",
    "train_variant",
]
