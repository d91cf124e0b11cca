"""What runs on workers imports numpy, pyarrow and distml's own modules only: no
scikit-learn, SciPy (unless the task needs it), pandas, matplotlib or pydantic."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

HEAVY = (
    "sklearn",
    "scipy",
    "pandas",
    "matplotlib",
    "pydantic",
    "yaml",
    "rich",
    "click",
    "tensorflow",
)

WORKER_MODULES = (
    "distml.data.reader",
    "distml.data.writer",
    "distml.algorithms.linear",
    "distml.algorithms.logistic",
    "distml.algorithms.kmeans",
    "distml.algorithms.metrics",
    "distml.models.kernels",
    "distml.preprocess.stages",
    "distml.backends.dask_tasks",
    "distml.backends.spark.service",
    "distml.predict.task",
)


def heavy_loaded() -> list[str]:
    """The heavy top-level packages this process has imported (runs on Dask workers too)."""
    return sorted({name.split(".")[0] for name in sys.modules} & set(HEAVY))


def test_worker_modules_import_no_heavy_library() -> None:
    code = (
        f"import sys\nimport {', '.join(WORKER_MODULES)}\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_reading_a_partition_imports_no_heavy_library(tmp_path: Path) -> None:
    """A read task in a fresh process: features and label reach numpy without pandas (which
    pyarrow's ``to_numpy`` would import) and equal pandas' own reading of the file."""
    frame = pd.DataFrame({"a": np.arange(6, dtype=np.int32), "b": np.linspace(0, 1, 6)})
    frame["y"] = np.arange(6) % 2
    path = tmp_path / "part-0.parquet"
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa_table(frame), path, row_group_size=4)  # two row groups: two chunks
    from distml.data.dataset import Dataset

    ds = Dataset(tmp_path, label="y")  # on the driver (pyarrow.dataset imports pandas there)
    task = pickle.dumps((ds.uri, ds.partitions[0], ds.features)).hex()
    code = (
        "import pickle, sys\nfrom distml.data.reader import load_partition\n"
        f"uri, spec, features = pickle.loads(bytes.fromhex({task!r}))\n"
        "part, _ = load_partition(uri, spec, features, 'y')\n"
        "print(part.X.tolist(), part.y.tolist())\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    values, heavy = done.stdout.strip().splitlines()
    assert heavy == "[]"
    assert values == f"{frame[['a', 'b']].to_numpy(float).tolist()} {frame['y'].tolist()}"


def pa_table(frame: pd.DataFrame):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False)


def test_import_distml_is_light() -> None:
    code = "import sys, distml\nprint(sorted({m.split('.')[0] for m in sys.modules}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(eval(done.stdout))  # noqa: S307 - our own subprocess's printed list
    assert not loaded & set(HEAVY)
    assert "numpy" not in loaded  # the package itself imports nothing until used


@pytest.mark.dask
def test_dask_workers_gain_only_what_a_task_needs(tmp_path: Path) -> None:
    import distml
    from distml.backends import get_backend

    rng = np.random.RandomState(0)
    X = rng.randn(3000, 4)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(4)])
    frame["y"] = X @ np.arange(4.0)
    frame["c"] = (X[:, 0] > 0).astype(int)
    (tmp_path / "d").mkdir()
    for i in range(2):
        frame.iloc[i::2].to_parquet(tmp_path / "d" / f"part-{i}.parquet")
    features = ["x0", "x1", "x2", "x3"]

    def worker_heavy(dask) -> set[str]:  # type: ignore[no-untyped-def]
        return set(next(iter(dask.client.run(heavy_loaded).values())))

    with get_backend("dask", workers=1, threads=1) as dask:
        bare = worker_heavy(dask)  # what Dask's own worker process imports
        for label, model in (
            ("y", distml.LinearRegression()),
            ("y", distml.KMeans(n_clusters=3, random_state=0, n_init=1)),
        ):
            data = dask.load(distml.Dataset(tmp_path / "d", label=label, features=features))
            dask.fit(model, data)
            dask.evaluate(model, data.train)
            dask.write_predictions(
                model, data.train, str(tmp_path / f"p-{label}-{model.model_type}")
            )
        assert worker_heavy(dask) == bare
        data = dask.load(distml.Dataset(tmp_path / "d", label="c", features=features))
        dask.fit(distml.LogisticRegression(), data)
        assert worker_heavy(dask) == bare  # the loss is numpy's: no scipy on the workers


def test_numeric_chunks_are_viewed_as_pyarrow_converts_them() -> None:
    """Views honour a chunk's offset and dtype; nulls and booleans are left to pyarrow."""
    import pyarrow as pa

    from distml.data.reader import chunk_values, column_values

    for values, dtype in (([1.5, 2.5, 3.5, 4.5], pa.float64()), ([1, 2, 3, 4], pa.int32()),
                          ([7, 8, 9, 10], pa.uint16()), ([0.5, 1.0, 2.0, 3.0], pa.float32())):  # fmt: skip
        sliced = pa.array(values, dtype)[1:3]  # offset 1: a slice of a larger buffer
        view = chunk_values(sliced)
        assert view is not None and view.dtype == sliced.to_numpy().dtype
        assert view.tolist() == values[1:3]
    assert chunk_values(pa.array([1.0, None])) is None
    assert chunk_values(pa.array([True, False])) is None
    column = pa.chunked_array([pa.array([1, 2]), pa.array([3, 4, 5])[1:]])
    assert column_values(column).tolist() == [1, 2, 4, 5]
    assert column_values(pa.chunked_array([[1.0], [None]], pa.float64())).tolist()[0] == 1.0


def test_arrow_arrays_built_from_buffers_equal_pyarrows_conversion() -> None:
    """``arrow_array`` (no pandas import) gives what ``pa.array`` gives: numbers of each
    width, strided columns, booleans (bit-packed), and strings through ``pa.array``."""
    import pyarrow as pa

    from distml.data.arrow import arrow_array

    matrix = np.arange(30, dtype=np.float64).reshape(10, 3)
    cases = [
        matrix[:, 1],  # strided: copied
        np.array([3, -1, 7], dtype=np.int32),
        np.array([1, 2], dtype=np.uint8),
        np.array([0.5, np.nan, 2.0], dtype=np.float32),
        np.array([True, False, True, True, False, False, True, False, True]),
        np.array(["a", "b"], dtype=object),
        np.zeros(0, dtype=np.int32),
    ]
    for values in cases:
        built = arrow_array(values)
        expected = pa.array(values)
        assert built.type == expected.type
        assert built.to_pylist() == expected.to_pylist() or values.dtype.kind == "f"
        if values.dtype.kind == "f":  # NaN != NaN in lists: compare the bits
            np.testing.assert_array_equal(built.to_numpy(), values)


def test_a_job_without_plots_never_imports_matplotlib(tmp_path: Path) -> None:
    """matplotlib (~0.3 s of every ``distml run``) is imported by the first plot, not by the
    job runner: a job with ``output.plots: false`` never loads it, one with plots does."""
    from conftest import REPO

    code = (
        "import sys\nfrom distml.jobs import load_spec, run_job\n"
        f"spec = load_spec({str(REPO / 'jobs' / 'linear_regression.yaml')!r}, "
        f"['data.train={tmp_path / 'ex1'}', 'output.plots=' + sys.argv[1]])\n"
        f"run_job(spec, {str(tmp_path)!r} + '/run-' + sys.argv[1])\n"
        "print('matplotlib' in sys.modules)"
    )
    for plots, loaded in (("false", "False"), ("true", "True")):
        done = subprocess.run(
            [sys.executable, "-c", code, plots], capture_output=True, text=True, check=True
        )
        assert done.stdout.strip().splitlines()[-1] == loaded
        pngs = sorted(p.name for p in (tmp_path / f"run-{plots}").glob("*.png"))
        assert (pngs != []) == (plots == "true"), pngs


def test_runs_and_predictions_never_import_scikit_learn_pandas_or_scipy(tmp_path: Path) -> None:
    """A job run of each model type and ``distml predict`` work with distml's own models
    (:mod:`distml.models.base`) and read plain Parquet footers without ``pyarrow.dataset``:
    scikit-learn (~0.7 s with SciPy) and pandas (0.2 s) are never imported, SciPy only for
    logistic regression's L-BFGS. The predictions are those of the scikit-learn estimator
    ``load_model`` gives."""
    import pyarrow.parquet as pq

    import distml

    specs = {  # name: (data kind, model block); logistic regression last (SciPy)
        "linear_regression": ("regression", "{type: linear_regression}"),
        "kmeans": ("blobs", "{type: kmeans, params: {n_clusters: 3, random_state: 0}}"),
        "logistic_regression": ("classification", "{type: logistic_regression}"),
    }
    for name, (kind, model) in specs.items():
        (tmp_path / f"{name}.yaml").write_text(
            f"name: {name}\nmodel: {model}\nsplit: null\noutput: {{plots: false}}\n"
            f"data: {{train: {tmp_path / kind}, label: y, generate: "
            f"{{kind: {kind}, rows: 6000, features: 4, partitions: 2, seed: 1}}}}\n"
        )
    code = (
        "import sys\nfrom distml.jobs import load_spec, run_job\n"
        "from distml.predict.runner import predict\n"
        f"root, kinds = {str(tmp_path)!r}, { ({n: k for n, (k, _) in specs.items()})!r}\n"
        "for name, kind in kinds.items():\n"
        "    run = run_job(load_spec(f'{root}/{name}.yaml'), f'{root}/run-{name}')\n"
        "    predict(run.out, f'{root}/{kind}', f'{root}/pred-{name}', columns='none')\n"
        "    print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    for name, line in zip(specs, done.stdout.strip().splitlines()[-3:], strict=True):
        loaded = set(eval(line))  # noqa: S307 - our own subprocess's printed list
        never = {"sklearn", "pandas", "matplotlib", "tensorflow"}
        assert not loaded & (never if name == "logistic_regression" else never | {"scipy"})
    for name, (kind, _) in specs.items():
        estimator = distml.load_model(tmp_path / f"run-{name}" / "model")
        assert type(estimator).__module__ == "distml.models.estimators"
        for part in sorted((tmp_path / kind).glob("*.parquet")):
            rows = pq.read_table(part).to_pandas()
            scored = pq.read_table(tmp_path / f"pred-{name}" / part.name).to_pandas()
            expected = estimator.predict(rows[[f"x{i}" for i in range(4)]])
            np.testing.assert_array_equal(scored["prediction"].to_numpy(), expected)


@pytest.mark.tf
def test_a_keras_worker_imports_tensorflow_without_sklearn_and_frozen() -> None:
    """A gang worker's import (:func:`~distml.deep.devices.import_tensorflow` with
    ``keras_without_sklearn``): Keras comes without scikit-learn, which stays importable;
    the garbage collector runs again afterwards, with the imported objects frozen."""
    pytest.importorskip("tensorflow", reason="the tf extra is not installed")
    code = (
        "import gc, sys\n"
        "from distml.deep.devices import import_tensorflow\n"
        "import_tensorflow(keras_without_sklearn=True)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'keras', 'tensorflow'}))\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 100_000)\n"
        "import sklearn.base\n"
        "print(sklearn.base.BaseEstimator.__name__)\n"
    )
    lines = _printed_lines(code, timeout=300)
    assert lines[:3] == ["['keras', 'tensorflow']", "True True", "BaseEstimator"]


def test_the_engines_driver_side_imports_no_pandas_or_scikit_learn() -> None:
    """The Dask and Spark backends' driver code leaves pandas and scikit-learn out: pandas
    came with the MLlib solver's module, now imported only where MLlib runs — and that
    module does bring pandas (so the check can see it). (PySpark 4.3 itself still imports
    pandas when a SparkContext starts: py4j's numpy converter imports pyspark.testing.)"""
    code = (
        "import sys\n"
        "import distml.backends.dask, distml.backends.spark.backend\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'sklearn', 'scipy'}))\n"
        "import distml.backends.spark.mllib\n"
        "print('pandas' in sys.modules)\n"
    )
    assert _printed_lines(code, timeout=120)[:2] == ["[]", "True"]


def _printed_lines(code: str, timeout: float) -> list[str]:
    """What ``python -c code`` prints, line by line, in a fresh process that must succeed."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split("\n")
