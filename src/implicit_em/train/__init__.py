"""The training wing: the one-model loop, the stacked trainer for N models, the data-parallel
trainer for R ranks, the CPU worker pool, and the stacked optimizer. Every trainer trains a
model family through the family interface (`implicit_em.families`)."""
