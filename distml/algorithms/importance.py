"""Model interpretation: coefficients by feature, standardised coefficients and
permutation importance.

Feature standard deviations take one ``map_reduce`` pass (means and centred sums of
squares merged by Chan et al.'s formula, so they are accurate and the same on every
engine). Permutation importance is scikit-learn's
(:func:`sklearn.inspection.permutation_importance`) on a deterministic sample of
rows, scored by the task's main metric.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from distml.algorithms.engine import Engine, Partition

#: The score a task's permutation importance drops (higher is better for each).
SCORING = {"regression": "r2", "classification": "accuracy", "clustering": "neg_mean_inertia"}


def _moments(part: Partition) -> tuple[float, np.ndarray, np.ndarray]:
    if part.n_rows == 0:
        d = part.X.shape[1]
        return 0.0, np.zeros(d), np.zeros(d)
    mean = part.X.mean(axis=0)
    centred = part.X - mean
    return float(part.n_rows), mean, np.einsum("ij,ij->j", centred, centred)


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


class _Fitted:
    """A kernel as scikit-learn's ``permutation_importance`` takes it (it wants ``fit``)."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel

    def fit(self, *args: Any) -> _Fitted:
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kernel, name)


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
    main score (:data:`SCORING`) when one feature's column is shuffled."""
    from sklearn.inspection import permutation_importance as sklearn_permutation_importance

    task = model.task
    scorer = _SCORERS[task]
    y_arg = None if task == "clustering" else y
    baseline = scorer(model, X, y_arg)
    result = sklearn_permutation_importance(
        _Fitted(model), X, y_arg, scoring=scorer, n_repeats=repeats, random_state=seed
    )
    return {
        "scoring": SCORING[task],
        "sample_rows": int(len(X)),
        "repeats": int(repeats),
        "seed": int(seed),
        "baseline": float(baseline),
        "rows": [
            {"feature": name, "importance_mean": float(m), "importance_std": float(s)}
            for name, m, s in zip(
                names, result.importances_mean, result.importances_std, strict=True
            )
        ],
    }


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


__all__ = ["SCORING", "coefficient_rows", "feature_std", "permutation_importance"]
