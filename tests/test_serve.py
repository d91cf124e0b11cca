"""``distml serve``: real server processes queried over real HTTP.

Models are trained once (distml's own jobs on small Parquet data; a Keras MNIST
network saved by a subprocess, with its own in-process predictions), then three
servers start at once as subprocesses on free ports: the main one with every model,
one with ``--max-concurrency 1 --timeout 1`` (503 and 504), and one with
``--workers 2`` that is stopped with SIGTERM in the middle of a slow upload. Every
expected value comes from the in-process model (``load_model(...).predict`` on a
pandas frame, Keras's ``model.predict``), never from the serving code.
"""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import REPO, write_parts

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from distml import load_model  # noqa: E402
from distml.cli import main  # noqa: E402
from distml.jobs import parse_spec, run_job  # noqa: E402

HAS_TF = importlib.util.find_spec("tensorflow") is not None
SECRET = "S3CR3T-7731"  # planted in bad requests: no reply may echo it
FEATURES = ["a", "b", "c"]
CITIES = ["paris", "lyon", "nice"]


# -- models --------------------------------------------------------------------------------
def _frames(n: int = 240) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(n, 3))
    regression = pd.DataFrame(X, columns=FEATURES)
    regression["y"] = 1.0 + X @ [2.0, -1.0, 0.5] + rng.normal(scale=0.1, size=n)
    classes = pd.DataFrame(X, columns=FEATURES)
    classes["label"] = np.digitize(X @ [1.5, -1.0, 0.5], [-0.7, 0.7])  # 3 classes
    centres = np.array([[0, 0, 0], [5, 5, 0], [0, 5, 5]], dtype=float)
    blobs = pd.DataFrame(centres[rng.integers(0, 3, n)] + rng.normal(size=(n, 3)), columns=FEATURES)
    age = rng.normal(40, 10, n)
    city = rng.choice(CITIES, n)
    messy = pd.DataFrame(
        {
            "age": np.where(rng.random(n) < 0.1, np.nan, age),
            "city": np.where(rng.random(n) < 0.1, None, city),
            "score": rng.normal(size=n),
        }
    )
    effect = pd.Series(city).map({"paris": 3.0, "lyon": 1.0, "nice": -1.0}).to_numpy()
    messy["y"] = 0.3 * age + effect + messy["score"] + rng.normal(scale=0.1, size=n)
    return {"regression": regression, "classes": classes, "blobs": blobs, "messy": messy}


