"""Saved models as scorers: a run folder, a ``model/`` folder, or a ``model.keras`` file.

distml's portable models load with :func:`distml.load_model` (JSON and ``.npz``,
never pickle) and become their numpy kernel plus feature names; a pipeline keeps
its fitted stages. A Keras model is not loaded here — TensorFlow would start in
the driver for nothing — but its input and output are read from the ``.keras``
archive's ``config.json``, and its bytes travel to the workers.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distml.errors import DataError, ModelError
from distml.predict.scorers import KerasScorer, KernelScorer, PipelineScorer, Scorer

KERAS_FILE = "model.keras"


@dataclass
class LoadedModel:
    """A scorer and what the manifest says about the model."""

    scorer: Scorer
    path: str
    type: str
    task: str


def find_model(path: str | os.PathLike[str]) -> Path:
    """The model inside ``path``: itself (a ``model/`` folder or ``.keras`` file), or a run
    folder's ``model/`` or ``model.keras``."""
    path = Path(os.path.expanduser(os.fspath(path)))
    if not path.exists():
        raise DataError(
            f"{path}: no such model (give a run folder, a model/ folder or a .keras file)"
        )
    if path.is_file():
        if path.suffix != ".keras":
            raise DataError(f"{path}: not a model (a model/ folder or a .keras file)")
        return path
    for candidate in (path, path / "model"):
        if (candidate / "model.json").is_file():
            return candidate
    if (path / KERAS_FILE).is_file():
        return path / KERAS_FILE
    raise DataError(
        f"{path}: holds no model (model.json or {KERAS_FILE}); give a run folder, "
        "a model/ folder or a .keras file"
    )


def load_scorer(path: str | os.PathLike[str]) -> LoadedModel:
    """The scorer of the model at ``path`` (see :func:`find_model`); an ``s3://`` URL is
    downloaded first (credentials and endpoint from the environment)."""
    from distml.remote_output import as_url, local_copy

    url = as_url(path)
    if url is not None:
        with local_copy(url) as local:
            loaded = _load_local(local)
        found = Path(loaded.path)
        loaded.path = url + ("" if found.name == local.name else f"/{found.relative_to(local)}")
        return loaded
    return _load_local(path)


def _load_local(path: str | os.PathLike[str]) -> LoadedModel:
    found = find_model(path)
    if found.suffix == ".keras":
        return LoadedModel(keras_scorer(found), str(found), "keras", "classification")
    from distml.loading import load_model
    from distml.preprocess.pipeline import Pipeline

    model: Any = load_model(found, scikit_learn=False)  # scored by its kernel
    if isinstance(model, Pipeline):
        inner = model.model
        scorer: Scorer = PipelineScorer(
            inner.kernel(), model.stages, model.input_kinds_, model.feature_names_out_
        )
        kind = f"pipeline({inner.model_type})"
    else:
        scorer = KernelScorer(model.kernel(), model._feature_names())
        kind = model.model_type
    return LoadedModel(scorer, str(found), kind, model.task)


def keras_scorer(path: Path) -> KerasScorer:
    """A Keras classifier's scorer: input name and width, class count from its config."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
        graph = config["config"]
        layers = {layer["config"]["name"]: layer for layer in graph["layers"]}
        (input_name, *_), *more_inputs = _endpoints(graph["input_layers"])
        (output_name, *_), *more_outputs = _endpoints(graph["output_layers"])
        shape = layers[input_name]["config"]["batch_shape"]
        classes = int(layers[output_name]["config"]["units"])
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"{path}: not a Keras model distml can score ({exc})") from None
    if more_inputs or more_outputs or len(shape) != 2:
        raise ModelError(
            f"{path}: distml scores Keras models with one input of flat pixel rows and one "
            f"output (this one takes {shape})"
        )
    return KerasScorer(path.read_bytes(), input_name, int(shape[1]), classes)


def _endpoints(value: list[Any]) -> list[list[Any]]:
    """Keras writes one endpoint as ``[name, 0, 0]`` and several as a list of those."""
    return [value] if value and isinstance(value[0], str) else value
