"""Native algorithms against scikit-learn, over 1, 4 and 16 partitions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn import cluster, linear_model
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from distml.algorithms.engine import InMemoryEngine, Partition, tree_reduce
from distml.algorithms.kmeans import fit_kmeans
from distml.algorithms.linear import fit_linear
from distml.algorithms.logistic import fit_logistic
from distml.errors import ConvergenceWarning, DataError


class PassCounting(InMemoryEngine):
    """Arrays split into partitions (:meth:`InMemoryEngine.from_arrays`), recording the
    name of every pass's function in ``passes``."""

    def __init__(self, X: np.ndarray, y: np.ndarray | None, n_partitions: int) -> None:
        super().__init__(InMemoryEngine.from_arrays(X, y, n_partitions).partitions)
        self.passes: list[str] = []

    def _map_reduce(self, fn, broadcast, combine):  # type: ignore[no-untyped-def]
        self.passes.append(fn.__name__)
        return super()._map_reduce(fn, broadcast, combine)


def _regression(n=3000, d=6, seed=0, offset=5.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * np.linspace(0.5, 4, d) + offset
    y = X @ rng.normal(size=d) + 3.0 + rng.normal(size=n)
    return X, y


def _rel(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(b)), 1e-300)


def assert_each_close(actual, expected, rtol: float) -> None:
    """Every entry within ``rtol`` of its own value (entries that are exactly zero in
    ``expected``, such as a collinear column's, within ``rtol`` × 1e-3 of the largest)."""
    expected = np.asarray(expected)
    np.testing.assert_allclose(
        actual, expected, rtol=rtol, atol=rtol * 1e-3 * np.max(np.abs(expected))
    )


def test_tree_reduce_pairs_in_a_fixed_order() -> None:
    order = tree_reduce([[0], [1], [2], [3], [4]], combine=lambda a, b: [a, b])
    assert order == [[[[0], [1]], [[2], [3]]], [4]]


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("collinear", [False, True])
def test_linear_regression_matches_sklearn(fit_intercept: bool, collinear: bool) -> None:
    X, y = _regression()
    if collinear:
        X = np.column_stack([X, X[:, 0] - 2 * X[:, 1], np.full(len(X), 7.0)])
    reference = linear_model.LinearRegression(fit_intercept=fit_intercept).fit(X, y)
    for parts in (1, 4, 16):
        solution = fit_linear(InMemoryEngine.from_arrays(X, y, parts), fit_intercept)
        assert_each_close(solution.coef, reference.coef_, rtol=1e-8)
        assert abs(solution.intercept - reference.intercept_) <= 1e-8 * max(
            1.0, abs(reference.intercept_)
        )
        assert solution.rank == reference.rank_


def test_linear_regression_is_partitioning_independent() -> None:
    X, y = _regression(n=5000, d=8, seed=3, offset=100.0)
    models = [fit_linear(InMemoryEngine.from_arrays(X, y, p)) for p in (1, 4, 16)]
    for other in models[1:]:
        assert_each_close(other.coef, models[0].coef, rtol=1e-10)
        assert abs(other.intercept - models[0].intercept) < 1e-10 * abs(models[0].intercept)


@pytest.mark.parametrize("offset, raw", [(0.0, True), (3.0, True), (50.0, False)])
def test_moments_from_raw_products_agree_with_centred_blocks(offset: float, raw: bool) -> None:
    # the raw products (one sweep per partition) are taken only where centring them cancels
    # little; a mean far from 0 next to its spread falls back to centring the blocks
    from distml.algorithms.linear import _raw_centred_moments, partition_moments

    rng = np.random.default_rng(7)
    X = np.asfortranarray(rng.normal(size=(20_000, 6)) + offset)
    y = X @ rng.normal(size=6) + rng.normal(size=20_000) + offset
    fast = _raw_centred_moments(X, y)
    assert (fast is not None) == raw
    moments = partition_moments(Partition(X, y, 0), True)
    Xc, yc = X - X.mean(axis=0), y - y.mean()  # two-pass textbook values
    np.testing.assert_allclose(moments.cxx, Xc.T @ Xc, rtol=1e-11, atol=1e-8)
    np.testing.assert_allclose(moments.cxy, Xc.T @ yc, rtol=1e-11, atol=1e-8)
    assert moments.cyy == pytest.approx(float(yc @ yc), rel=1e-12)
    np.testing.assert_allclose(moments.mean_x, X.mean(axis=0), rtol=1e-13)


