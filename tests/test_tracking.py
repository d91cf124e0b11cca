"""MLflow tracking against a local store and a real ``mlflow server`` process (started once
for the module), read back with MLflow's own client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import free_port, stop_process, write_parts

import distml
from distml.cli.app import main
from distml.jobs import parse_spec, run_job

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

SERVER_START_TIMEOUT = 90.0
FEATURES = ["x0", "x1", "x2"]


@pytest.fixture(scope="module", autouse=True)
def _no_telemetry():
    old = os.environ.get("MLFLOW_DISABLE_TELEMETRY")
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    yield
    if old is None:
        os.environ.pop("MLFLOW_DISABLE_TELEMETRY", None)


@pytest.fixture(scope="module", autouse=True)
def _server_process(tmp_path_factory: pytest.TempPathFactory):
    """A real ``mlflow server`` on a free port (sqlite store, proxied artifacts), started
    before the module's first test so its slow start overlaps the local-store test."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"), "--workers", "1",
    ]  # fmt: skip
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        yield SimpleNamespace(process=process, url=f"http://127.0.0.1:{port}", root=root)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def server(_server_process: SimpleNamespace) -> str:
    """The server's URL once ``/health`` answers (within :data:`SERVER_START_TIMEOUT`)."""
    url, process = _server_process.url, _server_process.process
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return url
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log = (_server_process.root / "server.log").read_text()[-2000:]
            raise RuntimeError(f"mlflow server did not start: {log}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("tracked")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3))
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["label"] = (X @ [1.0, -2.0, 0.5] + rng.normal(size=600) > 0).astype(np.int64)
    write_parts(root / "data", frame, 3)
    raw = {
        "name": "tracked-job",
        "model": {"type": "logistic_regression", "params": {"max_iter": 500}},
        "data": {"train": str(root / "data"), "label": "label"},
        "cv": {"folds": 2},
        "search": {"grid": {"C": [0.1, 1.0]}},
        "interpret": {"shap": True},
    }
    (root / "job.yaml").write_text(json.dumps(raw))  # JSON is YAML
    return SimpleNamespace(root=root, raw=raw, frame=frame)


def _check_logged(uri: str, run_id: str, folder: Path, frame: pd.DataFrame) -> None:
    """What MLflow holds equals the run folder; its model predicts what distml predicts."""
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    summary = json.loads((folder / "metrics.json").read_text())
    params = run.data.params
    assert params["model.type"] == "logistic_regression"
    assert params["solver"] == summary["solver"] and params["backend"] == summary["backend"]
    assert params["data.label"] == "label" and params["data.train"].endswith("data")
    assert json.loads(params["best.model.C"]) == summary["cv"]["best_params"]["model.C"]
    metrics = run.data.metrics
    for name in ("accuracy", "f1", "log_loss", "roc_auc"):
        assert metrics[name] == pytest.approx(summary["metrics"][name], rel=1e-12)
    assert metrics["fit_seconds"] == pytest.approx(summary["fit_seconds"])
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    search = pd.read_csv(folder / "search.csv")
    assert sorted(float(c.data.params["model.C"]) for c in children) == sorted(search["model.C"])
    for child in children:
        row = search[np.isclose(search["model.C"], float(child.data.params["model.C"]))].iloc[0]
        assert child.data.metrics["mean_accuracy"] == pytest.approx(row["mean_accuracy"])
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"shap_summary.png", "confusion_matrix.png", "run"} <= top
    inside = {a.path for a in client.list_artifacts(run_id, "run")}
    assert {"run/metrics.json", "run/shap_summary.json", "run/model"} <= inside
    assert "run/predictions" not in inside
    assert run.info.status == "FINISHED"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        model_uri = f"runs:/{run_id}/model"
        loaded = mlflow.pyfunc.load_model(model_uri)
        X = frame[FEATURES].iloc[:50]
        expected = distml.load_model(folder / "model").predict(X)
        np.testing.assert_array_equal(np.asarray(loaded.predict(X)), expected)
        assert [c.name for c in loaded.metadata.get_input_schema().inputs] == FEATURES
    finally:
        mlflow.set_tracking_uri(previous)


def test_run_tracked_in_a_local_store(job: SimpleNamespace, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = parse_spec({**job.raw, "tracking": {"uri": uri, "tags": {"team": "a"}}})
    result = run_job(spec, tmp_path / "run")
    assert result.tracking is not None and "error" not in result.tracking, result.tracking
    assert result.tracking["experiment"] == "tracked-job"
    assert len(result.tracking["children"]) == 2
    _check_logged(uri, result.tracking["run_id"], result.out, job.frame)
    run = MlflowClient(tracking_uri=uri).get_run(result.tracking["run_id"])
    assert run.data.tags["team"] == "a" and run.info.run_name == "run"
    # `mlflow models serve` on the logged model, a real process queried over HTTP
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"}
    # it runs `uvicorn` from PATH: this environment's, activated or not
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    serve = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m",
         f"runs:/{result.tracking['run_id']}/model", "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert serve.poll() is None, serve.stderr.read().decode()[-3000:]
            try:
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "mlflow models serve did not answer /ping"
            time.sleep(0.5)
        rows = job.frame[FEATURES].iloc[:20]
        payload = {"dataframe_split": {"columns": FEATURES, "data": rows.to_numpy().tolist()}}
        answer = httpx.post(f"{url}/invocations", json=payload, timeout=30)
        assert answer.status_code == 200, answer.text
        expected = distml.load_model(result.out / "model").predict(rows)
        assert answer.json()["predictions"] == expected.tolist()
    finally:
        stop_process(serve)


def test_server_down_keeps_the_run_then_distml_track_logs_it(
    job: SimpleNamespace, server: str, tmp_path: Path
) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    out = tmp_path / "run"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "distml", "run", str(job.root / "job.yaml"), "--out", str(out),
         "--track", down],
        capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 200
    lines = [line for line in done.stderr.splitlines() if "tracking" in line.lower()]
    assert len(lines) == 1 and down in lines[0] and "distml track" in lines[0], done.stderr
    assert (out / "_distml.json").is_file() and (out / "model" / "model.json").is_file()
    assert json.loads((out / "metrics.json").read_text())["metrics"]["accuracy"] > 0.5
    # logging it later to the live server
    result = CliRunner().invoke(
        main, ["track", str(out), "--uri", server, "--experiment", "later", "--tag", "k=v"]
    )
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri=server)
    experiment = client.get_experiment_by_name("later")
    (run,) = client.search_runs([experiment.experiment_id], "tags.mlflow.parentRunId IS NULL") or [
        None
    ]
    assert run is not None and run.info.run_id in result.output and run.data.tags["k"] == "v"
    _check_logged(server, run.info.run_id, out, job.frame)
    # the server still down for `distml track`: exit 2, one line naming the URL
    refused = CliRunner().invoke(main, ["track", str(out), "--uri", down])
    assert refused.exit_code == 2 and refused.output.count("\n") == 1
    assert down in refused.output


def test_track_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["track", str(tmp_path), "--uri", str(tmp_path / "s")])
    assert result.exit_code == 2 and "metrics.json missing" in result.output


def test_tracking_spec_errors(job: SimpleNamespace) -> None:
    with pytest.raises(distml.DistmlError, match="did you mean 'experiment'"):
        parse_spec({**job.raw, "tracking": {"experimnt": "x"}})