KERAS_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
from distml.deep.devices import import_tensorflow
import_tensorflow()
import keras
from distml.deep.models import build_model
keras.utils.set_random_seed(0)
model = build_model("mlp", 784, 10)
out = Path(sys.argv[1])
out.mkdir(parents=True)
model.save(out / "model.keras")
(out / "metrics.json").write_text(json.dumps({"job": "mnist", "model": {"classes": list(range(10))}}))
pixels = np.random.default_rng(0).integers(0, 256, (6, 784), dtype=np.uint8)
np.savez(out.parent / "keras_expected.npz", pixels=pixels, proba=model.predict(pixels, verbose=0))
"""


@pytest.fixture(scope="module")
def keras_build(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A Keras MNIST network saved (and its predictions taken) by a subprocess, started
    first so TensorFlow loads while the other models train and their servers start."""
    if not HAS_TF:
        yield None
        return
    root = tmp_path_factory.mktemp("keras")
    proc = subprocess.Popen(
        [sys.executable, "-c", KERAS_SCRIPT, str(root / "mnist-run")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield proc, root
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def runs(keras_build: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve")
    frames = _frames()
    jobs = {
        "lin": ("regression", {"type": "linear_regression"}, "y", None),
        "logit": ("classes", {"type": "logistic_regression"}, "label", None),
        "km": (
            "blobs",
            {"type": "kmeans", "params": {"n_clusters": 3, "random_state": 0}},
            None,
            None,
        ),
        "messy": (
            "messy",
            {"type": "linear_regression"},
            "y",
            [
                {"impute": {"strategy": "median", "columns": ["age"]}},
                {"impute": {"strategy": "most_frequent", "columns": ["city"]}},
                {"one_hot": {"columns": ["city"]}},
                {"scale": None},
            ],
        ),
    }
    out = {}
    for name, (frame, model, label, preprocess) in jobs.items():
        data = write_parts(root / "data" / frame, frames[frame], 2)
        spec: dict[str, Any] = {
            "name": name,
            "model": model,
            "data": {"train": str(data)},
            "output": {"plots": False, "predictions": False},
        }
        if label:
            spec["data"]["label"] = label
        if preprocess:
            spec["preprocess"] = preprocess
            spec["data"]["features"] = ["age", "city", "score"]
        out[name] = run_job(parse_spec(spec), root / f"{name}-run").out
    out["root"] = root
    return out


# -- servers ---------------------------------------------------------------------------------
class Server:
    """A ``distml serve`` subprocess on a free port (``--port 0``, read from its first line)."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "distml.cli", "serve", *args, "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
            cwd=REPO,
        )
        self.url = ""

    def wait_ready(self, timeout: float = 90.0) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited {self.proc.returncode}: {self.log.read_text()}"
                )
            if not self.url:
                found = re.search(r" on (http://\S+) \(", self.log.read_text())
                self.url = found.group(1) if found else ""
            if self.url:
                try:
                    if httpx.get(self.url + "/v2/health/ready", timeout=2).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready in {timeout:.0f} s: {self.log.read_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@pytest.fixture(scope="module")
def servers(runs: dict[str, Path], keras_build: Any) -> Any:
    root = runs["root"]
    main_server = Server(
        [str(runs[n]) for n in ("lin", "logit", "km", "messy")] + ["--max-body-mb", "1"],
        root / "main.log",
    )
    tight = Server(
        [f"tight={runs['lin']}", "--max-concurrency", "1", "--timeout", "1"], root / "tight.log"
    )
    workers = Server([str(runs["lin"]), "--workers", "2", "--timeout", "20"], root / "workers.log")
    started: dict[str, Any] = {"main": main_server, "tight": tight, "workers": workers}

    def start_keras_server() -> None:  # once its model is saved; the other tests run meanwhile
        proc, keras_root = keras_build
        _, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            started["keras-error"] = err[-3000:]
            return
        started["keras"] = Server([str(keras_root / "mnist-run")], keras_root / "serve.log")

    if keras_build is not None:
        started["keras-thread"] = threading.Thread(target=start_keras_server, daemon=True)
        started["keras-thread"].start()
    try:
        for name in ("main", "tight", "workers"):
            started[name].wait_ready()
        yield started
    finally:
        if "keras-thread" in started:
            started["keras-thread"].join(timeout=300)
        for server in started.values():
            if isinstance(server, Server) and server.proc.poll() is None:
                server.stop()  # SIGTERM: a --workers supervisor stops its workers (a kill orphans them)


@pytest.fixture(scope="module")
def url(servers: dict[str, Server]) -> str:
    return servers["main"].url


def post(url: str, path: str, body: Any, content_type: str = "application/json") -> Any:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(url + path, content=data, headers={"Content-Type": content_type}, timeout=30)


def rows(n: int = 7, seed: int = 1) -> pd.DataFrame:
    return pd.DataFrame(np.random.default_rng(seed).normal(size=(n, 3)) * 2, columns=FEATURES)


def messy_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [35.0, np.nan, 52.5, 41.0, np.nan],
            "city": ["lyon", "paris", None, "nice", "brest"],  # brest: unseen, one_hot ignores it
            "score": [0.1, -1.2, 0.7, 2.0, 0.0],
        }
    )


def mlflow_bodies(frame: pd.DataFrame) -> dict[str, Any]:
    """The same rows in every request form MLflow's /invocations takes."""

    def plain(v: Any) -> Any:  # JSON null for NaN/None; full float precision (unlike to_json)
        return None if v is None or v != v else v

    records = [{c: plain(v) for c, v in row.items()} for row in frame.to_dict(orient="records")]
    split = {"columns": list(frame.columns), "data": [list(r.values()) for r in records]}
    return {
        "dataframe_split": {"dataframe_split": split},
        "dataframe_records": {"dataframe_records": records},
        "instances": {"instances": records},
        "inputs": {"inputs": {c: [r[c] for r in records] for c in frame.columns}},
        "csv": frame.to_csv(index=False),
    }


def v2_columns(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for column in frame.columns:
        kind = "BYTES" if frame[column].dtype == object else "FP64"
        values = frame[column].tolist()  # missing numbers: NaN (JSON NaN); strings: null
        if kind == "BYTES":
            values = [None if v is None or v != v else v for v in values]
        out.append({"name": column, "shape": [len(frame)], "datatype": kind, "data": values})
    return out


def predictions(reply: Any) -> np.ndarray:
    assert reply.status_code == 200, reply.text
    return np.asarray(reply.json()["predictions"])


# -- every model kind, both protocols ----------------------------------------------------------
@pytest.mark.parametrize("run", ["lin", "logit", "km", "messy"])
def test_mlflow_protocol_equals_in_process_predict(
    url: str, runs: dict[str, Path], run: str
) -> None:
    frame = messy_rows() if run == "messy" else rows()
    expected = load_model(runs[run] / "model").predict(frame)
    for form, body in mlflow_bodies(frame).items():
        if form == "csv":
            reply = post(url, f"/invocations?model={run}", body, "text/csv")
        else:
            reply = post(url, f"/invocations?model={run}", body)
        got = predictions(reply)
        assert got.shape == expected.shape, form
        if expected.dtype.kind == "f":
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, err_msg=form)
        else:
            assert got.tolist() == expected.tolist(), form


def test_invocations_default_to_the_first_model(url: str, runs: dict[str, Path]) -> None:
    frame = rows(3)
    expected = load_model(runs["lin"] / "model").predict(frame)
    got = predictions(post(url, "/invocations", mlflow_bodies(frame)["dataframe_split"]))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_predict_proba_and_kmeans_distances(url: str, runs: dict[str, Path]) -> None:
    frame = rows(9, seed=3)
    logit = load_model(runs["logit"] / "model")
    body = {**mlflow_bodies(frame)["dataframe_split"], "params": {"method": "predict_proba"}}
    proba = predictions(post(url, "/invocations?model=logit", body))
    assert proba.shape == (9, 3)
    np.testing.assert_allclose(proba, logit.predict_proba(frame), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)

    reply = post(
        url,
        "/v2/models/logit/infer",
        {
            "id": "r-1",
            "inputs": v2_columns(frame),
            "outputs": [{"name": "predict_proba"}, {"name": "predict"}],
        },
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["id"] == "r-1" and body["model_name"] == "logit"
    out = {o["name"]: o for o in body["outputs"]}
    assert out["predict_proba"]["shape"] == [9, 3] and out["predict_proba"]["datatype"] == "FP64"
    np.testing.assert_allclose(
        np.reshape(out["predict_proba"]["data"], (9, 3)), logit.predict_proba(frame), rtol=1e-12
    )
    assert out["predict"]["data"] == logit.predict(frame).tolist()

    km = load_model(runs["km"] / "model")
    tensor = {
        "name": "X",
        "shape": [9, 3],
        "datatype": "FP64",
        "data": frame.to_numpy().ravel().tolist(),
    }
    reply = post(
        url, "/v2/models/km/infer", {"inputs": [tensor], "outputs": [{"name": "transform"}]}
    )
    (out,) = reply.json()["outputs"]
    np.testing.assert_allclose(
        np.reshape(out["data"], out["shape"]), km.transform(frame), rtol=1e-12
    )


@pytest.mark.parametrize("run", ["lin", "logit", "km", "messy"])
def test_v2_protocol_equals_in_process_predict(url: str, runs: dict[str, Path], run: str) -> None:
    frame = messy_rows() if run == "messy" else rows(5, seed=2)
    expected = load_model(runs[run] / "model").predict(frame)
    bodies = {"columns": {"id": "abc", "inputs": v2_columns(frame)}}
    if run != "messy":  # one [N, F] tensor (numeric models), nested or flat data
        bodies["tensor"] = {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [5, 3],
                    "datatype": "FP32",
                    "data": frame.to_numpy().tolist(),
                }
            ]
        }
        bodies["tensor-fp64"] = {
            "inputs": [
                {
                    "name": "X",
                    "shape": [5, 3],
                    "datatype": "FP64",
                    "data": frame.to_numpy().ravel().tolist(),
                }
            ]
        }
    for form, body in bodies.items():
        reply = post(url, f"/v2/models/{run}/infer", body)
        assert reply.status_code == 200, (form, reply.text)
        (out,) = reply.json()["outputs"]
        assert out["name"] == "predict" and out["shape"] == [len(frame)]
        if form == "tensor":  # FP32 on the wire: the model sees float32-rounded values
            frame32 = pd.DataFrame(
                frame.to_numpy().astype(np.float32).astype(float), columns=FEATURES
            )
            want = load_model(runs[run] / "model").predict(frame32)
        else:
            want = expected
        if want.dtype.kind == "f":
            np.testing.assert_allclose(out["data"], want, rtol=1e-12, atol=1e-12, err_msg=form)
        else:
            assert out["data"] == want.tolist(), form
        assert reply.json().get("id") == body.get("id")


def test_v2_metadata_and_health(url: str, runs: dict[str, Path]) -> None:
    assert httpx.get(url + "/v2/health/live").json() == {"live": True}
    assert httpx.get(url + "/v2/health/ready").json() == {"ready": True}
    assert httpx.get(url + "/v2/models/lin/ready").json() == {"name": "lin", "ready": True}
    assert httpx.get(url + "/ping").status_code == 200
    assert httpx.get(url + "/health").status_code == 200
    assert httpx.get(url + "/version").text == __import__("distml").__version__
    meta = httpx.get(url + "/v2/models/messy").json()
    assert meta["name"] == "messy"
    assert meta["inputs"] == [
        {"name": "age", "datatype": "FP64", "shape": [-1]},
        {"name": "city", "datatype": "BYTES", "shape": [-1]},
        {"name": "score", "datatype": "FP64", "shape": [-1]},
    ]
    logit = httpx.get(url + "/v2/models/logit").json()
    assert [o["name"] for o in logit["outputs"]] == ["predict", "predict_proba"]
    assert logit["outputs"][1]["shape"] == [-1, 3]
    assert "/invocations" in httpx.get(url + "/openapi.json").json()["paths"]
    assert httpx.get(url + "/docs").status_code == 200


# -- bad requests: status and a message naming the culprit, never the data ------------------
SPLIT = {"columns": FEATURES, "data": [[1.0, 2.0, 3.0]]}
BAD = [
    (
        "malformed-json",
        "/invocations",
        b'{"dataframe_split": {"columns": ["a"',
        "application/json",
        400,
        "not valid JSON",
    ),
    ("not-an-object", "/invocations", [1, 2], "application/json", 400, "must be an object"),
    (
        "wrong-key",
        "/invocations",
        {"dataframe": SPLIT},
        "application/json",
        400,
        "unknown key 'dataframe'",
    ),
    (
        "two-keys",
        "/invocations",
        {"dataframe_split": SPLIT, "instances": [[1, 2, 3]]},
        "application/json",
        400,
        "exactly one of",
    ),
    (
        "missing-column",
        "/invocations",
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}},
        "application/json",
        400,
        "missing column(s) 'c'",
    ),
    (
        "extra-column",
        "/invocations",
        {"dataframe_records": [{"a": 1, "b": 2, "c": 3, "zz": 4}]},
        "application/json",
        400,
        "unexpected column(s) 'zz'",
    ),
    (
        "wrong-dtype",
        "/invocations",
        {"dataframe_split": {"columns": FEATURES, "data": [[1, SECRET, 3]]}},
        "application/json",
        400,
        "column 'b' holds string values",
    ),
    (
        "csv-dtype",
        "/invocations",
        f"a,b,c\n1,2,{SECRET}\n",
        "text/csv",
        400,
        "column 'c': the value in row 0 is not a number",
    ),
    (
        "missing-value",
        "/invocations",
        {"dataframe_records": [{"a": 1, "b": None, "c": 3}]},
        "application/json",
        400,
        "column 'b' has missing",
    ),
    (
        "row-width",
        "/invocations",
        {"instances": [[1.0, 2.0]]},
        "application/json",
        400,
        "rows must hold 3 value(s)",
    ),
    (
        "ragged-rows",
        "/invocations",
        {"dataframe_split": {"columns": FEATURES, "data": [[1, 2, 3], [1, 2]]}},
        "application/json",
        400,
        "row 1 holds 2 value(s)",
    ),
    (
        "bad-method",
        "/invocations",
        {"dataframe_split": SPLIT, "params": {"method": "predict_proba"}},
        "application/json",
        400,
        "has no method 'predict_proba'",
    ),
    (
        "bad-param",
        "/invocations",
        {"dataframe_split": SPLIT, "params": {"batch": 3}},
        "application/json",
        400,
        "unknown parameter 'batch'",
    ),
    (
        "v2-shape",
        "/v2/models/lin/infer",
        {"inputs": [{"name": "a", "shape": [2], "datatype": "FP64", "data": [1, 2, 3]}]},
        "application/json",
        400,
        "shape [2] needs 2 value(s), data holds 3",
    ),
    (
        "v2-dtype",
        "/v2/models/lin/infer",
        {"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP64", "data": [1, SECRET, 3]}]},
        "application/json",
        400,
        "declared FP64 but holds string values",
    ),
    (
        "v2-int-dtype",
        "/v2/models/lin/infer",
        {"inputs": [{"name": "X", "shape": [1, 3], "datatype": "INT64", "data": [1.5, 2, 3]}]},
        "application/json",
        400,
        "declared INT64 but holds non-integer numbers",
    ),
    (
        "v2-datatype",
        "/v2/models/lin/infer",
        {"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FLOAT", "data": [1, 2, 3]}]},
        "application/json",
        400,
        "unknown datatype 'FLOAT'",
    ),
    (
        "v2-tensor-width",
        "/v2/models/lin/infer",
        {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]},
        "application/json",
        400,
        "rows must hold 3 value(s)",
    ),
    (
        "v2-missing-input",
        "/v2/models/lin/infer",
        {
            "inputs": [
                {"name": "a", "shape": [1], "datatype": "FP64", "data": [1]},
                {"name": "b", "shape": [1], "datatype": "FP64", "data": [1]},
            ]
        },
        "application/json",
        400,
        "missing column(s) 'c'",
    ),
    (
        "v2-no-inputs",
        "/v2/models/lin/infer",
        {"id": "x"},
        "application/json",
        400,
        "'inputs' must be a non-empty array",
    ),
    (
        "v2-output",
        "/v2/models/lin/infer",
        {
            "inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}],
            "outputs": [{"name": "proba"}],
        },
        "application/json",
        400,
        "has no method 'proba'",
    ),
    (
        "pipeline-strings",
        "/v2/models/messy/infer",
        {
            "inputs": [
                {"name": "age", "shape": [1], "datatype": "FP64", "data": [30]},
                {"name": "city", "shape": [1], "datatype": "FP64", "data": [7]},
                {"name": "score", "shape": [1], "datatype": "FP64", "data": [1]},
            ]
        },
        "application/json",
        400,
        "column 'city' holds number values (row 0); the model expects strings",
    ),
    (
        "unknown-model",
        "/v2/models/nope/infer",
        {"inputs": []},
        "application/json",
        404,
        "no model named 'nope'",
    ),
    (
        "unknown-model-mlflow",
        "/invocations?model=nope",
        {"dataframe_split": SPLIT},
        "application/json",
        404,
        "no model named 'nope'",
    ),
    (
        "content-type",
        "/invocations",
        f"a={SECRET}",
        "text/plain",
        415,
        "Content-Type 'text/plain' is not supported",
    ),
    (
        "v2-content-type",
        "/v2/models/lin/infer",
        "<xml/>",
        "application/xml",
        415,
        "Content-Type 'application/xml'",
    ),
    (
        "too-large",
        "/invocations",
        b'{"instances": [' + b"[1.0, 2.0, 3.0], " * 70_000 + b"[1, 2, 3]]}",
        "application/json",
        413,
        "--max-body-mb",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "message"),
    [b[1:] for b in BAD],
    ids=[b[0] for b in BAD],
)
def test_bad_requests_get_their_status_and_name_the_culprit(
    url: str, path: str, body: Any, content_type: str, status: int, message: str
) -> None:
    reply = post(url, path, body, content_type)
    assert reply.status_code == status, reply.text
    error = reply.json()
    text = error["message"] if path.startswith("/invocations") else error["error"]
    if path.startswith("/invocations"):
        assert error["error_code"]
    assert message in text
    assert SECRET not in reply.text and "Traceback" not in reply.text and len(text) < 400


