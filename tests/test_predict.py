"""``distml predict``: saved models scoring partitioned Parquet on every engine.

Expected values come from the models' own ``predict`` / ``predict_proba`` /
``transform`` (and Keras's ``predict``) on the same rows read with pyarrow; the
engines are compared file by file with the local backend's output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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
from distml.errors import DataError, ModelError
from distml.predict.runner import predict
from distml.preprocess import Impute, OneHot, Pipeline, Scale

FEATURES = ["x0", "x1", "x2", "x3"]


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def parquet_files(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*.parquet") if not p.name.startswith(".")
    )


def empty_like(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False).schema.empty_table(), path)


# -- data and models (once per module) ----------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("predict")


@pytest.fixture(scope="module")
def reg(store: Path) -> Path:
    """Regression rows in 3 files, an empty 4th file and a string column that is no feature."""
    frame = regression_frame(1200, 4)
    frame["note"] = np.where(np.arange(1200) % 3 == 0, "a", "bb")
    folder = write_parts(store / "reg", frame, 3)
    empty_like(frame, folder / "part-00003.parquet")
    return folder


@pytest.fixture(scope="module")
def cls(store: Path) -> Path:
    """Three classes under hive folders region=east/ and region=west/, one file empty."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(900, 4))
    label = np.digitize(X @ np.array([1.0, -2.0, 0.5, 1.5]), [-1.0, 1.0])
    frame = pd.DataFrame(X, columns=FEATURES).assign(label=label, id=np.arange(900))
    write_parts(store / "cls" / "region=east", frame.iloc[:500], 2)
    write_parts(store / "cls" / "region=west", frame.iloc[500:], 2)
    empty_like(frame, store / "cls" / "region=west" / "part-00009.parquet")
    return store / "cls"


def _frame(data: Path) -> pd.DataFrame:
    return pq.read_table(data).to_pandas()


@pytest.fixture(scope="module")
def linear_model(store: Path, reg: Path) -> Path:
    frame = _frame(reg)
    return distml.LinearRegression().fit(frame[FEATURES], frame["y"]).save(store / "linear")


@pytest.fixture(scope="module")
def logistic_model(store: Path, cls: Path) -> Path:
    frame = _frame(cls)
    model = distml.LogisticRegression(C=10.0).fit(frame[FEATURES], frame["label"])
    return model.save(store / "logistic")


@pytest.fixture(scope="module")
def kmeans_model(store: Path, reg: Path) -> Path:
    frame = _frame(reg)
    model = distml.KMeans(n_clusters=3, init="k-means++", random_state=0).fit(frame[FEATURES])
    return model.save(store / "kmeans")


@pytest.fixture(scope="module")
def messy(store: Path) -> Path:
    rng = np.random.default_rng(2)
    n = 800
    city = rng.choice(["paris", "lyon", "nice"], n)
    age = rng.normal(40, 12, n)
    frame = pd.DataFrame(
        {
            "age": np.where(rng.random(n) < 0.1, np.nan, age),
            "city": np.where(rng.random(n) < 0.05, None, city),
            "score": rng.normal(size=n),
        }
    )
    frame["y"] = 0.3 * age + (city == "paris") * 2.0 + frame["score"] + rng.normal(size=n)
    return write_parts(store / "messy", frame, 3)


@pytest.fixture(scope="module")
def pipeline_model(store: Path, messy: Path) -> Path:
    ds = distml.Dataset(messy, label="y", features=["age", "city", "score"], raw=True)
    stages = [
        Impute("median", columns=["age"]),
        Impute("most_frequent", columns=["city"]),
        OneHot(columns=["city"]),
        Scale("standard"),
    ]
    with distml.get_backend("local[2]") as backend:
        model = backend.fit(Pipeline(stages, distml.LinearRegression()), backend.load(ds))
    return model.save(store / "pipeline")


