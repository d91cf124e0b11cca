"""Exact SHAP values of linear models, computed where the data lives.

For a linear score ``f(x) = w·x + b`` and a background distribution with mean ``μ``,
the interventional SHAP value of feature ``j`` for row ``i`` is ``φ_ij = w_j (x_ij - μ_j)``
and the base value ``E[f] = w·μ + b`` (Lundberg and Lee; ``shap.LinearExplainer`` with
``feature_perturbation="interventional"``). Logistic regression is explained in log-odds
space (its decision function), as ``LinearExplainer`` does; a multinomial model has one
set of values per class. The background mean takes one ``map_reduce`` pass; the values
of every row, their summary and the per-row Parquet files one more, on the workers.

Worker-side: numpy and pyarrow only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from distml.algorithms.engine import Engine, Partition


def _mean_part(part: Partition) -> tuple[float, np.ndarray]:
    if part.n_rows == 0:
        return 0.0, np.zeros(part.X.shape[1])
    return float(part.n_rows), part.X.mean(axis=0)


def _merge_mean(
    a: tuple[float, np.ndarray], b: tuple[float, np.ndarray]
) -> tuple[float, np.ndarray]:
    if b[0] == 0:
        return a
    if a[0] == 0:
        return b
    n = a[0] + b[0]
    return n, a[1] + (b[1] - a[1]) * (b[0] / n)


def background_mean(engine: Engine) -> tuple[np.ndarray, int]:
    """The mean of every feature over ``engine``'s rows (one pass) and the row count."""
    n, mean = engine.map_reduce(_mean_part, combine=_merge_mean)
    return np.asarray(mean, dtype=np.float64), int(n)


@dataclass(frozen=True)
class LinearShap:
    """What the workers need: the weights (``(d,)``, or ``(k, d)`` for k outputs), the
    intercept and the background mean."""

    coef: np.ndarray
    intercept: np.ndarray | float
    mean: np.ndarray

    @classmethod
    def from_kernel(cls, kernel: object, mean: np.ndarray) -> LinearShap:
        """From a fitted linear or logistic kernel; a binary classifier's single row of
        weights is one output, as ``LinearExplainer`` reads a scikit-learn model."""
        coef = np.asarray(kernel.coef_, dtype=np.float64)  # type: ignore[attr-defined]
        intercept = np.asarray(kernel.intercept_, dtype=np.float64)  # type: ignore[attr-defined]
        if coef.ndim == 2 and coef.shape[0] == 1:
            coef, intercept = coef[0], intercept.reshape(-1)[0]
        return cls(coef, intercept, np.asarray(mean, dtype=np.float64))

    @property
    def outputs(self) -> int:
        return 1 if self.coef.ndim == 1 else int(self.coef.shape[0])

    @property
    def base_value(self) -> np.ndarray | float:
        """``E[f(x)]`` over the background: ``w·μ + b`` (per output)."""
        value = np.dot(self.coef, self.mean) + self.intercept
        return float(value) if self.coef.ndim == 1 else np.asarray(value)

    def values(self, X: np.ndarray) -> np.ndarray:
        """``(n, d)`` SHAP values, or ``(n, d, k)`` for k outputs — the same arithmetic, in
        the same order, as ``LinearExplainer.shap_values``."""
        if self.coef.ndim == 1:
            return np.array(X - self.mean) * self.coef
        return np.stack([np.array(X - self.mean) * w for w in self.coef], axis=-1)


def _explain_part(
    part: Partition, explainer: LinearShap, out_dir: str | None, columns: list[str]
) -> tuple[float, np.ndarray, np.ndarray, list[str]]:
    """``(rows, Σ|φ|, Σφ, files)`` of one partition, writing its per-row file when asked."""
    d = part.X.shape[1]
    shape = (d,) if explainer.outputs == 1 else (d, explainer.outputs)
    if part.n_rows == 0:
        return 0.0, np.zeros(shape), np.zeros(shape), []
    phi = explainer.values(part.X)
    files = [] if out_dir is None else _write(part, phi, out_dir, columns)
    return float(part.n_rows), np.abs(phi).sum(axis=0), phi.sum(axis=0), files


def _merge(a: tuple, b: tuple) -> tuple:  # type: ignore[type-arg]
    return a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]


def explain(
    engine: Engine, explainer: LinearShap, out_dir: str | None = None, columns: list[str] = ()
) -> tuple[int, np.ndarray, np.ndarray, list[str]]:
    """One pass over every row: ``(rows, mean |φ|, mean φ, files)`` per feature (and
    output); with ``out_dir``, each partition also writes its values there
    (:func:`column_names` gives ``columns``)."""
    n, abs_sum, total, files = engine.map_reduce(
        _explain_part, explainer, out_dir, list(columns), combine=_merge
    )
    if n == 0:
        return 0, abs_sum, total, files
    return int(n), abs_sum / n, total / n, files


def column_names(features: list[str], outputs: list[str] | None) -> list[str]:
    """Per-row file columns: ``shap_<feature>``, or ``shap_<feature>__<output>`` per output."""
    if outputs is None:
        return [f"shap_{f}" for f in features]
    return [f"shap_{f}__{o}" for o in outputs for f in features]


def _write(part: Partition, phi: np.ndarray, out_dir: str, columns: list[str]) -> list[str]:
    """``part-NNNNN.parquet`` (``row``: the global row number, then one column per feature
    and output) in ``out_dir``, written where the partition lives."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from distml.data.arrow import arrow_array

    blocks = [phi] if phi.ndim == 2 else [phi[:, :, k] for k in range(phi.shape[2])]
    arrays = [arrow_array(np.asarray(part.row_ids, dtype=np.int64))]
    arrays += [arrow_array(b[:, j]) for b in blocks for j in range(b.shape[1])]
    os.makedirs(out_dir, exist_ok=True)  # on the worker's machine
    path = os.path.join(out_dir, f"part-{part.index:05d}.parquet")
    pq.write_table(pa.Table.from_arrays(arrays, names=["row", *columns]), path)
    return [path]


__all__ = [
    "LinearShap",
    "background_mean",
    "column_names",
    "explain",
]
