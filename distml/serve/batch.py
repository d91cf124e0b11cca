"""The rows a request carries, and their conversion to the model's column types.

Both protocols parse into a :class:`Batch`: named columns (``dataframe_records``,
columnar ``inputs``, CSV, per-column v2 inputs), a matrix with column names
(``dataframe_split``) or a positional ``[N, F]`` matrix (``instances`` rows, one v2
tensor). Columns are converted to the type the model was trained on — numbers to
float64 (``null``/NaN = missing), strings to ``str`` (``null`` = missing) — whatever
the wire format, so JSON and CSV give the same values (mlflow#5525). No pandas: a
one-row request costs microseconds. Errors name the column and the type found,
never a value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from distml.serve.errors import BadRequest, type_name

NUMERIC = "biuf"  # numpy kinds read as numbers (booleans as 0/1, as numpy and pandas do)


@dataclass
class Batch:
    """Rows of one request: ``columns`` by name, or ``matrix`` rows (with ``names`` or
    positional). ``text``: the values are CSV fields; ``where``: the request key."""

    n_rows: int
    columns: dict[str, Any] | None = None
    matrix: np.ndarray | None = None
    names: list[str] | None = None
    text: bool = False
    where: str = "input"

    def numeric_matrix(self, features: list[str]) -> np.ndarray | None:
        """The float64 ``[N, F]`` matrix in ``features`` order when the request is one
        numeric matrix (the fast path), else ``None``; shapes and names are checked."""
        M = self.matrix
        if M is None or M.dtype.kind not in NUMERIC:
            return None
        if self.names is None:
            check_width(M, len(features), self.where)
            return M.astype(np.float64, copy=False)
        if self.names == features:
            return M.astype(np.float64, copy=False)
        check_names(self.names, features)
        return M[:, [self.names.index(f) for f in features]].astype(np.float64)

    def as_columns(self, features: list[str]) -> dict[str, Any]:
        """``feature → values`` (N each) after checking the names or the row width."""
        if self.columns is not None:
            check_names(list(self.columns), features)
            return self.columns
        M = self.matrix
        assert M is not None
        if self.names is None:
            check_width(M, len(features), self.where)
            return {f: M[:, j] for j, f in enumerate(features)}
        check_names(self.names, features)
        return {f: M[:, self.names.index(f)] for f in features}


def check_width(M: np.ndarray, width: int, where: str) -> None:
    if M.ndim != 2 or M.shape[1] != width:
        shape = "x".join(str(s) for s in M.shape)
        raise BadRequest(
            f"{where}: rows must hold {width} value(s) each (one per model feature), "
            f"got an array of shape [{shape}]"
        )


def check_names(given: list[str], features: list[str]) -> None:
    """Missing, extra or repeated column names → 400 naming them."""
    if len(set(given)) != len(given):
        seen: set[str] = set()
        repeated = next(n for n in given if n in seen or seen.add(n))  # type: ignore[func-returns-value]
        raise BadRequest(f"column {_name(repeated)} appears twice")
    missing = [f for f in features if f not in given]
    extra = [g for g in given if g not in features]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(_name(m) for m in missing[:10])}")
        if extra:
            parts.append(f"unexpected column(s) {', '.join(_name(e) for e in extra[:10])}")
        raise BadRequest(f"{'; '.join(parts)}; the model takes {len(features)} column(s)")


def _name(name: object) -> str:
    text = str(name)
    return repr(text if len(text) <= 60 else text[:59] + "…")


# -- one column to the model's type ----------------------------------------------------------
def float_column(name: str, values: Any, text: bool = False) -> np.ndarray:
    """float64 values with NaN for missing ones; strings (outside CSV) are refused."""
    if isinstance(values, np.ndarray) and values.dtype.kind in NUMERIC:
        return values.astype(np.float64, copy=False).reshape(-1)
    if text:
        return _parse_floats(name, values)
    if not isinstance(values, np.ndarray):
        try:
            arr = np.asarray(values)
        except (ValueError, TypeError):
            arr = None
        if arr is not None and arr.ndim == 1 and arr.dtype.kind in NUMERIC:
            return arr.astype(np.float64)
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if v is None:
            out[i] = np.nan
        elif isinstance(v, (int, float, np.number)):
            try:
                out[i] = float(v)
            except OverflowError:
                raise BadRequest(
                    f"column {_name(name)}: a number in row {i} is out of range"
                ) from None
        else:
            raise BadRequest(
                f"column {_name(name)} holds {type_name(_plain(v))} values (row {i}); "
                "the model expects numbers (FP64)"
            )
    return out


def _parse_floats(name: str, values: Any) -> np.ndarray:
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        v = v.strip()
        if v == "" or v.lower() in ("nan", "null", "na"):
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except ValueError:
            raise BadRequest(
                f"column {_name(name)}: the value in row {i} is not a number; "
                "the model expects numbers (FP64)"
            ) from None
    return out


def string_column(name: str, values: Any, text: bool = False) -> np.ndarray:
    """Object array of ``str`` with ``None`` for missing values; numbers are refused."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        v = _plain(v)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out[i] = None
        elif isinstance(v, str):
            out[i] = None if text and v == "" else v
        elif isinstance(v, bytes):
            out[i] = v.decode("utf-8", errors="replace")
        else:
            raise BadRequest(
                f"column {_name(name)} holds {type_name(v)} values (row {i}); "
                "the model expects strings (BYTES)"
            )
    return out


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def finite_or_400(X: np.ndarray, features: list[str], model: str) -> np.ndarray:
    """A model without an impute stage cannot take missing or infinite values."""
    finite = np.isfinite(X)
    if not finite.all():
        column = features[int(np.nonzero(~finite.all(axis=0))[0][0])]
        raise BadRequest(
            f"column {_name(column)} has missing (null/NaN) or infinite values; model "
            f"'{model}' has no impute stage"
        )
    return X


def rows_matrix(rows: Any, where: str) -> np.ndarray:
    """A list of equal-length rows as a 2-D array: numeric when every value is a number
    (one C call), else an object array keeping each value's JSON type."""
    if not isinstance(rows, list):
        raise BadRequest(f"{where} must be an array of rows, got {type_name(rows)}")
    try:
        M = np.array(rows)
    except (ValueError, TypeError):
        M = None
    if M is not None and M.dtype.kind in NUMERIC and M.ndim >= 2:
        return M
    width = len(rows[0]) if rows and isinstance(rows[0], list) else 0
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise BadRequest(f"{where}: row {i} is {type_name(row)}, not an array of values")
        if len(row) != width:
            raise BadRequest(f"{where}: row {i} holds {len(row)} value(s), row 0 holds {width}")
    M = np.empty((len(rows), width), dtype=object)
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            M[i, j] = value
    return M
