"""Parquet datasets on an S3-compatible object store: a real S3 API server (moto's standalone
server, a separate process on 127.0.0.1) serves the seed examples and a 16-file dataset; the
same jobs from ``s3://`` and from local disk give the very same models on every engine."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import REPO, regression_frame, write_parts
from numpy.testing import assert_array_equal
from sklearn.linear_model import LinearRegression

import distml
from distml.backends import get_backend
from distml.cli.app import main
from distml.data.examples import EXAMPLES, write_example
from distml.errors import DataError
from distml.jobs import RunResult, load_spec, run_job

pytest.importorskip("moto", reason="moto[server] (the dev extra) is not installed")
boto3 = pytest.importorskip("boto3", reason="boto3 (the dev extra) is not installed")

BUCKET = "distml-data"
REGION = "us-east-1"
SEED_JOBS = {
    "linear_regression": "example1",
    "logistic_regression": "example2",
    "kmeans": "example3",
}


@dataclass
class Store:
    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    local: Path  # the same files on local disk

    def options(self, **changes: str) -> dict[str, str]:
        base = {
            "endpoint_url": self.endpoint,
            "region": REGION,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
        }
        return {**base, **changes}

    def overrides(self, **changes: str) -> list[str]:
        return [f"data.storage_options.{k}={v}" for k, v in self.options(**changes).items()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"moto server at {url} did not answer within {timeout:.0f} s")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    """A moto S3 server checking credentials (after the 3 set-up calls that create the IAM
    user and its key), a bucket holding the seed examples and a 16-file dataset."""
    port = _free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(endpoint, proc)
        anyone = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION, **anyone)
        iam.create_user(UserName="distml")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="distml", PolicyName="all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="distml")["AccessKey"]
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )
        s3.create_bucket(Bucket=BUCKET)
        local = tmp_path_factory.mktemp("object-store")
        for name in EXAMPLES:
            write_example(name, local / name)
        write_parts(local / "sixteen", regression_frame(n=320, d=3, seed=7), 16)
        hive = regression_frame(n=60, d=2, seed=3)
        for year in (2024, 2025):
            write_parts(local / "hive" / f"year={year}", hive.iloc[(year - 2024) * 30 :][:30], 2)
        for path in sorted(local.rglob("*.parquet")):
            s3.upload_file(str(path), BUCKET, path.relative_to(local).as_posix())
        yield Store(endpoint, key["AccessKeyId"], key["SecretAccessKey"], local)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
    return _free_port()  # nothing listens once the probe socket is closed


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
    with pytest.raises(distml.errors.SpecError, match="storage_options apply to s3:// URLs only"):
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


@pytest.mark.parametrize("command", ["run", "generate"])
def test_writing_to_an_object_store_is_refused_in_one_line(
    store: Store, tmp_path: Path, monkeypatch, command: str
) -> None:
    monkeypatch.chdir(tmp_path)  # a refused URL must not become a local folder "s3:"
    out = f"s3://{BUCKET}/runs/one"
    if command == "run":
        spec = str(REPO / "jobs" / "linear_regression.yaml")
        args = ["run", spec, "--set", f"data.train={store.local / 'example1'}", "--out", out]
    else:
        args = ["data", "generate", "regression", "--rows", "100", "--out", out]
    result = CliRunner().invoke(main, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and out in lines[0] and "not supported yet" in lines[0], lines
    assert list(tmp_path.iterdir()) == []


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
