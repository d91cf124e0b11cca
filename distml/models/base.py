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
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError as SklearnNotFittedError

from distml.algorithms.engine import Engine, InMemoryEngine
from distml.errors import DataError, DistmlError, InputTypeError, ModelError, NotFittedError
from distml.models import schema
from distml.outputs import atomic_dir

SOLVERS = ("auto", "native", "sklearn", "dask-ml", "mllib")
FORMAT_VERSION = 1
_MODEL_TYPES: dict[str, type[DistmlEstimator]] = {}


class _NotFitted(NotFittedError, SklearnNotFittedError):
    """Not fitted yet: distml's error and scikit-learn's, so either ``except`` catches it."""


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
        """Fit on in-memory numpy/pandas data (one partition, this process).

        Input is checked as scikit-learn checks it (same error classes: ``ValueError``,
        ``TypeError`` for sparse or non-numeric input), naming what is wrong.
        """
        self._validate_params()
        X_arr, y_arr = self._validated_input(X, y, reset=True)
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
        names = getattr(self, "feature_names_in_", None)
        self.set_feature_info(
            None if names is None else [str(n) for n in names], None, n_features=X_arr.shape[1]
        )
        return self

    def _validated_input(
        self, X: Any, y: Any = None, reset: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """scikit-learn's checks (``validate_data``) as distml errors naming the culprit."""
        from sklearn.utils.multiclass import check_classification_targets
        from sklearn.utils.validation import validate_data

        try:
            if self.supervised and reset:
                X_arr, y_arr = validate_data(
                    self, X, y, dtype=np.float64, y_numeric=self.task == "regression"
                )
                if self.task == "classification":
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

    def fit_engine(self, engine: Engine) -> DistmlEstimator:
        """Fit with the native algorithm on any engine's partitions."""
        raise NotImplementedError

    def kernel(self) -> Any:
        """The fitted model as the workers use it (:mod:`distml.models.kernels`)."""
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
            raise _NotFitted(f"this {type(self).__name__} is not fitted yet; call fit first")

    def _prepare(self, X: Any) -> np.ndarray:
        """Validate prediction input against the training features (columns by name when
        both have names, then scikit-learn's checks: count, finiteness, types)."""
        self._check_fitted()
        if isinstance(X, pd.DataFrame) and hasattr(self, "feature_names_in_"):
            expected = [str(n) for n in self.feature_names_in_]
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
                    f"{self.model_type}: input columns differ from the training features "
                    f"({'; '.join(parts)}); expected {', '.join(expected[:20])}"
                )
            X = X[[c for c in X.columns if str(c) in expected]]
            X = X[sorted(X.columns, key=lambda c: expected.index(str(c)))]
        X_arr, _ = self._validated_input(X, reset=False)
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
            "named_features": hasattr(self, "feature_names_in_"),
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


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A model folder's ``model.json``, checked against the schema every model kind shares."""
    path = Path(path)
    meta_path = path / "model.json"
    if not meta_path.is_file():
        raise DataError(f"{path}: not a distml model folder (model.json missing)")
    try:
        metadata = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{meta_path}: not valid JSON ({_first_line(exc)[:80]})") from None
    except OSError as exc:
        raise DataError(f"{meta_path}: cannot read ({exc.strerror})") from None
    schema.check_metadata(meta_path, metadata, model_types())
    return metadata


def load_estimator(
    path: str | os.PathLike[str], metadata: dict[str, Any] | None = None
) -> DistmlEstimator:
    """Load one estimator's folder (never executes code); pipelines load through
    :func:`distml.loading.load_model`, which sits above both layers."""
    path = Path(path)
    meta_path = path / "model.json"
    metadata = read_metadata(path) if metadata is None else metadata
    if metadata["type"] == "pipeline":
        raise DataError(f"{meta_path}: a pipeline where an estimator folder was expected")
    model_cls = _registered()[metadata["type"]]
    arrays_path = path / "arrays.npz"
    try:
        with np.load(arrays_path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise DataError(
            f"{arrays_path}: missing (a model folder holds model.json and arrays.npz)"
        ) from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:  # pickles refused, never run
        raise DataError(
            f"{arrays_path}: not a plain numpy archive ({_first_line(exc)[:80]})"
        ) from None
    schema.check_model_fields(meta_path, arrays_path, model_cls, metadata, arrays)
    features = metadata["features"]
    params = {}
    for name, value in metadata["params"].items():
        if isinstance(value, dict):
            if set(value) != {"array"} or value["array"] not in arrays:
                raise DataError(f"{meta_path}: params.{name} names no array in {arrays_path.name}")
            value = arrays[value["array"]]
        params[name] = value
    model = model_cls(**params)
    for name in model_cls._array_attributes:
        if name in arrays:
            setattr(model, name, arrays[name])
    for name, value in metadata.get("attributes", {}).items():
        setattr(model, name, value)
    schema.check_fitted(meta_path, arrays_path, model, len(features))
    if metadata.get("named_features", True):
        model.set_feature_info(features, metadata.get("feature_dtypes"))
    else:  # fitted on unnamed arrays: predict takes arrays without a feature-name warning
        model.set_feature_info(None, metadata.get("feature_dtypes"), n_features=len(features))
    model.fit_info_ = metadata.get("provenance", {})
    return model


def model_class(model_type: str) -> type[DistmlEstimator]:
    """The estimator class registered for a job spec's ``model.type``."""
    return _registered()[model_type]


def model_types() -> list[str]:
    return sorted(_registered())


def _registered() -> dict[str, type[DistmlEstimator]]:
    """The model types, after importing the built-in ones (they register as they load)."""
    import distml.models.kmeans
    import distml.models.linear
    import distml.models.logistic  # noqa: F401

    return _MODEL_TYPES


# -- small helpers ---------------------------------------------------------------------------
def _first_line(exc: Exception) -> str:
    """A library message on one line, without the lines that echo the data
    (scikit-learn's ``array=[...]``)."""
    lines = [line.strip() for line in str(exc).strip().splitlines()]
    kept = [line for line in lines if line and not line.startswith("array=")]
    if not kept:
        return type(exc).__name__
    return " ".join(kept[:2]) if kept[0].endswith(":") else kept[0]


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


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
