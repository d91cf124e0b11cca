"""Models as the scoring tasks use them: input columns in, prediction columns out.

A scorer is what travels to the workers for ``distml predict``: the model's numpy
kernel (:mod:`distml.models.kernels`) with the names of the columns it reads, a
pipeline's fitted stages, or a Keras model's bytes. It imports numpy, pyarrow and
distml only — TensorFlow is imported lazily, on the worker, for Keras models — and
turns one Arrow table (a row group of an input file) into the output columns.
Each scorer also says, before any work, whether an input schema fits the model
(:meth:`Scorer.check_schema`) and what the output columns' types are.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from distml.data.arrow import arrow_array
from distml.data.reader import feature_frame, feature_matrix
from distml.errors import DataError, ModelError
from distml.preprocess.stages import Stage, apply_stages, is_string

#: ``--output`` choices: the prediction, the per-class scores (k-means: distances), or both.
OUTPUTS = ("predict", "proba", "both")


def _kind(dtype: pa.DataType) -> str | None:
    """``numeric``, ``string`` or None (anything else) for an Arrow column type."""
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_boolean(dtype):
        return "numeric"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    return None


def _list_of(values: np.ndarray, width: int) -> pa.Array:
    """Rows of ``width`` float64 values as one fixed-size-list column."""
    flat = arrow_array(np.ascontiguousarray(values, dtype=np.float64).ravel())
    return pa.FixedSizeListArray.from_arrays(flat, width)


class Scorer:
    """One model's scoring: the columns it reads, checks, and output columns."""

    task: ClassVar[str] = ""
    #: ``--output`` other than ``predict`` adds this column (None: the model has none).
    scores_column: ClassVar[str | None] = None

    def columns(self) -> list[str]:
        """Input columns the model reads."""
        raise NotImplementedError

    def check_schema(self, schema: pa.Schema, where: str) -> None:
        """Raise :class:`DataError` naming the first model column missing from ``schema``
        or of the wrong type."""
        for name in self.columns():
            if name not in schema.names:
                raise DataError(
                    f"{where}: column '{name}' not found; the model reads "
                    f"{', '.join(self.columns()[:20])}"
                )
            self._check_type(name, schema.field(name).type, where)

    def _check_type(self, name: str, dtype: pa.DataType, where: str) -> None:
        if _kind(dtype) != "numeric":
            raise DataError(
                f"{where}: column '{name}' is {dtype}; the model needs a numeric column"
            )

    def check_output(self, output: str) -> None:
        if output not in OUTPUTS:
            raise ModelError(f"--output {output}: choose one of {', '.join(OUTPUTS)}")
        if output != "predict" and self.scores_column is None:
            raise ModelError(
                f"--output {output}: a {self.task} model has no probabilities; use --output predict"
            )

    def output_fields(self, output: str) -> list[pa.Field]:
        """The columns scoring adds, with their types (what an empty file's output holds)."""
        raise NotImplementedError

    def score(self, table: pa.Table, output: str, path: str) -> list[pa.Array]:
        """The added columns for ``table``'s rows (``path`` names the file in errors)."""
        raise NotImplementedError

    def _assemble(self, prediction: np.ndarray | None, scores: np.ndarray | None, output: str):  # type: ignore[no-untyped-def]
        arrays = []
        if output in ("predict", "both"):
            assert prediction is not None
            arrays.append(arrow_array(prediction))
        if output in ("proba", "both"):
            assert scores is not None
            arrays.append(_list_of(scores, scores.shape[1]))
        return arrays


class KernelScorer(Scorer):
    """A linear, logistic or k-means model: named float64 features → its kernel."""

    def __init__(self, kernel: Any, features: list[str]) -> None:
        self.kernel = kernel
        self.features = list(features)
        self.task = kernel.task  # type: ignore[misc]
        self.scores_column = {"classification": "probability", "clustering": "distance"}.get(  # type: ignore[misc]
            kernel.task
        )

    def columns(self) -> list[str]:
        return self.features

    def _width(self) -> int:
        if self.task == "clustering":
            return int(self.kernel.cluster_centers_.shape[0])
        return len(self.kernel.classes_)

    def output_fields(self, output: str) -> list[pa.Field]:
        empty = np.empty((0, len(self.features)), order="F")
        fields = []
        if output in ("predict", "both"):
            fields.append(pa.field("prediction", arrow_array(self.kernel.predict(empty)).type))
        if output in ("proba", "both"):
            assert self.scores_column is not None
            fields.append(pa.field(self.scores_column, pa.list_(pa.float64(), self._width())))
        return fields

    def matrix(self, table: pa.Table, path: str) -> np.ndarray:
        return feature_matrix(table, self.features, path)

    def score(self, table: pa.Table, output: str, path: str) -> list[pa.Array]:
        X = self.matrix(table, path)
        prediction = self.kernel.predict(X) if output != "proba" else None
        scores = None
        if output != "predict":
            scores = (
                self.kernel.transform(X)
                if self.task == "clustering"
                else self.kernel.predict_proba(X)
            )
        return self._assemble(prediction, scores, output)


