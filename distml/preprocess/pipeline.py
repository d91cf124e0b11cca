"""A model with its preprocessing: fitted on an engine, applied to raw rows anywhere.

Fitting runs each stage's statistics pass in order, then derives — where the data
lives — partitions holding the assembled float64 feature matrix, and fits the
model on those. The fitted pipeline is portable like any model: ``save`` writes
the stages' statistics as JSON beside the model, and ``predict`` takes the raw
columns (missing values, strings) a user has.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from distml.algorithms.engine import Engine, Partition
from distml.errors import DataError, DistmlError, ModelError
from distml.models.base import FORMAT_VERSION, Model, load_fitted
from distml.outputs import atomic_dir
from distml.preprocess.stages import Kinds, Prepared, Stage, is_string, make_stage


def _kinds(part: Partition) -> Kinds:
    if part.frame is None:
        raise ModelError(
            "a Pipeline needs the raw feature columns: read the data with Dataset(..., raw=True)"
        )
    return {name: "string" if is_string(col) else "numeric" for name, col in part.frame.items()}


def _first(a: Kinds, b: Kinds) -> Kinds:
    return a


def assemble(part: Partition, prepare: Prepared, names: list[str]) -> Partition:
    """The partition with ``X`` built from its preprocessed columns (the raw frame dropped)."""
    frame = prepare(part)
    X = np.empty((part.n_rows, len(names)), order="F")
    for j, name in enumerate(names):
        column = frame[name]
        if is_string(column):
            raise DataError(
                f"column '{name}' is still a string after preprocessing; add a one_hot stage for it"
            )
        missing = np.isnan(column)
        if missing.any():
            raise DataError(
                f"column '{name}' has {int(missing.sum())} missing value(s) after preprocessing; "
                "add an impute stage for it"
            )
        X[:, j] = column
    return part.with_features(X)


class Pipeline:
    """``stages`` (impute, scale, one_hot, select) then ``model``, scikit-learn style."""

    def __init__(self, stages: list[Stage], model: Model) -> None:
        self.stages = list(stages)
        self.model = model

    # -- what backends and job runs ask of a model ----------------------------------------------
    @property
    def task(self) -> str:
        return self.model.task

    @property
    def model_type(self) -> str:
        return self.model.model_type

    @property
    def solver(self) -> str:
        return self.model.solver  # type: ignore[attr-defined, no-any-return]

    def validate(self) -> Pipeline:
        self.model.validate()
        for stage in self.stages:
            stage.validate()
        return self

    def get_params(self) -> dict[str, Any]:
        """``model.<param>`` and ``<stage>.<param>`` (the first stage of that name)."""
        params = {f"model.{k}": v for k, v in self.model.get_params().items()}
        for stage in reversed(self.stages):
            params.update({f"{stage.name}.{k}": v for k, v in stage.get_params().items()})
        return params

    def set_params(self, **params: Any) -> Pipeline:
        for key, value in params.items():
            owner, _, name = key.partition(".")
            if owner == "model":
                self.model.set_params(**{name: value})
                continue
            stage = next((s for s in self.stages if s.name == owner), None)
            if stage is None or not name:
                raise ModelError(
                    f"unknown pipeline parameter '{key}' (use model.<param> or <stage>.<param>)"
                )
            stage.set_params(**{name: value})
        return self

    # -- fitting --------------------------------------------------------------------------------
    def fit_stages(self, engine: Engine) -> Engine:
        """Fit every stage in order; the engine of assembled features the model is fitted on."""
        kinds = engine.map_reduce(_kinds, combine=_first)
        self.input_kinds_ = dict(kinds)
        fitted: list[Stage] = []
        for stage in self.stages:
            kinds = stage.fit(engine, Prepared(fitted), kinds, self.model.task)
            fitted.append(stage)
        self.feature_names_out_ = list(kinds)
        if not self.feature_names_out_:
            raise DataError("preprocessing left no features")
        return self.transformed(engine)

    def transformed(self, engine: Engine) -> Engine:
        """``engine``'s partitions with their features preprocessed and assembled."""
        return engine.derive(assemble, Prepared(self.stages), self.feature_names_out_)

    def fit_engine(self, engine: Engine) -> Pipeline:
        features = self.fit_stages(engine)
        try:
            self.model.fit_engine(features)
        finally:
            features.release()
        self.model.set_feature_info(self.feature_names_out_, None)
        return self

    def set_feature_info(
        self, names: list[str] | None, dtypes: dict[str, str] | None, n_features: int = 0
    ) -> None:
        self.feature_names_in_ = list(names or [])
        self.feature_dtypes_ = dtypes or {}

    # -- predicting raw rows ----------------------------------------------------------------------
    def _matrix(self, X: Any) -> np.ndarray:
        if not hasattr(self, "feature_names_out_"):
            raise ModelError("this Pipeline is not fitted yet; call fit first")
        import pandas as pd  # rows from users: a DataFrame, or what one is built from

        frame = pd.DataFrame(X) if not isinstance(X, pd.DataFrame) else X
        missing = [c for c in self.input_kinds_ if c not in frame.columns]
        if missing:
            raise ModelError(f"pipeline: input lacks column(s) {', '.join(map(repr, missing))}")
        columns = {}
        for name, kind in self.input_kinds_.items():
            values = frame[name]
            if kind == "string":
                columns[name] = np.asarray(
                    [None if pd.isna(v) else str(v) for v in values], dtype=object
                )
            else:
                columns[name] = pd.to_numeric(values, errors="raise").to_numpy(
                    dtype=np.float64, na_value=np.nan
                )
        part = Partition(np.empty((len(frame), 0)), None, 0, 0, None, columns)
        return assemble(part, Prepared(self.stages), self.feature_names_out_).X

    def kernel(self) -> Any:
        """The model's kernel (its input is the assembled features, see :meth:`transform`)."""
        return self.model.kernel()

    def predict(self, X: Any) -> np.ndarray:
        return self.model.kernel().predict(self._matrix(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.model.kernel().predict_proba(self._matrix(X))  # type: ignore[union-attr]

    def transform(self, X: Any) -> np.ndarray:
        """The model's input: raw rows preprocessed and assembled."""
        return self._matrix(X)

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """``model.json`` (the stages' statistics) and the model in ``estimator/``, atomically."""
        path = Path(path)
        metadata = {
            "format_version": FORMAT_VERSION,
            "type": "pipeline",
            "task": self.task,
            "features": self.feature_names_in_,
            "feature_dtypes": self.feature_dtypes_,
            "input_kinds": self.input_kinds_,
            "features_out": self.feature_names_out_,
            "stages": [stage.state() for stage in self.stages],
            "provenance": getattr(self, "fit_info_", {}),
        }
        with atomic_dir(path) as tmp:
            self.model.save(tmp / "estimator")
            (tmp / "model.json").write_text(json.dumps(metadata, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: Path, metadata: dict[str, Any]) -> Pipeline:
        estimator = load_fitted(path / "estimator")
        try:
            stages = [Stage.from_state(s) for s in metadata["stages"]]
            kinds, names_out = metadata["input_kinds"], metadata["features_out"]
            if not isinstance(kinds, dict) or not isinstance(names_out, list):
                raise TypeError("input_kinds must be an object and features_out a list")
        except DistmlError as exc:
            raise DataError(f"{path / 'model.json'}: stages: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"{path / 'model.json'}: invalid pipeline metadata ({exc})") from None
        if len(names_out) != estimator.n_features_in_:
            raise DataError(
                f"{path / 'model.json'}: features_out has {len(names_out)} names but the "
                f"estimator takes {estimator.n_features_in_} features"
            )
        pipeline = cls(stages, estimator)
        pipeline.input_kinds_ = kinds
        pipeline.feature_names_out_ = names_out
        pipeline.set_feature_info(metadata["features"], metadata.get("feature_dtypes"))
        pipeline.fit_info_ = metadata.get("provenance", {})
        return pipeline


def build_pipeline(spec: list[dict[str, Any]], model: Model) -> Pipeline:
    """A pipeline from a job spec's ``preprocess:`` list of ``{stage: {params}}``."""
    stages = []
    for item in spec:
        ((name, params),) = item.items()
        stages.append(make_stage(name, dict(params or {})))
    return Pipeline(stages, model)
