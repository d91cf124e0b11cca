"""L1, L2 and elastic-net penalties for linear and logistic regression against scikit-learn:
native solvers on 1, 4 and 16 partitions, streaming, the sklearn/MLlib/dask-ml solvers,
parameter checks and job specs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_parts
from scipy.special import logsumexp
from sklearn import linear_model

import distml
from distml.algorithms.engine import InMemoryEngine
from distml.backends import get_backend
from distml.errors import ConvergenceWarning, ModelError, SpecError
from distml.jobs import parse_spec, run_job

TIGHT = {"tol": 1e-12, "max_iter": 100_000}


def regression_data(n: int = 600, d: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correlated features of different scales and means; a third of the true weights 0;
    the label far from unit variance (MLlib's label scaling shows)."""
    rng = np.random.default_rng(seed)
    mixing = np.eye(d) + 0.4 * rng.normal(size=(d, d))
    X = rng.normal(size=(n, d)) @ mixing * np.linspace(0.5, 3.0, d) + 2.0
    w = rng.normal(size=d) * 2.0
    w[::3] = 0.0
    y = 4.0 * (X @ w + 1.5 + rng.normal(size=n))
    return X, y


def classification_data(k: int, n: int = 500, d: int = 6, seed: int = 1):
    rng = np.random.default_rng(seed + k)
    X = rng.normal(size=(n, d)) * np.linspace(0.7, 1.5, d) + 0.3
    W = rng.normal(size=(k, d)) * 1.5
    W[:, ::2] *= 0.05  # weak features the L1 term removes
    y = np.argmax(X @ W.T + rng.gumbel(size=(n, k)), axis=1)
    return X, y


def sklearn_enet(penalty: str, alpha: float, l1_ratio: float | None, **kw):
    if penalty == "l1":
        return linear_model.Lasso(alpha=alpha, **kw)
    return linear_model.ElasticNet(alpha=alpha, l1_ratio=l1_ratio, **kw)


def logistic_objective(coef, intercept, X, y, classes, C: float, l1_ratio: float) -> float:
    """scikit-learn's ``C Σ loss + l1_ratio ||W||₁ + ½(1 - l1_ratio) ||W||²``."""
    Z = X @ np.atleast_2d(coef).T + intercept
    if Z.shape[1] == 1:
        t = (y == classes[1]).astype(float)
        loss = np.sum(np.logaddexp(0.0, Z[:, 0]) - t * Z[:, 0])
    else:
        target = np.searchsorted(classes, y)
        loss = np.sum(logsumexp(Z, axis=1) - Z[np.arange(len(y)), target])
    return C * loss + l1_ratio * np.abs(coef).sum() + 0.5 * (1 - l1_ratio) * np.sum(coef**2)


# -- linear regression: Lasso and ElasticNet ------------------------------------------------------
@pytest.mark.parametrize("parts", [1, 4, 16])
@pytest.mark.parametrize(
    ("penalty", "alpha", "l1_ratio", "fit_intercept"),
    [
        ("l1", 4.0, None, True),
        ("elasticnet", 8.0, 0.5, True),
        ("elasticnet", 2.0, 0.2, False),
        ("l1", 8.0, None, False),
    ],
)
def test_lasso_and_elastic_net_match_sklearn(
    penalty: str, alpha: float, l1_ratio: float | None, fit_intercept: bool, parts: int
) -> None:
    X, y = regression_data()
    reference = sklearn_enet(penalty, alpha, l1_ratio, fit_intercept=fit_intercept, **TIGHT)
    reference.fit(X, y)
    model = distml.LinearRegression(
        penalty=penalty, alpha=alpha, l1_ratio=l1_ratio, fit_intercept=fit_intercept, **TIGHT
    ).fit_engine(InMemoryEngine.from_arrays(X, y, parts))
    scale = np.max(np.abs(reference.coef_))
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=0, atol=1e-6 * scale)
    np.testing.assert_array_equal(model.coef_ == 0, reference.coef_ == 0)
    assert 0 < np.sum(model.coef_ == 0) < X.shape[1]  # the penalty zeroes some, not all
    assert model.intercept_ == pytest.approx(reference.intercept_, rel=1e-6, abs=1e-9)
    centred = y - y.mean() if fit_intercept else y
    assert 0 <= model.dual_gap_ <= 1e-12 * np.mean(centred**2)  # scikit-learn's stopping rule