@pytest.mark.parametrize(
    "rows, features, layout, dtype",
    [
        (5000, 9, "F", np.float64),  # 2 full blocks and a short one
        (5000, 9, "C", np.float64),
        (5000, 9, "strided", np.float64),  # every other column of a wider matrix
        (5000, 9, "F", np.float32),
        (5000, 24, "F", np.int64),  # smaller blocks (the product stays small)
        (7, 9, "F", np.float64),  # a partition smaller than a block
        (3000, 40, "F", np.float64),  # wide: one product over the whole partition
        (50, 0, "F", np.float64),
    ],
)
def test_raw_products_in_compact_blocks_are_the_products(
    rows: int, features: int, layout: str, dtype: Any
) -> None:
    # blocks of [X | y | 1] give XᵀX, the column sums and Xᵀy whatever the partition's
    # layout, type and width
    from distml.algorithms.linear import raw_products

    rng = np.random.default_rng(11)
    values = rng.normal(size=(rows, 2 * features)) * 10 + 2.0
    X = values[:, ::2] if layout == "strided" else values[:, :features]
    X = X if layout == "strided" else np.asarray(X, order=layout)
    X = X.astype(dtype, copy=False)
    y = rng.normal(size=rows)
    xtx, sums, xty = raw_products(X, y)
    X64 = X.astype(np.float64)
    np.testing.assert_allclose(xtx, X64.T @ X64, rtol=1e-12)
    np.testing.assert_allclose(sums, X64.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(xty, X64.T @ y, rtol=1e-11, atol=1e-9)
    assert xtx.shape == (features, features) and xty.shape == sums.shape == (features,)


def test_raw_products_refuse_complex_features() -> None:
    from distml.algorithms.linear import raw_products

    with pytest.raises(TypeError):
        raw_products(np.ones((10, 3), dtype=complex), np.ones(10))


def test_integer_and_huge_labels_or_features_keep_their_moments() -> None:
    # an int64 label's yᵀy wrapped around in the raw products (the lasso then zeroed
    # coefficients); a feature whose raw XᵀX overflows falls back to the centred blocks
    from distml.algorithms.linear import fit_elastic_net

    rng = np.random.default_rng(0)
    X = rng.standard_normal((1000, 5))
    y = (1e9 * (X @ np.arange(1, 6)) + 1e9 * rng.standard_normal(1000)).astype(np.int64)
    as_int = fit_elastic_net(InMemoryEngine.from_arrays(X, y, 2), alpha=1e9)
    as_float = fit_elastic_net(InMemoryEngine.from_arrays(X, y.astype(float), 2), alpha=1e9)
    np.testing.assert_array_equal(as_int.coef, as_float.coef)
    reference = linear_model.Lasso(alpha=1e9).fit(X, y.astype(float))
    np.testing.assert_allclose(as_int.coef, reference.coef_, rtol=1e-6, atol=1e-3)
    x = rng.standard_normal(1000)
    huge = (1e155 + 1e150 * x)[:, None]  # Σx² overflows; the centred sum does not
    solution = fit_linear(InMemoryEngine.from_arrays(huge, 2.0 * x, 1))
    assert solution.coef[0] == pytest.approx(2e-150, rel=1e-6)


def test_ridge_matches_sklearn_ridge() -> None:
    X, y = _regression()
    reference = linear_model.Ridge(alpha=25.0).fit(X, y)
    solution = fit_linear(InMemoryEngine.from_arrays(X, y, 4), True, alpha=25.0)
    assert_each_close(solution.coef, reference.coef_, rtol=1e-8)


def _logistic_objective(X, y, coef, intercept, C=1.0):
    classes = np.unique(y)
    scores = X @ np.atleast_2d(coef).T + intercept
    if len(classes) == 2:
        z = scores[:, 0]
        t = (y == classes[1]).astype(float)
        loss = np.sum(np.logaddexp(0, z) - t * z)
    else:
        from scipy.special import logsumexp

        idx = np.searchsorted(classes, y)
        loss = np.sum(logsumexp(scores, axis=1) - scores[np.arange(len(y)), idx])
    return 0.5 * np.sum(np.asarray(coef) ** 2) + C * loss


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("C", [0.05, 1.0])
def test_logistic_regression_matches_sklearn_lbfgs(n_classes: int, C: float) -> None:
    rng = np.random.default_rng(n_classes)
    X = rng.normal(size=(4000, 5))
    scores = X @ rng.normal(size=(5, n_classes)) + rng.gumbel(size=(4000, n_classes))
    y = scores.argmax(axis=1)
    reference = linear_model.LogisticRegression(C=C).fit(X, y)
    ref_objective = _logistic_objective(X, y, reference.coef_, reference.intercept_, C)
    for parts in (1, 4, 16):
        solution = fit_logistic(InMemoryEngine.from_arrays(X, y, parts), C=C)
        objective = _logistic_objective(X, y, solution.coef, solution.intercept, C)
        assert abs(objective - ref_objective) <= 1e-6 * ref_objective
        predicted = solution.classes[
            (X @ solution.coef.T + solution.intercept).argmax(axis=1)
            if n_classes > 2
            else (X @ solution.coef[0] + solution.intercept[0] > 0).astype(int)
        ]
        assert np.array_equal(predicted, reference.predict(X))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_logistic_regression_is_partitioning_independent(n_classes: int) -> None:
    rng = np.random.default_rng(10 + n_classes)
    X = rng.normal(size=(5000, 6)) + 2.0
    y = (X @ rng.normal(size=(6, n_classes)) + rng.gumbel(size=(5000, n_classes))).argmax(axis=1)
    fits = [fit_logistic(InMemoryEngine.from_arrays(X, y, p), C=0.5) for p in (1, 4, 16)]
    for other in fits[1:]:
        assert other.n_iter == fits[0].n_iter
        np.testing.assert_allclose(other.coef, fits[0].coef, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(other.intercept, fits[0].intercept, rtol=1e-9, atol=1e-12)


def test_newton_sample_is_one_row_per_stratum_whatever_the_partitioning() -> None:
    from distml.algorithms.sampling import sample_positions

    whole = sample_positions(0, 10_007, 100, seed=3)
    # one row in each full stratum of 100; the last 7 rows' stratum keeps its pick if it is
    # one of them (probability 7/100), so every row is drawn with the same probability
    assert np.array_equal(whole[:100] // 100, np.arange(100)) and len(whole) in (100, 101)
    cuts = [0, 1, 250, 251, 4_999, 10_007]
    pieces = [
        sample_positions(lo, hi - lo, 100, 3) for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)
    ]
    assert np.array_equal(np.concatenate(pieces), whole)
    assert np.array_equal(sample_positions(5, 20, 1, 3), np.arange(5, 25))  # every row
    assert not np.array_equal(sample_positions(0, 10_007, 100, seed=4), whole)


@pytest.mark.parametrize("C", [0.01, 1.0, np.inf])
def test_sampled_newton_reaches_the_lbfgs_optimum(
    monkeypatch: pytest.MonkeyPatch, C: float
) -> None:
    # a Hessian sample smaller than the data (the warm start on it, then full-data steps):
    # the same optimum as L-BFGS, in fewer iterations, whatever the partitioning
    from distml.algorithms import sampling

    monkeypatch.setattr(sampling, "SAMPLE_ROWS", 800)
    rng = np.random.default_rng(5)
    X = rng.normal(size=(30_000, 6)) * [1.0, 2.0, 0.5, 1.0, 3.0, 1.0] + 0.5
    y = (X @ rng.normal(size=6) + rng.logistic(size=30_000) > 0.3).astype(int)
    lbfgs = fit_logistic(InMemoryEngine.from_arrays(X, y, 4), C=C, tol=1e-8, method="lbfgs")
    fits = [
        fit_logistic(InMemoryEngine.from_arrays(X, y, p), C=C, tol=1e-8, method="newton")
        for p in (1, 5, 16)
    ]
    for fit in fits:
        assert fit.converged and fit.n_iter < lbfgs.n_iter
        assert fit.objective <= lbfgs.objective + 1e-13
        np.testing.assert_allclose(fit.coef, lbfgs.coef, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(fit.intercept, lbfgs.intercept, rtol=1e-5, atol=1e-7)
        assert fit.n_iter == fits[0].n_iter
        np.testing.assert_allclose(fit.coef, fits[0].coef, rtol=1e-10)
    reference = linear_model.LogisticRegression(C=C, tol=1e-8, max_iter=1000).fit(X, y)
    np.testing.assert_allclose(fits[0].coef, reference.coef_, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_sampled_newton_reaches_the_lbfgs_optimum_with_three_classes(
    monkeypatch: pytest.MonkeyPatch, fit_intercept: bool
) -> None:
    from distml.algorithms import sampling

    monkeypatch.setattr(sampling, "SAMPLE_ROWS", 900)
    rng = np.random.default_rng(8)
    X = rng.normal(size=(24_000, 4)) + [0.3, 0.0, -0.2, 0.5]
    y = np.array(["a", "b", "c"])[
        (X @ rng.normal(size=(4, 3)) + rng.gumbel(size=(24_000, 3))).argmax(axis=1)
    ]
    kwargs = {"C": 0.5, "tol": 1e-8, "fit_intercept": fit_intercept}
    lbfgs = fit_logistic(InMemoryEngine.from_arrays(X, y, 3), method="lbfgs", **kwargs)
    fits = [
        fit_logistic(InMemoryEngine.from_arrays(X, y, p), method="newton", **kwargs) for p in (1, 6)
    ]
    for fit in fits:
        assert list(fit.classes) == ["a", "b", "c"] and fit.coef.shape == (3, 4)
        assert fit.converged and fit.n_iter < lbfgs.n_iter
        assert fit.objective <= lbfgs.objective + 1e-13
        np.testing.assert_allclose(fit.coef, lbfgs.coef, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fit.intercept, lbfgs.intercept, atol=1e-6)
    np.testing.assert_allclose(fits[1].coef, fits[0].coef, rtol=1e-10, atol=1e-13)
    reference = linear_model.LogisticRegression(
        C=0.5, tol=1e-8, max_iter=1000, **{"fit_intercept": fit_intercept}
    ).fit(X, y)
    np.testing.assert_allclose(fits[0].coef, reference.coef_, rtol=1e-4, atol=1e-5)


def test_auto_keeps_lbfgs_where_a_sample_hessian_would_be_costly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from distml.algorithms import logistic, sampling

    monkeypatch.setattr(sampling, "SAMPLE_ROWS", 800)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(6_000, 5))
    y = (X @ rng.normal(size=5) + rng.logistic(size=6_000) > 0).astype(int)
    fit = lambda method: fit_logistic(InMemoryEngine.from_arrays(X, y, 3), method=method)  # noqa: E731
    newton, lbfgs = fit("newton"), fit("lbfgs")
    assert newton.n_iter != lbfgs.n_iter
    assert fit("auto").n_iter == newton.n_iter  # 750 sampled rows x 6² x 1 block: cheap
    monkeypatch.setattr(logistic, "MAX_HESSIAN_WORK", 100)  # below 750 rows x 6² x 1

    engine = PassCounting(X, y, 3)
    auto = fit_logistic(engine, method="auto")
    assert auto.n_iter == lbfgs.n_iter and np.array_equal(auto.coef, lbfgs.coef)
    assert engine.passes[0] == "partition_classes"  # decided before fetching a sample it would drop


def test_newton_goes_on_by_lbfgs_where_the_sample_has_no_curvature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a sparse feature that is 0 on every sampled row, no penalty: the sample's Hessian has
    # no curvature along it, Newton stalls there with the gradient above tol, and L-BFGS
    # must go on (it once reported "converged" with that coefficient left at 0)
    from distml.algorithms import logistic, sampling

    monkeypatch.setattr(sampling, "SAMPLE_ROWS", 500)
    rng = np.random.default_rng(4)
    n = 5000
    X = rng.standard_normal((n, 3))
    sampled = sampling.sample_positions(0, n, sampling.sample_stride(n), logistic.SAMPLE_SEED)
    rare = np.setdiff1d(np.arange(n), sampled)[::40][:100]
    X[:, 2] = 0.0
    X[rare, 2] = rng.standard_normal(len(rare))
    y = (rng.random(n) < 1 / (1 + np.exp(-(X[:, 0] - X[:, 1] + 2 * X[:, 2])))).astype(int)
    fit = fit_logistic(InMemoryEngine.from_arrays(X, y, 2), C=np.inf, method="newton")
    lbfgs = fit_logistic(InMemoryEngine.from_arrays(X, y, 2), C=np.inf, method="lbfgs")
    z = X @ fit.coef[0] + fit.intercept[0]
    residual = 1 / (1 + np.exp(-z)) - y  # the mean log-loss's gradient, by hand
    gradient = np.append(X.T @ residual, residual.sum()) / n
    assert fit.converged and np.abs(gradient).max() <= 1e-4
    assert abs(fit.coef[0, 2] - lbfgs.coef[0, 2]) < 0.05 and fit.coef[0, 2] > 1.5


def test_newton_hands_separable_data_without_a_penalty_to_lbfgs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # no optimum (it is at infinity): Newton's steps gain little, and after NEWTON_STEPS of
    # them L-BFGS goes on from there and stops by its relative-decrease rule, as it would
    # from zero — not max_iter passes of Newton
    import warnings

    from distml.algorithms import logistic, sampling

    monkeypatch.setattr(sampling, "SAMPLE_ROWS", 500)
    X = np.random.default_rng(0).normal(size=(30_000, 5))
    y = (X[:, 0] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning
        fit = fit_logistic(InMemoryEngine.from_arrays(X, y, 4), C=np.inf, method="newton")
    assert fit.converged and logistic.NEWTON_STEPS < fit.n_iter < 30
    accuracy = np.mean((X @ fit.coef[0] + fit.intercept[0] > 0).astype(int) == y)
    assert accuracy > 0.999  # a few rows within 1e-3 of the boundary x₀ = 0 may miss


def test_logistic_regression_warns_at_max_iter() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 4)) * 1000
    y = (X[:, 0] + rng.normal(size=500) > 0).astype(int)
    with pytest.warns(ConvergenceWarning, match="did not converge in max_iter=2"):
        solution = fit_logistic(InMemoryEngine.from_arrays(X, y), max_iter=2)
    assert solution.n_iter == 2 and not solution.converged


def test_logistic_regression_with_a_single_class_is_an_error() -> None:
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(DataError, match=r"only one class \(1\)"):
        fit_logistic(InMemoryEngine.from_arrays(X, np.ones(10, dtype=int)))


@pytest.mark.parametrize("init", ["k-means||", "k-means++", "random"])
def test_kmeans_inertia_no_worse_than_sklearn_and_recovers_blobs(init: str) -> None:
    X, truth = make_blobs(n_samples=6000, centers=6, n_features=4, cluster_std=0.6, random_state=3)
    n_init = 3
    reference = cluster.KMeans(
        6, init="k-means++" if init == "k-means||" else init, n_init=n_init, random_state=0
    ).fit(X)
    for parts in (1, 4, 16):
        solution = fit_kmeans(
            InMemoryEngine.from_arrays(X, None, parts), 6, init=init, n_init=n_init, random_state=0
        )
        assert solution.inertia <= 1.001 * reference.inertia_
        labels = ((X[:, None, :] - solution.centers[None]) ** 2).sum(-1).argmin(1)
        assert adjusted_rand_score(truth, labels) == 1.0


@pytest.mark.parametrize("init", ["k-means||", "k-means++", "random"])
def test_kmeans_is_partitioning_independent(init: str) -> None:
    X, _ = make_blobs(n_samples=3000, centers=4, n_features=3, random_state=1)
    runs = [
        fit_kmeans(InMemoryEngine.from_arrays(X, None, p), 4, init=init, random_state=5)
        for p in (1, 4, 16)
    ]
    for other in runs[1:]:
        np.testing.assert_allclose(other.centers, runs[0].centers, rtol=1e-10)
        assert abs(other.inertia - runs[0].inertia) <= 1e-9 * runs[0].inertia


def test_kmeans_auto_seeds_on_a_sample_of_large_data(monkeypatch: pytest.MonkeyPatch) -> None:
    # above SAMPLE_ROWS rows init="auto" runs k-means|| on the stratified sample (one pass
    # over the data to fetch it): scikit-learn's inertia, the blobs found, whatever the
    # partitioning; at or below it, exactly init="k-means||"
    from distml.algorithms import sampling

    X, truth = make_blobs(n_samples=8000, centers=6, n_features=4, cluster_std=0.6, random_state=3)
    reference = cluster.KMeans(6, n_init=3, random_state=0).fit(X)
    parallel = fit_kmeans(
        InMemoryEngine.from_arrays(X, None, 3), 6, init="k-means||", random_state=0
    )
    small = fit_kmeans(InMemoryEngine.from_arrays(X, None, 3), 6, init="auto", random_state=0)
    np.testing.assert_array_equal(small.centers, parallel.centers)
    monkeypatch.setattr(sampling, "SAMPLE_ROWS", 500)

    runs = []
    for parts in (1, 4, 16):
        engine = PassCounting(X, None, parts)
        run = fit_kmeans(engine, 6, init="auto", random_state=0)
        assert engine.passes[0] == "sampled_rows" and "cost_and_oversample" not in engine.passes
        assert run.inertia <= 1.001 * reference.inertia_
        labels = ((X[:, None, :] - run.centers[None]) ** 2).sum(-1).argmin(1)
        assert adjusted_rand_score(truth, labels) == 1.0
        runs.append(run)
    for other in runs[1:]:
        np.testing.assert_allclose(other.centers, runs[0].centers, rtol=1e-10)
    assert not np.array_equal(runs[0].centers, parallel.centers)  # really another seeding
    engine = PassCounting(X, None, 4)  # 500 sampled rows: too few for 20 clusters
    fit_kmeans(engine, 20, random_state=0)
    assert "sampled_rows" not in engine.passes and "cost_and_oversample" in engine.passes


@pytest.mark.parametrize("init, n_init", [("random", 10), ("k-means||", 10)])
def test_kmeans_best_of_several_runs_is_partitioning_independent(init: str, n_init: int) -> None:
    # several seedings reach the same optimum with inertias a few ulps apart, which the
    # partitioning reorders: those are ties (the first run kept), or the centres' order
    # (the labels) would depend on the partitioning
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((6, 3)) * 5
    X = centres[rng.integers(0, 6, 3001)] + rng.standard_normal((3001, 3))
    runs = [
        fit_kmeans(
            InMemoryEngine.from_arrays(X, None, p), 6, init=init, n_init=n_init, random_state=0
        )
        for p in (1, 2, 5)
    ]
    for other in runs[1:]:
        np.testing.assert_allclose(other.centers, runs[0].centers, rtol=1e-12, atol=1e-12)


def test_kmeans_plusplus_reproduces_sklearn_centres() -> None:
    X, _ = make_blobs(n_samples=2000, centers=5, n_features=3, cluster_std=2.5, random_state=9)
    reference = cluster.KMeans(5, init="k-means++", n_init=2, random_state=4).fit(X)
    solution = fit_kmeans(
        InMemoryEngine.from_arrays(X, None, 5), 5, init="k-means++", n_init=2, random_state=4
    )
    np.testing.assert_allclose(solution.centers, reference.cluster_centers_, rtol=1e-9, atol=1e-9)
    assert abs(solution.inertia - reference.inertia_) <= 1e-9 * reference.inertia_


def test_kmeans_reseeds_empty_clusters_deterministically() -> None:
    X = np.vstack([np.zeros((50, 2)), np.full((50, 2), 10.0), [[100.0, 100.0]]])
    start = np.array(
        [[0.0, 0.0], [10.0, 10.0], [-1000.0, -1000.0]]
    )  # third centre attracts nothing
    solution = fit_kmeans(InMemoryEngine.from_arrays(X, None, 4), 3, init=start, random_state=0)
    assert sorted(map(tuple, np.round(solution.centers, 6))) == [
        (0.0, 0.0),
        (10.0, 10.0),
        (100.0, 100.0),
    ]
    assert solution.inertia == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("n_partitions", [1, 5, 16])
def test_kmeans_parallel_rounds_in_one_pass_keep_the_two_pass_rows(n_partitions: int) -> None:
    """Each k-means|| round is one pass (cost, plus a superset of the rows the sampling rule
    can keep); the rows kept are those of the two-pass definition — a cost pass, then
    ``oversample`` with the total — bit for bit."""
    from distml.algorithms.engine import concat
    from distml.algorithms.kmeans import (
        _add_cost_and_rows,
        cost,
        cost_and_oversample,
        init_kmeans_parallel,
        oversample,
        smallest_keys,
    )

    X, _ = make_blobs(n_samples=3000, centers=6, n_features=4, random_state=11)
    engine = InMemoryEngine.from_arrays(X, n_partitions=n_partitions)
    k, seed, ell = 6, 7, 12.0
    sample = engine.map_reduce(smallest_keys, seed, 0, k, combine=lambda a, b: sorted(a + b)[:k])
    two_pass = one_pass = np.array([row for _, _, row in sample])[:1]
    for r in (1, 2):
        phi = engine.map_reduce(cost, two_pass)  # the definition: a cost pass, then sampling
        chosen = sorted(
            engine.map_reduce(oversample, two_pass, phi, ell, seed, r, combine=concat),
            key=lambda t: t[0],
        )
        assert chosen  # the rule keeps rows in both rounds here
        two_pass = np.vstack([two_pass, np.array([row for _, row in chosen])])
        total, maybe = engine.map_reduce(
            cost_and_oversample, one_pass, ell, seed, r, combine=_add_cost_and_rows
        )
        assert total == phi
        kept = sorted((i, row) for i, scaled, u, row in maybe if u < scaled / total)
        assert len(maybe) >= len(kept) == len(chosen)
        one_pass = np.vstack([one_pass, np.array([row for _, row in kept])])
    np.testing.assert_array_equal(one_pass, two_pass)
    steps: list[str | None] = []
    engine.progress = type("Steps", (), {"step": lambda self, detail=None: steps.append(detail)})()
    init_kmeans_parallel(engine, k, seed, rounds=2, oversampling=ell / k)
    assert steps.count("cost_and_oversample") == 2 and "cost" not in steps


def test_nearest_centre_sweeps_equal_the_full_distance_matrix_bit_for_bit() -> None:
    """The sweeps add a row's ‖x‖² to its minimum only (and fold -2 into the centres): the
    distances are the bits of ``max(‖x‖² - 2x·c + ‖c‖², 0)`` computed in full, the labels
    its argmin, and a Lloyd step's inertia is their sum."""
    from distml.algorithms.kmeans import (
        _buffer,
        _closest,
        _nearest_in_block,
        _norms,
        _Scores,
        _squared_distances,
        lloyd_step,
    )

    rng = np.random.default_rng(4)
    X = np.asfortranarray(rng.normal(size=(20_001, 6)) * 3)  # 3 blocks, the last one short
    centers = rng.normal(size=(7, 6))
    part = Partition(X, None, 0, 0, None, None)
    row_norms = np.einsum("ij,ij->i", X, X)  # as the kernels compute each block's
    full = np.vstack(
        [
            _squared_distances(X[lo : lo + 8192], row_norms[lo : lo + 8192], centers,
                               _norms(centers), _buffer(part, 7)).copy()
            for lo in range(0, len(X), 8192)
        ]
    )  # fmt: skip
    scores = _Scores(part, centers)
    nearest = [_nearest_in_block(scores(X[lo : lo + 8192]), row_norms[lo : lo + 8192])
               for lo in range(0, len(X), 8192)]  # fmt: skip
    labels = np.concatenate([block[0] for block in nearest])
    dist = np.concatenate([block[1] for block in nearest])
    np.testing.assert_array_equal(labels, full.argmin(axis=1))
    np.testing.assert_array_equal(dist, full.min(axis=1))
    np.testing.assert_array_equal(_closest(part, centers), full.min(axis=1))
    sums, counts, inertia, squares = lloyd_step(part, centers)
    assert squares == pytest.approx(float((X**2).sum()), rel=1e-12)  # for the tolerance
    np.testing.assert_array_equal(counts, np.bincount(labels, minlength=7))
    blocks = [full.min(axis=1)[lo : lo + 8192].sum() for lo in range(0, len(X), 8192)]
    assert inertia == sum(float(b) for b in blocks)


def test_contiguous_rows_and_the_lloyd_sums_taken_from_them() -> None:
    """``contiguous_rows`` copies each block (the last one short) into the one buffer it is
    given, Fortran-ordered for ``np.dot``; the Lloyd step's per-cluster sums taken from
    those copies are the sums of each cluster's rows."""
    from distml.algorithms.engine import contiguous_rows
    from distml.algorithms.kmeans import lloyd_step

    rng = np.random.default_rng(6)
    X = np.asfortranarray(rng.normal(size=(20_001, 6)))
    block = np.empty((8192, 6), order="F")
    for lo in range(0, len(X), 8192):
        rows = contiguous_rows(X, lo, block)
        np.testing.assert_array_equal(rows, X[lo : lo + 8192])
        assert np.shares_memory(rows, block) and rows.flags.f_contiguous
    assert len(rows) == 20_001 - 2 * 8192
    centers = rng.normal(size=(4, 6))
    labels = ((X[:, None, :] - centers[None]) ** 2).sum(-1).argmin(axis=1)
    sums, counts, _, _ = lloyd_step(Partition(X, None, 0, 0, None, None), centers)
    expected = np.stack([X[labels == j].sum(axis=0) for j in range(4)])
    np.testing.assert_allclose(sums, expected, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(counts, np.bincount(labels, minlength=4))


def test_closest_counts_give_each_row_to_its_first_closest_candidate() -> None:
    """k-means‖'s candidate weights: the counts of the full distance matrix's argmin,
    including rows exactly between two candidates (the first one takes them)."""
    from distml.algorithms.kmeans import closest_counts

    rng = np.random.default_rng(5)
    X = np.asfortranarray(rng.normal(size=(20_001, 6)))
    candidates = rng.normal(size=(25, 6))
    full = ((X[:, None, :] - candidates[None]) ** 2).sum(-1)
    counts = closest_counts(Partition(X, None, 0, 0, None, None), candidates)
    np.testing.assert_array_equal(counts, np.bincount(full.argmin(axis=1), minlength=25))
    between = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 5.0]])
    rows = np.asfortranarray([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 0.0], [0.0, 2.5]])
    counts = closest_counts(Partition(rows, None, 0, 0, None, None), between)
    assert counts.tolist() == [3.0, 1.0, 1.0]  # both origin rows to the first candidate