# -- predictions equal the models' own ---------------------------------------------------------
def test_linear_predictions_are_bit_for_bit_model_predict_with_every_column_kept(
    tmp_path: Path, reg: Path, linear_model: Path
) -> None:
    code, output = cli(
        "predict", str(linear_model), "--data", str(reg), "--out", str(tmp_path / "p")
    )
    assert code == 0, output
    out = tmp_path / "p"
    assert (out / "_SUCCESS").is_file()
    assert parquet_files(out) == parquet_files(reg)  # one output per input, same names
    model = distml.load_model(linear_model)
    for name in parquet_files(reg):
        source, scored = pq.read_table(reg / name), pq.read_table(out / name)
        assert scored.column_names == [*source.column_names, "prediction"]
        assert scored.select(source.column_names).equals(source.replace_schema_metadata())
        frame = source.to_pandas()
        expected = model.predict(frame[FEATURES]) if len(frame) else np.zeros(0)
        np.testing.assert_array_equal(scored.column("prediction").to_numpy(), expected)
    empty = pq.read_table(out / "part-00003.parquet")
    assert empty.num_rows == 0
    assert empty.schema.equals(pq.read_table(out / "part-00000.parquet").schema)
    manifest = __import__("json").loads((out / "_manifest.json").read_text())
    assert manifest["rows"] == 1200
    assert [f["rows"] for f in manifest["files"]] == [400, 400, 400, 0]
    assert manifest["model"]["type"] == "linear_regression"
    assert manifest["input"] == str(reg)


def test_logistic_probabilities_in_classes_order_under_hive_folders(
    tmp_path: Path, cls: Path, logistic_model: Path
) -> None:
    result = predict(logistic_model, cls, tmp_path / "p", columns="id,region", output="both")
    out = result.out
    assert result.rows == 900
    assert parquet_files(out) == parquet_files(cls)
    assert any(name.startswith("region=west/") for name in parquet_files(out))
    model = distml.load_model(logistic_model)
    scored = pq.read_table(out, partitioning="hive").to_pandas()  # region from the folders
    frame = _frame(cls)
    merged = frame.merge(scored, on="id", suffixes=("", "_out"))
    assert len(merged) == 900 and (merged["region"] == merged["region_out"]).all()
    assert pq.read_table(out / parquet_files(out)[0]).column_names == [
        "id", "prediction", "probability"
    ]  # fmt: skip  # the hive key stays in the folder names
    np.testing.assert_array_equal(merged["prediction"], model.predict(merged[FEATURES]))
    np.testing.assert_array_equal(
        np.stack(merged["probability"].to_numpy()), model.predict_proba(merged[FEATURES])
    )
    assert list(model.classes_) == [0, 1, 2]


def test_copied_floats_that_never_compressed_are_written_plain(
    tmp_path: Path, logistic_model: Path
) -> None:
    """A copied float column whose input bytes did not shrink (random values) is written
    uncompressed — the same size, without snappy's CPU; a float column that compressed
    (few distinct values), the added columns and non-floats keep snappy; values unchanged."""
    rng = np.random.default_rng(5)
    n = 3000
    frame = pd.DataFrame(rng.normal(size=(n, 4)), columns=FEATURES)
    frame["steps"] = np.round(rng.normal(size=n), 1)  # few distinct values: compresses
    frame["id"] = np.arange(n)
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), data / "a.parquet",
                   use_dictionary=["id"])  # fmt: skip  # floats plain, as distml writes them
    result = predict(logistic_model, data, tmp_path / "p", columns="all", output="both")
    metadata = pq.ParquetFile(result.out / "a.parquet").metadata
    codecs = {
        metadata.row_group(0).column(i).path_in_schema: metadata.row_group(0).column(i).compression
        for i in range(metadata.num_columns)
    }
    assert codecs == {
        **dict.fromkeys(FEATURES, "UNCOMPRESSED"),
        "steps": "SNAPPY",
        "id": "SNAPPY",
        "prediction": "SNAPPY",
        "probability.list.element": "SNAPPY",
    }
    scored = pq.read_table(result.out / "a.parquet").to_pandas()
    pd.testing.assert_frame_equal(scored[[*FEATURES, "steps", "id"]], frame)
    model = distml.load_model(logistic_model)
    np.testing.assert_array_equal(scored["prediction"], model.predict(frame[FEATURES]))


