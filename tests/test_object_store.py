"""Parquet datasets on an S3-compatible object store: a real S3 API server (moto's standalone
server, a separate process on 127.0.0.1) serves the seed examples and a 16-file dataset; the
same jobs from ``s3://`` and from local disk give the very same models on every engine."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import BUCKET, REGION, REPO, S3Store, free_port, regression_frame
from numpy.testing import assert_array_equal
from sklearn.linear_model import LinearRegression

import distml
from distml.backends import get_backend
from distml.cli.app import main
from distml.data.examples import EXAMPLES
from distml.errors import DataError
from distml.jobs import RunResult, load_spec, run_job

pytest.importorskip("moto", reason="moto[server] (the dev extra) is not installed")
boto3 = pytest.importorskip("boto3", reason="boto3 (the dev extra) is not installed")

SEED_JOBS = {
    "linear_regression": "example1",
    "logistic_regression": "example2",
    "kmeans": "example3",
}


@pytest.fixture(scope="module")
def store(s3_store: S3Store) -> S3Store:
    """The session's moto S3 server (conftest), holding the seed examples and a 16-file
    dataset."""
    return s3_store


Store = S3Store


def _model_arrays(model) -> np.ndarray:
    if hasattr(model, "cluster_centers_"):
        return np.asarray(model.cluster_centers_)
    return np.append(np.ravel(model.coef_), np.ravel(model.intercept_))


@pytest.fixture(scope="module")
def disk_runs(store: Store, tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunResult]:
    """The seed jobs from local disk on the local backend, once: what every engine must match."""
    out = tmp_path_factory.mktemp("disk-runs")
    return {
        job: run_job(
            load_spec(REPO / "jobs" / f"{job}.yaml", [f"data.train={store.local / example}"]),
            out / job,
        )
        for job, example in SEED_JOBS.items()
    }


def _seed_runs(
    store: Store, disk_runs: dict[str, RunResult], tmp_path: Path, backend: str | None
) -> None:
    for job, example in SEED_JOBS.items():
        url = f"s3://{BUCKET}/{example}"
        spec = load_spec(
            REPO / "jobs" / f"{job}.yaml",
            [f"data.train={url}", *store.overrides()],
            backend=backend,
        )
        remote, disk = run_job(spec, tmp_path / job), disk_runs[job]
        assert_array_equal(_model_arrays(remote.model), _model_arrays(disk.model))
        metrics = [json.loads((r.out / "metrics.json").read_text()) for r in (remote, disk)]
        assert metrics[0]["metrics"] == metrics[1]["metrics"]
        assert pq.read_table(remote.out / "predictions").equals(
            pq.read_table(disk.out / "predictions")
        )
    article = json.loads((tmp_path / "linear_regression" / "metrics.json").read_text())
    assert article["model"]["coef"] == pytest.approx([0.6857142857142857], rel=1e-12)


ENGINES = [
    "local",
    pytest.param("dask", marks=pytest.mark.dask),
    pytest.param("spark", marks=pytest.mark.spark),
]


def _engine(engine: str, request: pytest.FixtureRequest) -> str | None:
    """The backend to run on: Dask workers are other processes without AWS_* variables (the
    options travel with the partitions); on Spark distml's own reader runs on the executors."""
    if engine == "dask":
        return request.getfixturevalue("dask_address")
    if engine == "spark":
        request.getfixturevalue("spark_session")
        return "spark"
    return None


@pytest.mark.parametrize("engine", ENGINES)
def test_seed_jobs_from_s3_give_the_models_from_disk(
    store: Store,
    disk_runs: dict[str, RunResult],
    tmp_path: Path,
    engine: str,
    request: pytest.FixtureRequest,
) -> None:
    _seed_runs(store, disk_runs, tmp_path, _engine(engine, request))


def _sixteen(store: Store, where: str) -> distml.Dataset:
    if where == "disk":
        return distml.Dataset(store.local / "sixteen", label="y")
    return distml.Dataset(f"s3://{BUCKET}/sixteen", label="y", storage_options=store.options())