def test_default_tolerance_stops_where_sklearn_stops() -> None:
    X, y = regression_data(seed=3)
    for penalty, l1_ratio in (("l1", None), ("elasticnet", 0.7)):
        reference = sklearn_enet(penalty, 0.2, l1_ratio, precompute=True).fit(X, y)
        model = distml.LinearRegression(penalty=penalty, alpha=0.2, l1_ratio=l1_ratio)
        model.fit_engine(InMemoryEngine.from_arrays(X, y, 4))
        assert model.n_iter_ == reference.n_iter_ > 1
        assert model.dual_gap_ == pytest.approx(reference.dual_gap_, rel=1e-6, abs=1e-12)
        np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-9, atol=1e-12)


def test_max_iter_warns_like_sklearn() -> None:
    X, y = regression_data()
    model = distml.LinearRegression(penalty="l1", alpha=0.01, tol=1e-14, max_iter=2)
    with pytest.warns(ConvergenceWarning, match=r"did not converge in max_iter=2 sweeps"):
        model.fit_engine(InMemoryEngine.from_arrays(X, y, 4))
    assert model.n_iter_ == 2


def test_l2_and_no_penalty_keep_their_meaning() -> None:
    X, y = regression_data()
    n = len(y)
    ols = linear_model.LinearRegression().fit(X, y)
    ridge = linear_model.Ridge(alpha=40.0).fit(X, y)
    cases = [
        (distml.LinearRegression(), ols),
        (distml.LinearRegression(penalty=None), ols),
        (distml.LinearRegression(penalty="l1", alpha=0.0), ols),
        (distml.LinearRegression(alpha=40.0), ridge),
        # ElasticNet without its L1 part is Ridge(alpha·n), solved exactly
        (distml.LinearRegression(penalty="elasticnet", alpha=40.0 / n, l1_ratio=0.0), ridge),
    ]
    for model, reference in cases:
        model.fit_engine(InMemoryEngine.from_arrays(X, y, 4))
        np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-8)
        assert model.n_iter_ == 1 and not hasattr(model, "dual_gap_")  # closed form: one pass


def test_lasso_reads_the_data_once_and_streams(tmp_path: Path, monkeypatch) -> None:
    X, y = regression_data(n=2000, seed=5)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])]).assign(y=y)
    ds = distml.Dataset(write_parts(tmp_path / "reg", frame, 5), label="y")
    params = {"penalty": "elasticnet", "alpha": 0.4, "l1_ratio": 0.8, **TIGHT}
    reference = linear_model.ElasticNet(alpha=0.4, l1_ratio=0.8, **TIGHT).fit(X, y)
    with get_backend("local[2]", memory_limit=1) as streaming:
        data = streaming.load(ds)
        assert not data.train.can_cache
        passes: list[str] = []
        engine_type = type(data.train)
        original = engine_type._map_reduce

        def counted(self, fn, broadcast, combine):  # type: ignore[no-untyped-def]
            passes.append(fn.__name__)
            return original(self, fn, broadcast, combine)

        monkeypatch.setattr(engine_type, "_map_reduce", counted)
        model = streaming.fit(distml.LinearRegression(**params), data)
    assert passes == ["partition_moments"]
    in_memory = distml.LinearRegression(**params).fit_engine(InMemoryEngine.from_arrays(X, y, 5))
    np.testing.assert_allclose(model.coef_, in_memory.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        model.coef_, reference.coef_, atol=1e-6 * np.max(np.abs(reference.coef_))
    )


# -- logistic regression: l1 and elasticnet ---------------------------------------------------------
@pytest.mark.parametrize("parts", [1, 4, 16])
@pytest.mark.parametrize(
    ("k", "C", "l1_ratio"), [(2, 0.05, 1.0), (2, 0.1, 0.5), (3, 0.05, 1.0), (3, 0.2, 0.3)]
)
def test_logistic_l1_and_elastic_net_match_sklearn(
    k: int, C: float, l1_ratio: float, parts: int
) -> None:
    X, y = classification_data(k)
    reference = linear_model.LogisticRegression(
        C=C, l1_ratio=l1_ratio, solver="saga", random_state=0, **TIGHT
    ).fit(X, y)
    model = distml.LogisticRegression(C=C, l1_ratio=l1_ratio, tol=1e-10, max_iter=10_000)
    model.fit_engine(InMemoryEngine.from_arrays(X, y, parts))
    model.set_feature_info(None, None, n_features=X.shape[1])
    args = (X, y, reference.classes_, C, l1_ratio)
    ours = logistic_objective(model.coef_, model.intercept_, *args)
    theirs = logistic_objective(reference.coef_, reference.intercept_, *args)
    assert ours == pytest.approx(theirs, rel=1e-6)
    assert model.objective_ * C * len(y) == pytest.approx(ours, rel=1e-12)
    np.testing.assert_array_equal(model.predict(X), reference.predict(X))
    np.testing.assert_array_equal(model.coef_ == 0, np.abs(reference.coef_) < 1e-10)
    assert 0 < np.sum(model.coef_ == 0) < model.coef_.size
    ridge_like = distml.LogisticRegression(C=C).fit_engine(InMemoryEngine.from_arrays(X, y))
    assert not np.any(ridge_like.coef_ == 0)  # the zeros come from the L1 term


