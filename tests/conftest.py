"""Shared fixtures: small Parquet datasets written per test, expensive engines per session."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]


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
def spark_session():
    """One local[2] SparkSession for the whole run, started the way distml starts it (quiet
    JVM); every ``get_backend("spark")`` in the tests attaches to it and leaves it running."""
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
