"""Preprocessing: the same fitted pipeline and model on every engine, equal to scikit-learn's."""

from __future__ import annotations

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
from sklearn.compose import ColumnTransformer
from sklearn.feature_selection import SelectKBest, VarianceThreshold, f_classif, f_regression
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline as SkPipeline
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

import distml
from distml.backends import get_backend
from distml.errors import DataError, ModelError, SpecError
from distml.jobs import load_spec, parse_spec, run_job
from distml.preprocess import Impute, OneHot, Pipeline, Scale, Select

CITIES = ["paris", "lyon", "nice", "brest"]


def messy_frame(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    """Missing numbers and categories, a string column, a constant column."""
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 12, n)
    income = rng.lognormal(10, 0.5, n)
    city = rng.choice(CITIES, n)
    score = rng.normal(size=n)
    effect = pd.Series(city).map({"paris": 3.0, "lyon": 1.0, "nice": -1.0, "brest": 0.5}).to_numpy()
    y = 0.5 * age + 2e-4 * income + effect + 2 * score + rng.normal(size=n)
    frame = pd.DataFrame(
        {
            "age": np.where(rng.random(n) < 0.1, np.nan, age),
            "income": np.where(rng.random(n) < 0.05, np.nan, income),
            "city": np.where(rng.random(n) < 0.05, None, city),
            "const": 7.0,
            "score": score,
        }
    )
    frame["y"] = y
    frame["label"] = np.digitize(y, np.quantile(y, [0.33, 0.66]))  # 3 classes
    return frame


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_parts(tmp_path_factory.mktemp("messy") / "d", messy_frame(), 4)


def stages() -> list:
    return [
        Impute("median", columns=["age", "income"]),
        Impute("most_frequent", columns=["city"]),
        OneHot(columns=["city"]),
        Scale("standard"),
        Select("variance"),
    ]


def sklearn_pipeline(model) -> SkPipeline:  # type: ignore[no-untyped-def]
    columns = ColumnTransformer(
        [
            ("age_income", SimpleImputer(strategy="median"), ["age", "income"]),
            (
                "city",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                ["city"],
            ),
            ("rest", "passthrough", ["const", "score"]),
        ]
    )
    return SkPipeline(
        [
            ("columns", columns),
            ("scale", StandardScaler()),
            ("select", VarianceThreshold()),
            ("model", model),
        ]
    )


