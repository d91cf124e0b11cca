"""A distml model as an MLflow model: the ``python_function`` flavour wrapping distml's
portable model folder, with its input signature.

The model folder travels as an artifact and distml's own source as the model's code
(``code_paths``), so ``mlflow.pyfunc.load_model`` and ``mlflow models serve`` need only
distml's dependencies (pinned in the model's requirements), not distml itself.
``predict`` takes a DataFrame of the training features (a pipeline: the raw columns)
and returns what ``distml.load_model(...).predict`` returns. Keras run folders are
logged with MLflow's Keras flavour (its pyfunc predicts class probabilities).
"""

from __future__ import annotations

import importlib.metadata
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

import distml

#: The artifact key of the distml model folder inside the MLflow model.
ARTIFACT = "distml_model"


class DistmlModel(mlflow.pyfunc.PythonModel):
    """``mlflow.pyfunc`` wrapper: loads the folder with ``distml.load_model`` (no pickle)."""

    def load_context(self, context: Any) -> None:
        from distml.loading import load_model

        self.model = load_model(context.artifacts[ARTIFACT])

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        # (no type hints: MLflow would read them as a schema)
        return np.asarray(self.model.predict(model_input))


def requirements() -> list[str]:
    """distml's runtime dependencies pinned to the versions installed here."""
    pins = []
    for requirement in importlib.metadata.requires("distml") or []:
        if "extra ==" in requirement:
            continue
        name = requirement.split(";")[0].split("[")[0]
        for sep in ("<", ">", "=", "!", "~", " "):
            name = name.split(sep)[0]
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(requirement.split(";")[0])
    return pins


def input_example(folder: Path, model: Any, rows: int = 5) -> pd.DataFrame | None:
    """A few rows of the model's input columns, from the run's predictions when it has them."""
    import pyarrow.parquet as pq

    files = sorted((folder / "predictions").glob("*.parquet"))
    columns = [str(c) for c in getattr(model, "feature_names_in_", [])]
    if not files or not columns:
        return None
    table = pq.ParquetFile(files[0]).read_row_group(0, columns=columns)
    return table.slice(0, rows).to_pandas()


def log_distml_model(folder: Path, name: str = "model") -> str:
    """Log the run's ``model/`` into the active MLflow run; returns the model's URI."""
    from mlflow.models import infer_signature

    from distml.loading import load_model

    model_dir = folder / "model"
    model = load_model(model_dir)
    example = input_example(folder, model)
    signature = None
    if example is not None:
        signature = infer_signature(example, np.asarray(model.predict(example)))
    with warnings.catch_warnings():  # MLflow asks for type hints it would read as a schema
        warnings.filterwarnings("ignore", message=".*[Tt]ype hint", category=UserWarning)
        info = _log_pyfunc(name, model_dir, signature, example)
    return str(info.model_uri)


def _log_pyfunc(name: str, model_dir: Path, signature: Any, example: Any) -> Any:
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(Path(__file__).with_name("pyfunc_model.py")),  # code, not a pickle
        artifacts={ARTIFACT: str(model_dir)},
        code_paths=[str(Path(distml.__file__).parent)],
        pip_requirements=requirements(),
        signature=signature,
        input_example=example,
    )


def log_keras_model(folder: Path, name: str = "model") -> str:
    """Log the run's ``model.keras`` with MLflow's Keras flavour."""
    import keras
    import mlflow.keras
    from mlflow.models import infer_signature

    model = keras.saving.load_model(folder / "model.keras")
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    example = np.zeros((1, *shape), dtype=model.inputs[0].dtype)
    signature = infer_signature(example, np.asarray(model.predict(example, verbose=0)))
    info = mlflow.keras.log_model(model, name=name, signature=signature)
    return str(info.model_uri)
