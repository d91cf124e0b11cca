"""Evaluation metrics from per-partition counts and sums (one pass each).

Everything is computed where the data is; only confusion counts, sums and
contingency tables travel. Results equal ``sklearn.metrics`` on the same rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import comb

from distml.algorithms.engine import Engine, Partition
from distml.algorithms.logistic import find_classes
from distml.algorithms.random import row_keys


def _regression_sums(part: Partition, model: Any) -> tuple[float, float, float, float, float]:
    if part.n_rows == 0:
        return 0.0, 0.0, 0.0, 0.0, 0.0
    y = part.y.astype(np.float64)
    residual = y - model.predict(part.X)
    return (
        float(len(y)),
        float(residual @ residual),
        float(np.abs(residual).sum()),
        float(y.sum()),
        float(y @ y),
    )


def regression_metrics(engine: Engine, model: Any) -> dict[str, float]:
    """``mse``, ``rmse``, ``mae`` and ``r2``."""
    n, sse, sae, sy, syy = engine.map_reduce(_regression_sums, model)
    mean = sy / n
    total = syy - n * mean * mean
    mse = sse / n
    r2 = 1.0 - sse / total if total > 0 else float("nan")
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": sae / n, "r2": r2}


def _confusion(part: Partition, model: Any, labels: np.ndarray) -> np.ndarray:
    k = len(labels)
    if part.n_rows == 0:
        return np.zeros((k, k))
    true = np.searchsorted(labels, part.y)
    pred = np.searchsorted(labels, model.predict(part.X))
    return np.bincount(true * k + pred, minlength=k * k).reshape(k, k).astype(np.float64)


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=float), where=b > 0)


def classification_metrics(engine: Engine, model: Any) -> dict[str, Any]:
    """Accuracy, precision/recall/F1 (binary: positive class; else macro) and the report."""
    labels = np.union1d(np.asarray(model.classes_), find_classes(engine))
    cm = engine.map_reduce(_confusion, model, labels)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _divide(tp, predicted)
    recall = _divide(tp, support)
    f1 = _divide(2 * precision * recall, precision + recall)
    if len(model.classes_) == 2:
        positive = int(np.searchsorted(labels, model.classes_[1]))
        summary = (precision[positive], recall[positive], f1[positive])
    else:
        summary = (precision.mean(), recall.mean(), f1.mean())
    report = {
        str(label): {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    return {
        "accuracy": float(tp.sum() / cm.sum()),
        "precision": float(summary[0]),
        "recall": float(summary[1]),
        "f1": float(summary[2]),
        "report": report,
        "confusion_matrix": {
            "labels": [_plain(v) for v in labels],
            "counts": cm.astype(int).tolist(),
        },
    }


def _inertia_and_contingency(part: Partition, model: Any, truth: np.ndarray | None):
    k = len(model.cluster_centers_)
    if part.n_rows == 0:
        return 0.0, None if truth is None else np.zeros((k, len(truth)))
    distances = model.transform(part.X)
    labels = distances.argmin(axis=1)
    inertia = float((distances[np.arange(part.n_rows), labels] ** 2).sum())
    if truth is None:
        return inertia, None
    t = np.searchsorted(truth, part.y)
    table = np.bincount(labels * len(truth) + t, minlength=k * len(truth)).reshape(k, -1)
    return inertia, table.astype(np.float64)


def _add_optional(a, b):
    return a[0] + b[0], None if a[1] is None else a[1] + b[1]


def clustering_metrics(engine: Engine, model: Any, has_labels: bool) -> dict[str, float]:
    """``inertia``; with ground-truth labels also ``adjusted_rand``."""
    truth = find_classes(engine) if has_labels else None
    inertia, table = engine.map_reduce(
        _inertia_and_contingency, model, truth, combine=_add_optional
    )
    metrics = {"inertia": inertia}
    if table is not None:
        metrics["adjusted_rand"] = adjusted_rand_from_contingency(table)
    return metrics


def adjusted_rand_from_contingency(table: np.ndarray) -> float:
    """Hubert–Arabie adjusted Rand index from a contingency table (as scikit-learn)."""
    n = table.sum()
    sum_cells = comb(table, 2).sum()
    sum_rows = comb(table.sum(axis=1), 2).sum()
    sum_cols = comb(table.sum(axis=0), 2).sum()
    expected = sum_rows * sum_cols / comb(n, 2) if n > 1 else 0.0
    maximum = (sum_rows + sum_cols) / 2
    if maximum == expected:
        return 1.0
    return float((sum_cells - expected) / (maximum - expected))


def _sample(part: Partition, m: int, seed: int):
    if part.n_rows == 0:
        return []
    keys = row_keys(seed, 0xA11CE, part.row_ids)
    order = np.argsort(keys, kind="stable")[:m]
    y = part.y if part.y is not None else np.zeros(part.n_rows)
    return [(int(keys[i]), part.X[i].copy(), y[i]) for i in order]


def sample_rows(engine: Engine, m: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A uniform sample of up to ``m`` rows ``(X, y)`` for plots, the same on every engine."""

    def keep(a: list, b: list) -> list:
        return sorted(a + b, key=lambda t: t[0])[:m]

    rows = engine.map_reduce(_sample, m, seed, combine=keep)
    if not rows:
        return np.zeros((0, engine.n_features)), np.zeros(0)
    return np.array([r[1] for r in rows]), np.array([r[2] for r in rows])


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


__all__ = ["classification_metrics", "clustering_metrics", "regression_metrics", "sample_rows"]