def test_kmeans_clusters_and_distances_are_bit_for_bit(
    tmp_path: Path, reg: Path, kmeans_model: Path
) -> None:
    result = predict(kmeans_model, reg, tmp_path / "p", columns="none", output="both")
    model = distml.load_model(kmeans_model)
    for name in parquet_files(reg)[:3]:
        frame = pq.read_table(reg / name).to_pandas()
        scored = pq.read_table(result.out / name)
        assert scored.column_names == ["prediction", "distance"]
        np.testing.assert_array_equal(
            scored.column("prediction").to_numpy(), model.predict(frame[FEATURES])
        )
        np.testing.assert_array_equal(
            np.stack(scored.column("distance").to_numpy(zero_copy_only=False)),
            model.transform(frame[FEATURES]),
        )
    assert scored.schema.field("prediction").type == pa.int32()


def test_a_pipeline_scores_raw_columns_with_missing_values_and_strings(
    tmp_path: Path, messy: Path, pipeline_model: Path
) -> None:
    result = predict(pipeline_model, messy, tmp_path / "p")
    model = distml.load_model(pipeline_model)
    frame = _frame(messy)
    assert frame["age"].isna().any() and frame["city"].isna().any()
    scored = pq.read_table(result.out).to_pandas()
    np.testing.assert_array_equal(scored["prediction"], model.predict(frame))
    np.testing.assert_array_equal(scored["city"].isna(), frame["city"].isna())  # kept as is


# -- every engine writes the same files -------------------------------------------------------
@pytest.mark.parametrize("engine", [pytest.param("dask", marks=pytest.mark.dask),
                                    pytest.param("spark", marks=pytest.mark.spark)])  # fmt: skip
def test_dask_and_spark_write_the_files_local_writes(
    engine: str, request, tmp_path: Path, cls: Path, messy: Path, logistic_model: Path,
    pipeline_model: Path,
) -> None:  # fmt: skip
    if engine == "dask":
        backend = request.getfixturevalue("dask_address")
    else:
        request.getfixturevalue("spark_session")
        backend = "spark"
    for model, data, output in ((logistic_model, cls, "both"), (pipeline_model, messy, "predict")):
        here = predict(model, data, tmp_path / f"local-{model.name}", output=output).out
        there = predict(model, data, tmp_path / f"{engine}-{model.name}", backend, output=output)
        assert there.manifest["backend"].startswith(engine)
        assert parquet_files(there.out) == parquet_files(here) == parquet_files(data)
        for name in parquet_files(here):
            assert (there.out / name).read_bytes() == (here / name).read_bytes(), name
        assert there.manifest["files"] == predict_manifest_files(here)


@pytest.mark.spark
def test_spark_groups_many_files_into_fewer_tasks_and_writes_each_file(
    spark_session, tmp_path: Path, linear_model: Path
) -> None:
    """More files than ``TASKS_PER_SLOT`` tasks per slot: each Spark task scores several
    files (a task costs as much as a small file), and every file is still its own output,
    byte for byte the local one, in the manifest's input order."""
    from distml.backends.spark.scoring import TASKS_PER_SLOT

    data = write_parts(tmp_path / "many", regression_frame(1_000, 4), 25)
    assert len(parquet_files(data)) == 25 > 2 * TASKS_PER_SLOT  # local[2]: 2 slots
    here = predict(linear_model, data, tmp_path / "local").out
    tracker = spark_session.sparkContext.statusTracker()
    before = set(tracker.getJobIdsForGroup())
    there = predict(linear_model, data, tmp_path / "spark", "spark")
    [job] = set(tracker.getJobIdsForGroup()) - before  # the scoring stage, nothing else
    [stage] = tracker.getJobInfo(job).stageIds
    assert tracker.getStageInfo(stage).numTasks == 2 * TASKS_PER_SLOT  # not one per file
    assert parquet_files(there.out) == parquet_files(here) == parquet_files(data)
    for name in parquet_files(here):
        assert (there.out / name).read_bytes() == (here / name).read_bytes(), name
    assert there.manifest["files"] == predict_manifest_files(here)
    assert there.rows == 1_000


def predict_manifest_files(out: Path) -> list:
    return __import__("json").loads((out / "_manifest.json").read_text())["files"]