class PipelineScorer(KernelScorer):
    """A model with its preprocessing: raw columns (missing values, strings) in, the fitted
    stages applied exactly as in training, then the model's kernel."""

    def __init__(
        self,
        kernel: Any,
        stages: list[Stage],
        input_kinds: dict[str, str],
        features_out: list[str],
    ) -> None:
        super().__init__(kernel, features_out)
        self.stages = list(stages)
        self.input_kinds = dict(input_kinds)

    def columns(self) -> list[str]:
        return list(self.input_kinds)

    def _check_type(self, name: str, dtype: pa.DataType, where: str) -> None:
        expected, found = self.input_kinds[name], _kind(dtype)
        if found != expected:
            raise DataError(
                f"{where}: column '{name}' is {dtype}; the model was trained on a {expected} column"
            )

    def matrix(self, table: pa.Table, path: str) -> np.ndarray:
        frame = apply_stages(self.stages, feature_frame(table, self.columns(), path))
        X = np.empty((table.num_rows, len(self.features)), order="F")
        for j, name in enumerate(self.features):
            column = frame[name]
            if is_string(column):
                raise DataError(f"{path}: column '{name}' is still a string after preprocessing")
            missing = np.isnan(column)
            if missing.any():
                raise DataError(
                    f"{path}: column '{name}' has {int(missing.sum())} missing value(s) after "
                    "preprocessing (the model's stages do not impute it)"
                )
            X[:, j] = column
        return X


class KerasScorer(Scorer):
    """A Keras classifier saved as ``model.keras``: a pixels column in (``fixed_size_binary``
    or ``fixed_size_list<uint8>``), the argmax class and the softmax scores out.

    The model travels as the file's bytes and is loaded on first use, once per worker
    process (the loaded model is kept on this object, which each worker deserialises once:
    Dask scatters it, Spark broadcasts it, local threads share it).
    """

    task: ClassVar[str] = "classification"
    scores_column: ClassVar[str | None] = "probability"

    def __init__(self, data: bytes, pixels: str, width: int, classes: int) -> None:
        self.data = data
        self.pixels = pixels
        self.width = width
        self.classes = classes
        self._model: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_model"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def columns(self) -> list[str]:
        return [self.pixels]

    def _check_type(self, name: str, dtype: pa.DataType, where: str) -> None:
        if pa.types.is_fixed_size_binary(dtype):
            width = dtype.byte_width
        elif pa.types.is_fixed_size_list(dtype) and pa.types.is_uint8(dtype.value_type):
            width = dtype.list_size
        else:
            raise DataError(
                f"{where}: column '{name}' is {dtype}; the model needs fixed_size_binary or "
                "fixed_size_list<uint8> pixel rows (as `distml data mnist` writes)"
            )
        if width != self.width:
            raise DataError(
                f"{where}: column '{name}' holds {width} pixels per row; the model takes {self.width}"
            )

    def output_fields(self, output: str) -> list[pa.Field]:
        fields = []
        if output in ("predict", "both"):
            fields.append(pa.field("prediction", pa.int64()))
        if output in ("proba", "both"):
            fields.append(pa.field("probability", pa.list_(pa.float64(), self.classes)))
        return fields

    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = _load_keras(self.data)
            return self._model

    def score(self, table: pa.Table, output: str, path: str) -> list[pa.Array]:
        from distml.deep.pipeline import pixel_matrix

        images = pixel_matrix(table.column(self.pixels), self.width)
        model = self.model()
        if len(images):
            with self._lock:  # one predict at a time: TensorFlow uses every core itself
                probability = np.asarray(model.predict(images, batch_size=4096, verbose=0))
        else:
            probability = np.zeros((0, self.classes), dtype=np.float32)
        prediction = probability.argmax(axis=1).astype(np.int64)
        return self._assemble(prediction, probability, output)


def _load_keras(data: bytes) -> Any:
    """A Keras model from the bytes of a ``.keras`` file (TensorFlow imported here)."""
    import os
    import tempfile

    from distml.deep.devices import import_tensorflow

    import_tensorflow()
    import keras

    fd, path = tempfile.mkstemp(suffix=".keras")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return keras.models.load_model(path, compile=False)
    finally:
        os.unlink(path)
