"""distml's models as scikit-learn estimators: fit, predict and score in-memory data.

Each estimator is its :class:`~distml.models.base.Model` (same parameters, fitted
attributes and folder) plus scikit-learn's base classes and its input checks
(``validate_data``: the same error classes, naming the culprit). Only users' code and
in-memory fits import this module; job runs, ``distml predict`` and ``distml serve``
work with the models themselves and never import scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClusterMixin,
    RegressorMixin,
    TransformerMixin,
)
from sklearn.exceptions import NotFittedError as SklearnNotFittedError

from distml.algorithms.engine import InMemoryEngine
from distml.errors import DataError, DistmlError, InputTypeError, ModelError, NotFittedError
from distml.models.base import Model, _first_line
from distml.models.kmeans import KMeansModel
from distml.models.linear import LinearRegressionModel
from distml.models.logistic import LogisticRegressionModel


class _NotFitted(NotFittedError, SklearnNotFittedError):
    """Not fitted yet: distml's error and scikit-learn's, so either ``except`` catches it."""


class DistmlEstimator(BaseEstimator):
    """scikit-learn's side of every distml estimator (mixed in before its Model)."""

    def _validate_params(self) -> None:
        """scikit-learn's name for parameter checks: the Model's own (no constraint table)."""
        self._check_params()  # type: ignore[attr-defined]

    def fit(self, X: Any, y: Any = None) -> DistmlEstimator:
        """Fit on in-memory numpy/pandas data (one partition, this process).

        Input is checked as scikit-learn checks it (same error classes: ``ValueError``,
        ``TypeError`` for sparse or non-numeric input), naming what is wrong.
        """
        model: Any = self
        model._check_params()
        X_arr, y_arr = self._validated_input(X, y, reset=True)
        engine = InMemoryEngine.from_arrays(X_arr, y_arr)
        solver = "native" if model.solver == "auto" else model.solver
        if solver == "native":
            model.fit_engine(engine)
        elif solver == "sklearn":
            from distml.models.sklearn_solver import fit_with_sklearn

            fit_with_sklearn(model, X_arr, y_arr)
        else:
            raise ModelError(
                f"{model.model_type}: solver '{solver}' needs its backend; fit through "
                "distml.run_job or a backend's fit()"
            )
        names = getattr(self, "feature_names_in_", None)
        model.set_feature_info(
            None if names is None else [str(n) for n in names], None, n_features=X_arr.shape[1]
        )
        return self

    def _validated_input(
        self, X: Any, y: Any = None, reset: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """scikit-learn's checks (``validate_data``) as distml errors naming the culprit."""
        from sklearn.utils.multiclass import check_classification_targets
        from sklearn.utils.validation import validate_data

        model: Any = self
        try:
            if model.supervised and reset:
                X_arr, y_arr = validate_data(
                    self, X, y, dtype=np.float64, y_numeric=model.task == "regression"
                )
                if model.task == "classification":
                    check_classification_targets(y_arr)
                return X_arr, y_arr
            X_arr = validate_data(self, X, dtype=np.float64, reset=reset)
            return X_arr, None
        except TypeError as exc:
            raise InputTypeError(f"{type(self).__name__}: {_first_line(exc)}") from None
        except ValueError as exc:
            if isinstance(exc, DistmlError):
                raise
            error = DataError if reset else ModelError  # predict: input that does not match
            raise error(f"{type(self).__name__}: {_describe_input_error(exc, X, y)}") from None

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise _NotFitted(f"this {type(self).__name__} is not fitted yet; call fit first")

    def _prepare(self, X: Any) -> np.ndarray:
        """Validate prediction input against the training features (columns by name when
        both have names, then scikit-learn's checks: count, finiteness, types)."""
        self._check_fitted()
        model: Any = self
        if isinstance(X, pd.DataFrame) and hasattr(self, "feature_names_in_"):
            expected = [str(n) for n in model.feature_names_in_]
            columns = [str(c) for c in X.columns]
            missing = [c for c in expected if c not in columns]
            extra = [c for c in columns if c not in expected]
            if missing or extra:
                parts = []
                if missing:
                    parts.append(f"missing {', '.join(repr(c) for c in missing[:5])}")
                if extra:
                    parts.append(f"unexpected {', '.join(repr(c) for c in extra[:5])}")
                raise ModelError(
                    f"{model.model_type}: input columns differ from the training features "
                    f"({'; '.join(parts)}); expected {', '.join(expected[:20])}"
                )
            X = X[[c for c in X.columns if str(c) in expected]]
            X = X[sorted(X.columns, key=lambda c: expected.index(str(c)))]
        X_arr, _ = self._validated_input(X, reset=False)
        return X_arr


class LinearRegression(RegressorMixin, DistmlEstimator, LinearRegressionModel):
    __doc__ = LinearRegressionModel.__doc__

    def predict(self, X: Any) -> np.ndarray:
        """``X @ coef_ + intercept_`` for validated ``X``."""
        return self.kernel().predict(self._prepare(X))


class LogisticRegression(ClassifierMixin, DistmlEstimator, LogisticRegressionModel):
    __doc__ = LogisticRegressionModel.__doc__

    def decision_function(self, X: Any) -> np.ndarray:
        """Signed distances to the decision boundary (one column per class, multinomial)."""
        return self.kernel().decision_function(self._prepare(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in ``classes_`` order."""
        return self.kernel().predict_proba(self._prepare(X))

    def predict_log_proba(self, X: Any) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        return self.kernel().predict(self._prepare(X))


class KMeans(ClusterMixin, TransformerMixin, DistmlEstimator, KMeansModel):
    __doc__ = KMeansModel.__doc__

    def fit(self, X: Any, y: Any = None) -> KMeans:
        """Fit on in-memory data; ``y`` is ignored (scikit-learn's signature)."""
        super().fit(X, None)
        self.labels_ = self.kernel().predict(self._validated_input(X, reset=False)[0])
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Distances to every centre (scikit-learn's cluster-distance space)."""
        return self.kernel().transform(self._prepare(X))

    def predict(self, X: Any) -> np.ndarray:
        """The nearest centre of each row."""
        return self.kernel().predict(self._prepare(X))

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Opposite of the inertia of ``X`` (scikit-learn's convention)."""
        if sample_weight is not None:
            raise ModelError("KMeans.score: sample_weight is not supported")
        return self.kernel().score(self._prepare(X))


_ESTIMATORS: dict[str, type[Model]] = {
    cls.model_type: cls for cls in (LinearRegression, LogisticRegression, KMeans)
}


def estimator_class(model_type: str) -> type[Model]:
    """The scikit-learn estimator of a model type."""
    return _ESTIMATORS[model_type]


def as_estimator(model: Model) -> Model:
    """A :class:`Model` (fitted or not) as its scikit-learn estimator: the same parameters
    and fitted attributes; an estimator already is returned as it is."""
    if isinstance(model, DistmlEstimator):
        return model
    estimator = estimator_class(model.model_type)(**model.get_params())
    estimator.__dict__.update(model.__dict__)
    return estimator


def _describe_input_error(exc: ValueError, X: Any, y: Any) -> str:
    """scikit-learn's complaint in one line; for NaN/inf, the column that holds them."""
    message = _first_line(exc)
    if "NaN" not in message and "infinity" not in message:
        return message
    where = "y" if message.startswith("Input y") else "X"
    if where == "y":
        return "y contains NaN or infinite values"
    try:
        values = np.asarray(X, dtype=np.float64)
        bad = np.nonzero(~np.isfinite(values).all(axis=0))[0]
        column = int(bad[0])
    except (TypeError, ValueError, IndexError):
        return message
    name = str(X.columns[column]) if isinstance(X, pd.DataFrame) else str(column)
    return f"X column {name} contains NaN or infinite values; impute or drop them first"
