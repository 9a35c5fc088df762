"""DecoderFreeSAE: scikit-learn's estimator checks, pickling, pipelines, input errors, numbers."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from implicit_em.config import LossConfig
from implicit_em.estimator import EXPECTED_FAILED_CHECKS, DecoderFreeSAE
from implicit_em.losses import combined_loss
from implicit_em.models import Encoder


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """300 of sklearn's 8x8 digits, scaled to [0, 1]: X (300, 64), y (300,)."""
    data = load_digits()
    return data.data[:300] / 16.0, data.target[:300]


def small(**kw) -> DecoderFreeSAE:
    params = dict(n_components=8, max_epochs=2, batch_size=32, random_state=0, device="cpu")
    params.update(kw)
    return DecoderFreeSAE(**params)


@parametrize_with_checks(
    [DecoderFreeSAE(n_components=8, max_epochs=2, device="cpu")],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_estimator_checks(estimator, check) -> None:
    check(estimator)


def test_no_check_is_expected_to_fail() -> None:
    assert EXPECTED_FAILED_CHECKS == {}


def test_init_stores_arguments_only() -> None:
    est = DecoderFreeSAE(n_components=-3, activation="nope", lr=-1.0)
    assert est.get_params()["n_components"] == -3
    assert not [k for k in vars(est) if k.endswith("_")]


def test_transform_matches_the_encoder_formula(digits) -> None:
    X, _ = digits
    est = small().fit(X)
    W = est.encoder_.W.detach().double().numpy()  # (K, D)
    b = est.encoder_.b.detach().double().numpy()  # (K,)
    a = np.maximum(X @ W.T + b, 0.0)  # (n, K)
    np.testing.assert_allclose(est.transform(X), a, rtol=1e-12, atol=1e-12)
    assert est.transform(X).dtype == np.float64
    # score_samples = logsumexp(-a), predict = argmin a.
    m = (-a).max(axis=1)
    lse = m + np.log(np.exp(-a - m[:, None]).sum(axis=1))
    np.testing.assert_allclose(est.score_samples(X), lse, rtol=1e-12)
    np.testing.assert_array_equal(est.predict(X), a.argmin(axis=1))


def reference_objective(a: np.ndarray) -> float:
    """LSE + (64 / K) var + (64 * 63 / (K (K - 1))) tc of codes a (B, K), in numpy."""
    k = a.shape[1]
    m = (-a).max(axis=1)
    lse = -(m + np.log(np.exp(-a - m[:, None]).sum(axis=1))).sum()
    var = -np.log(a.var(axis=0, ddof=1) + 1e-6).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.nan_to_num(np.corrcoef(a.T), nan=0.0)  # constant columns: 0
    np.fill_diagonal(corr, 0.0)
    return lse + 64 / k * var + 64 * 63 / (k * (k - 1)) * (corr**2).sum()


def test_score_is_minus_the_reference_objective_per_sample(digits) -> None:
    X, _ = digits  # 300 rows: batches of 128, 128 and 44
    est = small(lambda_var=0.3, lambda_tc=5.0).fit(X)  # the score ignores the lambdas
    a = est.transform(X)
    expected = -sum(reference_objective(a[i : i + 128]) for i in (0, 128, 256)) / 300
    assert est.score(X) == pytest.approx(expected, rel=1e-9)
    # A tail of one row joins the batch before it: 257 rows score as batches 128 + 129.
    X2 = np.vstack([X, X])[:257]
    a2 = est.transform(X2)
    expected2 = -(reference_objective(a2[:128]) + reference_objective(a2[128:])) / 257
    assert est.score(X2) == pytest.approx(expected2, rel=1e-9)


def test_grid_search_over_lambda_var_picks_the_live_model() -> None:
    """Issue 13, case 6: the score used to be the mean LSE term, largest (log K) exactly when
    every unit is dead, so this search picked lambda_var = 0 with 32 of 32 units dead."""
    X = load_digits().data / 16
    search = GridSearchCV(
        DecoderFreeSAE(n_components=32, max_epochs=10, random_state=0, device="cpu"),
        {"lambda_var": [0.0, 1.0]},
        cv=3,
    ).fit(X)
    assert search.best_params_ == {"lambda_var": 1.0}
    scores = search.cv_results_["mean_test_score"]
    assert scores[1] > scores[0] + 1.0  # nats per sample
    a = search.best_estimator_.transform(X)
    assert (a.var(axis=0) < 0.01).sum() <= 8  # dead units of 32 (the collapsed model: 32)


def test_predict_proba_rows_sum_to_one_and_agree_with_predict(digits) -> None:
    X, _ = digits
    est = small().fit(X)
    r = est.predict_proba(X)
    assert r.shape == (300, 8)
    np.testing.assert_allclose(r.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert (r >= 0).all()
    np.testing.assert_array_equal(r.argmax(axis=1), est.predict(X))
    # Responsibilities are softmax(-a), so log r = -a - logsumexp(-a).
    np.testing.assert_allclose(
        np.log(r), -est.transform(X) - est.score_samples(X)[:, None], atol=1e-10
    )


def test_first_epoch_loss_matches_a_hand_rolled_loop(digits) -> None:
    """The estimator's loop is plain Adam on combined_loss over seeded shuffled batches."""
    X, _ = digits
    est = small(max_epochs=1, batch_size=300).fit(X)  # one full batch: order is irrelevant
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(est.seed_)
        enc = Encoder(64, 8)
    x = torch.tensor(X, dtype=torch.float32)
    a, _ = enc(x)
    loss = combined_loss(a, enc.W, LossConfig())["total"]
    # rel 1e-5: float32 sums over the rows in another order (var and tc weigh 8 and 72 at K = 8)
    assert est.history_[0]["loss"] == pytest.approx(loss.item(), rel=1e-5)
    opt = torch.optim.Adam(enc.parameters(), lr=1e-3)
    opt.zero_grad()
    loss.backward()
    opt.step()
    torch.testing.assert_close(enc.W.detach(), est.encoder_.W.detach())


def test_same_random_state_same_model_and_different_state_differs(digits) -> None:
    X, _ = digits
    a1 = small(random_state=3).fit(X).transform(X)
    a2 = small(random_state=3).fit(X).transform(X)
    a3 = small(random_state=4).fit(X).transform(X)
    np.testing.assert_array_equal(a1, a2)
    assert not np.allclose(a1, a3)


def test_fit_leaves_the_global_torch_generator_alone(digits) -> None:
    X, _ = digits
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    small().fit(X)
    torch.testing.assert_close(torch.rand(3), expected)


def test_accepts_numpy_lists_and_torch_tensors(digits) -> None:
    X, _ = digits
    ref = small().fit(X).transform(X)
    t = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    np.testing.assert_array_equal(small().fit(t).transform(t), ref)
    np.testing.assert_array_equal(small().fit(X.tolist()).transform(X.tolist()), ref)
    # float32 input trains on the same float32 values, so the model is the same.
    est32 = small().fit(X.astype(np.float32))
    np.testing.assert_allclose(est32.transform(X), ref, rtol=1e-6)


def test_partial_fit_does_one_epoch_and_continues(digits) -> None:
    X, _ = digits
    est = small()
    est.partial_fit(X)
    assert est.n_epochs_ == 1 and len(est.history_) == 1
    est.partial_fit(X)
    assert est.n_epochs_ == 2 and [h["epoch"] for h in est.history_] == [0, 1]
    # Two partial_fit calls are two epochs of fit, optimizer state included.
    np.testing.assert_array_equal(est.transform(X), small(max_epochs=2).fit(X).transform(X))


def test_history_has_one_finite_record_per_epoch(digits) -> None:
    X, _ = digits
    est = small(max_epochs=3).fit(X)
    assert [h["epoch"] for h in est.history_] == [0, 1, 2]
    for h in est.history_:
        assert set(h) == {"epoch", "loss", "lse", "var", "tc", "wr"}
        assert np.isfinite([h["loss"], h["lse"], h["var"], h["tc"], h["wr"]]).all()
        # reference_k = 64 at K = 8: var weighs 64 / 8 = 8, tc 64 * 63 / (8 * 7) = 72
        total = h["lse"] + 8 * h["var"] + 72 * h["tc"]
        assert h["loss"] == pytest.approx(total, rel=1e-5, abs=1e-3)


def test_final_batch_of_one_joins_the_previous_batch() -> None:
    X = np.random.default_rng(0).random((9, 5))
    est = small(batch_size=4, n_components=3).fit(X)  # 4 + 5: never a batch of one
    assert np.isfinite(est.history_[-1]["loss"])


def test_pickle_round_trip(digits) -> None:
    X, _ = digits
    est = small().fit(X)
    clone = pickle.loads(pickle.dumps(est))
    for method in ("transform", "predict", "predict_proba", "score_samples"):
        np.testing.assert_array_equal(getattr(clone, method)(X), getattr(est, method)(X))
    # The unpickled optimizer still continues training.
    clone.partial_fit(X)
    assert clone.n_epochs_ == 3


def test_feature_names_out() -> None:
    X = np.random.default_rng(0).random((20, 4))
    names = small(n_components=3).fit(X).get_feature_names_out()
    assert list(names) == ["decoderfreesae0", "decoderfreesae1", "decoderfreesae2"]


def test_pipeline_with_logistic_regression(digits) -> None:
    X, y = digits
    pipe = make_pipeline(
        small(n_components=32, max_epochs=5), LogisticRegression(max_iter=2000)
    ).fit(X, y)
    # Chance is 10 %: the energies carry the class information.
    assert pipe.score(X, y) > 0.6
    assert pipe.predict(X).shape == (300,)


def test_grid_search_uses_score(digits) -> None:
    X, _ = digits
    search = GridSearchCV(small(), {"lambda_tc": [0.0, 1.0]}, cv=2).fit(X)
    assert search.best_params_["lambda_tc"] in (0.0, 1.0)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.n_epochs_ == 2


def test_grid_search_in_a_pipeline(digits) -> None:
    X, y = digits
    pipe = make_pipeline(small(), LogisticRegression(max_iter=500))
    search = GridSearchCV(pipe, {"decoderfreesae__n_components": [4, 8]}, cv=2).fit(X, y)
    assert search.best_params_["decoderfreesae__n_components"] in (4, 8)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_rejects_nan_and_inf(bad) -> None:
    X = np.random.default_rng(0).random((10, 3))
    X[2, 1] = bad
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        small().fit(X)
    fitted = small().fit(np.random.default_rng(1).random((10, 3)))
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        fitted.transform(X)


def test_rejects_wrong_number_of_features_at_transform() -> None:
    est = small().fit(np.random.default_rng(0).random((10, 3)))
    msg = "X has 4 features, but DecoderFreeSAE is expecting 3 features as input"
    for method in ("transform", "predict", "predict_proba", "score_samples", "partial_fit"):
        with pytest.raises(ValueError, match=re.escape(msg)):
            getattr(est, method)(np.zeros((5, 4)))


def test_rejects_a_one_sample_fit() -> None:
    with pytest.raises(ValueError, match=r"1 sample\(s\).*minimum of 2 is required"):
        small().fit(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"minimum of 2 is required"):
        small().partial_fit(np.zeros((1, 3)))


def test_transform_before_fit_raises_not_fitted() -> None:
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="not fitted yet"):
        small().transform(np.zeros((2, 3)))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_components": 0}, "n_components must be an integer >= 1"),
        ({"activation": "tanh"}, "activation must be one of"),
        ({"lambda_var": -1.0}, "lambda_var must be a finite number >= 0"),
        ({"optimizer": "lbfgs"}, "optimizer must be one of"),
        ({"lr": 0.0}, "lr must be a finite number > 0"),
        ({"batch_size": 1}, "batch_size must be an integer >= 2"),
        ({"max_epochs": 0}, "max_epochs must be an integer >= 1"),
        ({"device": "tpu:7"}, "device must be"),
    ],
)
def test_bad_hyper_parameters_fail_in_fit_with_the_name(params, message) -> None:
    est = small(**params)  # no error here: __init__ only stores
    with pytest.raises(ValueError, match=message):
        est.fit(np.random.default_rng(0).random((10, 3)))


def test_diverging_training_says_what_to_do() -> None:
    X = np.random.default_rng(0).random((40, 3)) * 1e30
    with pytest.raises(FloatingPointError, match="lower lr"):
        small(lr=1e3, optimizer="sgd").fit(X)
