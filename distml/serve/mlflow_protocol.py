"""MLflow's scoring protocol (``mlflow models serve``): ``POST /invocations``.

JSON bodies hold exactly one of ``dataframe_split`` (``columns`` + ``data`` rows),
``dataframe_records`` (one object per row), ``instances`` (rows, or objects) or
``inputs`` (columns as ``{name: values}``, or rows), plus optional ``params``
(``{"method": "predict_proba"}``); ``text/csv`` bodies have a header line. The reply
is ``{"predictions": [...]}``; errors are ``{"error_code": ..., "message": ...}`` as
MLflow writes them.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np

from distml.serve.batch import NUMERIC, Batch, rows_matrix
from distml.serve.errors import BadRequest, RequestError, type_name

INPUT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PARAMS = ("method",)


def load_json(body: bytes) -> Any:
    """The JSON document, or 400 saying where it is broken (never quoting it)."""
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"the body is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    except UnicodeDecodeError:
        raise BadRequest("the body is not valid JSON (not UTF-8 text)") from None
    except RecursionError:
        raise BadRequest("the JSON body nests too deeply") from None


def parse_json(body: bytes) -> tuple[Batch, str]:
    """``(rows, method)`` from a JSON request body."""
    payload = load_json(body)
    if not isinstance(payload, dict):
        raise BadRequest(
            f"the JSON body must be an object with one of the keys {', '.join(INPUT_KEYS)}; "
            f"got {type_name(payload)}"
        )
    unknown = [k for k in payload if k not in INPUT_KEYS and k != "params"]
    if unknown:
        raise BadRequest(
            f"unknown key '{str(unknown[0])[:60]}'; the body holds exactly one of "
            f"{', '.join(INPUT_KEYS)} (and optionally params)"
        )
    given = [k for k in INPUT_KEYS if k in payload]
    if len(given) != 1:
        found = f"got {', '.join(given)}" if given else "got none"
        raise BadRequest(f"the body must hold exactly one of {', '.join(INPUT_KEYS)}; {found}")
    (key,) = given
    method = _method(payload.get("params"))
    value = payload[key]
    if key == "dataframe_split":
        return _split(value), method
    if key == "dataframe_records":
        return _records(value, key), method
    if key == "inputs" and isinstance(value, dict):
        return _columnar(value, key), method
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return _records(value, key), method
    return _rows(value, key), method


def _method(params: Any) -> str:
    if params is None:
        return "predict"
    if not isinstance(params, dict):
        raise BadRequest(f"params must be an object, got {type_name(params)}")
    for key in params:
        if key not in PARAMS:
            raise BadRequest(f"unknown parameter '{str(key)[:60]}'; this server takes 'method'")
    method = params.get("method", "predict")
    if not isinstance(method, str):
        raise BadRequest(f"params.method must be a string, got {type_name(method)}")
    return method


def _split(value: Any) -> Batch:
    where = "dataframe_split"
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be an object with columns and data, got {type_name(value)}")
    unknown = [k for k in value if k not in ("columns", "data", "index")]
    if unknown:
        raise BadRequest(f"{where}: unknown key '{str(unknown[0])[:60]}' (columns, data, index)")
    if "data" not in value:
        raise BadRequest(f"{where}: the key 'data' (the rows) is missing")
    M = rows_matrix(value["data"], f"{where}.data")
    columns = value.get("columns")
    if columns is None:
        return Batch(len(M), matrix=M, where=f"{where}.data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise BadRequest(f"{where}.columns must be an array of column names (strings)")
    if len(M) and M.shape[1] != len(columns):
        raise BadRequest(
            f"{where}: rows hold {M.shape[1]} value(s) but columns names {len(columns)}"
        )
    if not len(M):
        M = np.empty((0, len(columns)))
    return Batch(len(M), matrix=M, names=columns, where=f"{where}.data")


def _records(value: Any, where: str) -> Batch:
    if not isinstance(value, list):
        raise BadRequest(f"{where} must be an array of row objects, got {type_name(value)}")
    names: dict[str, None] = {}
    for i, record in enumerate(value):
        if not isinstance(record, dict):
            raise BadRequest(f"{where}: row {i} is {type_name(record)}, not an object")
        names.update(dict.fromkeys(record))
    columns = {name: [record.get(name) for record in value] for name in names}
    return Batch(len(value), columns=columns, where=where)


def _columnar(value: dict[str, Any], where: str) -> Batch:
    lengths = set()
    for name, column in value.items():
        if not isinstance(column, list):
            raise BadRequest(f"{where}: column '{name[:60]}' must be an array of values")
        lengths.add(len(column))
    if len(lengths) > 1:
        raise BadRequest(f"{where}: the columns hold different numbers of values")
    return Batch(lengths.pop() if lengths else 0, columns=dict(value), where=where)


def _rows(value: Any, where: str) -> Batch:
    if isinstance(value, list) and value and not isinstance(value[0], list):
        M = np.asarray(value) if all(isinstance(v, (int, float)) for v in value) else None
        if M is not None and M.dtype.kind in NUMERIC:
            return Batch(len(M), matrix=M.reshape(-1, 1), where=where)  # one feature per row
    M = rows_matrix(value, where)
    return Batch(len(M), matrix=M, where=where)


def parse_csv(body: bytes) -> tuple[Batch, str]:
    """A ``text/csv`` body: the header line names the columns; values typed by the model."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("the CSV body is not UTF-8 text") from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise BadRequest(f"the CSV body is malformed ({exc})") from None
    rows = [row for row in rows if row]
    if not rows:
        raise BadRequest("the CSV body is empty; its first line names the columns")
    header, data = [h.strip() for h in rows[0]], rows[1:]
    for i, row in enumerate(data, start=1):
        if len(row) != len(header):
            raise BadRequest(
                f"CSV line {i + 1} holds {len(row)} field(s), the header names {len(header)}"
            )
    columns = {name: [row[j] for row in data] for j, name in enumerate(header)}
    if len(columns) != len(header):
        raise BadRequest("the CSV header names a column twice")
    return Batch(len(data), columns=columns, text=True, where="CSV"), "predict"


def reply(predictions: np.ndarray) -> bytes:
    return json.dumps({"predictions": predictions.tolist()}, allow_nan=False).encode()


def error_body(error: RequestError) -> bytes:
    return json.dumps({"error_code": error.code, "message": error.message}).encode()