# -- bad input: one line naming the culprit, exit 2, nothing written -----------------------------
def _variant(store: Path, name: str, change) -> Path:  # type: ignore[no-untyped-def]
    frame = change(regression_frame(60, 4))
    return write_parts(store / name, frame, 2)


def test_schema_errors_name_the_column_and_write_nothing(
    tmp_path: Path, linear_model: Path, logistic_model: Path
) -> None:
    cases = {
        "missing": (lambda f: f.drop(columns=["x2"]), "'x2' not found"),
        "string": (lambda f: f.assign(x1=f["x1"].astype(str)), "'x1' is string"),
        "named": (lambda f: f.assign(prediction=1.0), "'prediction'"),
    }
    for name, (change, message) in cases.items():
        data = _variant(tmp_path, name, change)
        out = tmp_path / f"out-{name}"
        code, output = cli("predict", str(linear_model), "--data", str(data), "--out", str(out))
        assert code == 2, output
        assert message in output and output.startswith("error:") and len(output.splitlines()) == 1
        assert not out.exists() and not list(tmp_path.glob(f".out-{name}*"))
    data = tmp_path / "named"  # leaving the clashing column out is fine
    code, output = cli(
        "predict", str(linear_model), "--data", str(data), "--out", str(tmp_path / "ok"),
        "--columns", "x0,y",
    )  # fmt: skip
    assert code == 0, output
    assert pq.read_table(tmp_path / "ok").column_names == ["x0", "y", "prediction"]
    code, output = cli(
        "predict", str(linear_model), "--data", str(data), "--out", str(tmp_path / "p"),
        "--output", "proba",
    )  # fmt: skip
    assert code == 2 and "no probabilities" in output
    code, output = cli(
        "predict", str(linear_model), "--data", str(data), "--out", str(tmp_path / "p"),
        "--columns", "x0,nope",
    )  # fmt: skip
    assert code == 2 and "'nope' not found" in output
    with pytest.raises(DataError, match="not a model"):
        predict(data / "part-00000.parquet", data, tmp_path / "q")
    with pytest.raises(ModelError, match="no probabilities"):
        predict(linear_model, data, tmp_path / "q", columns="none", output="both")


def test_an_existing_output_is_refused_without_overwrite_and_replaced_with_it(
    tmp_path: Path, reg: Path, linear_model: Path, kmeans_model: Path
) -> None:
    out = tmp_path / "p"
    predict(linear_model, reg, out)
    args = ["predict", str(kmeans_model), "--data", str(reg), "--out", str(out)]
    code, output = cli(*args)
    assert code == 2 and "--overwrite" in output
    code, output = cli(*args, "--overwrite")
    assert code == 0, output
    assert pq.read_table(out / "part-00000.parquet").schema.field("prediction").type == pa.int32()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    code, output = cli("predict", str(kmeans_model), "--data", str(reg), "--out", str(foreign),
                       "--overwrite")  # fmt: skip
    assert code == 2 and "not a folder distml wrote" in output
    assert (foreign / "keep.txt").read_text() == "mine"


# -- killed mid-way: nothing published, the old output intact ------------------------------------
@pytest.fixture(scope="module")
def many_files(store: Path) -> Path:
    """400 small files: scoring them takes a few seconds on one thread."""
    folder = store / "many"
    folder.mkdir()
    frame = regression_frame(1000, 4)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for i in range(400):
        pq.write_table(table, folder / f"part-{i:05d}.parquet")
    return folder


