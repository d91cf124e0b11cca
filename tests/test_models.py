"""Estimators: scikit-learn conventions, portable save/load, input checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import linear_model
from sklearn.datasets import make_blobs

import distml
from distml.errors import DataError, ModelError, NotFittedError


def _frame(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    y = (X["a"] - X["b"] + rng.normal(size=n) > 0).astype(int)
    return X, y


def test_params_follow_sklearn_conventions() -> None:
    model = distml.LogisticRegression(C=0.5, max_iter=50)
    assert model.get_params()["C"] == 0.5
    assert model.get_params()["method"] == "auto"
    model.set_params(C=2.0)
    assert model.C == 2.0
    assert distml.KMeans(n_clusters=3).get_params()["init"] == "auto"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (distml.LinearRegression(alpha=-1), "alpha must be a number >= 0, got -1"),
        (distml.LogisticRegression(C=0), "C must be a number > 0, got 0"),
        (distml.LogisticRegression(penalty="l3"), "penalty must be 'auto', 'l2', .* got 'l3'"),
        (distml.LogisticRegression(method="cg"), "unknown method 'cg'; choose one of auto, "),
        (
            distml.LogisticRegression(method="newton", l1_ratio=1),
            "method 'newton' takes no L1 term; use method 'lbfgs'",
        ),
        (distml.KMeans(n_clusters=0), "n_clusters must be an integer >= 1, got 0"),
        (distml.KMeans(init="kmeans"), "init must be one of"),
        (distml.LinearRegression(solver="magic"), "unknown solver 'magic'"),
    ],
)
def test_invalid_params_are_reported_at_fit(model, message: str) -> None:
    X, y = _frame()
    with pytest.raises(ModelError, match=message):
        model.fit(X, y)


def test_save_and_load_roundtrip_without_pickle(tmp_path: Path) -> None:
    X, y = _frame()
    model = distml.LogisticRegression(C=0.3).fit(X, y)
    model.save(tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["type"] == "logistic_regression" and meta["features"] == ["a", "b", "c"]
    with np.load(tmp_path / "model" / "arrays.npz", allow_pickle=False) as arrays:
        assert set(arrays.files) == {"coef_", "intercept_", "classes_"}
    loaded = distml.load_model(tmp_path / "model")
    assert isinstance(loaded, distml.LogisticRegression) and loaded.C == 0.3
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.n_iter_ == model.n_iter_


def test_kmeans_with_array_init_roundtrips(tmp_path: Path) -> None:
    X, _ = make_blobs(300, centers=3, random_state=0)
    init = X[:3].copy()
    model = distml.KMeans(n_clusters=3, init=init).fit(X)
    model.save(tmp_path / "m")
    loaded = distml.load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.init, init)
    np.testing.assert_array_equal(loaded.predict(X), model.labels_)


def test_load_model_rejects_a_folder_without_metadata(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not a distml model folder \(model.json missing\)"):
        distml.load_model(tmp_path)


def test_predict_with_different_columns_is_a_clear_error() -> None:
    X, y = _frame()
    model = distml.LinearRegression().fit(X, y.astype(float))
    with pytest.raises(ModelError, match=r"missing 'c'; unexpected 'd'"):
        model.predict(X.rename(columns={"c": "d"}))
    reordered = X[["c", "a", "b"]]
    np.testing.assert_allclose(model.predict(reordered), model.predict(X))
    with pytest.raises(ModelError, match="X has 2 features, but LinearRegression is expecting 3"):
        model.predict(X.to_numpy()[:, :2])


def test_unfitted_model() -> None:
    with pytest.raises(NotFittedError, match="LinearRegression is not fitted yet"):
        distml.LinearRegression().predict(np.zeros((2, 2)))


def test_nan_input_is_a_data_error() -> None:
    X = np.array([[1.0, np.nan], [2.0, 3.0]])
    with pytest.raises(DataError, match="X column 1 contains NaN or infinite values"):
        distml.LinearRegression().fit(X, np.array([1.0, 2.0]))


def test_kmeans_more_clusters_than_rows() -> None:
    with pytest.raises(DataError, match=r"n_clusters=8 is larger than the number of rows \(6\)"):
        distml.KMeans(n_clusters=8).fit(np.arange(12.0).reshape(6, 2))


def test_zero_variance_column_gets_sklearns_zero_coefficient() -> None:
    X, y = _frame()
    X["const"] = 4.0
    ours = distml.LinearRegression().fit(X, y.astype(float))
    theirs = linear_model.LinearRegression().fit(X, y.astype(float))
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-8, atol=1e-12)
    assert ours.coef_[-1] == pytest.approx(0.0, abs=1e-12)


def test_sklearn_solver_gives_the_same_model_as_native() -> None:
    X, y = _frame()
    native = distml.LogisticRegression().fit(X, y)
    library = distml.LogisticRegression(solver="sklearn").fit(X, y)
    np.testing.assert_allclose(library.coef_, native.coef_, rtol=1e-6)
    assert library.score(X, y) == native.score(X, y)


def test_string_labels_for_classification() -> None:
    X, y = _frame()
    labels = np.where(y == 1, "spam", "ham")
    model = distml.LogisticRegression().fit(X, labels)
    assert model.classes_.tolist() == ["ham", "spam"]
    assert set(model.predict(X)) <= {"ham", "spam"}


def test_kernels_give_each_row_the_same_bits_in_any_batch_and_layout() -> None:
    """What the workers score with (numpy kernels): a row's prediction, probability or
    distance to the centres does not depend on the rows scored with it nor on the memory
    layout (BLAS's products do; the kernels sum in feature order), and k-means distances
    are ``sqrt(max(‖x‖² - 2x·c + ‖c‖², 0))``."""
    from distml.models.kernels import KMeansKernel, LinearKernel, LogisticKernel

    rng = np.random.default_rng(3)
    X = rng.normal(size=(1001, 7)) * 4
    kernels = [
        (LinearKernel(rng.normal(size=7), 0.5), "predict"),
        (
            LogisticKernel(rng.normal(size=(3, 7)), rng.normal(size=3), np.arange(3)),
            "predict_proba",
        ),
        (KMeansKernel(rng.normal(size=(4, 7))), "transform"),
    ]
    for kernel, method in kernels:
        score = getattr(kernel, method)
        whole = score(np.asfortranarray(X))
        np.testing.assert_array_equal(score(np.ascontiguousarray(X)), whole)
        np.testing.assert_array_equal(np.concatenate([score(X[:13]), score(X[13:])]), whole)
        np.testing.assert_array_equal(score(X[500:501]), whole[500:501])
    centers = kernels[2][0].cluster_centers_
    squares = sum(X[:, j] * X[:, j] for j in range(7))
    cross = np.column_stack([sum(X[:, j] * c[j] for j in range(7)) for c in centers])
    expected = np.sqrt(np.maximum(squares[:, None] - 2 * cross + (centers**2).sum(1), 0.0))
    np.testing.assert_array_equal(kernels[2][0].transform(X), expected)


def test_models_without_scikit_learn_keep_its_parameter_protocol() -> None:
    """distml's own models (what runs use): scikit-learn's parameter names, a repr of the
    changed ones, an unknown parameter named in the error, and the estimator made from a
    fitted model predicts what the model's kernel does."""
    from distml.algorithms.engine import InMemoryEngine
    from distml.models.base import model_class
    from distml.models.estimators import as_estimator

    kmeans = model_class("kmeans")(n_clusters=3, random_state=0)
    assert sorted(kmeans.get_params()) == sorted(distml.KMeans().get_params())
    assert repr(kmeans) == "KMeansModel(n_clusters=3, random_state=0)"
    with pytest.raises(ModelError, match=r"kmeans: unknown parameter 'n_cluster' \(one of"):
        kmeans.set_params(n_cluster=4)
    assert kmeans.set_params(n_clusters=2).n_clusters == 2
    X = np.vstack([np.zeros((5, 2)), np.full((5, 2), 9.0)])
    kmeans.fit_engine(InMemoryEngine.from_arrays(X, None))
    kmeans.set_feature_info(None, None, n_features=2)
    estimator = as_estimator(kmeans)
    assert type(estimator) is distml.KMeans and estimator.n_clusters == 2
    np.testing.assert_array_equal(estimator.predict(X), kmeans.kernel().predict(X))
    assert sorted(estimator.predict(X[[0, 9]]).tolist()) == [0, 1]
