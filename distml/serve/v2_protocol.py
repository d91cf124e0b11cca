"""The Open Inference Protocol (v2; KServe, Triton, MLServer) over REST/JSON.

``POST /v2/models/{name}/infer`` takes ``inputs``: one per model column (shape ``[N]``
or ``[N, 1]``) or a single ``[N, F]`` tensor (Keras: ``[N, 784]`` or ``[N, 28, 28]``),
each with a ``datatype`` its ``data`` must match; ``outputs`` picks methods
(``predict`` by default, ``predict_proba``, ``transform``); the request ``id`` is
echoed. Errors are ``{"error": message}`` as the protocol specifies.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from distml.serve.batch import Batch
from distml.serve.errors import BadRequest, RequestError, type_name
from distml.serve.mlflow_protocol import load_json
from distml.serve.served import ServedModel, v2_datatype

DATATYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": object,
}
REQUEST_KEYS = ("id", "parameters", "inputs", "outputs")
INPUT_KEYS = ("name", "shape", "datatype", "data", "parameters")


def parse_infer(body: bytes) -> tuple[Batch, list[str], Any]:
    """``(rows, output names, request id)`` from an inference request body."""
    payload = load_json(body)
    if not isinstance(payload, dict):
        raise BadRequest(f"the body must be an object with 'inputs', got {type_name(payload)}")
    unknown = [k for k in payload if k not in REQUEST_KEYS]
    if unknown:
        raise BadRequest(f"unknown key '{str(unknown[0])[:60]}' ({', '.join(REQUEST_KEYS)})")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest(f"'id' must be a string, got {type_name(request_id)}")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("'inputs' must be a non-empty array of input tensors")
    tensors = [_tensor(item, i) for i, item in enumerate(inputs)]
    return _batch(tensors), _outputs(payload.get("outputs")), request_id


def _tensor(item: Any, i: int) -> tuple[str, np.ndarray]:
    where = f"inputs[{i}]"
    if not isinstance(item, dict):
        raise BadRequest(f"{where} must be an object, got {type_name(item)}")
    unknown = [k for k in item if k not in INPUT_KEYS]
    if unknown:
        raise BadRequest(f"{where}: unknown key '{str(unknown[0])[:60]}' ({', '.join(INPUT_KEYS)})")
    for key in ("name", "shape", "datatype", "data"):
        if key not in item:
            raise BadRequest(f"{where}: the key '{key}' is missing")
    name, shape, datatype = item["name"], item["shape"], item["datatype"]
    if not isinstance(name, str):
        raise BadRequest(f"{where}.name must be a string")
    where = f"input '{name[:60]}'"
    if not isinstance(shape, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
    ):
        raise BadRequest(f"{where}: shape must be an array of non-negative integers")
    if datatype not in DATATYPES:
        raise BadRequest(
            f"{where}: unknown datatype '{str(datatype)[:20]}' (one of {', '.join(DATATYPES)})"
        )
    values = _typed(item["data"], datatype, where)
    count = int(np.prod(shape)) if shape else 1
    if values.size != count:
        dims = ", ".join(map(str, shape))
        raise BadRequest(
            f"{where}: shape [{dims}] needs {count} value(s), data holds {values.size}"
        )
    return name, values.reshape(shape)


def _typed(data: Any, datatype: str, where: str) -> np.ndarray:
    """``data`` (flat or nested) as the declared datatype, refusing values of another type."""
    if not isinstance(data, list):
        data = [data]
    if datatype == "BYTES":
        flat = _flatten(data)
        bad = next((v for v in flat if not isinstance(v, str) and v is not None), None)
        if bad is not None:
            raise BadRequest(f"{where} is declared BYTES but holds {type_name(bad)} values")
        return np.asarray(flat + [None], dtype=object)[:-1]
    try:
        arr = np.array(data)
    except (ValueError, TypeError):
        raise BadRequest(f"{where}: data is ragged (nested arrays of different lengths)") from None
    kind = arr.dtype.kind
    if kind not in "biuf" and arr.size:
        flat = _flatten(data)
        bad = next((v for v in flat if v is not None and not isinstance(v, (int, float))), None)
        if bad is not None or not datatype.startswith("FP"):
            raise BadRequest(f"{where} is declared {datatype} but holds {type_name(bad)} values")
        arr, kind = np.array(data, dtype=np.float64), "f"  # null in FP data: a missing value
    if datatype == "BOOL":
        if kind != "b" and arr.size:
            raise BadRequest(f"{where} is declared BOOL but holds numbers")
        return arr.astype(np.bool_)
    dtype = np.dtype(DATATYPES[datatype])
    if dtype.kind in "iu":
        if kind == "f":
            raise BadRequest(f"{where} is declared {datatype} but holds non-integer numbers")
        if arr.size and (arr.min() < np.iinfo(dtype).min or arr.max() > np.iinfo(dtype).max):
            raise BadRequest(f"{where}: values out of range for {datatype}")
    return arr.astype(dtype)


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            out.append(value)
        else:
            stack.pop()
    return out


def _batch(tensors: list[tuple[str, np.ndarray]]) -> Batch:
    if len(tensors) == 1:
        name, values = tensors[0]
        if values.ndim >= 2 and values.shape[1:] != (1,):
            return Batch(len(values), matrix=values, where=f"input '{name[:60]}'")
    columns: dict[str, np.ndarray] = {}
    rows = set()
    for name, values in tensors:
        if name in columns:
            raise BadRequest(f"input '{name[:60]}' appears twice")
        if values.ndim == 0 or values.ndim > 2 or (values.ndim == 2 and values.shape[1] != 1):
            dims = ", ".join(map(str, values.shape))
            raise BadRequest(
                f"input '{name[:60]}' has shape [{dims}]; one input per column has shape [N] "
                "or [N, 1] (or send a single [N, F] tensor)"
            )
        columns[name] = values.reshape(-1)
        rows.add(len(values))
    if len(rows) > 1:
        raise BadRequest("the inputs hold different numbers of rows")
    return Batch(rows.pop(), columns=columns, where="inputs")


def _outputs(outputs: Any) -> list[str]:
    if outputs is None:
        return ["predict"]
    if not isinstance(outputs, list) or not outputs:
        raise BadRequest("'outputs' must be a non-empty array of {\"name\": ...} objects")
    names = []
    for i, output in enumerate(outputs):
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise BadRequest(f"outputs[{i}] must be an object with a string 'name'")
        names.append(output["name"])
    return names


def reply(model: ServedModel, results: dict[str, np.ndarray], request_id: Any) -> bytes:
    outputs = [
        {
            "name": name,
            "datatype": v2_datatype(values.dtype),
            "shape": list(values.shape),
            "data": values.reshape(-1).tolist(),
        }
        for name, values in results.items()
    ]
    body: dict[str, Any] = {"model_name": model.name}
    if request_id is not None:
        body["id"] = request_id
    body["outputs"] = outputs
    return json.dumps(body, allow_nan=False).encode()


def metadata(model: ServedModel) -> dict[str, Any]:
    """``GET /v2/models/{name}``: the model's inputs (one per column) and outputs."""
    return {
        "name": model.name,
        "versions": ["1"],
        "platform": "distml" if model.model_type != "keras" else "keras",
        "parameters": {"model_type": model.model_type, "task": model.task},
        "inputs": [spec.as_dict() for spec in model.inputs],
        "outputs": [spec.as_dict() for spec in model.outputs],
    }


def error_body(error: RequestError) -> bytes:
    return json.dumps({"error": error.message}).encode()