def _start(model: Path, data: Path, out: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "distml.cli", "predict", str(model), "--data", str(data)]
    command += ["--out", str(out), "--backend", "local[1]", *extra]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_while_scoring(proc: subprocess.Popen, out: Path) -> None:
    """SIGKILL once the hidden sibling holds a scored file (scoring has begun)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        building = [p for p in out.parent.glob(f".{out.name}.tmp-*") if any(p.glob("*.parquet"))]
        if building:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"


def test_a_killed_run_publishes_nothing_and_keeps_the_old_output(
    tmp_path: Path, many_files: Path, linear_model: Path, kmeans_model: Path
) -> None:
    out = tmp_path / "p"
    _kill_while_scoring(_start(linear_model, many_files, out), out)
    assert not out.exists()
    assert not list(tmp_path.rglob("_SUCCESS"))

    assert [p.name.split("-")[0] for p in tmp_path.glob(".p.*")] == [".p.tmp"]  # hidden
    predict(kmeans_model, many_files, out, columns="none")  # the old, complete output
    assert list(tmp_path.glob(".p.*")) == []  # the killed run's sibling swept by the next
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    _kill_while_scoring(_start(linear_model, many_files, out, "--overwrite"), out)
    after = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert after == before  # every file of the old output, byte for byte
    assert (out / "_SUCCESS").is_file()


# -- Keras ------------------------------------------------------------------------------------
@pytest.mark.tf
def test_keras_mnist_model_scores_pixels(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from distml.deep.devices import import_tensorflow
    from distml.deep.models import build_model

    import_tensorflow()
    network = build_model("mlp", 784, 10)  # untrained weights: any fixed function will do
    network.save(tmp_path / "model.keras")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(300, 784), dtype=np.uint8)
    pixels = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(784), 300, [None, pa.py_buffer(images.tobytes())]
    )
    table = pa.table({"pixels": pixels, "label": rng.integers(0, 10, 300)})
    data = tmp_path / "mnist"
    data.mkdir()
    pq.write_table(table.slice(0, 200), data / "part-0.parquet")
    pq.write_table(table.slice(200), data / "part-1.parquet")
    result = predict(tmp_path, data, tmp_path / "p", columns="label", output="both")
    scored = pq.read_table(result.out)
    expected = network.predict(images, verbose=0)
    assert scored.column_names == ["label", "prediction", "probability"]
    np.testing.assert_array_equal(scored.column("prediction").to_numpy(), expected.argmax(axis=1))
    probability = np.stack(scored.column("probability").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(probability, expected, rtol=1e-5, atol=1e-7)
    bad = tmp_path / "bad"
    bad.mkdir()
    pq.write_table(pa.table({"pixels": pa.array([b"\x00" * 10], pa.binary(10))}), bad / "a.parquet")
    with pytest.raises(DataError, match="'pixels' holds 10 pixels per row; the model takes 784"):
        predict(tmp_path / "model.keras", bad, tmp_path / "q")


# -- predict job specs (distml submit) -----------------------------------------------------------
def test_a_predict_job_spec_resolves_paths_and_names_bad_keys(tmp_path: Path) -> None:
    from distml.errors import SpecError
    from distml.predict.spec import is_predict_spec, load_predict_spec

    spec_file = tmp_path / "jobs" / "score.yaml"
    spec_file.parent.mkdir()
    spec_file.write_text(
        "name: score\npredict:\n  model: ../runs/m\n  data: ../data\n  columns: [a, b]\n"
        "backend: dask\n"
    )
    assert is_predict_spec(spec_file)
    spec = load_predict_spec(spec_file, ["predict.output=both"], backend="tcp://127.0.0.1:1")
    assert spec.resolve(spec.predict.model) == str(tmp_path / "runs" / "m")
    assert spec.predict.output == "both" and spec.predict.columns == ["a", "b"]
    assert spec.backend.name == "tcp://127.0.0.1:1"
    spec_file.write_text("name: s\npredict:\n  model: m\n  data: d\n  colums: all\n")
    with pytest.raises(SpecError, match="unknown key 'colums'.*did you mean 'columns'"):
        load_predict_spec(spec_file)


def test_submitting_a_predict_job_checks_the_output_before_connecting(tmp_path: Path) -> None:
    spec_file = tmp_path / "score.yaml"
    spec_file.write_text("name: s\npredict:\n  model: m\n  data: d\n")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x.txt").write_text("mine")
    code, output = cli(
        "submit", str(spec_file), "--cluster", "tcp://127.0.0.1:9", "--out", str(foreign),
        "--overwrite", "--state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    assert code == 2 and "not a folder distml wrote" in output
    assert (foreign / "x.txt").read_text() == "mine"  # refused before connecting to port 9