def _fit(backend_name: str, ds: distml.Dataset, **options):
    with get_backend(backend_name, **options) as backend:
        return backend.fit(distml.LinearRegression(), backend.load(ds))


@pytest.mark.parametrize(
    "engine",
    [
        "local",
        pytest.param("dask", marks=pytest.mark.dask),
        pytest.param("spark", marks=pytest.mark.spark),
    ],
)
def test_sixteen_files_from_s3_give_the_model_from_disk(store: Store, engine: str, request) -> None:
    remote = _sixteen(store, "s3")
    assert len(remote.partitions) == 16 and remote.num_rows == 320
    assert remote.partitions[3].path == f"{BUCKET}/sixteen/part-00003.parquet"
    address = _engine(engine, request)
    options = {"address": address} if engine == "dask" else {}
    from_s3 = _fit(engine, remote, **options)
    from_disk = _fit("local", _sixteen(store, "disk"))
    assert_array_equal(from_s3.coef_, from_disk.coef_)
    assert from_s3.intercept_ == from_disk.intercept_
    frame = regression_frame(n=320, d=3, seed=7)
    reference = LinearRegression().fit(frame[["x0", "x1", "x2"]], frame["y"])
    np.testing.assert_allclose(from_s3.coef_, reference.coef_, rtol=1e-9)


def test_credentials_and_endpoint_from_the_environment(store: Store, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", store.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", store.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", store.secret_key)
    monkeypatch.setenv("AWS_REGION", REGION)
    ds = distml.Dataset(f"s3://{BUCKET}/example2", label="y")
    assert ds.features == ["x1", "x2"] and ds.num_rows == 5
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(DataError, match=r"^s3://distml-data/example2: access denied"):
        distml.Dataset(f"s3://{BUCKET}/example2", label="y")


def _closed_port() -> int:
    return free_port()  # nothing listens once the probe socket is closed


@pytest.mark.parametrize(
    ("url", "changes", "expected"),
    [
        ("s3://no-such-bucket/example1", {}, "no such bucket 'no-such-bucket'"),
        (f"s3://{BUCKET}/example9", {}, f"no such key or prefix in bucket '{BUCKET}'"),
        (f"s3://{BUCKET}/example1", {"secret_key": "wrong"}, "access denied"),
        (f"s3://{BUCKET}/example1", {"access_key": "AKIANOSUCHKEY0000000"}, "access denied"),
        (f"s3://{BUCKET}/example1", {"endpoint_url": "closed"}, "cannot reach the object store"),
        (f"s3://{BUCKET}/example1", {"endpoint_url": "silent"}, "cannot reach the object store"),
    ],
    ids=["missing-bucket", "wrong-prefix", "wrong-secret", "unknown-key", "closed-port", "silent"],
)
def test_bad_locations_exit_2_with_one_line_naming_the_url(
    store: Store, tmp_path: Path, url: str, changes: dict[str, str], expected: str
) -> None:
    silent = socket.socket()  # accepts connections (the kernel's backlog), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    if changes.get("endpoint_url") == "closed":
        changes = {"endpoint_url": f"http://127.0.0.1:{_closed_port()}"}
    elif changes.get("endpoint_url") == "silent":
        changes = {"endpoint_url": f"http://127.0.0.1:{silent.getsockname()[1]}"}
    spec = tmp_path / "job.yaml"
    spec.write_text(
        (REPO / "jobs" / "linear_regression.yaml").read_text().replace("../data/example1", url)
    )
    args = ["run", str(spec), "--out", str(tmp_path / "run")]
    for item in store.overrides(**changes):
        args += ["--set", item]
    started = time.monotonic()
    with silent:
        result = CliRunner().invoke(main, args)
    took = time.monotonic() - started
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and url in lines[0] and expected in lines[0], (lines, took)
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_a_prefix_without_parquet_files_is_named(store: Store) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=store.endpoint,
        region_name=REGION,
        aws_access_key_id=store.access_key,
        aws_secret_access_key=store.secret_key,
    )
    s3.put_object(Bucket=BUCKET, Key="notes/readme.txt", Body=b"no data here")
    with pytest.raises(DataError, match=r"^s3://distml-data/notes: no Parquet files"):
        distml.Dataset(f"s3://{BUCKET}/notes", storage_options=store.options())