def test_metrics_count_requests_statuses_and_rows(url: str) -> None:
    text = httpx.get(url + "/metrics").text
    before = _metric(text, 'distml_serve_rows_scored_total{model="km"}')
    reply = post(
        url,
        "/invocations?model=km",
        {"dataframe_split": {"columns": FEATURES, "data": [[0, 0, 0]] * 4}},
    )
    assert reply.status_code == 200
    post(url, "/v2/models/nope/infer", {"inputs": []})
    text = httpx.get(url + "/metrics").text
    assert _metric(text, 'distml_serve_rows_scored_total{model="km"}') == before + 4
    assert (
        _metric(
            text, 'distml_serve_requests_total{endpoint="/v2/models/{name}/infer",status="404"}'
        )
        >= 1
    )
    assert (
        _metric(text, 'distml_serve_request_duration_seconds_count{endpoint="/invocations"}') >= 1
    )
    assert "distml_serve_requests_in_flight " in text


def _metric(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_64_concurrent_clients_get_no_errors(url: str, runs: dict[str, Path]) -> None:
    frame = rows(64, seed=5)
    expected = load_model(runs["lin"] / "model").predict(frame)

    def client(i: int) -> list[float]:
        with httpx.Client(base_url=url, timeout=30) as http:
            got = []
            for _ in range(3):
                body = {"dataframe_split": {"columns": FEATURES, "data": [frame.iloc[i].tolist()]}}
                reply = http.post("/invocations?model=lin", json=body)
                assert reply.status_code == 200, reply.text
                got.append(reply.json()["predictions"][0])
            return got

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(client, range(64)))
    for i, got in enumerate(results):
        np.testing.assert_allclose(got, [expected[i]] * 3, rtol=1e-12)