def sklearn_input(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.drop(columns=["y", "label"]).copy()
    out["city"] = out["city"].astype(object).where(out["city"].notna(), np.nan)
    return out


def test_pipeline_equals_sklearn_on_the_local_backend(messy: Path) -> None:
    frame = pq.read_table(messy).to_pandas()
    reference = sklearn_pipeline(linear_model.LinearRegression()).fit(
        sklearn_input(frame), frame["y"]
    )
    ds = distml.Dataset(
        messy, label="y", features=["age", "income", "city", "const", "score"], raw=True
    )
    with get_backend("local[2]") as backend:
        model = backend.fit(Pipeline(stages(), distml.LinearRegression()), backend.load(ds))
    impute_num, impute_city, one_hot, scale, select = model.stages
    sk_columns = reference.named_steps["columns"]
    np.testing.assert_array_equal(
        impute_num.statistics_, sk_columns.named_transformers_["age_income"].statistics_
    )
    city_steps = sk_columns.named_transformers_["city"]
    assert impute_city.statistics_ == city_steps[0].statistics_.tolist()
    assert one_hot.categories_ == [c.tolist() for c in city_steps[1].categories_]
    np.testing.assert_allclose(scale.offset_, reference.named_steps["scale"].mean_, rtol=1e-12)
    np.testing.assert_allclose(scale.scale_, reference.named_steps["scale"].scale_, rtol=1e-12)
    assert model.feature_names_out_ == [
        "age", "income", "city=brest", "city=lyon", "city=nice", "city=paris", "score"
    ]  # fmt: skip  # const dropped: zero variance
    assert select.selected_ == model.feature_names_out_
    np.testing.assert_array_equal(
        reference.named_steps["select"].get_support(),
        [s is not None and s > 0 for s in select.scores_],
    )
    np.testing.assert_allclose(model.model.coef_, reference.named_steps["model"].coef_, rtol=1e-8)
    np.testing.assert_allclose(
        model.predict(frame), reference.predict(sklearn_input(frame)), rtol=1e-10
    )


@pytest.mark.parametrize("engine", ["dask", "spark"])
def test_the_same_pipeline_and_model_on_every_engine(engine: str, messy: Path, request) -> None:
    address = request.getfixturevalue("dask_address") if engine == "dask" else "spark"
    if engine == "spark":
        request.getfixturevalue("spark_session")
    ds = distml.Dataset(
        messy, label="label", features=["age", "income", "city", "const", "score"], raw=True
    )
    split = distml.Split(0.25, 7)

    def make() -> Pipeline:
        return Pipeline([*stages()[:4], Select("k_best", k=5)], distml.LogisticRegression(C=0.5))

    with get_backend("local[2]") as local, get_backend(address) as other:
        a_data, b_data = (
            local.load(ds, split, keep_source=True),
            other.load(ds, split, keep_source=True),
        )
        a, b = local.fit(make(), a_data), other.fit(make(), b_data)
        metrics = local.evaluate(a, a_data.test), other.evaluate(b, b_data.test)
    for mine, theirs in zip(a.stages, b.stages, strict=True):
        x, y = mine.state()["fitted"], theirs.state()["fitted"]
        assert x.keys() == y.keys()
        for key in x:
            numbers = isinstance(x[key], list) and any(isinstance(v, float) for v in x[key])
            if numbers:  # statistics: equal within 1e-9 (None: an undefined score)
                as_float = lambda v: np.array([np.nan if e is None else e for e in v], float)  # noqa: E731
                np.testing.assert_allclose(as_float(y[key]), as_float(x[key]), rtol=1e-9)
            else:
                assert y[key] == x[key]
    np.testing.assert_allclose(b.model.coef_, a.model.coef_, rtol=1e-6)
    assert metrics[0] == metrics[1]


def test_k_best_and_minmax_equal_sklearn(messy: Path) -> None:
    frame = pq.read_table(messy).to_pandas()
    numeric = ["age", "income", "const", "score"]
    ds = distml.Dataset(messy, label="label", features=numeric, raw=True)
    for target, score, task_model in [
        ("label", f_classif, distml.LogisticRegression()),
        ("y", f_regression, distml.LinearRegression()),
    ]:
        ds = distml.Dataset(messy, label=target, features=numeric, raw=True)
        pipe = Pipeline([Impute("mean"), Scale("minmax"), Select("k_best", k=2)], task_model)
        with get_backend("local") as backend:
            backend.fit(pipe, backend.load(ds))
        reference = make_pipeline(SimpleImputer(), MinMaxScaler(), SelectKBest(score, k=2))
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", UserWarning
            )  # scikit-learn: "Features [2] are constant"
            reference.fit(frame[numeric], frame[target])
        np.testing.assert_allclose(pipe.stages[0].statistics_, reference[0].statistics_, rtol=1e-12)
        np.testing.assert_allclose(pipe.stages[1].offset_, reference[1].data_min_, rtol=1e-12)
        sk_scores = reference[2].scores_
        ours = np.array([np.nan if s is None else s for s in pipe.stages[2].scores_])
        np.testing.assert_allclose(ours, sk_scores, rtol=1e-9, equal_nan=True)
        assert pipe.stages[2].selected_ == [
            c for c, keep in zip(numeric, reference[2].get_support(), strict=True) if keep
        ]


