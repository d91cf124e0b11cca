"""What a saved model folder may contain: checked before a loaded model is used.

A model folder comes from disk, maybe from someone else: ``model.json`` and
``arrays.npz`` are validated against the estimator's schema (known format version,
only known parameters and attribute names, numeric finite arrays whose shapes agree
with the number of features) and any problem is one :class:`DataError` naming the
file and the field, instead of a ``TypeError`` inside numpy at ``predict`` time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from distml.errors import DataError, DistmlError

KNOWN_FORMAT_VERSIONS = (1,)
_REQUIRED_ARRAYS = ("coef_", "intercept_", "classes_", "cluster_centers_")


def check_metadata(meta_path: Path, metadata: Any, model_types: list[str]) -> None:
    """The parts of ``model.json`` every model kind shares."""
    if not isinstance(metadata, dict):
        raise DataError(f"{meta_path}: model metadata must be a JSON object")
    version = metadata.get("format_version")
    if version not in KNOWN_FORMAT_VERSIONS:
        raise DataError(
            f"{meta_path}: format_version {str(version)[:20]} is not one this distml reads "
            f"({', '.join(map(str, KNOWN_FORMAT_VERSIONS))}); was it written by a newer distml?"
        )
    kind = metadata.get("type")
    if kind != "pipeline" and kind not in model_types:
        raise DataError(
            f"{meta_path}: type {str(kind)[:40]!r} is not a model type "
            f"({', '.join(model_types)}, pipeline)"
        )
    features = metadata.get("features")
    if (
        not isinstance(features, list)
        or not features
        or not all(isinstance(f, str) for f in features)
    ):
        raise DataError(f"{meta_path}: features must be a non-empty list of column names")
    if len(set(features)) != len(features):
        raise DataError(f"{meta_path}: features has duplicate names")
    dtypes = metadata.get("feature_dtypes")
    if dtypes is not None and not (
        isinstance(dtypes, dict) and all(isinstance(v, str) for v in dtypes.values())
    ):
        raise DataError(f"{meta_path}: feature_dtypes must map column names to type names")


def check_model_fields(
    meta_path: Path,
    arrays_path: Path,
    model_cls: type,
    metadata: dict[str, Any],
    arrays: dict[str, np.ndarray],
) -> None:
    """Parameters, attribute names and array names of one estimator's files."""
    params = metadata.get("params")
    if not isinstance(params, dict):
        raise DataError(f"{meta_path}: params must be a JSON object")
    allowed = set(model_cls().get_params())
    for name in params:
        if name not in allowed:
            raise DataError(f"{meta_path}: params.{name} is not a {metadata['type']} parameter")
    attributes = metadata.get("attributes", {})
    if not isinstance(attributes, dict):
        raise DataError(f"{meta_path}: attributes must be a JSON object")
    for name, value in attributes.items():
        if name not in model_cls._scalar_attributes:
            raise DataError(
                f"{meta_path}: attributes.{name} is not a fitted attribute of {metadata['type']} "
                f"({', '.join(model_cls._scalar_attributes)})"
            )
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise DataError(f"{meta_path}: attributes.{name} must be a number")
    for name, array in arrays.items():
        if name not in model_cls._array_attributes and not name.startswith("param."):
            raise DataError(f"{arrays_path}: array '{name}' is not part of a {metadata['type']}")
        if name == "classes_":
            continue  # class labels may be strings
        if array.dtype.kind not in "fiu" or not np.all(np.isfinite(array)):
            raise DataError(f"{arrays_path}: array '{name}' must hold finite numbers")
    for name in model_cls._array_attributes:
        if name not in arrays and name in _REQUIRED_ARRAYS:
            raise DataError(f"{arrays_path}: array '{name}' is missing")


def check_fitted(meta_path: Path, arrays_path: Path, model: Any, n_features: int) -> None:
    """Parameter ranges and array shapes of the loaded estimator, against ``n_features``."""
    try:
        model.validate()
    except DistmlError as exc:
        raise DataError(f"{meta_path}: params: {exc}") from None
    kind = model.model_type

    def shape_error(name: str, expected: str) -> DataError:
        got = getattr(model, name).shape
        return DataError(
            f"{arrays_path}: array '{name}' has shape {got}, expected {expected} "
            f"for {n_features} features"
        )

    if kind == "linear_regression":
        coef = np.asarray(model.coef_)
        if coef.ndim not in (1, 2) or coef.shape[-1] != n_features:
            raise shape_error("coef_", f"({n_features},)")
    elif kind == "logistic_regression":
        classes = np.asarray(model.classes_)
        rows = 1 if len(classes) == 2 else len(classes)
        if classes.ndim != 1 or len(classes) < 2 or len(np.unique(classes)) != len(classes):
            raise DataError(f"{arrays_path}: array 'classes_' must hold 2 or more distinct labels")
        if np.asarray(model.coef_).shape != (rows, n_features):
            raise shape_error("coef_", f"({rows}, {n_features})")
        if np.asarray(model.intercept_).shape != (rows,):
            raise shape_error("intercept_", f"({rows},)")
    elif kind == "kmeans":
        centres = np.asarray(model.cluster_centers_)
        if centres.ndim != 2 or centres.shape != (model.n_clusters, n_features):
            raise shape_error("cluster_centers_", f"({model.n_clusters}, {n_features})")
