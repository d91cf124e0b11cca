"""Metrics computed over partitions equal sklearn.metrics on the same predictions: exact ones
to 1e-12, ROC AUC from a histogram within its stated bound; samples and interpretation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import make_blobs, make_classification
from sklearn.inspection import permutation_importance

import distml
from distml.algorithms import importance
from distml.algorithms import metrics as M
from distml.algorithms.engine import InMemoryEngine
from distml.algorithms.random import row_keys

EXACT = 1e-12


def _close(ours: float, theirs: float, rel: float = EXACT) -> None:
    assert ours == pytest.approx(theirs, rel=rel, abs=1e-15)


# -- regression ------------------------------------------------------------------------------------
def test_regression_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5003, 4)) * [1, 10, 100, 0.1] + 1000.0
    y = X @ [1.0, 0.2, 0.01, 3.0] + 5e3 + rng.normal(size=len(X))  # large mean, small spread
    model = distml.LinearRegression().fit(X, y)
    predicted = model.predict(X)
    for parts in (1, 7):
        got = M.regression_metrics(InMemoryEngine.from_arrays(X, y, parts), model)
        _close(got["mse"], skm.mean_squared_error(y, predicted))
        _close(got["rmse"], skm.root_mean_squared_error(y, predicted))
        _close(got["mae"], skm.mean_absolute_error(y, predicted))
        _close(got["r2"], skm.r2_score(y, predicted))


def test_r2_conventions_for_one_row_and_constant_target() -> None:
    model = distml.LinearRegression().fit(np.array([[0.0], [1.0], [2.0]]), np.array([1, 2, 4.0]))
    one = M.regression_metrics(
        InMemoryEngine.from_arrays(np.array([[1.0]]), np.array([2.0])), model
    )
    assert np.isnan(one["r2"])  # scikit-learn: undefined (and warns)
    X, y = np.array([[0.0], [1.0]]), np.array([3.0, 3.0])
    constant = M.regression_metrics(InMemoryEngine.from_arrays(X, y, 2), model)
    assert constant["r2"] == skm.r2_score(y, model.predict(X)) == 0.0


# -- classification -----------------------------------------------------------------------------------
def _classification(n_classes: int, n: int = 3000, labels=None, seed: int = 0):  # type: ignore[no-untyped-def]
    X, y = make_classification(
        n, 6, n_informative=4, n_classes=n_classes, n_clusters_per_class=1, random_state=seed
    )
    if labels is not None:
        y = np.asarray(labels)[y]
    model = distml.LogisticRegression().fit(X[: n // 2], y[: n // 2])
    return X[n // 2 :], y[n // 2 :], model


@pytest.mark.parametrize(
    "n_classes, labels", [(2, None), (3, None), (2, ["no", "yes"]), (4, [3.0, 7.0, 8.0, 10.0])]
)
def test_classification_metrics_equal_sklearn(n_classes: int, labels) -> None:  # type: ignore[no-untyped-def]
    X, y, model = _classification(n_classes, labels=labels)
    predicted, proba = model.predict(X), model.predict_proba(X)
    got = M.classification_metrics(InMemoryEngine.from_arrays(X, y, 5), model)

    assert got["accuracy"] == skm.accuracy_score(y, predicted)
    average = "binary" if n_classes == 2 else "macro"
    pos = {"pos_label": model.classes_[1]} if n_classes == 2 else {}
    for name, fn in [
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ]:
        _close(got[name], fn(y, predicted, average=average, **pos))
        for avg in ("macro", "weighted"):
            _close(got[f"{name}_{avg}"], fn(y, predicted, average=avg))
    p, r, f, s = skm.precision_recall_fscore_support(y, predicted, labels=model.classes_)
    for i, label in enumerate(model.classes_):
        entry = got["report"][str(label)]
        _close(entry["precision"], p[i])
        _close(entry["recall"], r[i])
        _close(entry["f1"], f[i])
        assert entry["support"] == s[i]
    assert got["confusion_matrix"]["counts"] == skm.confusion_matrix(y, predicted).tolist()
    assert got["confusion_matrix"]["labels"] == list(model.classes_)
    _close(got["log_loss"], skm.log_loss(y, proba, labels=model.classes_))
    if n_classes == 2:
        expected_auc = skm.roc_auc_score(y, proba[:, 1])
    else:
        expected_auc = skm.roc_auc_score(y, proba, multi_class="ovr", labels=model.classes_)
        for i, label in enumerate(model.classes_):
            _close(got["roc_auc_per_class"][str(label)], skm.roc_auc_score(y == label, proba[:, i]))
    _close(got["roc_auc"], expected_auc)
    assert got["roc_auc_method"] == "exact" and got["roc_auc_bound"] == 0.0


def test_roc_auc_from_histograms_is_within_its_stated_bound() -> None:
    # 75,000 distinct scores: more than ROC_EXACT_LIMIT, so histograms travel.
    for n_classes in (2, 3):
        X, y, model = _classification(n_classes, n=150_000, seed=1)
        proba = model.predict_proba(X)
        got = M.classification_metrics(InMemoryEngine.from_arrays(X, y, 8), model)
        assert got["roc_auc_method"] == f"histogram of {M.ROC_BINS} probability bins"
        if n_classes == 2:
            truth = skm.roc_auc_score(y, proba[:, 1])
        else:
            truth = skm.roc_auc_score(y, proba, multi_class="ovr")
        assert 0 < got["roc_auc_bound"] < 1e-5
        assert abs(got["roc_auc"] - truth) <= got["roc_auc_bound"] + 1e-15
        # counts are exact integers: the histogram does not depend on the partitioning
        other = M.classification_metrics(InMemoryEngine.from_arrays(X, y, 3), model)
        assert (other["roc_auc"], other["roc_auc_bound"]) == (got["roc_auc"], got["roc_auc_bound"])


def test_coarse_histogram_bound_holds_and_exact_limit_is_global() -> None:
    X, y, model = _classification(2, n=4000, seed=2)
    truth = skm.roc_auc_score(y, model.predict_proba(X)[:, 1])
    coarse = M.classification_metrics(InMemoryEngine.from_arrays(X, y, 4), model, 100, 50)
    assert coarse["roc_auc_method"] == "histogram of 50 probability bins"
    assert abs(coarse["roc_auc"] - truth) <= coarse["roc_auc_bound"] < 0.05
    # 2000 distinct scores overall, at most 500 per partition: exact with a 2000 limit only
    assert M.classification_metrics(InMemoryEngine.from_arrays(X, y, 4), model, 1999, 50)[
        "roc_auc_method"
    ].startswith("histogram")
    exact = M.classification_metrics(InMemoryEngine.from_arrays(X, y, 4), model, 2000, 50)
    assert exact["roc_auc_method"] == "exact"
    _close(exact["roc_auc"], truth)


def test_a_partition_over_the_limit_is_binned_as_its_exact_table_coarsened() -> None:
    """Over ``limit`` distinct scores a partition bins its scores directly (no arg-sort):
    the table must be the exact one coarsened, ties, 0, ½ and 1 included."""
    rng = np.random.default_rng(5)
    scores = np.concatenate([rng.random(3000), [0.0, 1.0, 0.5, 0.5], rng.random(50).round(2)])
    positive = rng.random(len(scores)) < scores
    values, inverse = np.unique(scores, return_inverse=True)  # the exact table, built here
    pos = np.bincount(inverse, weights=positive, minlength=len(values))
    total = np.bincount(inverse, minlength=len(values)).astype(float)
    expected = M.ScoreTable(values, pos, total - pos, False, 10**9, 64).coarsened()

    def same(a: M.ScoreTable, b: M.ScoreTable) -> bool:
        return a.binned == b.binned and all(
            np.array_equal(getattr(a, f), getattr(b, f)) for f in ("values", "pos", "neg")
        )

    got = M.ScoreTable.of(scores, positive, 1000, 64)
    assert got.binned and same(got, expected)
    halves = M.ScoreTable.of(scores[:1600], positive[:1600], 1000, 64).merge(
        M.ScoreTable.of(scores[1600:], positive[1600:], 1000, 64)
    )
    assert same(halves, expected)  # binned halves merged: the same counts
    few = M.ScoreTable.of(np.repeat([0.2, 0.7], 600), np.arange(1200) % 2 == 0, 1000, 64)
    assert not few.binned and list(few.values) == [0.2, 0.7] and list(few.pos) == [300, 300]


def test_roc_curve_equals_sklearns_points() -> None:
    X, y, model = _classification(2, n=2000)
    ((label, fpr, tpr, auc),) = M.roc_curves(InMemoryEngine.from_arrays(X, y, 3), model)
    ref_fpr, ref_tpr, _ = skm.roc_curve(y, model.predict_proba(X)[:, 1], drop_intermediate=False)
    assert label == str(model.classes_[1])
    np.testing.assert_allclose(fpr, ref_fpr, rtol=EXACT)
    np.testing.assert_allclose(tpr, ref_tpr, rtol=EXACT)
    _close(auc, skm.auc(ref_fpr, ref_tpr))


def test_log_loss_clips_saturated_probabilities_like_sklearn() -> None:
    X, y, model = _classification(3, n=2000)
    model.coef_ = model.coef_ * 400.0  # probabilities of exactly 0 and 1
    proba = model.predict_proba(X)
    assert (proba == 0).any() and (proba == 1).any()
    got = M.classification_metrics(InMemoryEngine.from_arrays(X, y, 3), model)
    _close(got["log_loss"], skm.log_loss(y, proba, labels=model.classes_))


def test_labels_the_model_never_saw() -> None:
    X, y, model = _classification(2, n=2000)
    y = y.copy()
    y[:50] = 7  # a class absent from training
    predicted = model.predict(X)
    got = M.classification_metrics(InMemoryEngine.from_arrays(X, y, 3), model)
    assert got["confusion_matrix"]["labels"] == [0, 1, 7]
    assert got["confusion_matrix"]["counts"] == skm.confusion_matrix(y, predicted).tolist()
    assert got["report"]["7"]["support"] == 50 and got["report"]["7"]["recall"] == 0.0
    _close(got["f1"], skm.f1_score(y, predicted, average="macro", zero_division=0))
    _close(got["f1_weighted"], skm.f1_score(y, predicted, average="weighted", zero_division=0))
    assert got["roc_auc"] is None and got["log_loss"] is None  # scikit-learn raises here


# -- clustering ------------------------------------------------------------------------------------------
def _blobs(n: int, d: int = 5, k: int = 4):  # type: ignore[no-untyped-def]
    X, y = make_blobs(n, d, centers=k, cluster_std=2.0, random_state=0)
    model = distml.KMeans(n_clusters=k, init="k-means++", random_state=0).fit(X)
    return X, y, model


def test_clustering_metrics_equal_sklearn_on_small_data() -> None:
    X, y, model = _blobs(3000)
    labels = model.predict(X)
    got = M.clustering_metrics(InMemoryEngine.from_arrays(X, y, 5), model, True)
    _close(got["inertia"], float((model.transform(X).min(axis=1) ** 2).sum()))
    _close(got["davies_bouldin"], skm.davies_bouldin_score(X, labels))
    assert got["silhouette_sample_rows"] == 3000  # every row: the exact score
    _close(got["silhouette"], skm.silhouette_score(X, labels))
    _close(got["adjusted_rand"], skm.adjusted_rand_score(y, labels))


def test_silhouette_is_sklearns_on_the_stated_deterministic_sample() -> None:
    X, y, model = _blobs(6000, d=3)
    got = M.clustering_metrics(InMemoryEngine.from_arrays(X, None, 6), model, False, 1500)
    assert got["silhouette_sample_rows"] == 1500 and "adjusted_rand" not in got
    rows = np.argsort(row_keys(0, M.SAMPLE_STREAM, np.arange(len(X))))[:1500]
    sample = X[rows]
    _close(got["silhouette"], skm.silhouette_score(sample, model.predict(sample)))
    assert got["silhouette"] == pytest.approx(skm.silhouette_score(X, model.predict(X)), abs=0.02)
    _close(got["davies_bouldin"], skm.davies_bouldin_score(X, model.predict(X)))


def test_cluster_scores_undefined_with_one_cluster_in_use() -> None:
    X = np.random.default_rng(0).normal(size=(50, 2))
    model = distml.KMeans(n_clusters=2, random_state=0).fit(X)
    model.cluster_centers_ = np.array([[0.0, 0.0], [1e6, 1e6]])  # every row in cluster 0
    got = M.clustering_metrics(InMemoryEngine.from_arrays(X, None, 2), model, False)
    assert got["davies_bouldin"] is None and got["silhouette"] is None


def test_silhouette_singletons_and_duplicates_follow_sklearn() -> None:
    X = np.array([[0.0, 0], [0, 0], [0, 1], [5, 5], [9, 9], [9, 9.5]])
    labels = np.array([0, 0, 0, 1, 2, 2])
    _close(M.silhouette(X, labels), skm.silhouette_score(X, labels))
    _close(
        M.davies_bouldin_from_sums(
            np.array([X[labels == k].mean(0) for k in range(3)]),
            np.array(
                [
                    np.linalg.norm(X[labels == k] - X[labels == k].mean(0), axis=1).mean()
                    for k in range(3)
                ]
            ),
        ),
        skm.davies_bouldin_score(X, labels),
    )


# -- samples -------------------------------------------------------------------------------------------
def test_sample_is_the_same_rows_whatever_the_partitioning(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    X = np.arange(3000.0).reshape(-1, 1)
    y = np.arange(3000)
    expected = np.argsort(row_keys(0, M.SAMPLE_STREAM, y))[:100]
    for parts in (1, 4, 9):
        drawn = M.sample(InMemoryEngine.from_arrays(X, y, parts), 100)
        assert drawn.row_ids.tolist() == expected.tolist() == drawn.y.tolist()
        assert drawn.X[:, 0].tolist() == expected.tolist()
    assert len(M.sample(InMemoryEngine.from_arrays(X[:40], y[:40], 3), 100)) == 40
    monkeypatch.setattr(M, "_sample_threshold", lambda n, m: 0)  # a margin that falls short
    drawn = M.sample(InMemoryEngine.from_arrays(X, y, 4), 100)
    assert drawn.row_ids.tolist() == expected.tolist()


# -- interpretation -------------------------------------------------------------------------------------
def test_feature_std_and_standardised_coefficients() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(4001, 3)) * [1.0, 50.0, 1e-3] + [1e4, -3.0, 0.5]
    y = X @ [0.5, 0.01, 300.0] + rng.normal(size=len(X))
    model = distml.LinearRegression().fit(X, y)
    std = importance.feature_std(InMemoryEngine.from_arrays(X, y, 6))
    np.testing.assert_allclose(std, X.std(axis=0), rtol=1e-12)
    rows = importance.coefficient_rows(model, ["a", "b", "c"], std)
    assert [r["feature"] for r in rows] == ["a", "b", "c"]
    np.testing.assert_allclose([r["standardized_coef"] for r in rows], model.coef_ * X.std(axis=0))

    Xc, yc, clf = _classification(3)
    rows = importance.coefficient_rows(clf, list("abcdef"), Xc.std(axis=0))
    assert [r["class"] for r in rows] == [0] * 6 + [1] * 6 + [2] * 6
    np.testing.assert_allclose(
        [r["standardized_coef"] for r in rows], (clf.coef_ * Xc.std(axis=0)).ravel()
    )


@pytest.mark.parametrize("task", ["regression", "classification", "clustering"])
def test_permutation_importance_is_sklearns_with_the_tasks_main_score(task: str) -> None:
    if task == "classification":
        X, y, model = _classification(2, n=1000)
    elif task == "clustering":
        X, y, model = _blobs(500, d=3)
        y = None
    else:
        X = np.random.default_rng(0).normal(size=(500, 3))
        y = X @ [3.0, 0.0, 1.0]
        model = distml.LinearRegression().fit(X, y)
    got = importance.permutation_importance(
        model, X, y, ["a", "b", "c", "d", "e", "f"][: X.shape[1]], 3, 7
    )
    scoring = None
    if task == "clustering":
        scoring = lambda est, X, y=None: -np.mean(est.transform(X).min(axis=1) ** 2)  # noqa: E731
    expected = permutation_importance(model, X, y, scoring=scoring, n_repeats=3, random_state=7)
    assert got["scoring"] == importance.SCORING[task]
    assert (got["sample_rows"], got["repeats"], got["seed"]) == (len(X), 3, 7)
    np.testing.assert_allclose(
        [r["importance_mean"] for r in got["rows"]], expected.importances_mean
    )
    np.testing.assert_allclose([r["importance_std"] for r in got["rows"]], expected.importances_std)
    if task == "regression":
        means = [r["importance_mean"] for r in got["rows"]]
        assert means[0] > means[2] > 0 and means[1] == pytest.approx(0, abs=1e-12)


# -- every engine ---------------------------------------------------------------------------------------
def _engine_metrics(backend, folders) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """Metrics of fixed models over data read by ``backend``, with small limits so that ROC
    histograms and the silhouette sample are used."""
    out = {}
    for kind, (folder, model) in folders.items():
        engine = backend.load(distml.Dataset(str(folder), label="y")).train
        if kind == "regression":
            out[kind] = M.regression_metrics(engine, model)
        elif kind == "classification":
            out[kind] = M.classification_metrics(engine, model, 50, 200)
            out["curves"] = [
                (c, f.tolist(), t.tolist()) for c, f, t, _ in M.roc_curves(engine, model, 50, 200)
            ]
        else:
            out[kind] = M.clustering_metrics(engine, model, True, 150)
        out[f"{kind}-std"] = importance.feature_std(engine).tolist()
        out[f"{kind}-sample"] = M.sample(engine, 77).row_ids.tolist()
    return out


@pytest.mark.parametrize(
    "engine",
    [pytest.param("dask", marks=pytest.mark.dask), pytest.param("spark", marks=pytest.mark.spark)],
)
def test_metrics_are_identical_on_every_engine(engine: str, request, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd
    from conftest import write_parts

    from distml.backends import get_backend

    address = request.getfixturevalue("dask_address") if engine == "dask" else "spark"
    if engine == "spark":
        request.getfixturevalue("spark_session")
    folders = {}  # fixed models (fitted on numpy here) scored on Parquet read by each engine
    X, y, clf = _classification(3, n=1200)
    Xb, yb, km = _blobs(900, d=3)
    rng = np.random.default_rng(0)
    Xr = rng.normal(size=(800, 3))
    reg = distml.LinearRegression().fit(Xr, Xr @ [1.0, 2.0, 3.0])
    for kind, (A, target, model) in {
        "classification": (X, y, clf),
        "clustering": (Xb, yb, km),
        "regression": (Xr, Xr @ [1.0, 2.0, 3.0] + rng.normal(size=800), reg),
    }.items():
        frame = pd.DataFrame(A, columns=[f"x{j}" for j in range(A.shape[1])]).assign(y=target)
        folders[kind] = (write_parts(tmp_path / kind, frame, 5), model)
    with get_backend("local[2]") as local:
        expected = _engine_metrics(local, folders)
    assert expected["classification"]["roc_auc_method"] == "histogram of 200 probability bins"
    assert expected["clustering"]["silhouette_sample_rows"] == 150
    with get_backend(address) as other:
        assert _engine_metrics(other, folders) == expected
