"""Every remaining bad input names its culprit in one line (exact error class)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import regression_frame, write_parts

import distml
from distml.backends import get_backend, parse_backend
from distml.data.examples import write_example
from distml.data.generate import Recipe, generate
from distml.data.reader import load_partition
from distml.errors import BackendError, DataError, ModelError, SpecError
from distml.jobs import load_spec, parse_spec


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        (Recipe("spirals", rows=10), r"unknown dataset kind 'spirals'; choose one of regression"),
        (Recipe("regression", rows=0), r"--rows must be >= 1, got 0"),
        (Recipe("regression", rows=3, partitions=5), r"--partitions \(5\) exceeds --rows \(3\)"),
        (Recipe("classification", rows=10, classes=1), r"--classes must be >= 2, got 1"),
        (Recipe("blobs", rows=10, centers=0), r"--centers must be >= 1, got 0"),
    ],
)
def test_generate_recipes(tmp_path: Path, recipe: Recipe, message: str) -> None:
    with pytest.raises(DataError, match=message):
        generate(recipe, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_example(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"unknown example 'example9'; choose one of example1"):
        write_example("example9", tmp_path / "e")


def test_nan_label_in_parquet_names_file_and_column(tmp_path: Path) -> None:
    frame = regression_frame(30)
    frame.loc[4, "y"] = np.nan
    write_parts(tmp_path / "d", frame, 1)
    ds = distml.Dataset(tmp_path / "d", label="y")
    with pytest.raises(DataError, match=r"part-00000.parquet: label column 'y' has 1 missing, NaN"):
        load_partition(ds.uri, ds.partitions[0], ds.features, ds.label)


def test_missing_string_label(tmp_path: Path) -> None:
    write_parts(tmp_path / "d", pd.DataFrame({"a": [1.0, 2.0], "c": ["x", None]}), 1)
    ds = distml.Dataset(tmp_path / "d", label="c")
    with pytest.raises(DataError, match=r"label column 'c' has 1 missing value"):
        load_partition(ds.uri, ds.partitions[0], ds.features, ds.label)


def test_feature_selection_errors(regression_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"`features` is an empty list"):
        distml.Dataset(regression_dir, label="y", features=[])
    with pytest.raises(DataError, match=r"column 'y' is both label and feature"):
        distml.Dataset(regression_dir, label="y", features=["x0", "y"])
    write_parts(tmp_path / "only", pd.DataFrame({"y": [1.0, 2.0]}), 1)
    with pytest.raises(DataError, match=r"no feature columns besides the label 'y'"):
        distml.Dataset(tmp_path / "only", label="y")


def test_invalid_filters(regression_dir: Path) -> None:
    with pytest.raises(DataError, match=r"filter operator '~~' is not one of"):
        distml.Dataset(regression_dir, label="y", filters=[("x0", "~~", 1)])
    with pytest.raises(DataError, match=r"filter .*'x9'"):
        distml.Dataset(regression_dir, label="y", filters=[("x9", "==", 1)])


def test_zero_threads_and_unknown_backend_option() -> None:
    with pytest.raises(BackendError, match=r"backend 'local\[0\]': thread count must be >= 1"):
        parse_backend("local[0]")
    with pytest.raises(BackendError, match=r"backend 'local': invalid option .*'workers'"):
        get_backend("local", workers=2)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            distml.LinearRegression(fit_intercept="yes"),
            r"fit_intercept must be true or false, got 'yes'",
        ),
        (distml.LogisticRegression(max_iter=0), r"max_iter must be an integer >= 1, got 0"),
        (distml.LogisticRegression(tol=-1.0), r"tol must be a number >= 0, got -1.0"),
        (distml.KMeans(n_clusters=2, n_init=0), r"n_init must be 'auto' or an integer >= 1, got 0"),
        (distml.KMeans(n_clusters=2, init=np.zeros((3, 2))), r"init has 3 rows, need n_clusters"),
        (distml.LinearRegression(solver="mllib"), r"solver 'mllib' needs its backend"),
    ],
)
def test_more_invalid_params(model, message: str) -> None:
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ModelError, match=message):
        model.fit(X, X[:, 0] > 0)


def test_numpy_target_checks() -> None:
    X = np.ones((4, 2))
    # scikit-learn's checks and words, as distml errors (also ValueError), on one line
    cases = [
        ((X,), r"requires y to be passed, but the target y is None"),
        ((X, np.array([1.0, np.nan, 2.0, 3.0])), r"y contains NaN or infinite values"),
        ((X, X), r"y should be a 1d array, got an array of shape \(4, 2\)"),
        ((X, np.ones(3)), r"inconsistent numbers of samples: \[4, 3\]"),
        ((np.ones(4), np.ones(4)), r"Expected 2D array, got 1D array instead: Reshape your"),
    ]
    for args, message in cases:
        with pytest.raises(DataError, match=message) as info:
            distml.LinearRegression().fit(*args)
        assert isinstance(info.value, ValueError) and "\n" not in str(info.value)
        assert "array=" not in str(info.value)  # the data is never echoed


def test_corrupt_model_metadata(tmp_path: Path) -> None:
    model = distml.LinearRegression().fit(np.eye(3), np.arange(3.0))
    model.save(tmp_path / "m")
    (tmp_path / "m" / "model.json").write_text(
        json.dumps({"format_version": 1, "type": "decision_tree"})
    )
    with pytest.raises(DataError, match=r"m/model.json: type 'decision_tree' is not a model type"):
        distml.load_model(tmp_path / "m")


def test_corrupt_or_missing_model_arrays_and_keys(tmp_path: Path) -> None:
    model = distml.LinearRegression().fit(np.eye(3), np.arange(3.0))
    model.save(tmp_path / "m")
    metadata = json.loads((tmp_path / "m" / "model.json").read_text())
    del metadata["features"]
    (tmp_path / "m" / "model.json").write_text(json.dumps(metadata))
    with pytest.raises(
        DataError, match=r"m/model.json: features must be a non-empty list of column names"
    ):
        distml.load_model(tmp_path / "m")
    model.save(tmp_path / "p")
    ran = []

    class Payload:  # what a hostile pickle would run on load
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (ran.append, ("executed",))

    np.savez(tmp_path / "p" / "arrays.npz", coef_=np.array([Payload()], dtype=object))
    with pytest.raises(DataError, match=r"p/arrays.npz: not a plain numpy archive"):
        distml.load_model(tmp_path / "p")
    assert ran == []
    (tmp_path / "p" / "arrays.npz").unlink()
    with pytest.raises(DataError, match=r"p/arrays.npz: missing"):
        distml.load_model(tmp_path / "p")


def test_spec_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match=r"bad.yaml: invalid YAML"):
        load_spec(bad)
    raw = {"name": "t", "model": {"type": "kmeans"}, "data": {"train": "d"}}
    with pytest.raises(SpecError, match=r"--set 'model.params': expected key.path=value"):
        parse_spec(raw, overrides=["model.params"])
