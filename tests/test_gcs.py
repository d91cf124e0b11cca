"""Google Cloud Storage (``gs://``) through pyarrow's GCS client, against a real emulator
process (``gcp-storage-emulator``, in the dev extra) on 127.0.0.1: the seed jobs read from
``gs://`` give the models from disk on every engine, and run folders, predictions and
generated data are published there with the object-store marker, as on S3."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import REPO, free_port, stop_process

import distml
from distml.cli.app import main
from distml.data.examples import EXAMPLES, write_example
from distml.errors import DataError
from distml.jobs import load_spec, run_job
from distml.predict import predict

EMULATOR = shutil.which("gcp-storage-emulator") or str(
    Path(sys.executable).parent / "gcp-storage-emulator"
)
pytestmark = pytest.mark.skipif(
    not Path(EMULATOR).exists(), reason="gcp-storage-emulator (the dev extra) is not installed"
)
BUCKET = "distml-gcs"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory):
    """The emulator's endpoint, with a bucket holding the seed's examples 1-3 (uploaded by
    pyarrow's own GCS client); the same files are kept on local disk to compare with."""
    port = free_port()
    proc = subprocess.Popen(
        [EMULATOR, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "gcp-storage-emulator exited"
            try:
                urllib.request.urlopen(f"{endpoint}/storage/v1/b", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "gcp-storage-emulator did not answer"
                time.sleep(0.2)
        fs = pafs.GcsFileSystem(
            anonymous=True, endpoint_override=f"127.0.0.1:{port}", scheme="http", project_id="t"
        )
        fs.create_dir(BUCKET)
        local = tmp_path_factory.mktemp("gcs-local")
        for name in EXAMPLES:
            write_example(name, local / name)
            for path in (local / name).glob("*.parquet"):
                with (
                    open(path, "rb") as source,
                    fs.open_output_stream(f"{BUCKET}/{name}/{path.name}") as sink,
                ):
                    sink.write(source.read())
        yield endpoint, local
    finally:
        stop_process(proc)


@pytest.fixture
def emulator(gcs, monkeypatch) -> Path:
    """``STORAGE_EMULATOR_HOST`` set, as for Google's own clients; the local copy returned."""
    endpoint, local = gcs
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    return local


def _objects(endpoint: str, prefix: str) -> dict[str, bytes]:
    fs = pafs.GcsFileSystem(
        anonymous=True, endpoint_override=endpoint.split("://")[1], scheme="http"
    )
    selector = pafs.FileSelector(f"{BUCKET}/{prefix}", recursive=True, allow_not_found=True)
    return {
        info.path[len(BUCKET) + len(prefix) + 1 :]: fs.open_input_stream(info.path).read()
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File
    }


@pytest.mark.parametrize(
    "engine",
    [
        "local",
        pytest.param("dask", marks=pytest.mark.dask),
        pytest.param("spark", marks=pytest.mark.spark),
    ],
)
def test_seed_jobs_from_gcs_give_the_models_from_disk(
    emulator: Path, engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Dask workers started before the variable was set reach the emulator all the same:
    the endpoint travels with the partitions."""
    backend = None
    if engine == "dask":
        backend = request.getfixturevalue("dask_address")
    elif engine == "spark":
        request.getfixturevalue("spark_session")
        backend = "spark"
    for job, example in (("linear_regression", "example1"),):  # all three: test_object_store
        spec_path = REPO / "jobs" / f"{job}.yaml"
        remote = run_job(
            load_spec(spec_path, [f"data.train=gs://{BUCKET}/{example}"], backend=backend),
            tmp_path / f"{job}-gcs",
        )
        disk = run_job(
            load_spec(spec_path, [f"data.train={emulator / example}"]), tmp_path / f"{job}-disk"
        )
        written = [json.loads((r.out / "metrics.json").read_text()) for r in (remote, disk)]
        assert written[0]["metrics"] == written[1]["metrics"]
        assert written[0]["model"] == written[1]["model"]
    article = json.loads((tmp_path / "linear_regression-gcs" / "metrics.json").read_text())
    # the article's printed model: Coefficient: [0.68571429], Intercept: 1.7714285714285714
    assert article["model"]["coef"] == pytest.approx([0.6857142857142857], rel=1e-12)


def test_run_folders_predictions_and_data_are_published_on_gcs(
    gcs, emulator: Path, tmp_path: Path
) -> None:
    endpoint = gcs[0]
    out = f"gs://{BUCKET}/runs/linear"
    spec = str(REPO / "jobs" / "linear_regression.yaml")
    args = ["run", spec, "--set", f"data.train={emulator / 'example1'}", "--out", out]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    written = _objects(endpoint, "runs/linear")
    assert json.loads(written["/_distml.json"])["state"] == "complete"
    assert {"/metrics.json", "/model/arrays.npz", "/model/model.json"} <= set(written)
    model = distml.load_model(f"{out}/model")
    assert model.intercept_ == pytest.approx(1.7714285714285714, rel=1e-12)
    assert not [k for k in _objects(endpoint, "runs") if ".tmp-" in k]  # staging removed
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "--overwrite" in again.output
    # predictions: the bytes of a local predict
    scored = predict(out, f"gs://{BUCKET}/example1", f"gs://{BUCKET}/scored")
    local = predict(out, emulator / "example1", tmp_path / "scored")
    assert scored.rows == local.rows == 5
    remote = _objects(endpoint, "scored")
    assert (
        remote["/part-00000.parquet"] == (tmp_path / "scored" / "part-00000.parquet").read_bytes()
    )
    assert "/_SUCCESS" in remote
    generated = CliRunner().invoke(
        main, ["data", "generate", "regression", "--rows", "2000", "--partitions", "2",
               "--out", f"gs://{BUCKET}/gen"],
    )  # fmt: skip
    assert generated.exit_code == 0, generated.output
    assert distml.Dataset(f"gs://{BUCKET}/gen", label="y").num_rows == 2000
    expected = pq.read_table(tmp_path / "scored").column("prediction").to_numpy()
    np.testing.assert_allclose(expected, 1.7714285714285714 + 0.6857142857142857 * np.array(
        EXAMPLES["example1"]["x"]), rtol=1e-12)  # fmt: skip


def test_bad_gcs_locations_are_one_line_naming_the_url(
    gcs, emulator: Path, tmp_path: Path, monkeypatch
) -> None:
    with pytest.raises(DataError, match=r"^gs://no-such-bucket/x: no such bucket 'no-such-bucket'"):
        distml.Dataset("gs://no-such-bucket/x")
    spec = str(REPO / "jobs" / "linear_regression.yaml")
    out = "gs://no-such-bucket/run"
    args = ["run", spec, "--set", f"data.train={emulator / 'example1'}", "--out", out]
    result = CliRunner().invoke(main, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and out in lines[0], lines
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    url = f"gs://{BUCKET}/example1"
    result = CliRunner().invoke(main, ["run", spec, "--set", f"data.train={url}",
                                       "--out", str(tmp_path / "r")])  # fmt: skip
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, lines
    assert url in lines[0] and "cannot reach the object store" in lines[0]
    assert time.monotonic() - started < 10
    assert not (tmp_path / "r").exists()
