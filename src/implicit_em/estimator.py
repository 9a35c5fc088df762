"""`DecoderFreeSAE`: the decoder-free encoder behind the scikit-learn estimator interface.

Legend: n = n_samples (B within a batch), D = n_features, K = n_components. X (n, D),
a (n, K) energies (lower = better match), r (n, K) responsibilities, W (K, D), b (K,).

The model is the paper's Eq. (5), a = phi(W x + b), trained on L = L_LSE + l_var L_var +
l_tc L_tc + l_wr L_wr (Eqs. 3, 7, 8) with the library's `combined_loss`. Read as a mixture,
r = softmax(-a) are the responsibilities (Eq. 4) and logsumexp(-a) = -L_LSE(x) is the
per-sample score: high when some component explains x, low when none does.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from implicit_em.config import LossConfig
from implicit_em.data.batches import batch_slices
from implicit_em.losses import combined_loss
from implicit_em.models import ACTIVATIONS, Encoder, n_parameters

OPTIMIZERS = ("adam", "sgd")
# Separates the per-epoch shuffling streams of different seeds.
_EPOCH_STRIDE = 1_000_003

# Checks of `sklearn.utils.estimator_checks` that cannot apply, with the reason. Pass it as
# `expected_failed_checks` to `check_estimator` / `parametrize_with_checks` (the mechanism
# of scikit-learn >= 1.6; the `_xfail_checks` tag it replaces no longer exists). Empty: every
# check applies and passes.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


# Rows per batch when `score` evaluates the reference objective (the default batch_size), a
# constant so that scores stay comparable when batch_size itself is searched.
_SCORE_BATCH = 128


def _to_numpy(X):
    """Torch tensors (any device, with or without grad) become numpy; anything else passes."""
    if isinstance(X, torch.Tensor):
        return X.detach().cpu().numpy()
    return X


def _check_int(value, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_float(value, name: str, positive: bool) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


class DecoderFreeSAE(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Decoder-free sparse autoencoder: K linear components whose energies form a mixture.

    Fits a = phi(W x + b) by minimising the LSE loss plus the variance and decorrelation
    barriers (paper Eqs. 3, 5, 7); there is no decoder. Each row of `transform` holds K
    energies, lower = better match; `predict_proba` reads them as responsibilities
    softmax(-a) and `score_samples` as logsumexp(-a), which is high when some component
    explains the sample and low when none does (an anomaly score).

    Parameters
    ----------
    n_components : int, default=64
        K, the number of components (latents).
    activation : {"relu", "softplus", "identity", "abs"}, default="relu"
        phi, applied to W x + b.
    lambda_var : float, default=1.0
        Weight of the variance barrier -sum_j log Var(a_j) (Eq. 7).
    lambda_tc : float, default=1.0
        Weight of the decorrelation penalty ||Corr(a) - I||_F^2 off the diagonal (Eq. 7).
    lambda_wr : float, default=0.0
        Weight of the weight-redundancy penalty (Eq. 8); 0 in the paper.
    reference_k : int or None, default=64
        K at which lambda_var and lambda_tc apply as given; at other K they are rescaled by
        `implicit_em.losses.loss_weights`, exactly as `LossConfig.reference_k` does for the
        CLI's `train`, so the estimator minimizes the same objective. None: no rescaling.
    optimizer : {"adam", "sgd"}, default="adam"
        Adam, or plain SGD without momentum.
    lr : float, default=1e-3
        Learning rate.
    batch_size : int, default=128
        Samples per step, at least 2: the barriers are batch statistics. A final batch of
        one sample is merged into the one before it.
    max_epochs : int, default=100
        Passes over the data in `fit`.
    device : str, default="auto"
        Training device: "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".
        Inference always runs on the CPU in float64, so results do not depend on it.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights and the order of the samples in every epoch. The same
        integer gives the same fitted model on the same machine.
    verbose : bool, default=False
        Print the loss after every epoch.

    Attributes
    ----------
    encoder_ : implicit_em.models.Encoder
        The trained encoder; `encoder_.W` is (K, D), `encoder_.b` is (K,).
    optimizer_ : torch.optim.Optimizer
        Its optimizer, kept so that `partial_fit` continues where training stopped.
    n_features_in_ : int
        D, the number of features seen in `fit`.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen in `fit`, when X had string column names.
    history_ : list of dict
        One entry per epoch: epoch, loss (mean total per batch) and the mean lse, var, tc, wr.
    n_epochs_ : int
        Epochs trained so far (`partial_fit` adds one per call).
    seed_ : int
        The integer seed drawn from `random_state`; epoch e's order is a function of
        (seed_, e).

    Notes
    -----
    `sklearn.utils.estimator_checks.check_estimator` passes with no exceptions
    (`EXPECTED_FAILED_CHECKS` is empty). Two properties make that hold: training is seeded
    through `random_state` only (never the global torch generator), and inference runs in
    float64 on the CPU so that transforming a subset gives the same rows as transforming
    the whole array. scikit-learn itself skips `check_array_api_input` unless the
    environment sets SCIPY_ARRAY_API=1; the estimator does not claim array-API support
    (torch tensors are accepted by converting them to numpy). The estimator is an
    unsupervised transformer: `y` is accepted and ignored everywhere. Sparse input is
    rejected (the model is dense).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X = load_digits().data / 16.0
    >>> sae = DecoderFreeSAE(n_components=16, max_epochs=2, random_state=0).fit(X)
    >>> sae.transform(X).shape
    (1797, 16)
    """

    def __init__(
        self,
        n_components: int = 64,
        activation: str = "relu",
        lambda_var: float = 1.0,
        lambda_tc: float = 1.0,
        lambda_wr: float = 0.0,
        reference_k: int | None = 64,
        optimizer: str = "adam",
        lr: float = 1e-3,
        batch_size: int = 128,
        max_epochs: int = 100,
        device: str = "auto",
        random_state=None,
        verbose: bool = False,
    ) -> None:
        self.n_components = n_components
        self.activation = activation
        self.lambda_var = lambda_var
        self.lambda_tc = lambda_tc
        self.lambda_wr = lambda_wr
        self.reference_k = reference_k
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ----------------------------------------------------------------- validation

    def _check_params(self) -> None:
        """Raise ValueError naming the first invalid hyper-parameter."""
        _check_int(self.n_components, "n_components", 1)
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}"
            )
        for name in ("lambda_var", "lambda_tc", "lambda_wr"):
            _check_float(getattr(self, name), name, positive=False)
        if self.reference_k is not None:
            _check_int(self.reference_k, "reference_k", 2)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        _check_float(self.lr, "lr", positive=True)
        _check_int(self.batch_size, "batch_size", 2)
        _check_int(self.max_epochs, "max_epochs", 1)

    def _resolve_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(
                f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}"
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} but CUDA is not available: use 'cpu'")
        return device

    def _validate(self, X, reset: bool, fitting: bool) -> np.ndarray:
        """X as a finite 2-D float array; fitting requires >= 2 samples (batch statistics)."""
        return validate_data(
            self,
            _to_numpy(X),
            reset=reset,
            dtype=(np.float64, np.float32),
            ensure_min_samples=2 if fitting else 1,
        )

    # ------------------------------------------------------------------- training

    def _init_model(self, n_features: int) -> None:
        """Fresh encoder and optimizer; weights drawn from a generator seeded by seed_."""
        self.seed_ = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        device = self._resolve_device()
        # fork_rng: the default nn.Linear init is used, seeded, without touching global state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed_)
            encoder = Encoder(n_features, self.n_components, self.activation)
        self.encoder_ = encoder.to(device)
        params = self.encoder_.parameters()
        if self.optimizer == "adam":
            self.optimizer_ = torch.optim.Adam(params, lr=self.lr)
        else:
            self.optimizer_ = torch.optim.SGD(params, lr=self.lr)
        self._n_features_out = self.n_components
        self.history_ = []
        self.n_epochs_ = 0

    def _batches(self, n: int, device: torch.device) -> list[torch.Tensor]:
        """This epoch's index batches (`data.batches.batch_slices`: a trailing batch of one
        joins the one before it)."""
        # Drawn on the CPU from a generator of its own: a pure function of (seed_, epoch).
        gen = torch.Generator().manual_seed(self.seed_ * _EPOCH_STRIDE + self.n_epochs_)
        order = torch.randperm(n, generator=gen).to(device)  # (n,)
        return [order[lo:hi] for lo, hi in batch_slices(n, self.batch_size)]

    def _epoch(self, x: torch.Tensor) -> dict:
        """One pass over x (n, D) on the training device; returns the epoch's mean losses."""
        weights = LossConfig(
            lambda_var=float(self.lambda_var), lambda_tc=float(self.lambda_tc),
            lambda_wr=float(self.lambda_wr), reference_k=self.reference_k,
        )  # fmt: skip
        encoder, opt = self.encoder_, self.optimizer_
        encoder.train()
        sums = torch.zeros(5, dtype=torch.float64, device=x.device)  # total, lse, var, tc, wr
        batches = self._batches(len(x), x.device)
        for idx in batches:
            a, _ = encoder(x[idx])  # (B, K)
            terms = combined_loss(a, encoder.W, weights, validate=False)
            opt.zero_grad(set_to_none=True)
            terms["total"].backward()
            opt.step()
            sums += torch.stack([terms[k].detach() for k in ("total", "lse", "var", "tc", "wr")])
        means = (sums / len(batches)).tolist()
        if not np.isfinite(means[0]):
            raise FloatingPointError(
                f"the loss became {means[0]} in epoch {self.n_epochs_}: lower lr "
                f"(now {self.lr}) or scale the features"
            )
        record = {"epoch": self.n_epochs_, "loss": means[0]}
        record.update(zip(("lse", "var", "tc", "wr"), means[1:], strict=True))
        self.history_.append(record)
        self.n_epochs_ += 1
        if self.verbose:
            print(f"[DecoderFreeSAE] epoch {record['epoch']}: loss {record['loss']:.4f}")
        return record

    def _train_tensor(self, X: np.ndarray) -> torch.Tensor:
        device = next(self.encoder_.parameters()).device
        return torch.tensor(X, dtype=torch.float32, device=device)  # (n, D), a copy

    def fit(self, X, y=None):
        """Train a fresh model for `max_epochs` epochs.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Training data, n_samples >= 2, finite.
        y : None
            Ignored.

        Returns
        -------
        self : DecoderFreeSAE
        """
        self._check_params()
        X = self._validate(X, reset=True, fitting=True)
        self._init_model(X.shape[1])
        x = self._train_tensor(X)
        for _ in range(self.max_epochs):
            self._epoch(x)
        return self

    def partial_fit(self, X, y=None):
        """One pass over X, continuing training (starting it on the first call).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            n_samples >= 2.
        y : None
            Ignored.

        Returns
        -------
        self : DecoderFreeSAE
        """
        first = not hasattr(self, "encoder_")
        if first:
            self._check_params()
        X = self._validate(X, reset=first, fitting=True)
        if first:
            self._init_model(X.shape[1])
        self._epoch(self._train_tensor(X))
        return self

    # ------------------------------------------------------------------ inference

    def _energies(self, X) -> torch.Tensor:
        """a (n, K) in float64 on the CPU: the same rows whatever the batch."""
        check_is_fitted(self)
        X = self._validate(X, reset=False, fitting=False)
        x = torch.tensor(X, dtype=torch.float64)  # (n, D)
        W = self.encoder_.W.detach().to("cpu", torch.float64)  # (K, D)
        b = self.encoder_.b.detach().to("cpu", torch.float64)  # (K,)
        z = x @ W.t() + b  # (n, D) @ (D, K) -> (n, K)
        return ACTIVATIONS[self.encoder_.activation](z)

    def transform(self, X) -> np.ndarray:
        """Energies a = phi(W x + b); lower = better match.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        a : ndarray of shape (n_samples, n_components), float64
        """
        return self._energies(X).numpy()

    def predict(self, X) -> np.ndarray:
        """The component with the highest responsibility (the lowest energy).

        Returns
        -------
        labels : ndarray of shape (n_samples,), int64
        """
        return self._energies(X).argmin(dim=1).numpy()

    def predict_proba(self, X) -> np.ndarray:
        """Responsibilities r = softmax(-a) (paper Eq. 4); each row sums to one.

        Returns
        -------
        r : ndarray of shape (n_samples, n_components)
        """
        return torch.softmax(-self._energies(X), dim=1).numpy()

    def score_samples(self, X) -> np.ndarray:
        """logsumexp_j(-a_j) = -L_LSE(x): higher = better explained by some component.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        return torch.logsumexp(-self._energies(X), dim=1).numpy()

    def score(self, X, y=None) -> float:
        """Minus the reference objective per sample: higher is better, as `GridSearchCV` expects.

        The objective of training, with fixed reference weights instead of this estimator's
        (lambda_lse = lambda_var = lambda_tc = 1, lambda_wr = 0, reference_k = 64, eps = 1e-6:
        `LossConfig()`), evaluated on X in consecutive batches of 128 rows (a one-row tail
        joins the batch before it) and summed over batches, divided by n_samples:
            score = -(1 / n) sum_batches [sum_i L_LSE(x_i) + w_var L_var + w_tc L_tc].
        Units: nats per sample (L_LSE is a negative log-likelihood, L_var a sum of negative
        log-variances). The weights do not move with the hyper-parameters, so models fitted
        with different lambdas (or batch sizes) are scored on one scale; and the variance
        barrier keeps collapse from scoring well: a dead unit costs -log(1e-6) = 13.8 per
        batch, where the LSE term alone (`score_samples`) is largest, log K, exactly when every
        unit is dead.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            n_samples >= 2 (the barriers are batch statistics).
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        a = self._energies(X)  # (n, K), float64
        if len(a) < 2:
            raise ValueError(f"score needs at least 2 samples, got {len(a)}: pass more rows")
        W = self.encoder_.W.detach().to("cpu", torch.float64)  # (K, D)
        total = sum(
            float(combined_loss(a[lo:hi], W, LossConfig(), validate=False)["total"])
            for lo, hi in batch_slices(len(a), _SCORE_BATCH)
        )
        return -total / len(a)

    def parameter_count(self) -> int:
        """Trainable parameters of the fitted encoder: K (D + 1)."""
        check_is_fitted(self)
        return n_parameters(self.encoder_)