def test_a_saved_pipeline_takes_raw_rows_and_ignores_unseen_categories(
    messy: Path, tmp_path: Path
) -> None:
    frame = pq.read_table(messy).to_pandas()
    ds = distml.Dataset(
        messy, label="y", features=["age", "income", "city", "const", "score"], raw=True
    )
    with get_backend("local") as backend:
        model = backend.fit(Pipeline(stages(), distml.LinearRegression()), backend.load(ds))
    model.save(tmp_path / "model")
    loaded = distml.load_model(tmp_path / "model")
    assert isinstance(loaded, Pipeline)
    rows = frame.drop(columns=["y", "label"]).head(50)
    np.testing.assert_array_equal(loaded.predict(rows), model.predict(rows))
    unseen = rows.assign(city="tokyo")
    encoded = loaded.transform(unseen)
    city_columns = [i for i, n in enumerate(loaded.feature_names_out_) if n.startswith("city=")]
    scale = loaded.stages[3]
    expected = [
        -scale.offset_[scale.columns_.index(loaded.feature_names_out_[i])]
        / scale.scale_[scale.columns_.index(loaded.feature_names_out_[i])]
        for i in city_columns
    ]
    np.testing.assert_allclose(
        encoded[:, city_columns], np.tile(expected, (50, 1))
    )  # all-zero, scaled
    with pytest.raises(ModelError, match=r"input lacks column\(s\) 'city'"):
        loaded.predict(rows.drop(columns=["city"]))


def test_preprocessing_errors_name_the_column(tmp_path: Path) -> None:
    frame = messy_frame(200)
    write_parts(tmp_path / "d", frame, 2)
    features = ["age", "income", "city", "const", "score"]
    ds = distml.Dataset(tmp_path / "d", label="y", features=features, raw=True)
    with get_backend("local") as backend:
        data = backend.load(ds)
        with pytest.raises(DataError, match=r"column 'city' is still a string after preprocessing"):
            backend.fit(
                Pipeline(
                    [
                        Impute("median", columns=["age", "income"]),
                        Impute("most_frequent", columns=["city"]),
                    ],
                    distml.LinearRegression(),
                ),
                data,
            )
        with pytest.raises(
            DataError,
            match=r"column 'age' has \d+ missing value\(s\) after preprocessing; add an impute",
        ):
            backend.fit(
                Pipeline(
                    [
                        Impute("most_frequent", columns=["city"]),
                        OneHot(),
                        Impute(columns=["income"]),
                    ],
                    distml.LinearRegression(),
                ),
                data,
            )
        with pytest.raises(
            DataError, match=r"one_hot: column 'city' has \d+ missing value\(s\); impute it first"
        ):
            backend.fit(Pipeline([OneHot()], distml.LinearRegression()), data)
        with pytest.raises(
            DataError, match=r"scale: column 'city' is string, scale needs numeric columns"
        ):
            backend.fit(Pipeline([Scale(columns=["city"])], distml.LinearRegression()), data)
        with pytest.raises(
            DataError, match=r"impute: column 'agee' not found \(did you mean 'age'\?\)"
        ):
            backend.fit(Pipeline([Impute(columns=["agee"])], distml.LinearRegression()), data)
    with pytest.raises(
        DataError,
        match=r"column 'city' is not numeric \(string\); list `features` explicitly or one_hot",
    ):
        distml.Dataset(tmp_path / "d", label="y")
    with pytest.raises(
        ModelError, match=r"impute: unknown strategy 'medain' \(did you mean 'median'\?\)"
    ):
        Impute("medain")


