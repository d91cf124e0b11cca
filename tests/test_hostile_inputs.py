"""What a hostile but realistic user tried (issue 18): every case exits 2 with one line
naming the culprit, no traceback, and nothing deleted or left behind."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import regression_frame, write_parts

import distml
from distml.cli import main
from distml.errors import DataError

SPEC_HEAD = "name: hostile\nmodel: {type: linear_regression}\n"


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (what must survive a refused command)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _world(tmp: Path) -> None:
    """The inputs the cases point at: a regression folder, odd datasets, specs."""
    write_parts(tmp / "reg", regression_frame(200, d=3), 2)
    write_parts(tmp / "one", regression_frame(1, d=2), 1)
    frame = regression_frame(40, d=2)
    frame["prediction"] = 1.0
    write_parts(tmp / "clash", frame, 1)
    cls = regression_frame(60, d=2)
    write_parts(tmp / "cont", cls, 1)
    (tmp / "hive" / "year=2024").mkdir(parents=True)
    pq.write_table(pa.table({"x0": [1.0, 2.0], "y": [1.0, 2.0]}), tmp / "hive/year=2024/p.parquet")
    (tmp / "hivecol" / "year=2024").mkdir(parents=True)
    pq.write_table(
        pa.table({"x0": [1.0, 2.0], "year": [1, 2], "y": [1.0, 2.0]}),
        tmp / "hivecol/year=2024/p.parquet",
    )
    write_parts(tmp / "mixed", regression_frame(20, d=2), 2)
    pq.write_table(
        pa.table({"x0": pa.array([1, 2], pa.int32()), "x1": [1.0, 2.0], "y": [0.5, 0.1]}),
        tmp / "mixed" / "part-00001.parquet",
    )
    write_parts(tmp / "dangling", regression_frame(20, d=2), 1)
    os.symlink(tmp / "nowhere.parquet", tmp / "dangling" / "part-9.parquet")
    write_parts(tmp / "loop", regression_frame(20, d=2), 1)
    os.symlink(tmp / "loop", tmp / "loop" / "again")
    (tmp / "laughs.yaml").write_text('a: &a ["lol", "lol"]\nb: &b [*a, *a]\nc: [*b, *b]\n')
    (tmp / "bytes.yaml").write_bytes(bytes(range(128, 256)) * 3)
    (tmp / "plain.txt").write_text("not a folder")


def _spec(tmp: Path, body: str, name: str = "job.yaml") -> str:
    path = tmp / name
    path.write_text(SPEC_HEAD + body)
    return str(path)


Case = tuple[str, Callable[[Path], list[str]], str]

CASES: list[Case] = [
    (
        "billion laughs",
        lambda t: ["run", str(t / "laughs.yaml")],
        r"laughs.yaml: invalid YAML \(aliases",
    ),
    (
        "random bytes",
        lambda t: ["run", str(t / "bytes.yaml")],
        r"bytes.yaml: not a UTF-8 text file",
    ),
    (
        "negative split seed",
        lambda t: ["run", _spec(t, "data: {train: reg, label: y}\nsplit: {seed: -1}\n")],
        r"job.yaml: split.seed: Input should be greater than or equal to 0",
    ),
    (
        "huge split seed",
        lambda t: [
            "run",
            _spec(t, "data: {train: reg, label: y}\nsplit: {seed: 100000000000000000000000}\n"),
        ],
        r"job.yaml: split.seed: Input should be less than or equal to 4294967295",
    ),
    (
        "empty grid",
        lambda t: ["run", _spec(t, "data: {train: reg, label: y}\nsearch: {grid: {alpha: []}}\n")],
        r"job.yaml: search.grid.alpha: an empty list of values",
    ),
    (
        "memory limit lots",
        lambda t: [
            "run",
            _spec(t, "data: {train: reg, label: y}\nbackend: {name: dask, memory_limit: lots}\n"),
        ],
        r"job.yaml: backend.memory_limit: cannot parse 'lots'",
    ),
    (
        "zero workers",
        lambda t: [
            "run",
            _spec(t, "data: {train: reg, label: y}\nbackend: {name: dask, workers: 0}\n"),
        ],
        r"job.yaml: backend.workers: Input should be greater than or equal to 1",
    ),
    (
        "long value is not echoed",
        lambda t: [
            "run",
            _spec(t, "data: {train: reg, label: y}\nsplit: {test_size: '" + "x" * 5000 + "'}\n"),
        ],
        r"job.yaml: split.test_size: .*\(got 'x{20,60}\.\.\.\)$",
    ),
    (
        "split leaves no training rows (1 row)",
        lambda t: ["run", _spec(t, "data: {train: one, label: y}\n")],
        r"split.test_size 0.2 leaves 0 training and 1 test rows of 1",
    ),
    (
        "split leaves no training rows (0.9999)",
        lambda t: ["run", _spec(t, "data: {train: reg, label: y}\nsplit: {test_size: 0.9999}\n")],
        r"split.test_size 0.9999 leaves 0 training and 200 test rows",
    ),
    (
        "more folds than rows",
        lambda t: ["run", _spec(t, "data: {train: reg, label: y}\ncv: {folds: 5000}\n")],
        r"cv.folds is 5000 but there are only 160 training rows",
    ),
    (
        "input column named prediction",
        lambda t: ["run", _spec(t, "data: {train: clash, label: y}\n")],
        r"clash: column 'prediction' clashes with the 'prediction' column",
    ),
    (
        "continuous label for logistic regression",
        lambda t: [
            "run",
            str(
                _write(
                    t / "logit.yaml",
                    "name: l\nmodel: {type: logistic_regression}\ndata: {train: cont, label: y}\n",
                )
            ),
        ],
        r"cont: label column 'y' has continuous values",
    ),
    (
        "constant fill that is not a number",
        lambda t: [
            "run",
            _spec(
                t,
                "data: {train: reg, label: y}\npreprocess:\n  - impute: {strategy: constant, fill_value: abc}\n",
            ),
        ],
        r"impute: fill_value 'abc' is not a number, but column 'x0' is numeric",
    ),
    (
        "string filter on a numeric hive key",
        lambda t: [
            "run",
            _spec(t, "data: {train: hive, label: y, filters: [[year, '>=', abc]]}\n"),
        ],
        r"hive: filter on 'year' compares .*'abc'",
    ),
    (
        "unknown filter operator",
        lambda t: ["run", _spec(t, "data: {train: reg, label: y, filters: [[x0, '~~', 1]]}\n")],
        r"filter operator '~~' is not one of",
    ),
    (
        "hive key that is also a column",
        lambda t: ["run", _spec(t, "data: {train: hivecol, label: y}\n")],
        r"p.parquet: .*'year'",
    ),
    (
        "int32 and double files",
        lambda t: ["run", _spec(t, "data: {train: mixed, label: y}\n")],
        r"part-00001.parquet: column 'x0' has type int32, but double in .*part-00000.parquet",
    ),
    (
        "dangling parquet symlink",
        lambda t: ["run", _spec(t, "data: {train: dangling, label: y}\n")],
        r"part-9.parquet: a symbolic link to a missing file",
    ),
    (
        "symlink loop",
        lambda t: ["run", _spec(t, "data: {train: loop, label: y}\n")],
        r"loop.*symbolic link.*loop",
    ),
    (
        "--out under /proc",
        lambda t: ["run", _spec(t, "data: {train: reg, label: y}\n"), "--out", "/proc/distml"],
        r"/proc/distml: cannot write run folder under /proc",
    ),
    (
        "--out under a regular file",
        lambda t: [
            "run",
            _spec(t, "data: {train: reg, label: y}\n"),
            "--out",
            str(t / "plain.txt" / "run"),
        ],
        r"plain.txt",
    ),
    (
        "--out the training folder",
        lambda t: ["run", _spec(t, "data: {train: reg, label: y}\n"), "--out", str(t / "reg")],
        r"reg: .*input",
    ),
    (
        "--out the training folder's parent",
        lambda t: ["run", _spec(t, "data: {train: reg, label: y}\n"), "--out", str(t)],
        r"input",
    ),
    (
        "--rows nan",
        lambda t: ["data", "generate", "regression", "--rows", "nan", "--out", str(t / "g")],
        r"--rows: nan is not a whole number",
    ),
    (
        "--rows inf",
        lambda t: ["data", "generate", "regression", "--rows", "inf", "--out", str(t / "g")],
        r"--rows: inf is not a whole number",
    ),
    (
        "--rows 1e30",
        lambda t: ["data", "generate", "regression", "--rows", "1e30", "--out", str(t / "g")],
        r"--rows: 1e\+30 is not a whole number",
    ),
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("hostile")
    _world(tmp)
    return tmp


@pytest.mark.parametrize(("name", "argv", "culprit"), CASES, ids=[c[0] for c in CASES])
def test_refused_with_one_line_and_nothing_lost(
    world: Path, name: str, argv: Callable[[Path], list[str]], culprit: str, monkeypatch
) -> None:
    monkeypatch.chdir(world)
    args = argv(world)  # may write the case's spec
    before = _snapshot(world)
    result = CliRunner().invoke(main, args)
    output = result.output
    assert result.exit_code == 2, output
    assert "Traceback" not in output and "internal error" not in output
    errors = [line for line in output.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1, output
    assert re.search(culprit, errors[0]), errors[0]
    assert len(errors[0]) < 400
    after = _snapshot(world)
    assert after == before  # nothing deleted, changed or left behind
    assert not (world / "runs").exists()


def test_out_dot_from_the_spec_folder_deletes_nothing(world: Path, monkeypatch) -> None:
    monkeypatch.chdir(world)
    spec = _spec(world, "data: {train: reg, label: y}\n", name="dot.yaml")
    before = _snapshot(world)
    result = CliRunner().invoke(main, ["run", spec, "--out", ".", "--overwrite"])
    assert result.exit_code == 2, result.output
    assert "input" in result.output.splitlines()[-1]
    assert _snapshot(world) == before


def test_readme_filter_form_selects_rows(tmp_path: Path) -> None:
    for year, rows in ((2023, 3), (2024, 5), (2025, 7)):
        (tmp_path / f"year={year}").mkdir()
        pq.write_table(
            pa.table({"x0": np.arange(rows, dtype=float), "y": np.ones(rows)}),
            tmp_path / f"year={year}" / "p.parquet",
        )
    flat = distml.Dataset(tmp_path, label="y", filters=[["year", ">=", 2024]])
    assert flat.num_rows == 12
    dnf = distml.Dataset(
        tmp_path, label="y", filters=[[["year", "==", 2023]], [["year", "==", 2025]]]
    )
    assert dnf.num_rows == 10


def test_report_out_under_a_file_is_refused(world: Path) -> None:
    result = CliRunner().invoke(
        main, ["report", str(world / "reg"), "--out", str(world / "plain.txt" / "r.html")]
    )
    assert result.exit_code == 2
    assert (world / "plain.txt").read_text() == "not a folder"


def test_pandas_reads_what_the_world_wrote(world: Path) -> None:
    # the fixtures themselves are what the cases claim (guards against a vacuous table)
    assert "prediction" in pd.read_parquet(world / "clash").columns
    assert os.path.islink(world / "dangling" / "part-9.parquet")
    assert not os.path.exists(world / "dangling" / "part-9.parquet")


# -- tampered model folders ----------------------------------------------------------------------
def _edit_json(key_path: str, value):  # type: ignore[no-untyped-def]
    def edit(folder: Path) -> None:
        meta = json.loads((folder / "model.json").read_text())
        node = meta
        *parents, last = key_path.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
        (folder / "model.json").write_text(json.dumps(meta))

    return edit


def _edit_arrays(**changes):  # type: ignore[no-untyped-def]
    def edit(folder: Path) -> None:
        with np.load(folder / "arrays.npz") as npz:
            arrays = {name: npz[name] for name in npz.files}
        arrays.update(changes)
        np.savez(folder / "arrays.npz", **arrays)

    return edit


def _raw(name: str, data: bytes):  # type: ignore[no-untyped-def]
    return lambda folder: (folder / name).write_bytes(data)


TAMPERED = [
    ("linear", _edit_json("format_version", 99), r"model.json: format_version 99 is not one"),
    ("linear", _edit_json("type", "svm"), r"model.json: type 'svm' is not a model type"),
    ("linear", _edit_json("params.alpha", -5), r"model.json: params: .*alpha"),
    (
        "linear",
        _edit_json("params.shrink", 1),
        r"model.json: params.shrink is not a linear_regression parameter",
    ),
    (
        "linear",
        _edit_json("attributes.predict", 1),
        r"model.json: attributes.predict is not a fitted attribute",
    ),
    (
        "linear",
        _edit_json("attributes.intercept_", "abc"),
        r"model.json: attributes.intercept_ must be a number",
    ),
    ("linear", _edit_json("features", []), r"model.json: features must be a non-empty list"),
    (
        "linear",
        _edit_arrays(coef_=np.ones(3)),
        r"arrays.npz: array 'coef_' has shape \(3,\), expected \(5,\) for 5 features",
    ),
    (
        "linear",
        _edit_arrays(coef_=np.array([np.nan] * 5)),
        r"arrays.npz: array 'coef_' must hold finite numbers",
    ),
    (
        "linear",
        _edit_arrays(predict=np.ones(2)),
        r"arrays.npz: array 'predict' is not part of a linear_regression",
    ),
    ("linear", _raw("model.json", b"\xff\xfe{"), r"model.json: not valid JSON"),
    ("linear", _raw("arrays.npz", b"PK\x03\x04 junk"), r"arrays.npz: not a plain numpy archive"),
    (
        "logistic",
        _edit_arrays(intercept_=np.ones(3)),
        r"array 'intercept_' has shape \(3,\), expected \(1,\)",
    ),
    (
        "logistic",
        _edit_arrays(classes_=np.array([1, 1])),
        r"array 'classes_' must hold 2 or more distinct labels",
    ),
    (
        "kmeans",
        _edit_arrays(cluster_centers_=np.ones((3, 4))),
        r"array 'cluster_centers_' has shape \(3, 4\), expected \(3, 5\)",
    ),
]


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    X = np.random.RandomState(0).randn(60, 5)
    distml.LinearRegression().fit(X, X @ np.arange(5.0)).save(root / "linear")
    distml.LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)).save(root / "logistic")
    distml.KMeans(n_clusters=3, n_init=1, random_state=0).fit(X).save(root / "kmeans")
    return {name: root / name for name in ("linear", "logistic", "kmeans")}


@pytest.mark.parametrize(("kind", "tamper", "culprit"), TAMPERED, ids=[c[2][:50] for c in TAMPERED])
def test_a_tampered_model_is_one_data_error(
    saved_models: dict[str, Path], tmp_path: Path, kind: str, tamper, culprit: str
) -> None:
    folder = tmp_path / kind
    shutil.copytree(saved_models[kind], folder)
    assert distml.load_model(folder).n_features_in_ == 5  # the copy loads before tampering
    tamper(folder)
    with pytest.raises(DataError, match=culprit) as info:
        distml.load_model(folder)
    assert "\n" not in str(info.value)
