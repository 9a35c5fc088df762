"""implicit-em: decoder-free sparse autoencoders derived from implicit EM.

Gradient descent on L = -log sum_j exp(-a_j) is EM done implicitly (dL/da_j = softmax(-a)_j);
InfoMax terms (a variance barrier and a decorrelation penalty) supply the volume control a
Gaussian mixture's log-determinant would. The model is one linear layer + ReLU, no decoder.

The public names below are loaded on first use (PEP 562), so that `import implicit_em` and the
command line's `--help` do not pay for torch and scikit-learn until something needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from implicit_em._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("ConfigError", "DataConfig", "LossConfig", "ModelConfig", "RunConfig",
                     "TrainConfig", "load_config"), "implicit_em.config"),
    "batch_slices": "implicit_em.data.batches",
    "DecoderFreeSAE": "implicit_em.estimator",
    **dict.fromkeys(("combined_loss", "correlation_loss", "correlation_probes", "loss_weights",
                     "lse_loss", "sae_loss", "sketched_correlation_loss", "topk_loss",
                     "variance_loss", "weight_redundancy_loss"), "implicit_em.losses"),
    **dict.fromkeys(("activation_correlation_matrix", "compute_all_metrics", "dead_units",
                     "effective_rank", "feature_similarity_matrix", "linear_probe_accuracy",
                     "normalized_reconstruction_mse", "reconstruction_mse", "redundancy_score",
                     "responsibility_entropy", "sparsity_l0", "usage_distribution",
                     "weight_redundancy"), "implicit_em.metrics"),
    **dict.fromkeys(("Encoder", "StandardSAE", "TopKSAE"), "implicit_em.models"),
    "torch_probe_accuracy": "implicit_em.probe",
    **dict.fromkeys(("build_model", "load_run"), "implicit_em.runs"),
    **dict.fromkeys(("StackedTrainer", "train_many"), "implicit_em.train.stacked"),
    "verify_lse_identity": "implicit_em.theorem",
    **dict.fromkeys(("evaluate", "set_seed", "train", "train_epoch"), "implicit_em.train.loop"),
}  # fmt: skip

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)


if TYPE_CHECKING:  # static analysers see the names
    from implicit_em.config import (  # noqa: F401
        ConfigError,
        DataConfig,
        LossConfig,
        ModelConfig,
        RunConfig,
        TrainConfig,
        load_config,
    )
    from implicit_em.estimator import DecoderFreeSAE  # noqa: F401
    from implicit_em.models import Encoder, StandardSAE, TopKSAE  # noqa: F401
    from implicit_em.runs import build_model, load_run  # noqa: F401
    from implicit_em.train.loop import evaluate, set_seed, train, train_epoch  # noqa: F401
    from implicit_em.train.stacked import StackedTrainer, train_many  # noqa: F401
