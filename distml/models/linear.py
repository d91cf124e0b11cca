"""Linear regression (ordinary least squares, or ridge with ``alpha > 0``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import RegressorMixin

from distml.algorithms.engine import Engine
from distml.algorithms.linear import fit_linear
from distml.errors import ModelError
from distml.models.base import DistmlEstimator


class LinearRegression(RegressorMixin, DistmlEstimator):
    """Least squares with scikit-learn's ``LinearRegression`` meaning.

    ``alpha`` adds scikit-learn ``Ridge``'s penalty ``alpha ||w||²`` (0 = plain OLS).
    Collinear or constant features give the minimum-norm solution, as scikit-learn does.
    """

    model_type = "linear_regression"
    task = "regression"
    _array_attributes = ("coef_", "singular_")
    _scalar_attributes = ("intercept_", "rank_")

    def __init__(self, *, fit_intercept: bool = True, alpha: float = 0.0, solver: str = "auto"):
        self.fit_intercept = fit_intercept
        self.alpha = alpha
        self.solver = solver

    def _validate_params(self) -> None:
        super()._validate_params()
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise ModelError(f"fit_intercept must be true or false, got {self.fit_intercept!r}")
        if not isinstance(self.alpha, (int, float)) or self.alpha < 0:
            raise ModelError(f"alpha must be a number >= 0, got {self.alpha!r}")

    def fit_engine(self, engine: Engine) -> LinearRegression:
        self._validate_params()
        solution = fit_linear(engine, bool(self.fit_intercept), float(self.alpha))
        self.coef_ = solution.coef
        self.intercept_ = solution.intercept
        self.rank_ = solution.rank
        self.singular_ = solution.singular
        return self

    def predict(self, X: Any) -> np.ndarray:
        return self._prepare(X) @ np.asarray(self.coef_) + float(self.intercept_)
