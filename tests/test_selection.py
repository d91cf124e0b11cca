"""Cross-validation and search: read once, folds by row number, GridSearchCV's answers."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import write_parts
from sklearn import linear_model
from sklearn.model_selection import GridSearchCV, PredefinedSplit, RandomizedSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import distml
import distml.backends.local as local_module
from distml.backends import get_backend
from distml.errors import SpecError
from distml.jobs import load_spec, parse_spec, run_job
from distml.preprocess import Pipeline, Scale, Select
from distml.selection import Plan, best, cross_validate, fold_of, set_candidate
from distml.selection.search import candidates

ALPHAS = [1e2, 1e4, 1e5, 3e5, 1e6, 3e6]


@pytest.fixture(scope="module")
def million(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,000,000 rows × 8 features in 8 files, a large intercept (fit_intercept matters)."""
    rng = np.random.default_rng(11)
    n, d = 1_000_000, 8
    X = rng.normal(size=(n, d)) * np.arange(1, d + 1)
    y = X @ rng.normal(size=d) + 25.0 + rng.normal(scale=3.0, size=n)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(d)])
    frame["y"] = y
    return write_parts(tmp_path_factory.mktemp("million") / "d", frame, 8)


def test_grid_search_reads_once_and_agrees_with_grid_search_cv(
    million: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    real = local_module.load_partition

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        reads.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(local_module, "load_partition", counting)
    ds = distml.Dataset(million, label="y")
    grid = {"alpha": ALPHAS, "fit_intercept": [True, False]}
    plan = Plan(candidates(grid, None, 0, 0), folds=3, seed=5, metric="r2", parallel=2)
    assert len(plan.candidates) == 12
    with get_backend("local[2]") as backend:
        data = backend.load(ds)
        results = cross_validate(backend, distml.LinearRegression(), data, plan)
        chosen = best(results, plan)
    assert len(reads) == len(ds.partitions) == 8  # 36 fits, the files read once

    table = pq.read_table(million).to_pandas()
    X, y = table[ds.features].to_numpy(), table["y"].to_numpy()
    folds = PredefinedSplit(fold_of(np.arange(len(y)), 3, 5))  # the same folds
    reference = GridSearchCV(linear_model.Ridge(), grid, cv=folds, scoring="r2").fit(X, y)
    assert chosen.params == {f"model.{k}": v for k, v in reference.best_params_.items()}
    np.testing.assert_allclose(
        [r.mean for r in results], reference.cv_results_["mean_test_score"], rtol=1e-9
    )
    assert [r.params for r in results] == [
        {f"model.{k}": v for k, v in p.items()} for p in reference.cv_results_["params"]
    ]


@pytest.fixture(scope="module")
def classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(3)
    n = 6000
    X = rng.normal(size=(n, 6)) * [1, 10, 0.1, 5, 1, 1]
    y = (X @ [1.0, 0.2, 8.0, -0.3, 0.0, 0.0] + rng.logistic(size=n) > 0).astype(int)
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(6)])
    frame["label"] = y
    return write_parts(tmp_path_factory.mktemp("classes") / "d", frame, 4)


def test_pipeline_parameters_are_searched_like_sklearn(classes: Path) -> None:
    ds = distml.Dataset(classes, label="label", raw=True)
    grid = {"select.k": [2, 4, 6], "model.C": [0.001, 0.1, 10.0]}
    plan = Plan(candidates(grid, None, 0, 0), folds=4, seed=1, metric="accuracy")
    pipeline = Pipeline([Scale(), Select("k_best", k=2)], distml.LogisticRegression())
    with get_backend("local") as backend:
        results = cross_validate(backend, pipeline, backend.load(ds), plan)
    table = pq.read_table(classes).to_pandas()
    X, y = table[ds.features].to_numpy(), table["label"].to_numpy()
    from sklearn.feature_selection import SelectKBest, f_classif

    sk = make_pipeline(StandardScaler(), SelectKBest(f_classif), linear_model.LogisticRegression())
    sk_grid = {"selectkbest__k": grid["select.k"], "logisticregression__C": grid["model.C"]}
    reference = GridSearchCV(sk, sk_grid, cv=PredefinedSplit(fold_of(np.arange(len(y)), 4, 1)))
    reference.fit(X, y)
    chosen = best(results, plan)
    assert chosen.params == {
        "select.k": reference.best_params_["selectkbest__k"],
        "model.C": reference.best_params_["logisticregression__C"],
    }
    ours = {(r.params["select.k"], r.params["model.C"]): r.mean for r in results}
    for params, score in zip(
        reference.cv_results_["params"], reference.cv_results_["mean_test_score"], strict=True
    ):
        assert ours[(params["selectkbest__k"], params["logisticregression__C"])] == pytest.approx(
            score, abs=1e-12
        )


