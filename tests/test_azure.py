"""Azure Blob Storage (``abfs://``) through pyarrow's Azure client, against a real Azurite
process (Microsoft's emulator: ``npm install -g azurite``; ``.ci/run`` installs it where npm
works, and these tests are skipped where it is missing): a seed job from ``abfs://`` gives
the model from disk on local threads and on Dask workers that have no Azure variables, its
run folder and predictions are published there, and bad locations are one line."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from click.testing import CliRunner
from conftest import REPO, free_port, stop_process

import distml
from distml.cli.app import main
from distml.data.examples import write_example
from distml.errors import DataError
from distml.jobs import load_spec, run_job
from distml.predict import predict

AZURITE = shutil.which("azurite-blob")
pytestmark = pytest.mark.skipif(AZURITE is None, reason="azurite (npm) is not installed")
#: Azurite's well-known development account and key (public, in Microsoft's documentation).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
CONTAINER = "distml-azure"


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory):
    """Azurite's blob service on a free port, a container holding the seed's example 1."""
    port = free_port()
    assert AZURITE is not None
    proc = subprocess.Popen(
        [AZURITE, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
         "--skipApiVersionCheck", "--loose"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "azurite exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "azurite did not listen"
                time.sleep(0.2)
        authority = f"127.0.0.1:{port}"
        fs = pafs.AzureFileSystem(
            account_name=ACCOUNT, account_key=KEY,
            blob_storage_authority=authority, blob_storage_scheme="http",
            dfs_storage_authority=authority, dfs_storage_scheme="http",
        )  # fmt: skip
        fs.create_dir(CONTAINER)
        local = tmp_path_factory.mktemp("azure-local")
        write_example("example1", local / "example1")
        for path in (local / "example1").glob("*.parquet"):
            with fs.open_output_stream(f"{CONTAINER}/example1/{path.name}") as sink:
                sink.write(path.read_bytes())
        yield endpoint, local, fs
    finally:
        stop_process(proc)


@pytest.fixture
def azure_env(azurite, monkeypatch) -> Path:
    """The account, key and emulator endpoint from the environment (Azure's variable names)."""
    endpoint, local, _ = azurite
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", ACCOUNT)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", KEY)
    monkeypatch.setenv("AZURE_STORAGE_BLOB_ENDPOINT", endpoint)
    return local


@pytest.mark.parametrize("engine", ["local", pytest.param("dask", marks=pytest.mark.dask)])
def test_a_seed_job_from_azure_gives_the_model_from_disk(
    azure_env: Path, engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    backend = request.getfixturevalue("dask_address") if engine == "dask" else None
    spec_path = REPO / "jobs" / "linear_regression.yaml"
    url = f"abfs://{CONTAINER}@{ACCOUNT}.dfs.core.windows.net/example1"
    remote = run_job(load_spec(spec_path, [f"data.train={url}"], backend=backend), tmp_path / "a")
    disk = run_job(load_spec(spec_path, [f"data.train={azure_env / 'example1'}"]), tmp_path / "d")
    written = [json.loads((r.out / "metrics.json").read_text()) for r in (remote, disk)]
    assert written[0]["metrics"] == written[1]["metrics"]
    # the article's printed model: Coefficient: [0.68571429], Intercept: 1.7714285714285714
    assert written[0]["model"]["coef"] == pytest.approx([0.6857142857142857], rel=1e-12)


def test_run_folders_and_predictions_are_published_on_azure(
    azurite, azure_env: Path, tmp_path: Path
) -> None:
    fs = azurite[2]
    out = f"az://{CONTAINER}/runs/linear"
    spec = str(REPO / "jobs" / "linear_regression.yaml")
    args = ["run", spec, "--set", f"data.train={azure_env / 'example1'}", "--out", out]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    with fs.open_input_stream(f"{CONTAINER}/runs/linear/_distml.json") as marker:
        assert json.loads(marker.read())["state"] == "complete"
    model = distml.load_model(f"{out}/model")
    assert model.intercept_ == pytest.approx(1.7714285714285714, rel=1e-12)
    scored = predict(out, f"az://{CONTAINER}/example1", f"az://{CONTAINER}/scored")
    local = predict(out, azure_env / "example1", tmp_path / "scored")
    assert scored.rows == local.rows == 5
    with fs.open_input_stream(f"{CONTAINER}/scored/part-00000.parquet") as remote:
        assert remote.read() == (tmp_path / "scored" / "part-00000.parquet").read_bytes()
    left = fs.get_file_info(pafs.FileSelector(CONTAINER, recursive=True))
    assert not [i.path for i in left if ".tmp-" in i.path and i.type == pafs.FileType.File]


def test_bad_azure_locations_are_one_line(azure_env: Path, tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(DataError, match=r"^az://no-such-container/x: no such bucket"):
        distml.Dataset("az://no-such-container/x")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "d3Jvbmcta2V5")  # base64, not the key
    with pytest.raises(DataError, match=rf"^az://{CONTAINER}/example1: access denied"):
        distml.Dataset(f"az://{CONTAINER}/example1")
    monkeypatch.setenv("AZURE_STORAGE_BLOB_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    spec = str(REPO / "jobs" / "linear_regression.yaml")
    url = f"az://{CONTAINER}/example1"
    result = CliRunner().invoke(
        main, ["run", spec, "--set", f"data.train={url}", "--out", str(tmp_path / "r")]
    )
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, lines
    assert url in lines[0] and "cannot reach the object store" in lines[0]
    assert time.monotonic() - started < 10
    assert not (tmp_path / "r").exists()