def test_penalty_spellings_resolve_as_sklearn_does() -> None:
    X, y = classification_data(3)
    engine = InMemoryEngine.from_arrays(X, y, 4)
    fits = {
        name: model.fit_engine(engine).coef_
        for name, model in {
            "l1_ratio=1": distml.LogisticRegression(C=0.1, l1_ratio=1.0),
            "penalty=l1": distml.LogisticRegression(C=0.1, penalty="l1"),
            "elasticnet,1": distml.LogisticRegression(C=0.1, penalty="elasticnet", l1_ratio=1),
            "C=inf": distml.LogisticRegression(C=np.inf, l1_ratio=0.5),
            "penalty=None": distml.LogisticRegression(penalty=None),
        }.items()
    }
    np.testing.assert_array_equal(fits["penalty=l1"], fits["l1_ratio=1"])
    np.testing.assert_array_equal(fits["elasticnet,1"], fits["l1_ratio=1"])
    np.testing.assert_array_equal(fits["C=inf"], fits["penalty=None"])
    assert np.sum(fits["l1_ratio=1"] == 0) > 0 and np.all(fits["C=inf"] != 0)
    assert distml.LogisticRegression().effective_penalty() == ("l2", 0.0)
    assert distml.LogisticRegression(l1_ratio=0.25).effective_penalty() == ("elasticnet", 0.25)


# -- scikit-learn solver ------------------------------------------------------------------------
def test_sklearn_solver_uses_lasso_elastic_net_and_saga() -> None:
    X, y = regression_data()
    model = distml.LinearRegression(penalty="elasticnet", alpha=0.3, solver="sklearn").fit(X, y)
    reference = linear_model.ElasticNet(alpha=0.3).fit(X, y)  # l1_ratio unset: 0.5 in both
    np.testing.assert_array_equal(model.coef_, reference.coef_)
    assert model.n_iter_ == reference.n_iter_
    native = distml.LinearRegression(penalty="elasticnet", alpha=0.3).fit(X, y)
    np.testing.assert_allclose(native.coef_, reference.coef_, rtol=1e-6, atol=1e-9)

    Xc, yc = classification_data(3)
    kw = {"C": 0.1, "l1_ratio": 0.6, "tol": 1e-10, "max_iter": 10_000}
    library = distml.LogisticRegression(solver="sklearn", **kw).fit(Xc, yc)
    native_c = distml.LogisticRegression(**kw).fit(Xc, yc)
    args = (Xc, yc, library.classes_, 0.1, 0.6)
    assert logistic_objective(library.coef_, library.intercept_, *args) == pytest.approx(
        logistic_objective(native_c.coef_, native_c.intercept_, *args), rel=1e-6
    )
    np.testing.assert_array_equal(library.coef_ == 0, native_c.coef_ == 0)


def test_penalised_models_save_and_load(tmp_path: Path) -> None:
    X, y = regression_data()
    model = distml.LinearRegression(penalty="l1", alpha=0.5).fit(X, y)
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["params"]["penalty"] == "l1" and meta["attributes"]["n_iter_"] == model.n_iter_
    loaded = distml.load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.dual_gap_ == model.dual_gap_


