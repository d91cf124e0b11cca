"""Logistic regression: binary, or multinomial for three or more classes."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit, softmax
from sklearn.base import ClassifierMixin

from distml.algorithms.engine import Engine
from distml.algorithms.logistic import fit_logistic
from distml.errors import DataError, ModelError
from distml.models.base import DistmlEstimator

PENALTIES = ("l2", None)


class LogisticRegression(ClassifierMixin, DistmlEstimator):
    """L2-regularised logistic regression with scikit-learn's ``C`` semantics.

    Minimises ``½||W||² + C Σ log-loss`` (intercept unpenalised) with L-BFGS using
    scikit-learn's ``lbfgs`` stopping rule: max |gradient| ≤ ``tol`` or ``max_iter``.
    The native solver needs the training partitions cached in memory.
    """

    model_type = "logistic_regression"
    task = "classification"
    _array_attributes = ("coef_", "intercept_", "classes_")
    _scalar_attributes = ("n_iter_", "objective_")

    def __init__(
        self,
        *,
        C: float = 1.0,
        penalty: str | None = "l2",
        fit_intercept: bool = True,
        tol: float = 1e-4,
        max_iter: int = 100,
        solver: str = "auto",
    ):
        self.C = C
        self.penalty = penalty
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter
        self.solver = solver

    def _validate_params(self) -> None:
        super()._validate_params()
        if not isinstance(self.C, (int, float)) or self.C <= 0:
            raise ModelError(f"C must be a number > 0, got {self.C!r}")
        if self.penalty not in PENALTIES:
            raise ModelError(
                f"penalty must be 'l2' or null, got {self.penalty!r} "
                "(l1 and elasticnet are not implemented yet)"
            )
        if not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise ModelError(f"max_iter must be an integer >= 1, got {self.max_iter!r}")
        if not isinstance(self.tol, (int, float)) or self.tol < 0:
            raise ModelError(f"tol must be a number >= 0, got {self.tol!r}")

    def fit_engine(self, engine: Engine) -> LogisticRegression:
        self._validate_params()
        if not engine.can_cache:
            raise DataError(
                "logistic regression needs the training data cached in memory "
                f"(about {engine.n_rows * engine.n_features * 8 / 2**30:.1f} GiB of features); "
                "give the workers more memory or use fewer rows"
            )
        solution = fit_logistic(
            engine,
            C=float(self.C),
            penalty=self.penalty,
            fit_intercept=bool(self.fit_intercept),
            tol=float(self.tol),
            max_iter=int(self.max_iter),
        )
        self.coef_ = solution.coef
        self.intercept_ = solution.intercept
        self.classes_ = solution.classes
        self.n_iter_ = solution.n_iter
        self.objective_ = solution.objective
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        scores = self._prepare(X) @ np.asarray(self.coef_).T + np.asarray(self.intercept_)
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict_proba(self, X: Any) -> np.ndarray:
        scores = self.decision_function(X)
        if scores.ndim == 1:
            positive = expit(scores)
            return np.column_stack([1.0 - positive, positive])
        return softmax(scores, axis=1)

    def predict(self, X: Any) -> np.ndarray:
        scores = self.decision_function(X)
        index = (scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(axis=1)
        return np.asarray(self.classes_)[index]