def test_preprocess_in_a_job_spec(messy: Path, tmp_path: Path) -> None:
    spec = {
        "name": "messy",
        "model": {"type": "linear_regression"},
        "data": {
            "train": str(messy),
            "label": "y",
            "features": ["age", "income", "city", "const", "score"],
        },
        "preprocess": [
            {"impute": {"strategy": "median", "columns": ["age", "income"]}},
            {"impute": {"strategy": "most_frequent", "columns": ["city"]}},
            {"one_hot": {"columns": ["city"]}},
            {"scale": None},
            {"select": {"method": "variance"}},
        ],
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = run_job(load_spec(path), tmp_path / "run")
    written = json.loads((result.out / "metrics.json").read_text())
    assert (
        written["model"]["features"][-1] == "score" and "const" not in written["model"]["features"]
    )
    assert [s["stage"] for s in written["model"]["preprocess"]] == [
        "impute",
        "impute",
        "one_hot",
        "scale",
        "select",
    ]
    predictions = pq.read_table(result.out / "predictions").to_pandas()
    assert "city" in predictions.columns and predictions["city"].isna().any()  # raw rows kept
    reloaded = distml.load_model(result.out / "model")
    np.testing.assert_allclose(reloaded.predict(predictions), predictions["prediction"], rtol=1e-12)
    for bad, message in [
        (
            [{"imput": {}}],
            r"preprocess\[0\]: unknown preprocessing stage 'imput' \(did you mean 'impute'\?\)",
        ),
        (
            [{"select": {"kk": 3}}],
            r"preprocess\[0\]: select: unknown parameter 'kk' \(did you mean 'k'\?\)",
        ),
        ([{"scale": {}, "select": {}}], r"preprocess\[0\]: each step is one stage"),
    ]:
        with pytest.raises(SpecError, match=message):
            parse_spec({**spec, "preprocess": bad}, source="job.yaml")
    with pytest.raises(
        SpecError, match=r"model.solver: mllib fits the Parquet data as Spark reads it"
    ):
        parse_spec(
            {**spec, "model": {"type": "linear_regression", "solver": "mllib"}}, source="job.yaml"
        )


def test_medians_stay_exact_when_the_candidates_must_be_narrowed_several_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from distml.algorithms.engine import InMemoryEngine, Partition
    from distml.preprocess import median

    # few candidates may be gathered: the median is found by repeated histogram passes
    monkeypatch.setattr(median, "GATHER_LIMIT", 25)
    rng = np.random.default_rng(7)
    n = 20_001
    columns = {
        "heavy": rng.standard_cauchy(n),  # far outliers: the middle sits in one narrow bin
        "ties": rng.integers(0, 5, n).astype(float),  # many equal values around the median
        "even": np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n)),  # NaNs, even count
        "tiny": np.r_[rng.normal(1.0, 1e-12, n - 1), 1e300],
    }
    columns["even"][0] = np.nan if np.isfinite(columns["even"]).sum() % 2 else 5.0
    bounds = np.linspace(0, n, 6).astype(int)
    parts = [
        Partition(
            np.empty((hi - lo, 0)),
            None,
            np.arange(lo, hi),
            i,
            frame={k: v[lo:hi] for k, v in columns.items()},
        )  # fmt: skip
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
    ]
    passes = []
    engine = InMemoryEngine(parts)
    original = engine._map_reduce
    engine._map_reduce = lambda fn, b, c: passes.append(fn.__name__) or original(fn, b, c)
    found = median.medians(engine, lambda part: part.frame, list(columns))
    expected = [np.nanmedian(v) for v in columns.values()]
    assert np.isfinite(columns["even"]).sum() % 2 == 0
    np.testing.assert_array_equal(found, expected)  # exact: error bound 0
    assert passes.count("_histograms") >= 2 and passes[-1] == "_gather"


def test_constant_imputation_fills_numbers_and_strings_as_scikit_learn(messy: Path) -> None:
    frame = pq.read_table(messy).to_pandas()
    ds = distml.Dataset(messy, label="y", features=["age", "city", "score"], raw=True)
    stages = [
        Impute("constant", columns=["age"], fill_value=-1.0),
        Impute("constant", columns=["city"]),  # scikit-learn's default for strings
        OneHot(columns=["city"]),
    ]
    with get_backend("local[2]") as backend:
        model = backend.fit(Pipeline(stages, distml.LinearRegression()), backend.load(ds))
    reference = SkPipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        ("age", SimpleImputer(strategy="constant", fill_value=-1.0), ["age"]),
                        (
                            "city",
                            make_pipeline(
                                SimpleImputer(strategy="constant"),
                                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                            ),
                            ["city"],
                        ),
                        ("rest", "passthrough", ["score"]),
                    ]
                ),
            ),
            ("model", linear_model.LinearRegression()),
        ]
    ).fit(sklearn_input(frame)[["age", "city", "score"]], frame["y"])
    assert model.stages[0].statistics_ == [-1.0]
    assert model.stages[1].statistics_ == ["missing_value"]
    assert model.stages[2].categories_ == [["brest", "lyon", "missing_value", "nice", "paris"]]
    np.testing.assert_allclose(model.model.coef_, reference.named_steps["model"].coef_, rtol=1e-8)
