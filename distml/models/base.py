"""What every distml estimator shares: parameters, input checks, portable save/load.

Estimators follow scikit-learn's conventions (they subclass its ``BaseEstimator``):
every parameter is an explicit keyword stored verbatim, validation happens in
``fit``, learned attributes end in ``_`` and ``fit`` returns ``self``. A fitted
estimator *is* the portable model: numpy arrays plus JSON metadata, identical
whichever engine trained it. Saving never uses pickle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from distml.algorithms.engine import Engine, InMemoryEngine
from distml.atomic import atomic_dir
from distml.errors import DataError, ModelError, NotFittedError

SOLVERS = ("auto", "native", "sklearn", "dask-ml", "mllib")
FORMAT_VERSION = 1
_MODEL_TYPES: dict[str, type[DistmlEstimator]] = {}


class DistmlEstimator(BaseEstimator):
    """Base class of distml's engine-neutral estimators."""

    model_type: ClassVar[str]
    task: ClassVar[str]
    supervised: ClassVar[bool] = True
    # learned attributes written to / read from the .npz (arrays) and JSON (scalars)
    _array_attributes: ClassVar[tuple[str, ...]] = ()
    _scalar_attributes: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "model_type" in cls.__dict__:
            _MODEL_TYPES[cls.model_type] = cls

    def __getstate__(self) -> dict[str, Any]:
        """Pickled state (estimators travel to workers) without engine-side handles."""
        state = dict(super().__getstate__())
        state.pop("native_model_", None)  # e.g. an MLlib model: a reference into the JVM
        return state

    # -- parameters ------------------------------------------------------------------------
    def _validate_params(self) -> None:
        """Raise :class:`ModelError` naming the bad parameter (subclasses extend)."""
        if self.solver not in SOLVERS:  # type: ignore[attr-defined]
            raise ModelError(
                f"{self.model_type}: unknown solver '{self.solver}'; "  # type: ignore[attr-defined]
                f"choose one of {', '.join(SOLVERS)}"
            )

    def validate(self) -> DistmlEstimator:
        """Check the parameters without fitting (used to validate job specs up front)."""
        self._validate_params()
        return self

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> DistmlEstimator:
        """Fit on in-memory numpy/pandas data (one partition, this process)."""
        self._validate_params()
        names = _column_names(X)
        X_arr = _as_float_matrix(X, where="X")
        y_arr = None if y is None else _as_vector(y)
        if self.supervised and y_arr is None:
            raise ModelError(f"{self.model_type}: fit needs y")
        if y_arr is not None and len(y_arr) != len(X_arr):
            raise ModelError(f"{self.model_type}: X has {len(X_arr)} rows but y has {len(y_arr)}")
        engine = InMemoryEngine.from_arrays(X_arr, y_arr)
        solver = "native" if self.solver == "auto" else self.solver  # type: ignore[attr-defined]
        if solver == "native":
            self.fit_engine(engine)
        elif solver == "sklearn":
            from distml.models.sklearn_solver import fit_with_sklearn

            fit_with_sklearn(self, X_arr, y_arr)
        else:
            raise ModelError(
                f"{self.model_type}: solver '{solver}' needs its backend; fit through "
                "distml.run_job or a backend's fit()"
            )
        self.set_feature_info(names, None, n_features=X_arr.shape[1])
        return self

    def fit_engine(self, engine: Engine) -> DistmlEstimator:
        """Fit with the native algorithm on any engine's partitions."""
        raise NotImplementedError

    def set_feature_info(
        self, names: list[str] | None, dtypes: dict[str, str] | None, n_features: int = 0
    ) -> None:
        """Record the training features (names only when the input had them, as in sklearn)."""
        self.n_features_in_ = len(names) if names is not None else n_features
        if names is not None:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.feature_dtypes_ = dtypes or {n: "double" for n in self._feature_names()}

    def _feature_names(self) -> list[str]:
        if hasattr(self, "feature_names_in_"):
            return [str(n) for n in self.feature_names_in_]
        return [f"x{i}" for i in range(self.n_features_in_)]

    # -- prediction helpers ----------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")

    def _prepare(self, X: Any) -> np.ndarray:
        """Validate prediction input against the training features."""
        self._check_fitted()
        if isinstance(X, pd.DataFrame) and hasattr(self, "feature_names_in_"):
            expected = [str(n) for n in self.feature_names_in_]
            columns = [str(c) for c in X.columns]
            missing = [c for c in expected if c not in columns]
            extra = [c for c in columns if c not in expected]
            if missing or extra:
                parts = []
                if missing:
                    parts.append(f"missing {', '.join(repr(c) for c in missing)}")
                if extra:
                    parts.append(f"unexpected {', '.join(repr(c) for c in extra)}")
                raise ModelError(
                    f"{self.model_type}: input columns differ from the training features "
                    f"({'; '.join(parts)}); expected {', '.join(expected)}"
                )
            X = X[expected]
        X_arr = _as_float_matrix(X, where="X")
        if X_arr.shape[1] != self.n_features_in_:
            raise ModelError(
                f"{self.model_type}: X has {X_arr.shape[1]} features, "
                f"the model was fitted with {self.n_features_in_}"
            )
        return X_arr

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``model.json`` and ``arrays.npz`` into the folder ``path`` (atomically)."""
        self._check_fitted()
        path = Path(path)
        params = self.get_params(deep=False)
        arrays: dict[str, np.ndarray] = {}
        for name, value in list(params.items()):
            if isinstance(value, np.ndarray):
                arrays[f"param.{name}"] = value
                params[name] = {"array": f"param.{name}"}
        for name in self._array_attributes:
            if hasattr(self, name):
                arrays[name] = np.asarray(getattr(self, name))
        metadata = {
            "format_version": FORMAT_VERSION,
            "type": self.model_type,
            "task": self.task,
            "params": params,
            "features": self._feature_names(),
            "feature_dtypes": self.feature_dtypes_,
            "attributes": {
                name: _json_scalar(getattr(self, name))
                for name in self._scalar_attributes
                if hasattr(self, name)
            },
            "provenance": getattr(self, "fit_info_", {}),
        }
        with atomic_dir(path) as tmp:
            (tmp / "model.json").write_text(json.dumps(metadata, indent=2, default=_json_scalar))
            np.savez(tmp / "arrays.npz", **arrays)
        return path


def load_model(path: str | os.PathLike[str]) -> DistmlEstimator:
    """Load a model saved by :meth:`DistmlEstimator.save` (never executes code)."""
    path = Path(path)
    meta_path = path / "model.json"
    if not meta_path.is_file():
        raise DataError(f"{path}: not a distml model folder (model.json missing)")
    try:
        metadata = json.loads(meta_path.read_text())
        if metadata.get("type") == "pipeline":
            from distml.preprocess.pipeline import Pipeline

            return Pipeline.load(path, metadata)  # type: ignore[return-value]
        model_cls = _MODEL_TYPES[metadata["type"]]
    except (json.JSONDecodeError, KeyError) as exc:
        raise DataError(f"{meta_path}: invalid model metadata ({exc})") from None
    arrays_path = path / "arrays.npz"
    try:
        with np.load(arrays_path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise DataError(
            f"{arrays_path}: missing (a model folder holds model.json and arrays.npz)"
        ) from None
    except (ValueError, OSError) as exc:  # a pickled object array is refused, never executed
        raise DataError(f"{arrays_path}: not a plain numpy archive ({exc})") from None
    try:
        params = {
            name: arrays[value["array"]] if isinstance(value, dict) and "array" in value else value
            for name, value in metadata["params"].items()
        }
        features = metadata["features"]
    except KeyError as exc:
        raise DataError(f"{meta_path}: invalid model metadata (missing {exc})") from None
    model = model_cls(**params)
    for name in model_cls._array_attributes:
        if name in arrays:
            setattr(model, name, arrays[name])
    for name, value in metadata.get("attributes", {}).items():
        setattr(model, name, value)
    model.set_feature_info(features, metadata.get("feature_dtypes"))
    model.fit_info_ = metadata.get("provenance", {})
    return model


def model_class(model_type: str) -> type[DistmlEstimator]:
    """The estimator class registered for a job spec's ``model.type``."""
    return _MODEL_TYPES[model_type]


def model_types() -> list[str]:
    return sorted(_MODEL_TYPES)


# -- small helpers ---------------------------------------------------------------------------
def _column_names(X: Any) -> list[str] | None:
    return [str(c) for c in X.columns] if isinstance(X, pd.DataFrame) else None


def _as_float_matrix(X: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where}: expected numeric values ({exc})") from None
    if arr.ndim != 2:
        raise ModelError(f"{where}: expected a 2-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        column = int(np.nonzero(~np.isfinite(arr).all(axis=0))[0][0])
        raise DataError(f"{where}: column {column} contains NaN or infinite values")
    return arr


def _as_vector(y: Any) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ModelError(f"y: expected a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError("y: contains NaN or infinite values")
    return arr


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