# -- parameter checks -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            distml.LinearRegression(penalty="elastic_net"),
            r"penalty must be 'l2', 'l1', 'elasticnet' or null, got 'elastic_net' "
            r"\(did you mean 'elasticnet'\?\)",
        ),
        (distml.LinearRegression(penalty="l1", alpha=-0.1), r"alpha must be a number >= 0"),
        (
            distml.LinearRegression(penalty="elasticnet", alpha=1, l1_ratio=1.5),
            r"l1_ratio must be a number between 0 and 1, got 1.5",
        ),
        (
            distml.LinearRegression(alpha=1, l1_ratio=0.5),
            r"l1_ratio is only used with penalty 'elasticnet' .*penalty 'l2'",
        ),
        (distml.LinearRegression(penalty=None, alpha=2), r"alpha=2 is ignored by penalty null"),
        (distml.LinearRegression(penalty="l1", alpha=1, tol=-1), r"tol must be a number >= 0"),
        (distml.LinearRegression(penalty="l1", max_iter=0), r"max_iter must be an integer >= 1"),
        (
            distml.LogisticRegression(penalty="L1"),
            r"penalty must be 'auto', 'l2', 'l1', 'elasticnet' or null, got 'L1' "
            r"\(did you mean 'l1'\?\)",
        ),
        (distml.LogisticRegression(l1_ratio=-0.2), r"l1_ratio must be a number between 0 and 1"),
        (
            distml.LogisticRegression(penalty="l1", l1_ratio=0.5),
            r"l1_ratio=0.5 is ignored by penalty 'l1'; use penalty 'elasticnet'",
        ),
        (
            distml.LogisticRegression(penalty="l2", l1_ratio=1.0),
            r"l1_ratio=1.0 is ignored by penalty 'l2'",
        ),
        (distml.LogisticRegression(C=float("nan")), r"C must be a number > 0, got nan"),
    ],
)
def test_bad_penalty_parameters_are_one_line_errors(model, message: str) -> None:
    X, y = classification_data(2)
    with pytest.raises(ModelError, match=message) as info:
        model.fit(X, y)
    assert "\n" not in str(info.value)


def test_job_specs_check_and_use_the_penalty(tmp_path: Path) -> None:
    def spec(**params):  # type: ignore[no-untyped-def]
        return {
            "name": "lasso",
            "model": {"type": "linear_regression", "params": params},
            "data": {
                "train": str(tmp_path / "train"),
                "test": str(tmp_path / "test"),
                "label": "y",
            },
            "backend": "local[2]",
        }

    with pytest.raises(SpecError, match=r"job.yaml: model: penalty must be .*'lasso'"):
        parse_spec(spec(penalty="lasso"), source="job.yaml")
    with pytest.raises(SpecError, match=r"model: l1_ratio is only used with penalty 'elasticnet'"):
        parse_spec(spec(penalty="l1", alpha=0.1, l1_ratio=0.5), source="job.yaml")
    X, y = regression_data(n=800, seed=7)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])]).assign(y=y)
    write_parts(tmp_path / "train", frame.iloc[:600], 3)
    write_parts(tmp_path / "test", frame.iloc[600:], 1)
    result = run_job(parse_spec(spec(penalty="l1", alpha=0.5, tol=1e-12)), tmp_path / "run")
    reference = linear_model.Lasso(alpha=0.5, tol=1e-12).fit(X[:600], y[:600])
    saved = distml.load_model(result.out / "model")
    np.testing.assert_allclose(
        saved.coef_, reference.coef_, atol=1e-6 * np.max(np.abs(reference.coef_))
    )
    np.testing.assert_array_equal(saved.coef_ == 0, reference.coef_ == 0)


# -- library solvers on real engines --------------------------------------------------------------
@pytest.fixture(scope="module")
def parquet_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    root = tmp_path_factory.mktemp("regularization")
    X, y = regression_data(n=1500, seed=11)
    sets = {"regression": (X, y)}
    for k in (2, 3):
        sets[f"classes{k}"] = classification_data(k, n=1200)
    rng = np.random.default_rng(12)
    Xu = rng.normal(size=(1200, 5)) * np.arange(1, 6) + 1.0  # uneven scales, nonzero means
    sets["uneven"] = (Xu, (Xu @ rng.normal(size=5) + 0.5 + rng.logistic(size=1200) > 0) * 1)
    paths = {}
    for name, (X, y) in sets.items():
        frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])]).assign(y=y)
        paths[name] = (write_parts(root / name, frame, 3), X, y)
    return paths


