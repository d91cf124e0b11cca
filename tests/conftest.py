"""Shared fixtures: small Parquet datasets written per test, expensive engines per session."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
# Spark driver JVMs map a class archive (distml.backends.spark.class_archive): the suite keeps
# its own, recorded by the spark_class_archive fixture, not the user's ~/.cache one.
SPARK_CLASSES = Path(tempfile.mkdtemp(prefix="distml-test-spark-classes-"))
os.environ["DISTML_SPARK_CLASS_ARCHIVE"] = str(SPARK_CLASSES)
atexit.register(shutil.rmtree, SPARK_CLASSES, True)
BUCKET = "distml-data"  # the bucket s3_store creates
REGION = "us-east-1"


def free_port() -> int:
    """A TCP port nothing listens on now (the servers tests start bind it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a server process the tests started; kill it if it lingers."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable fake MNIST digits: noise plus a bright band at rows 2*label..2*label+1."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for row in range(2):
        images[np.arange(n), 2 * labels.astype(int) + row, :] = 255
    return images, labels


def write_parts(folder: Path, frame: pd.DataFrame, n_files: int) -> Path:
    """Write ``frame`` as ``n_files`` Parquet files in row order."""
    folder.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, len(frame), n_files + 1).astype(int)
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        pq.write_table(
            pa.Table.from_pandas(frame.iloc[lo:hi], preserve_index=False),
            folder / f"part-{i:05d}.parquet",
        )
    return folder


def assert_same_generated_data(here: Path, there: Path, partitions: int) -> None:
    """Two ``distml data generate`` folders hold the same files, table for table."""
    names = sorted(p.name for p in here.iterdir())
    parts = [f"part-{i:05d}.parquet" for i in range(partitions)]
    expected = ["_distml.json", "_truth.json", *parts]  # the marker says distml wrote it
    assert names == sorted(p.name for p in there.iterdir()) == expected
    for name in parts:
        assert pq.read_table(there / name).equals(pq.read_table(here / name)), name
    assert json.loads((there / "_truth.json").read_text()) == json.loads(
        (here / "_truth.json").read_text()
    )


def regression_frame(n: int = 2000, d: int = 5, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * np.arange(1, d + 1) + 3.0
    y = X @ rng.normal(size=d) + 2.0 + rng.normal(size=n)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(d)])
    frame["y"] = y
    return frame


@pytest.fixture
def regression_dir(tmp_path: Path) -> Path:
    return write_parts(tmp_path / "regression", regression_frame(), 4)


@pytest.fixture(scope="session")
def spark_class_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The suite's class archive, recorded the way a user's first Spark run records it: by
    ``distml run`` of the article's k-means example on ``local[2]``; later driver JVMs map it."""
    pytest.importorskip("pyspark", reason="the spark extra is not installed")
    root = tmp_path_factory.mktemp("record-classes")
    if not list(SPARK_CLASSES.glob("*.jsa")):  # a Spark test that ran first may have recorded
        result = subprocess.run(
            [sys.executable, "-m", "distml.cli", "run", str(REPO / "jobs" / "kmeans.yaml"),
             "--backend", "spark", "--set", "backend.master=local[2]",
             "--set", f"data.train={root / 'example3'}", "--out", str(root / "run")],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        assert "spark: saving the driver JVM's classes" in result.stderr
    (archive,) = SPARK_CLASSES.glob("*.jsa")
    return archive


@pytest.fixture(scope="session")
def spark_session(spark_class_archive: Path):
    """One local[2] SparkSession for the whole run, started the way distml starts it (quiet
    JVM, mapping the suite's class archive); every ``get_backend("spark")`` in the tests
    attaches to it and leaves it running."""
    pytest.importorskip("pyspark", reason="the spark extra is not installed")
    from distml.backends import get_backend

    backend = get_backend("spark", master="local[2]", console_progress=False)
    backend.start()
    yield backend.spark
    backend.stop()


@pytest.fixture(scope="session")
def dask_address():
    """One 2-worker LocalCluster (worker processes, one thread each) for the whole run."""
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        scheduler_kwargs={"dashboard": False},
    ) as cluster:
        yield cluster.scheduler_address


@dataclass
class S3Store:
    """A moto S3 server started for the session, and how to reach it."""

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

    def client(self):  # type: ignore[no-untyped-def]
        """A boto3 S3 client with this server's key (to put and read objects directly)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def overrides(self, **changes: str) -> list[str]:
        return [f"data.storage_options.{k}={v}" for k, v in self.options(**changes).items()]


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


@pytest.fixture(scope="session")
def s3_store(tmp_path_factory: pytest.TempPathFactory):
    """A moto S3 server checking credentials (after the 3 set-up calls that create the IAM
    user and its key), a bucket holding the seed examples and a 16-file dataset."""
    pytest.importorskip("moto", reason="moto[server] (the dev extra) is not installed")
    boto3 = pytest.importorskip("boto3", reason="boto3 (the dev extra) is not installed")
    from distml.data.examples import EXAMPLES, write_example

    port = free_port()
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
        yield S3Store(endpoint, key["AccessKeyId"], key["SecretAccessKey"], local)
    finally:
        stop_process(proc)
