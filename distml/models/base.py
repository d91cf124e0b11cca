"""What every distml model shares, without scikit-learn: parameters, checks, save/load.

A :class:`Model` is a model type as distml's own code uses it — in job runs, on the
driver of every engine, in ``distml predict`` and ``distml serve``: explicit keyword
parameters stored verbatim, their checks, the native fit on an engine's partitions
(``fit_engine``), the fitted :mod:`~distml.models.kernels` and a portable folder
(``model.json`` + ``arrays.npz``, never pickle). It imports numpy only, so a job never
pays for importing scikit-learn (~0.7 s, mostly SciPy) unless a step needs it.

The scikit-learn estimators users fit on in-memory data (:mod:`distml.models.estimators`)
subclass these classes: same parameters, same fitted attributes, same folder.
"""

from __future__ import annotations

import inspect
import json
import os
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from distml.algorithms.engine import Engine
from distml.errors import DataError, ModelError, NotFittedError
from distml.models import schema
from distml.outputs import atomic_dir

SOLVERS = ("auto", "native", "sklearn", "dask-ml", "mllib")
FORMAT_VERSION = 1
_MODEL_TYPES: dict[str, type[Model]] = {}


class Model:
    """Base class of distml's engine-neutral models (see the module's docstring)."""

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

    # -- parameters (scikit-learn's protocol; its estimators bring their own) -----------------
    @classmethod
    def _param_names(cls) -> list[str]:
        """The keyword parameters of ``__init__``, sorted (as scikit-learn lists them)."""
        signature = inspect.signature(cls.__init__)
        return sorted(p.name for p in signature.parameters.values() if p.kind == p.KEYWORD_ONLY)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Model:
        names = self._param_names()
        for name, value in params.items():
            if name not in names:
                raise ModelError(
                    f"{self.model_type}: unknown parameter '{name}' (one of {', '.join(names)})"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = type(self)().get_params()
        changed = {k: v for k, v in self.get_params().items() if _differs(v, defaults[k])}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def __getstate__(self) -> dict[str, Any]:
        """Pickled state (models travel to workers) without engine-side handles."""
        state = dict(self.__dict__)
        state.pop("native_model_", None)  # e.g. an MLlib model: a reference into the JVM
        return state

    def _check_params(self) -> None:
        """Raise :class:`ModelError` naming the bad parameter (subclasses extend)."""
        if self.solver not in SOLVERS:  # type: ignore[attr-defined]
            raise ModelError(
                f"{self.model_type}: unknown solver '{self.solver}'; "  # type: ignore[attr-defined]
                f"choose one of {', '.join(SOLVERS)}"
            )

    def validate(self) -> Model:
        """Check the parameters without fitting (used to validate job specs up front)."""
        self._check_params()
        return self

    # -- fitting ---------------------------------------------------------------------------
    def fit_engine(self, engine: Engine) -> Model:
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

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")

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


def load_fitted(path: str | os.PathLike[str], metadata: dict[str, Any] | None = None) -> Model:
    """Load one model folder as its :class:`Model` (never executes code); pipelines load
    through :func:`distml.loading.load_model`, which sits above both layers and turns
    models into scikit-learn estimators for users."""
    path = Path(path)
    meta_path = path / "model.json"
    metadata = read_metadata(path) if metadata is None else metadata
    if metadata["type"] == "pipeline":
        raise DataError(f"{meta_path}: a pipeline where an estimator folder was expected")
    model_cls = model_class(metadata["type"])
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


def model_class(model_type: str) -> type[Model]:
    """The model class registered for a job spec's ``model.type``."""
    return _registered()[model_type]


def model_types() -> list[str]:
    return sorted(_registered())


def _registered() -> dict[str, type[Model]]:
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


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _differs(value: Any, default: Any) -> bool:
    if isinstance(value, np.ndarray) or isinstance(default, np.ndarray):
        return not (
            isinstance(value, np.ndarray)
            and isinstance(default, np.ndarray)
            and np.array_equal(value, default)
        )
    return bool(value != default)