def test_random_search_samples_what_sklearn_samples(classes: Path) -> None:
    space = {"C": {"loguniform": [1e-4, 1e2]}, "fit_intercept": [True, False]}
    ours = candidates(None, space, 5, 42)
    import scipy.stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = RandomizedSearchCV(
            linear_model.LogisticRegression(),
            {"C": scipy.stats.loguniform(1e-4, 1e2), "fit_intercept": [True, False]},
            n_iter=5,
            random_state=42,
            cv=2,
        ).fit(np.random.default_rng(0).normal(size=(40, 2)), np.arange(40) % 2)
    assert ours == [{f"model.{k}": v for k, v in p.items()} for p in sk.cv_results_["params"]]


def test_search_in_a_job_spec_writes_search_csv(classes: Path, tmp_path: Path) -> None:
    spec = {
        "name": "tuned",
        "model": {"type": "logistic_regression"},
        "data": {"train": str(classes), "label": "label"},
        "preprocess": [{"scale": None}, {"select": {"method": "k_best", "k": 2}}],
        "cv": {"folds": 3, "seed": 4},
        "search": {"grid": {"select.k": [2, 6], "C": [0.01, 1.0]}, "metric": "f1"},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = run_job(load_spec(path), tmp_path / "run")
    with open(result.out / "search.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    assert list(rows[0]) == [
        "model.C", "select.k", "split0_f1", "split1_f1", "split2_f1", "mean_f1", "std_f1", "rank", "mean_fit_seconds"
    ]  # fmt: skip
    written = json.loads((result.out / "metrics.json").read_text())["cv"]
    best_row = min(rows, key=lambda r: int(r["rank"]))
    assert written["best_params"] == {
        "model.C": float(best_row["model.C"]),
        "select.k": int(best_row["select.k"]),
    }
    assert written["best_score"] == pytest.approx(float(best_row["mean_f1"]))
    assert result.model.stages[1].k == written["best_params"]["select.k"]  # refitted with the best
    assert result.model.model.C == written["best_params"]["model.C"]


@pytest.mark.parametrize("engine", ["dask", "spark"])
def test_cross_validation_scores_are_the_same_on_every_engine(
    engine: str, classes: Path, request
) -> None:
    address = request.getfixturevalue("dask_address") if engine == "dask" else "spark"
    if engine == "spark":
        request.getfixturevalue("spark_session")
    ds = distml.Dataset(classes, label="label")
    plan = Plan(candidates({"C": [0.01, 1.0]}, None, 0, 0), folds=3, seed=2, metric="accuracy")
    with get_backend("local") as local, get_backend(address) as other:
        ours = cross_validate(local, distml.LogisticRegression(), local.load(ds), plan)
        theirs = cross_validate(other, distml.LogisticRegression(), other.load(ds), plan)
    assert [r.scores for r in theirs] == [r.scores for r in ours]


def test_search_spec_errors_are_one_line() -> None:
    base = {
        "name": "t",
        "model": {"type": "logistic_regression"},
        "data": {"train": "d", "label": "y"},
    }
    for search, message in [
        (
            {"grid": {"CC": [1]}},
            r"search.grid: unknown parameter 'model.CC' \(did you mean 'model.C'\?\)",
        ),
        ({"grid": {"select.k": [1]}}, r"search.grid: unknown parameter 'select.k'"),
        ({"grid": {"C": [1]}, "random": {"C": [1]}}, r"search: give exactly one of grid or random"),
        (
            {"grid": {"C": [1]}, "metric": "r2"},
            r"search.metric: 'r2' is not a classification metric",
        ),
        (
            {"random": {"C": {"lognormal": [1, 2]}}},
            r"search.random.C: unknown distribution 'lognormal'",
        ),
    ]:
        with pytest.raises(SpecError, match=message):
            parse_spec({**base, "search": search}, source="job.yaml")
    with pytest.raises(SpecError, match=r"cv.folds: .*greater than or equal to 2"):
        parse_spec({**base, "cv": {"folds": 1}}, source="job.yaml")


def test_set_candidate_leaves_the_original_untouched() -> None:
    original = distml.LogisticRegression(C=1.0)
    chosen = set_candidate(original, {"model.C": 0.5})
    assert (original.C, chosen.C) == (1.0, 0.5)
