"""implicit-em: decoder-free sparse autoencoders derived from implicit EM.

Gradient descent on L = -log sum_j exp(-a_j) is EM done implicitly (dL/da_j = softmax(-a)_j);
InfoMax terms (a variance barrier and a decorrelation penalty) supply the volume control a
Gaussian mixture's log-determinant would. The model is one linear layer + ReLU, no decoder.
"""

from implicit_em.config import (
    ConfigError,
    DataConfig,
    LossConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    load_config,
)
from implicit_em.data.batches import batch_slices
from implicit_em.estimator import DecoderFreeSAE
from implicit_em.losses import (
    combined_loss,
    correlation_loss,
    correlation_probes,
    loss_weights,
    lse_loss,
    sae_loss,
    sketched_correlation_loss,
    topk_loss,
    variance_loss,
    weight_redundancy_loss,
)
from implicit_em.metrics import (
    activation_correlation_matrix,
    compute_all_metrics,
    dead_units,
    effective_rank,
    feature_similarity_matrix,
    linear_probe_accuracy,
    normalized_reconstruction_mse,
    reconstruction_mse,
    redundancy_score,
    responsibility_entropy,
    sparsity_l0,
    usage_distribution,
    weight_redundancy,
)
from implicit_em.models import Encoder, StandardSAE, TopKSAE
from implicit_em.probe import torch_probe_accuracy
from implicit_em.runs import build_model, load_run
from implicit_em.stacked import StackedTrainer, train_many
from implicit_em.theorem import verify_lse_identity
from implicit_em.training import evaluate, set_seed, train, train_epoch

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "DataConfig", "LossConfig", "ModelConfig", "RunConfig", "TrainConfig",
    "load_config", "DecoderFreeSAE", "combined_loss", "correlation_loss", "correlation_probes", "lse_loss",
    "sae_loss", "sketched_correlation_loss",
    "topk_loss", "variance_loss", "weight_redundancy_loss", "dead_units", "effective_rank",
    "linear_probe_accuracy", "reconstruction_mse", "redundancy_score", "responsibility_entropy",
    "sparsity_l0", "usage_distribution", "weight_redundancy", "Encoder", "StandardSAE", "TopKSAE",
    "torch_probe_accuracy", "build_model", "load_run", "StackedTrainer", "train_many",
    "verify_lse_identity", "evaluate", "set_seed", "train", "train_epoch",
    "activation_correlation_matrix", "compute_all_metrics", "feature_similarity_matrix",
    "normalized_reconstruction_mse", "loss_weights", "batch_slices",
]  # fmt: skip
