"""``distml explain``: SHAP values of a saved model over a Parquet dataset, on a backend,
written atomically into an output folder."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from distml.atomic import OutputDir
from distml.backends import get_backend
from distml.data.dataset import Dataset
from distml.errors import ModelError, SpecError
from distml.interpret.explain import write_shap
from distml.progress import Progress


def resolve_model_dir(path: str | os.PathLike[str]) -> Path:
    """A model folder, or a run folder holding ``model/``."""
    path = Path(path)
    if not (path / "model.json").is_file() and (path / "model" / "model.json").is_file():
        return path / "model"
    return path


def keras_file(path: str | os.PathLike[str]) -> Path | None:
    """The ``model.keras`` at ``path`` (the file, or a run folder holding it), else None."""
    path = Path(path)
    if path.suffix == ".keras" and path.is_file():
        return path
    return path / "model.keras" if (path / "model.keras").is_file() else None


def explain_model(
    model_path: str | os.PathLike[str],
    data: str,
    out: str | os.PathLike[str] | None = None,
    backend: str = "local",
    background: str | None = None,
    per_row: bool = True,
    plot_rows: int = 1000,
    overwrite: bool = False,
    progress: Progress | None = None,
    samples: int = 20,
    coalitions: int = 1000,
) -> tuple[Path, dict[str, Any]]:
    """Explain the model at ``model_path`` on every row of ``data`` (background: the rows
    of ``background``, else ``data`` itself) into ``out``; returns the folder and summary.
    A Keras model: kernel SHAP of ``samples`` images, ``coalitions`` evaluations each."""
    from distml.loading import load_model
    from distml.preprocess import Pipeline

    found = keras_file(model_path)
    if found is not None:
        if samples < 1 or coalitions < 10:
            raise SpecError(
                f"--samples {samples} / --coalitions {coalitions}: need at least 1 image and "
                "10 coalitions"
            )
        return _explain_keras(
            found, data, out, background, overwrite, progress, samples, coalitions
        )
    model_dir = resolve_model_dir(model_path)
    model = load_model(model_dir, scikit_learn=False)  # explained through its kernel
    output = _output(out, model_dir, overwrite, [data, background, str(model_dir)])
    raw = isinstance(model, Pipeline)
    features = [str(n) for n in getattr(model, "feature_names_in_", [])] or None
    dataset = Dataset(data, None, features, raw=raw)
    if features is None and len(dataset.features) != model.n_features_in_:
        raise ModelError(
            f"{model_dir}: the model was fitted on {model.n_features_in_} unnamed features; "
            f"{data} has {len(dataset.features)} columns ({', '.join(dataset.features[:10])})"
        )
    bg_dataset = Dataset(background, None, dataset.features, raw=raw) if background else None
    output.open()
    try:
        with get_backend(backend) as engine_backend:
            if progress is not None:
                engine_backend.progress = progress
            rows = engine_backend.load(dataset).train
            bg = engine_backend.load(bg_dataset).train if bg_dataset is not None else None
            with output as tmp:
                info = write_shap(
                    engine_backend,
                    model,
                    rows,
                    tmp,
                    background=bg,
                    background_from=f"rows of {background}",
                    per_row=per_row,
                    plot_rows=plot_rows,
                )
    finally:
        output.discard()
    return output.final, info


def _explain_keras(
    model_file: Path,
    data: str,
    out: str | os.PathLike[str] | None,
    background: str | None,
    overwrite: bool,
    progress: Progress | None,
    samples: int,
    coalitions: int,
) -> tuple[Path, dict[str, Any]]:
    """Kernel SHAP of a Keras classifier on sampled images (:mod:`distml.interpret.keras_shap`:
    on this machine; the sample is small, the network evaluations are many)."""
    from distml.interpret.keras_shap import write_keras_shap
    from distml.predict.inputs import ScoringInput
    from distml.predict.loading import keras_scorer

    scorer = keras_scorer(model_file)
    for source in (data, background):
        if source is not None:
            scorer.check_schema(ScoringInput(source).schema, source)
    folder = model_file.parent if model_file.name == "model.keras" else model_file
    output = _output(out, folder, overwrite, [data, background, str(model_file)])
    if progress is not None:
        progress.start("explaining (kernel SHAP on sampled images)")
    with output as tmp:
        info = write_keras_shap(
            model_file, data, tmp, scorer.pixels, scorer.width, background,
            rows=samples, nsamples=coalitions,
        )  # fmt: skip
    if progress is not None:
        progress.finish()
    return output.final, info


def _output(
    out: str | os.PathLike[str] | None, model: Path, overwrite: bool, inputs: list[Any]
) -> OutputDir:
    """The explanation folder (default ``explanations/NAME-TIME``), checked before any work."""
    target = Path(out) if out is not None else default_out(model)
    return OutputDir(target, "explain", overwrite, inputs, what="explanation folder")


def default_out(model_dir: Path) -> Path:
    name = model_dir.parent.name if model_dir.name == "model" else model_dir.name
    return Path("explanations") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