def test_recluster_matches_sklearns_weighted_kmeans_on_the_candidates() -> None:
    """k-means||'s last step in numpy (weighted k-means++, then Lloyd): the candidates'
    partition and weighted inertia are scikit-learn's ``KMeans(sample_weight=...)``'s,
    and a heavy candidate pulls its centre towards itself as the weights say."""
    from distml.algorithms.kmeans import recluster

    points, truth = make_blobs(
        n_samples=40, centers=5, n_features=3, cluster_std=0.5, center_box=(-20, 20), random_state=2
    )
    weights = np.random.default_rng(0).integers(1, 5000, size=40).astype(float)
    centers = recluster(points, weights, 5, seed=3)
    reference = cluster.KMeans(5, n_init=10, random_state=0).fit(points, sample_weight=weights)
    labels = ((points[:, None] - centers[None]) ** 2).sum(-1).argmin(1)
    assert adjusted_rand_score(truth, labels) == 1.0
    inertia = float(weights @ ((points - centers[labels]) ** 2).sum(1))
    assert inertia == pytest.approx(reference.inertia_, rel=1e-9)
    for j in range(5):  # every centre is its cluster's weighted mean
        mine = labels == j
        np.testing.assert_allclose(centers[j], weights[mine] @ points[mine] / weights[mine].sum())
    assert np.array_equal(recluster(points, weights, 5, seed=3), centers)  # seeded: repeatable


