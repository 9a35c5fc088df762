"""Data: real image sets, embedded digits, synthetic mixtures and device-resident batches."""

from implicit_em.data.batches import TensorBatches, epoch_permutation

__all__ = ["TensorBatches", "epoch_permutation"]