# -- limits: 503 over --max-concurrency, 504 past --timeout --------------------------------------
def slow_request(
    url: str, path: str, body: bytes, first: int, content_type: str = "application/json"
) -> socket.socket:
    """Send the headers and the first ``first`` bytes of the body; the caller sends the rest."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    sock.sendall(head + body[:first])
    return sock


def read_reply(sock: socket.socket) -> tuple[int, Any]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


def test_over_max_concurrency_gives_503(servers: dict[str, Server], runs: dict[str, Path]) -> None:
    url = servers["tight"].url
    body = json.dumps(
        {"dataframe_split": {"columns": FEATURES, "data": [[1.0, 2.0, 3.0]]}}
    ).encode()
    holder = slow_request(url, "/invocations", body, 10)  # holds the only slot while it uploads
    time.sleep(0.2)
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: post(url, "/invocations", body), range(8)))
    holder.sendall(body[10:])
    status, answer = read_reply(holder)
    assert status == 200 and len(answer["predictions"]) == 1
    assert [r.status_code for r in replies] == [503] * 8
    assert all("--max-concurrency 1" in r.json()["message"] for r in replies)
    assert replies[0].headers["retry-after"] == "1"
    assert post(url, "/invocations", body).status_code == 200  # the slot is free again


def test_past_timeout_gives_504(servers: dict[str, Server]) -> None:
    url = servers["tight"].url
    body = json.dumps({"inputs": [{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}]})
    sock = slow_request(url, "/v2/models/tight/infer", body.encode(), 5)  # the rest never comes
    status, answer = read_reply(sock)
    assert status == 504
    assert answer == {"error": "the body did not arrive within --timeout 1 s"}


# -- process behaviour -------------------------------------------------------------------------
def test_workers_serve_the_same_predictions(
    servers: dict[str, Server], runs: dict[str, Path]
) -> None:
    url = servers["workers"].url
    frame = rows(4, seed=9)
    expected = load_model(runs["lin"] / "model").predict(frame)
    for _ in range(4):  # connections land on either worker
        with httpx.Client(base_url=url, timeout=30) as http:
            got = http.post("/invocations", json=mlflow_bodies(frame)["dataframe_split"]).json()
        np.testing.assert_allclose(got["predictions"], expected, rtol=1e-12)
    text = httpx.get(url + "/metrics").text  # summed over the processes
    assert _metric(text, 'distml_serve_rows_scored_total{model="lin"}') == 16


def test_sigterm_answers_the_request_in_flight_then_exits_0(
    servers: dict[str, Server], runs: dict[str, Path]
) -> None:
    server = servers["workers"]
    frame = rows(2000, seed=11)
    expected = load_model(runs["lin"] / "model").predict(frame)
    body = json.dumps(mlflow_bodies(frame)["dataframe_split"]).encode()
    sock = slow_request(server.url, "/invocations", body, len(body) // 2)
    time.sleep(0.5)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)  # shutting down: the request in flight is still being read
    assert server.proc.poll() is None
    sock.sendall(body[len(body) // 2 :])
    status, answer = read_reply(sock)
    assert status == 200
    np.testing.assert_allclose(answer["predictions"], expected, rtol=1e-12)
    assert server.proc.wait(timeout=30) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/v2/health/live", timeout=2)


def test_bad_model_path_and_port_in_use_are_one_line_exit_2(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    cli = CliRunner()
    done = cli.invoke(main, ["serve", str(tmp_path / "nowhere")])
    assert done.exit_code == 2
    assert (
        done.output.strip()
        == f"error: {tmp_path / 'nowhere'}: no such model (a run folder, its model/ folder or model.keras)"
    )
    (tmp_path / "empty").mkdir()
    done = cli.invoke(main, ["serve", f"x={tmp_path / 'empty'}"])
    assert done.exit_code == 2 and "not a saved model" in done.output
    done = cli.invoke(main, ["serve", str(runs["lin"]), f"lin={runs['km']}"])
    assert done.exit_code == 2 and "two models are named 'lin'" in done.output
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    done = cli.invoke(main, ["serve", str(tmp_path / "broken.keras")])
    assert done.exit_code == 2 and "not a Keras model file" in done.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli.invoke(main, ["serve", str(runs["lin"]), "--port", str(port)])
    assert done.exit_code == 2
    assert (
        done.output.strip()
        == f"error: port {port} on 127.0.0.1 is in use; choose another with --port"
    )


def test_a_model_loads_as_native_work(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loader thread may be inside TensorFlow (a Keras model): its load is native work,
    which the CLI's end leaves by ``os._exit`` rather than meeting it in the interpreter's
    teardown (``distml/teardown.py``)."""
    from distml import teardown
    from distml.serve import registry as registry_module

    seen: list[bool] = []
    real_load = registry_module.load

    def load(source: Any) -> Any:
        seen.append(teardown.working())  # this thread's, whatever other threads do
        return real_load(source)

    monkeypatch.setattr(registry_module, "load", load)
    registry = registry_module.Registry(registry_module.resolve([str(runs["lin"])]))
    registry.start_loading()
    assert registry.wait(30)
    assert seen == [True] and not teardown.working(registry._thread)