def _unpickled_at_odd_addresses(value: object) -> object:
    """``value`` through pickle protocol 5 with its buffers out of band, as Dask sends
    arrays, each buffer placed at an address that is not a multiple of 8 (frames merged
    into one message put them anywhere)."""
    import pickle

    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    moved = []
    for buffer in buffers:
        raw = buffer.raw()
        holder = bytearray(raw.nbytes + 64)
        start = (-np.frombuffer(holder, np.uint8).ctypes.data) % 64 + 3
        holder[start : start + raw.nbytes] = raw
        moved.append(memoryview(holder)[start : start + raw.nbytes])
    return pickle.loads(data, buffers=moved)


def test_arrays_received_at_odd_addresses_give_the_same_bits() -> None:
    """numpy's matmul uses BLAS only on aligned arrays and its own loop otherwise, which
    rounds differently: a partition or weights that a Dask worker received unaligned made a
    4-row logistic fit differ from the local one by an ulp in a third of the runs (on that
    machine's CPU; on others both paths round alike, so the test checks the realignment and
    the bits, not the difference). Partitions and a task's broadcast values are realigned
    (keeping their memory order) when unpickled."""
    import pickle

    from distml.algorithms.engine import Partition
    from distml.algorithms.logistic import binary_loss_grad
    from distml.backends.dask_tasks import _Apply

    rng = np.random.default_rng(3)
    for _ in range(20):
        X = np.asfortranarray(rng.normal(size=(4, 2)))
        part = Partition(X, rng.integers(0, 2, 4), np.arange(4))
        w = rng.normal(size=3)
        expected = binary_loss_grad(part, w, 1, True)
        raw = pickle.loads(pickle.dumps(X, protocol=5))
        assert raw.flags.aligned  # in-band pickles copy: aligned
        odd = _unpickled_at_odd_addresses(X)
        assert not odd.flags.aligned  # the situation this guards against
        got = _unpickled_at_odd_addresses(_Apply(binary_loss_grad, (w, 1, True)))
        moved = _unpickled_at_odd_addresses(part)
        assert moved.X.flags.aligned and moved.X.flags.f_contiguous
        assert got.broadcast[0].flags.aligned
        loss, grad = got(moved)
        assert loss == expected[0] and np.array_equal(grad, expected[1])
