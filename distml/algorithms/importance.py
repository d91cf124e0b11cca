"""Model interpretation: coefficients by feature, standardised coefficients and
permutation importance.

Feature standard deviations take one ``map_reduce`` pass (means and centred sums of
squares merged by Chan et al.'s formula, so they are accurate and the same on every
engine). Permutation importance is scikit-learn's algorithm
(:func:`sklearn.inspection.permutation_importance`, same values) on a deterministic
sample of rows, scored by the task's main metric.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from distml.algorithms.engine import BLOCK_ROWS, Engine, Partition

#: The score a task's permutation importance drops (higher is better for each).
SCORING = {"regression": "r2", "classification": "accuracy", "clustering": "neg_mean_inertia"}


def _moments(part: Partition) -> tuple[float, np.ndarray, np.ndarray]:
    """Row count, means and centred sums of squares, block by block (one read of the rows)."""
    d = part.X.shape[1]
    total: tuple[float, np.ndarray, np.ndarray] = (0.0, np.zeros(d), np.zeros(d))
    for lo in range(0, part.n_rows, BLOCK_ROWS):
        rows = part.X[lo : lo + BLOCK_ROWS]
        mean = rows.mean(axis=0)
        centred = rows - mean
        block = (float(len(rows)), mean, np.einsum("ij,ij->j", centred, centred))
        total = _merge_moments(total, block)
    return total


def _merge_moments(
    a: tuple[float, np.ndarray, np.ndarray], b: tuple[float, np.ndarray, np.ndarray]
) -> tuple[float, np.ndarray, np.ndarray]:
    n = a[0] + b[0]
    if b[0] == 0:
        return a
    if a[0] == 0:
        return b
    delta = b[1] - a[1]
    return n, a[1] + delta * (b[0] / n), a[2] + b[2] + delta * delta * (a[0] * b[0] / n)


def feature_std(engine: Engine) -> np.ndarray:
    """Population standard deviation (``ddof=0``, as ``StandardScaler``) of every feature."""
    n, _, m2 = engine.map_reduce(_moments, combine=_merge_moments)
    return np.sqrt(m2 / n) if n > 0 else np.full(engine.n_features, np.nan)


def coefficient_rows(model: Any, names: list[str], std: np.ndarray) -> list[dict[str, Any]]:
    """One row per feature (and class, for a multiclass model): ``coef``, the feature's
    ``std`` and ``standardized_coef = coef × std`` (the effect of one standard deviation)."""
    coef = np.atleast_2d(np.asarray(model.coef_, dtype=np.float64))
    classes: list[Any] = [None]
    if hasattr(model, "classes_"):
        labels = [_plain(c) for c in np.asarray(model.classes_)]
        classes = labels[1:] if len(labels) == 2 else labels  # binary: the positive class
    rows = []
    for label, weights in zip(classes, coef, strict=True):
        for name, w, s in zip(names, weights, std, strict=True):
            row: dict[str, Any] = {"feature": name}
            if label is not None:
                row["class"] = label
            row.update(coef=float(w), std=float(s), standardized_coef=float(w * s))
            rows.append(row)
    return rows


def _neg_mean_inertia(model: Any, X: np.ndarray, y: Any = None) -> float:
    return -float(np.mean(model.transform(X).min(axis=1) ** 2))


def _r2(model: Any, X: np.ndarray, y: np.ndarray) -> float:
    """scikit-learn's ``r2_score`` of the model's predictions (1 - SS_res / SS_tot)."""
    residual = float(((y - model.predict(X)) ** 2).sum())
    total = float(((y - y.mean()) ** 2).sum())
    if total == 0.0:
        return 1.0 if residual == 0.0 else 0.0
    return 1.0 - residual / total


def _accuracy(model: Any, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(model.predict(X) == y))


#: The score each task's permutation importance drops (scikit-learn's ``score`` methods).
_SCORERS = {"regression": _r2, "classification": _accuracy, "clustering": _neg_mean_inertia}


def permutation_importance(
    model: Any,
    X: np.ndarray,
    y: np.ndarray | None,
    names: list[str],
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean and standard deviation over ``repeats`` shuffles of the drop in the task's
    main score (:data:`SCORING`) when one feature's column is shuffled.

    scikit-learn's ``permutation_importance`` step for step (its seed per column, its
    cumulative shuffles; ``tests/test_metrics.py`` checks the values are equal), in
    numpy: importing ``sklearn.inspection`` cost a run 0.15 s, more than the work.
    """
    task = model.task
    scorer = _SCORERS[task]
    y_arg = None if task == "clustering" else y
    baseline = scorer(model, X, y_arg)
    column_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    permuted = np.array(X, dtype=np.float64, copy=True)
    drops = np.empty((X.shape[1], repeats))
    for col in range(X.shape[1]):
        original = permuted[:, col].copy()
        rs = np.random.RandomState(column_seed)  # every column starts from the same seed
        shuffling = np.arange(X.shape[0])
        for r in range(repeats):
            rs.shuffle(shuffling)
            permuted[:, col] = permuted[shuffling, col]
            drops[col, r] = baseline - scorer(model, permuted, y_arg)
        permuted[:, col] = original
    return {
        "scoring": SCORING[task],
        "sample_rows": int(len(X)),
        "repeats": int(repeats),
        "seed": int(seed),
        "baseline": float(baseline),
        "rows": [
            {"feature": name, "importance_mean": float(m), "importance_std": float(s)}
            for name, m, s in zip(names, drops.mean(axis=1), drops.std(axis=1), strict=True)
        ],
    }


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


__all__ = ["SCORING", "coefficient_rows", "feature_std", "permutation_importance"]