def test_a_stopping_server_waits_a_bounded_time_for_a_model_still_loading(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The app's shutdown (its lifespan's end) lets a load in progress end, but not for
    ever: past ``LOAD_WAIT_SECONDS`` it stops without the model and says so."""
    import asyncio

    from distml.serve import app as app_module
    from distml.serve import registry as registry_module

    release = threading.Event()
    real_load = registry_module.load

    def slow_load(source: Any) -> Any:
        release.wait(30)
        return real_load(source)

    monkeypatch.setattr(registry_module, "load", slow_load)
    monkeypatch.setattr(app_module, "LOAD_WAIT_SECONDS", 0.5)
    registry = registry_module.Registry(registry_module.resolve([str(runs["lin"])]))
    served = app_module.ServeApp(registry, app_module.Settings())

    async def start_and_stop() -> float:
        async with served.api.router.lifespan_context(served.api):
            await asyncio.sleep(0.1)
            started = time.monotonic()
        return time.monotonic() - started

    try:
        with caplog.at_level("WARNING", logger="distml.serve"):
            waited = asyncio.run(start_and_stop())
    finally:
        release.set()
    assert 0.5 <= waited < 5 and not registry.ready
    assert caplog.messages == [
        "a model was still loading 0.5 s after the server began to stop; stopping without it"
    ]
    assert registry.wait(30)  # the load itself goes on, and ends


def test_model_names_come_from_the_job(runs: dict[str, Path]) -> None:
    from distml.serve.registry import resolve

    sources = resolve([str(runs["lin"]), str(runs["km"] / "model"), f"other={runs['logit']}"])
    assert [s.name for s in sources] == ["lin", "km", "other"]
    assert [s.kind for s in sources] == ["distml"] * 3


# -- Keras (last: its server starts once TensorFlow has saved the model) ----------------------
@pytest.mark.tf
@pytest.mark.skipif(not HAS_TF, reason="needs the tf extra")
def test_keras_mnist_both_protocols(servers: dict[str, Any], keras_build: Any) -> None:
    servers["keras-thread"].join(timeout=300)
    assert "keras-error" not in servers, servers.get("keras-error")
    url = servers["keras"].wait_ready().url
    expected = np.load(keras_build[1] / "keras_expected.npz")
    pixels, proba = expected["pixels"], expected["proba"]
    labels = proba.argmax(axis=1).tolist()
    meta = httpx.get(url + "/v2/models/mnist").json()
    assert meta["inputs"] == [{"name": "pixels", "datatype": "UINT8", "shape": [-1, 784]}]
    for datatype, shape, data in [
        ("UINT8", [6, 784], pixels.ravel().tolist()),
        ("FP32", [6, 28, 28], pixels.reshape(6, 28, 28).astype(float).tolist()),
    ]:
        body = {
            "id": datatype,
            "inputs": [{"name": "pixels", "shape": shape, "datatype": datatype, "data": data}],
            "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
        }
        reply = post(url, "/v2/models/mnist/infer", body)
        assert reply.status_code == 200, reply.text
        out = {o["name"]: o for o in reply.json()["outputs"]}
        assert reply.json()["id"] == datatype
        assert out["predict"]["data"] == labels
        np.testing.assert_allclose(
            np.reshape(out["predict_proba"]["data"], (6, 10)), proba, rtol=1e-5, atol=1e-7
        )
    for body in (
        {"instances": pixels.reshape(6, 28, 28).tolist()},
        {"inputs": {"pixels": pixels.tolist()}},
        {"dataframe_split": {"columns": ["pixels"], "data": [[p] for p in pixels.tolist()]}},
    ):
        assert predictions(post(url, "/invocations?model=mnist", body)).tolist() == labels
    body = {"instances": pixels.tolist(), "params": {"method": "predict_proba"}}
    got = predictions(post(url, "/invocations?model=mnist", body))
    np.testing.assert_allclose(got, proba, rtol=1e-5, atol=1e-7)
    bad = post(
        url,
        "/v2/models/mnist/infer",
        {"inputs": [{"name": "pixels", "shape": [1, 783], "datatype": "UINT8", "data": [0] * 783}]},
    )
    assert bad.status_code == 400 and "[N, 784] or [N, 28, 28]" in bad.json()["error"]
    bad = post(url, "/invocations?model=mnist", {"instances": [[300] * 784]})
    assert bad.status_code == 400 and "[0, 255]" in bad.json()["message"]


@pytest.mark.tf
@pytest.mark.skipif(not HAS_TF, reason="needs the tf extra")
def test_a_server_stopped_while_its_keras_model_loads_exits_0(
    servers: dict[str, Any], keras_build: Any, tmp_path: Path
) -> None:
    """SIGTERM while the loader thread is still inside TensorFlow (importing it and the
    model take seconds): the server lets the load end, then exits 0 with nothing on stderr.
    Stopping during TensorFlow's import once crashed the process (exit -11: the import
    failed to register its exit handlers, the interpreter's teardown then crashed)."""
    servers["keras-thread"].join(timeout=300)
    assert "keras-error" not in servers, servers.get("keras-error")
    server = Server([str(keras_build[1] / "mnist-run")], tmp_path / "serve.log")
    deadline = time.monotonic() + 60
    while " on http://" not in server.log.read_text() and time.monotonic() < deadline:
        assert server.proc.poll() is None, server.log.read_text()
        time.sleep(0.05)
    url = re.search(r" on (http://\S+) \(", server.log.read_text()).group(1)  # type: ignore[union-attr]
    status, deadline = 0, time.monotonic() + 30
    while not status and time.monotonic() < deadline:
        try:
            status = httpx.get(url + "/v2/health/ready", timeout=2).status_code
        except httpx.TransportError:
            time.sleep(0.05)
    assert status == 503  # answering, the model still loading
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0
    assert server.log.read_text().splitlines()[1:] == []  # the announcement only