def test_storage_options_on_a_local_path_are_a_spec_error(store: Store) -> None:
    with pytest.raises(
        distml.errors.SpecError, match="storage_options apply to s3:// and gs:// URLs only"
    ):
        distml.Dataset(store.local / "example1", storage_options=store.options())


def test_predict_scores_s3_data_with_credentials_from_the_environment(
    store: Store, disk_runs: dict[str, RunResult], tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", store.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", store.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", store.secret_key)
    monkeypatch.setenv("AWS_REGION", REGION)
    run = str(disk_runs["linear_regression"].out)
    args = ["predict", run, "--data", f"s3://{BUCKET}/example1", "--out", str(tmp_path / "p")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    scored = pq.read_table(tmp_path / "p" / "part-00000.parquet").to_pydict()
    assert scored["x"] == EXAMPLES["example1"]["x"]
    # the article's printed model: Coefficient: [0.68571429], Intercept: 1.7714285714285714
    expected = [1.7714285714285714 + 0.6857142857142857 * x for x in scored["x"]]
    np.testing.assert_allclose(scored["prediction"], expected, rtol=1e-12)


# -- writing: run folders, models, predictions and datasets published on the store ------------
def _objects(store: Store, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix`` (relative key -> bytes), directory markers left out."""
    s3 = store.client()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return {
        k[len(prefix) :]: s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()
        for k in keys
        if not k.endswith("/")
    }


def _marker(objects: dict[str, bytes]) -> dict:
    return json.loads(objects["/_distml.json"])


@pytest.fixture
def aws_env(store: Store, monkeypatch) -> None:
    """Credentials and endpoint the standard way (the CLI's predict and generate read them)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", store.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", store.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", store.secret_key)
    monkeypatch.setenv("AWS_REGION", REGION)


def test_a_run_folder_and_its_model_are_published_on_s3_and_read_back(
    store: Store, disk_runs: dict[str, RunResult], tmp_path: Path, aws_env: None
) -> None:
    out = f"s3://{BUCKET}/runs/linear"
    spec = str(REPO / "jobs" / "linear_regression.yaml")
    args = ["run", spec, "--set", f"data.train={store.local / 'example1'}", "--out", out]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"run folder: {out}" in result.output
    written = _objects(store, "runs/linear")
    disk = disk_runs["linear_regression"].out
    assert _marker(written)["state"] == "complete" and _marker(written)["kind"] == "run"
    local_files = {"/" + p.relative_to(disk).as_posix() for p in disk.rglob("*") if p.is_file()}
    assert set(written) == local_files  # every file of the run folder, nothing else
    for name in ("/model/arrays.npz", "/predictions/part-00000.parquet"):
        assert written[name] == (disk / name[1:]).read_bytes()
    summary = [
        json.loads(written["/metrics.json"]),
        json.loads((disk / "metrics.json").read_text()),
    ]
    assert summary[0]["metrics"] == summary[1]["metrics"]
    assert not [k for k in _objects(store, "runs/") if ".tmp-" in k]  # staging removed
    model = distml.load_model(f"{out}/model")  # read back from the store
    # the article's printed model: Coefficient: [0.68571429], Intercept: 1.7714285714285714
    assert model.coef_.tolist() == pytest.approx([0.6857142857142857], rel=1e-12)
    assert model.intercept_ == pytest.approx(1.7714285714285714, rel=1e-12)
    # tracked later from the store: MLflow gets the run folder's metrics (a local store)
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from distml.tracking import track_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logged = track_run(out, uri=uri, experiment="from-s3")
    run = MlflowClient(tracking_uri=uri).get_run(logged["run_id"])
    assert run.data.metrics["mse"] == pytest.approx(summary[1]["metrics"]["mse"], rel=1e-12)
    assert run.data.tags["distml.run_folder"] == out
    # the same destination again: refused without --overwrite, replaced with it
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and out in again.output and "--overwrite" in again.output
    assert CliRunner().invoke(main, [*args, "--overwrite"]).exit_code == 0
    assert _marker(_objects(store, "runs/linear"))["state"] == "complete"


@pytest.fixture(scope="module")
def hive_model(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A linear model of the hive dataset's x0, x1 (trained from local disk)."""
    spec = load_spec(
        REPO / "jobs" / "linear_regression.yaml",
        [f"data.train={store.local / 'hive'}", "data.features=[x0,x1]"],
    )
    return run_job(spec, tmp_path_factory.mktemp("hive-model") / "run").out


@pytest.mark.parametrize("engine", ENGINES)
def test_predictions_and_generated_data_on_s3_are_the_local_files_on_every_engine(
    store: Store,
    hive_model: Path,
    tmp_path: Path,
    engine: str,
    request: pytest.FixtureRequest,
    aws_env: None,
) -> None:
    from distml.data.generate import Recipe, generate
    from distml.predict import predict

    backend = _engine(engine, request) or "local[2]"
    model = hive_model
    url = f"s3://{BUCKET}/scored/{engine}"
    on_disk = predict(model, store.local / "hive", tmp_path / "p")
    on_s3 = predict(model, f"s3://{BUCKET}/hive", url, backend=backend)
    assert on_s3.out == url and on_s3.rows == 60
    written = _objects(store, f"scored/{engine}")
    expected = {
        "/" + p.relative_to(on_disk.out).as_posix(): p.read_bytes()
        for p in on_disk.out.rglob("*.parquet")
    }
    assert {k: v for k, v in written.items() if k.endswith(".parquet")} == expected
    assert set(expected) == {
        f"/year={y}/part-{i:05d}.parquet" for y in (2024, 2025) for i in (0, 1)
    }
    assert "/_SUCCESS" in written and json.loads(written["/_manifest.json"])["rows"] == 60
    # generated on the engine's workers straight into the store: the bytes of a local run
    recipe = Recipe(kind="regression", rows=3000, features=3, partitions=3, seed=5)
    generate(recipe, tmp_path / "gen")
    with get_backend(backend) as workers:
        assert generate(recipe, f"s3://{BUCKET}/gen/{engine}", backend=workers) == (
            f"s3://{BUCKET}/gen/{engine}"
        )
    remote = _objects(store, f"gen/{engine}")
    for path in (tmp_path / "gen").glob("*.parquet"):
        assert remote["/" + path.name] == path.read_bytes()
    ds = distml.Dataset(f"s3://{BUCKET}/gen/{engine}", label="y")
    assert ds.num_rows == 3000 and len(ds.partitions) == 3


def _invoke_timed(args: list[str]) -> tuple[int, list[str], float]:
    started = time.monotonic()
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output.strip().splitlines(), time.monotonic() - started


@pytest.mark.parametrize(
    ("out", "env", "expected"),
    [
        ("s3://no-such-bucket/p", {}, "no such bucket 'no-such-bucket'"),
        (f"s3://{BUCKET}/p", {"AWS_SECRET_ACCESS_KEY": "wrong"}, "access denied"),
        (f"s3://{BUCKET}/p", {"AWS_ENDPOINT_URL": "closed"}, "cannot reach the object store"),
        (f"s3://{BUCKET}/example1", {}, "not a folder distml wrote"),
        (f"s3://{BUCKET}/example1/part-00000.parquet", {}, "is an object, not a prefix"),
        (f"s3://{BUCKET}", {}, "give a prefix inside a bucket"),
        ("hdfs://namenode/p", {}, "hdfs:// is not supported"),
    ],
    ids=["missing-bucket", "bad-secret", "closed-port", "foreign", "object", "bucket", "hdfs"],
)
def test_bad_write_locations_exit_2_in_one_line_within_seconds(
    store: Store,
    disk_runs: dict[str, RunResult],
    tmp_path: Path,
    aws_env: None,
    monkeypatch,
    out: str,
    env: dict,
    expected: str,
) -> None:
    for key, value in env.items():
        if value == "closed":
            value = f"http://127.0.0.1:{_closed_port()}"
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # a URL must never become a local folder "s3:"
    before = _objects(store, "example1")
    model = str(disk_runs["linear_regression"].out)
    runs = [
        ["data", "generate", "regression", "--rows", "100", "--out", out, "--overwrite"],
        ["predict", model, "--data", str(store.local / "example1"), "--out", out, "--overwrite"],
    ]
    for args in runs:
        code, lines, took = _invoke_timed(args)
        assert code == 2 and len(lines) == 1, lines
        assert out in lines[0] and expected in lines[0], lines
        assert took < 10
    assert list(tmp_path.iterdir()) == []
    assert _objects(store, "example1") == before  # a foreign prefix is never touched


def test_interrupted_publications_are_never_read_and_are_replaced(
    store: Store, tmp_path: Path, aws_env: None
) -> None:
    """A writer SIGKILLed while it scores leaves nothing at the destination (its staging
    prefix is hidden and swept by the next writer); one killed while it copies into place
    leaves the marker saying 'publishing', which readers refuse and --overwrite replaces."""
    import signal
    import subprocess as sp

    from distml.predict import predict

    folder = tmp_path / "many"
    folder.mkdir()
    table = pa_table_x(2000)
    for i in range(300):
        pq.write_table(table, folder / f"part-{i:05d}.parquet")
    model = str(
        run_job(
            load_spec(
                REPO / "jobs" / "linear_regression.yaml", [f"data.train={store.local / 'example1'}"]
            ),
            tmp_path / "run",
        ).out
    )
    out = f"s3://{BUCKET}/killed/p"
    command = [sys.executable, "-m", "distml.cli", "predict", model, "--data", str(folder)]
    proc = sp.Popen([*command, "--out", out, "--backend", "local[1]"], stderr=sp.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        staged = [
            k for k in _objects_keys(store, "killed/") if ".p.tmp-" in k and k.endswith(".parquet")
        ]
        if staged:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    keys = _objects_keys(store, "killed/")
    assert keys and all("/.p.tmp-" in k for k in keys)  # nothing at killed/p, only hidden
    with pytest.raises(DataError, match="no such key or prefix"):
        distml.Dataset(out)
    predict(model, store.local / "example1", out)  # the next writer sweeps the staging
    assert not [k for k in _objects_keys(store, "killed/") if ".p.tmp-" in k]
    assert distml.Dataset(out).num_rows == 5
    # a publication cut short while copying: the marker says so
    s3 = store.client()
    marker = json.loads(s3.get_object(Bucket=BUCKET, Key="killed/p/_distml.json")["Body"].read())
    s3.put_object(
        Bucket=BUCKET,
        Key="killed/p/_distml.json",
        Body=json.dumps({**marker, "state": "publishing"}),
    )
    with pytest.raises(DataError, match=r"^s3://distml-data/killed/p: an incomplete distml output"):
        distml.Dataset(out)
    code, lines, _ = _invoke_timed(
        ["predict", f"{out}", "--data", str(store.local / "example1"), "--out", str(tmp_path / "q")]
    )
    assert code == 2 and len(lines) == 1 and "incomplete distml output" in lines[0], lines
    predict(model, store.local / "example1", out, overwrite=True)
    assert distml.Dataset(out).num_rows == 5


def _objects_keys(store: Store, prefix: str) -> list[str]:
    s3 = store.client()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [
        o["Key"] for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/")
    ]


def pa_table_x(rows: int):
    import pyarrow as pa

    x = np.arange(rows, dtype=np.float64)
    return pa.table({"x": x, "y": 2 * x + 1})


def test_hive_folders_filters_and_test_data_on_s3(store: Store, tmp_path: Path) -> None:
    remote = distml.Dataset(
        f"s3://{BUCKET}/hive",
        label="y",
        filters=[("year", "=", 2025)],
        storage_options=store.options(),
    )
    disk = distml.Dataset(store.local / "hive", label="y", filters=[("year", "=", 2025)])
    assert remote.partition_keys == ["year"] and remote.features == ["x0", "x1"]
    assert remote.num_rows == 30 and len(remote.partitions) == 2
    assert [p.partition_values for p in remote.partitions] == [{"year": 2025}] * 2
    assert [p.num_rows for p in remote.partitions] == [p.num_rows for p in disk.partitions]
    # data.test on the store too: the options reach the test dataset
    spec_path = REPO / "jobs" / "linear_regression.yaml"
    test = [f"data.train=s3://{BUCKET}/sixteen", f"data.test=s3://{BUCKET}/hive"]
    local = [f"data.train={store.local / 'sixteen'}", f"data.test={store.local / 'hive'}"]
    features = ["data.features=[x0,x1]"]
    on_s3 = run_job(load_spec(spec_path, [*test, *features, *store.overrides()]), tmp_path / "s3")
    on_disk = run_job(load_spec(spec_path, [*local, *features]), tmp_path / "disk")
    written = [json.loads((r.out / "metrics.json").read_text()) for r in (on_s3, on_disk)]
    assert written[0]["rows_test"] == 60
    assert written[0]["metrics"] == written[1]["metrics"]


@pytest.mark.tf
def test_a_keras_run_folder_is_published_on_s3_and_scores_from_there(
    store: Store, tmp_path: Path, aws_env: None, monkeypatch
) -> None:
    """The seed's Keras job (MirroredStrategy on this machine) reads its images from the store
    and writes its run folder there (its resume state stays in the local cache); ``distml
    predict`` then scores with the ``model.keras`` read back from the store. (A job on several
    workers: tests/test_keras_multiworker.py.)"""
    pytest.importorskip("tensorflow")
    from conftest import digits

    from distml.data.mnist import mnist_table

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    client = store.client()
    for split, (images, labels) in (("train", digits(400, 1)), ("test", digits(100, 2))):
        (tmp_path / split).mkdir()
        pq.write_table(mnist_table(images, labels), tmp_path / split / "part-0.parquet")
        client.upload_file(
            str(tmp_path / split / "part-0.parquet"), BUCKET, f"mnist/{split}/a.parquet"
        )
    spec = str(REPO / "jobs" / "mnist_mirrored.yaml")
    data = [f"data.train=s3://{BUCKET}/mnist/train", f"data.test=s3://{BUCKET}/mnist/test"]
    args = ["run", spec, *(x for d in data for x in ("--set", d))]
    args += ["--set", "train.epochs=1", "--set", "output.plots=false"]
    out = f"s3://{BUCKET}/runs/keras"

    def distml(*more: str) -> subprocess.CompletedProcess[str]:  # TensorFlow in a child
        command = [sys.executable, "-m", "distml.cli", *more]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    result = distml(*args, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    written = _objects(store, "runs/keras")
    assert _marker(written)["state"] == "complete"
    assert {"/metrics.json", "/model.keras", "/predictions/part-00000.parquet"} <= set(written)
    summary = json.loads(written["/metrics.json"])
    assert summary["epochs_run"] == 1 and summary["strategy"] == "MirroredStrategy"
    assert (summary["rows_train"], summary["rows_test"]) == (400, 100)  # read from the store
    assert (tmp_path / "cache" / "distml" / "runs").is_dir()  # where the resume state was
    assert not list((tmp_path / "cache").rglob("*.resume"))  # and removed once published
    scored = distml("predict", out, "--data", str(tmp_path / "test"),
                    "--out", str(tmp_path / "scored"), "--columns", "none")  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-3000:]
    ours = pq.read_table(tmp_path / "scored").column("prediction").to_numpy()
    theirs = pq.read_table(io.BytesIO(written["/predictions/part-00000.parquet"]))
    assert len(ours) == 100
    np.testing.assert_array_equal(ours, theirs.column("prediction").to_numpy())
