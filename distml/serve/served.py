"""A loaded model as the server uses it: named inputs and outputs, numpy-only scoring.

Three kinds: a distml estimator (its numpy kernel on the float64 feature matrix), a
:class:`~distml.preprocess.pipeline.Pipeline` (raw columns through the same
``assemble`` the training ran: same stages, same NaN handling, then the kernel),
and a Keras model (``model.keras``; raw ``uint8`` pixel rows). ``score`` takes a
:class:`~distml.serve.batch.Batch` and a method (``predict``, ``predict_proba``,
``transform``) and returns a numpy array; input problems raise
:class:`~distml.serve.errors.BadRequest` naming the column.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distml.errors import DistmlError
from distml.serve.batch import Batch, finite_or_400, float_column, string_column
from distml.serve.errors import BadRequest

V2_TYPES = {
    "b": "BOOL",
    "float64": "FP64",
    "float32": "FP32",
    "float16": "FP16",
    "int64": "INT64",
    "int32": "INT32",
    "int16": "INT16",
    "int8": "INT8",
    "uint64": "UINT64",
    "uint32": "UINT32",
    "uint16": "UINT16",
    "uint8": "UINT8",
}


def v2_datatype(dtype: np.dtype) -> str:
    """The Open Inference Protocol's name for a numpy dtype (strings are BYTES)."""
    if dtype.kind == "b":
        return "BOOL"
    return V2_TYPES.get(str(dtype), "BYTES")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as the v2 metadata describes it (``-1``: any row count)."""

    name: str
    datatype: str
    shape: list[int]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


class ServedModel:
    """What the protocols ask of a model."""

    name: str
    path: Path
    model_type: str
    task: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]  # one per method: predict, predict_proba, transform
    slow = False  # True: always scored off the event loop (TensorFlow)

    @property
    def methods(self) -> list[str]:
        return [o.name for o in self.outputs]

    def check_method(self, method: str, where: str) -> None:
        if method not in self.methods:
            raise BadRequest(
                f"{where}: model '{self.name}' ({self.model_type}) has no method '{method[:40]}'; "
                f"choose one of {', '.join(self.methods)}"
            )

    def score(self, batch: Batch, method: str = "predict") -> np.ndarray:
        raise NotImplementedError


def _methods(task: str, classes: np.ndarray | None, n_out: int) -> list[TensorSpec]:
    if task == "regression":
        return [TensorSpec("predict", "FP64", [-1])]
    if task == "classification":
        assert classes is not None
        return [
            TensorSpec("predict", v2_datatype(classes.dtype), [-1]),
            TensorSpec("predict_proba", "FP64", [-1, len(classes)]),
        ]
    return [TensorSpec("predict", "INT32", [-1]), TensorSpec("transform", "FP64", [-1, n_out])]


class EstimatorModel(ServedModel):
    """A distml estimator: float64 features in, its numpy kernel out."""

    def __init__(self, name: str, path: Path, estimator: Any) -> None:
        self.name, self.path = name, path
        self.model_type, self.task = estimator.model_type, estimator.task
        if hasattr(estimator, "feature_names_in_"):
            self.features = [str(n) for n in estimator.feature_names_in_]
        else:
            self.features = [f"x{i}" for i in range(estimator.n_features_in_)]
        self.kernel = estimator.kernel()
        self.inputs = [TensorSpec(f, "FP64", [-1]) for f in self.features]
        centers = getattr(self.kernel, "cluster_centers_", None)
        self.outputs = _methods(
            self.task,
            getattr(self.kernel, "classes_", None),
            0 if centers is None else len(centers),
        )

    def matrix(self, batch: Batch) -> np.ndarray:
        X = batch.numeric_matrix(self.features)
        if X is None:
            columns = batch.as_columns(self.features)
            X = np.empty((batch.n_rows, len(self.features)))
            for j, name in enumerate(self.features):
                X[:, j] = float_column(name, columns[name], batch.text)
        return finite_or_400(X, self.features, self.name)

    def score(self, batch: Batch, method: str = "predict") -> np.ndarray:
        return getattr(self.kernel, method)(self.matrix(batch))  # type: ignore[no-any-return]


class PipelineModel(ServedModel):
    """Raw columns (numbers with missing values, strings) through the fitted stages."""

    def __init__(self, name: str, path: Path, pipeline: Any) -> None:
        self.name, self.path = name, path
        self.pipeline = pipeline
        self.model_type, self.task = f"pipeline({pipeline.model_type})", pipeline.task
        self.kinds: dict[str, str] = dict(pipeline.input_kinds_)
        self.features = list(self.kinds)
        self.numeric = all(kind == "numeric" for kind in self.kinds.values())
        self.kernel = pipeline.kernel()
        self.inputs = [
            TensorSpec(f, "BYTES" if kind == "string" else "FP64", [-1])
            for f, kind in self.kinds.items()
        ]
        centers = getattr(self.kernel, "cluster_centers_", None)
        self.outputs = _methods(
            self.task,
            getattr(self.kernel, "classes_", None),
            0 if centers is None else len(centers),
        )

    def frame(self, batch: Batch) -> dict[str, np.ndarray]:
        M = batch.numeric_matrix(self.features) if self.numeric else None
        if M is not None:
            return {f: M[:, j] for j, f in enumerate(self.features)}
        columns = batch.as_columns(self.features)
        return {
            f: (
                string_column(f, columns[f], batch.text)
                if kind == "string"
                else float_column(f, columns[f], batch.text)
            )
            for f, kind in self.kinds.items()
        }

    def score(self, batch: Batch, method: str = "predict") -> np.ndarray:
        from distml.algorithms.engine import Partition
        from distml.preprocess.pipeline import assemble
        from distml.preprocess.stages import Prepared

        frame = self.frame(batch)
        n = batch.n_rows
        part = Partition(np.empty((n, 0)), None, 0, 0, None, frame)
        try:
            X = assemble(part, Prepared(self.pipeline.stages), self.pipeline.feature_names_out_).X
        except DistmlError as exc:  # e.g. a missing value no impute stage fills
            raise BadRequest(f"model '{self.name}': {exc}") from None
        return getattr(self.kernel, method)(X)  # type: ignore[no-any-return]


class KerasModel(ServedModel):
    """A saved Keras classifier over raw pixel rows (``uint8``; ``[N, 784]`` or ``[N, 28, 28]``)."""

    slow = True
    model_type = "keras"
    task = "classification"

    def __init__(self, name: str, path: Path) -> None:
        from distml.deep.devices import import_tensorflow

        import_tensorflow()
        import keras

        self.name, self.path = name, path
        self.model = keras.models.load_model(path, compile=False)
        self.lock = threading.Lock()  # one TensorFlow call at a time per model
        (tensor,) = self.model.inputs
        self.input_name = str(tensor.name).split(":")[0]
        self.input_dtype = np.dtype(str(tensor.dtype))
        self.width = int(np.prod([d for d in tensor.shape[1:]]))
        n_out = int(self.model.outputs[0].shape[-1])
        self.classes = np.asarray(_keras_classes(path, n_out))
        self.inputs = [TensorSpec(self.input_name, v2_datatype(self.input_dtype), [-1, self.width])]
        self.outputs = [
            TensorSpec("predict", v2_datatype(self.classes.dtype), [-1]),
            TensorSpec("predict_proba", "FP32", [-1, n_out]),
        ]

    def pixels(self, batch: Batch) -> np.ndarray:
        if batch.columns is not None:
            if list(batch.columns) != [self.input_name]:
                extra = [c for c in batch.columns if c != self.input_name]
                what = f"unexpected column '{extra[0][:60]}'" if extra else "no columns"
                raise BadRequest(
                    f"{what}; model '{self.name}' takes one column, '{self.input_name}'"
                )
            values = batch.columns[self.input_name]
            try:
                x = np.asarray(values)
            except ValueError:
                raise BadRequest(f"'{self.input_name}': rows of different lengths") from None
        else:
            assert batch.matrix is not None
            x = batch.matrix
            if batch.names is not None:
                if batch.names != [self.input_name]:
                    raise BadRequest(
                        f"model '{self.name}' takes one column, '{self.input_name}'; the request "
                        f"has {len(batch.names)} column(s)"
                    )
                x = x[:, 0] if x.ndim >= 2 else x
                if x.dtype == object:
                    try:
                        x = np.array(x.tolist())
                    except ValueError:
                        raise BadRequest(
                            f"'{self.input_name}': rows of different lengths"
                        ) from None
        if x.dtype.kind not in "biuf":
            raise BadRequest(
                f"'{self.input_name}' must hold numbers ({v2_datatype(self.input_dtype)} pixel values)"
            )
        if x.ndim < 2 or int(np.prod(x.shape[1:])) != self.width or (x.ndim > 3):
            shape = "x".join(str(s) for s in x.shape)
            side = round(self.width**0.5)
            raise BadRequest(
                f"'{self.input_name}' must have shape [N, {self.width}] or [N, {side}, {side}], "
                f"got [{shape}]"
            )
        x = x.reshape(len(x), self.width)
        if self.input_dtype == np.uint8 and x.dtype != np.uint8 and x.size:
            if x.min() < 0 or x.max() > 255:
                raise BadRequest(f"'{self.input_name}': pixel values must lie in [0, 255]")
            x = x.astype(np.uint8)  # what Keras's own input cast does
        return x

    def score(self, batch: Batch, method: str = "predict") -> np.ndarray:
        x = self.pixels(batch)
        if len(x) == 0:
            proba = np.empty((0, len(self.classes)), dtype=np.float32)
        else:
            with self.lock:
                proba = np.asarray(self.model.predict_on_batch(x))
        if method == "predict_proba":
            return proba
        return self.classes[proba.argmax(axis=1)]  # type: ignore[no-any-return]


def _keras_classes(path: Path, n_out: int) -> list[Any]:
    """The class labels a Keras run recorded (``metrics.json`` beside the model), else 0..n-1."""
    try:
        classes = json.loads((path.parent / "metrics.json").read_text())["model"]["classes"]
        if isinstance(classes, list) and len(classes) == n_out:
            return classes
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return list(range(n_out))