@pytest.mark.parametrize("debug", [False, True])
def test_a_fault_in_distml_is_a_500_with_the_traceback_only_under_debug(
    runs: dict[str, Path], debug: bool
) -> None:
    """A fault inside distml (not the request's) cannot be provoked through a valid model —
    saved models are validated on load — so the served model's scoring is made to fail; the
    app itself (protocol parsing, the 500 path, the reply) is the real one, driven over ASGI."""
    import asyncio

    from distml.serve.app import ServeApp, Settings
    from distml.serve.registry import Registry, load, resolve

    source = resolve([str(runs["lin"])])[0]
    model = load(source)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("secret-detail-42")

    model.score = broken  # type: ignore[method-assign]
    app = ServeApp(Registry([source], {source.name: model}), Settings(debug=debug))
    body = {"dataframe_split": {"columns": FEATURES, "data": rows(2).values.tolist()}}

    async def ask() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            return await client.post("/invocations", json=body)

    reply = asyncio.run(ask())
    app.pool.shutdown(wait=False)
    assert reply.status_code == 500
    message = reply.json()["message"]  # MLflow's error body: error_code and message
    assert message.startswith("internal error in distml (ZeroDivisionError); see the server log")
    assert ("Traceback" in message and "secret-detail-42" in message) is debug
    assert str(rows(2).values[0, 0]) not in reply.text  # never the user's data