@pytest.mark.spark
def test_mllib_matches_sklearn_with_every_penalty(parquet_sets, spark_session) -> None:
    path, X, y = parquet_sets["regression"]
    assert np.std(y) > 10  # MLlib's label scaling matters: elasticNetParam != l1_ratio
    linear = [
        ("elasticnet", 2.0, 0.4, linear_model.ElasticNet(alpha=2.0, l1_ratio=0.4, **TIGHT)),
        ("l1", 2.0, None, linear_model.Lasso(alpha=2.0, **TIGHT)),
    ]
    with get_backend("spark") as spark:
        data = spark.load(distml.Dataset(path, label="y"), solver="mllib")
        for penalty, alpha, l1_ratio, reference in linear:
            model = distml.LinearRegression(
                penalty=penalty, alpha=alpha, l1_ratio=l1_ratio, tol=1e-10, solver="mllib"
            )
            spark.fit(model, data)
            reference.fit(X, y)
            scale = np.max(np.abs(reference.coef_))
            np.testing.assert_allclose(model.coef_, reference.coef_, rtol=0, atol=1e-6 * scale)
            np.testing.assert_array_equal(model.coef_ == 0, reference.coef_ == 0)
            assert model.intercept_ == pytest.approx(reference.intercept_, rel=1e-6)
        for k, C, l1_ratio in ((2, 0.02, 1.0), (3, 0.05, 0.5)):
            path_c, Xc, yc = parquet_sets[f"classes{k}"]
            model = distml.LogisticRegression(C=C, l1_ratio=l1_ratio, tol=1e-8, solver="mllib")
            spark.fit(model, spark.load(distml.Dataset(path_c, label="y"), solver="mllib"))
            reference = linear_model.LogisticRegression(
                C=C, l1_ratio=l1_ratio, solver="saga", random_state=0, **TIGHT
            ).fit(Xc, yc)
            args = (Xc, yc, reference.classes_, C, l1_ratio)
            assert logistic_objective(model.coef_, model.intercept_, *args) == pytest.approx(
                logistic_objective(reference.coef_, reference.intercept_, *args), rel=1e-6
            )
            np.testing.assert_array_equal(model.predict(Xc), reference.predict(Xc))
            assert np.sum(model.coef_ == 0) > 0


@pytest.mark.dask
def test_dask_ml_maps_l2_exactly_and_refuses_l1(parquet_sets, dask_address: str) -> None:
    path, X, y = parquet_sets["regression"]
    path_c, Xc, yc = parquet_sets["uneven"]
    with get_backend(dask_address) as backend:
        data = backend.load(distml.Dataset(path, label="y"))
        ridge = backend.fit(distml.LinearRegression(alpha=50.0, solver="dask-ml"), data)
        reference = linear_model.Ridge(alpha=50.0).fit(X, y)
        # dask-glm's L-BFGS stops at SciPy's default relative decrease (factr=1e7): ~5e-5 here,
        # while a factor 2 in alpha would move the coefficients by ~4e-2
        scale = np.max(np.abs(reference.coef_))
        np.testing.assert_allclose(ridge.coef_, reference.coef_, rtol=0, atol=2e-4 * scale)
        doubled = linear_model.Ridge(alpha=100.0).fit(X, y).coef_
        assert np.max(np.abs(doubled - reference.coef_)) > 50 * 2e-4 * scale
        assert ridge.intercept_ == pytest.approx(reference.intercept_, rel=1e-4)
        for model, name in (
            (distml.LinearRegression(penalty="l1", alpha=0.5, solver="dask-ml"), "l1"),
            (
                distml.LinearRegression(penalty="elasticnet", alpha=0.5, solver="dask-ml"),
                "elasticnet",
            ),
        ):
            with pytest.raises(
                ModelError,
                match=rf"solver 'dask-ml' cannot fit linear_regression with penalty '{name}'",
            ):
                backend.fit(model, data)
        classes = backend.load(distml.Dataset(path_c, label="y"))
        # features of uneven scale: dask-glm's default standardising would change the answer
        logistic = backend.fit(distml.LogisticRegression(C=0.01, solver="dask-ml"), classes)
        reference_c = linear_model.LogisticRegression(C=0.01, tol=1e-10).fit(Xc, yc)
        args = (Xc, yc, reference_c.classes_, 0.01, 0.0)
        assert logistic_objective(logistic.coef_, logistic.intercept_, *args) == pytest.approx(
            logistic_objective(reference_c.coef_, reference_c.intercept_, *args), rel=1e-6
        )
        with pytest.raises(ModelError, match=r"logistic_regression with penalty 'elasticnet'"):
            backend.fit(distml.LogisticRegression(l1_ratio=0.5, solver="dask-ml"), classes)
