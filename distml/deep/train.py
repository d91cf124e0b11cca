"""Running a Keras job: MirroredStrategy, fit from Parquet, evaluate, write the run folder.

The model is built inside ``strategy.scope()`` so its variables are mirrored on
every device; each step trains one global batch split between the replicas and
all-reduces the gradients. Progress is Keras's own (a bar per epoch on a
terminal, one line per epoch otherwise); checkpoints after every epoch let a
killed run resume (:mod:`distml.deep.resume`). The run folder — ``model.keras``,
``metrics.json``, ``predictions/``, ``training_curve.png``,
``confusion_matrix.png`` — appears atomically at the end.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from distml.atomic import Destination
from distml.data.storage import is_object_store
from distml.data.writer import prediction_table
from distml.deep import devices
from distml.deep.models import default_learning_rate
from distml.deep.pipeline import (
    PIXELS,
    ImageFiles,
    batches_per_epoch,
    distribute,
    open_images,
    pixel_matrix,
)
from distml.errors import DataError, SpecError
from distml.jobs import plots as job_plots
from distml.jobs.result import RunResult
from distml.jobs.spec import JobSpec, TrainSpec
from distml.outputs import output_path
from distml.progress import Progress

log = logging.getLogger(__name__)

EVAL_BATCH = 256  # per replica, for evaluation and prediction
MODEL_FILE = "model.keras"


def run_keras_job(
    spec: JobSpec, output: Destination, progress: Progress, verbose: bool = False
) -> RunResult:
    """Train ``spec``'s Keras model with MirroredStrategy and write the run folder ``output``
    (checked by the caller before anything runs)."""
    out = output.final
    settings = spec.train or TrainSpec()
    train, test = _open_data(spec)  # footers only: bad data fails before TensorFlow starts
    devices.import_tensorflow(verbose)
    import keras

    from distml.deep.models import build_model
    from distml.deep.resume import ResumeState

    device_names = devices.select_devices(settings.devices)
    strategy = devices.mirrored_strategy(device_names)
    replicas = int(strategy.num_replicas_in_sync)
    global_batch = settings.batch_size * replicas
    architecture = spec.model.params.get("architecture", "mlp")
    learning_rate = float(spec.model.params.get("learning_rate", default_learning_rate(replicas)))
    classes = max(train.classes, test.classes, 2)

    state = ResumeState(out, _trajectory(spec, settings, train, test, replicas))
    done = state.open()
    if done > settings.epochs:
        raise SpecError(
            f"train.epochs={settings.epochs}, but the checkpoint in {state.dir} already "
            f"has {done} finished epochs"
        )
    where = devices.describe(device_names)
    progress.message(
        f"{spec.name}: {architecture} on {train.num_rows:,} rows, {where}, "
        f"global batch {global_batch} ({settings.batch_size} per replica), "
        f"Adam learning rate {learning_rate:g}"
    )
    if done:
        progress.message(
            f"{spec.name}: resuming from the checkpoint in {state.dir}: "
            f"{done} of {settings.epochs} epoch(s) done, continuing with epoch {done + 1}"
        )

    keras.utils.set_random_seed(settings.seed)
    with strategy.scope():
        model = build_model(architecture, train.width, classes, learning_rate)
    # one dataset (and so one iterator) for all the epochs left: Keras keeps an iterator
    # across epochs when told each epoch's steps. With none left (killed before publishing)
    # it still peeks at a batch, so it gets the last epoch's, never trained on.
    train_data = distribute(
        strategy,
        train,
        global_batch,
        shuffle_buffer=settings.shuffle_buffer,
        seed=settings.seed,
        epochs=range(min(done, settings.epochs - 1), settings.epochs),
    )
    test_data = distribute(strategy, test, EVAL_BATCH * replicas)
    callbacks = state.callbacks(done)
    started = time.perf_counter()
    model.fit(
        train_data,
        epochs=settings.epochs,
        steps_per_epoch=batches_per_epoch(train, global_batch),
        validation_data=test_data,  # a new iterator each epoch (Keras): see deep/iterators.py
        callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2,
        shuffle=False,  # the pipeline shuffles (per epoch, seeded)
    )
    fit_seconds = time.perf_counter() - started
    loss, accuracy = (float(v) for v in model.evaluate(test_data, verbose=0))
    history = state.history()
    trained = callbacks[0].train_seconds  # this process's epochs
    epochs_run = len(trained)

    with output as tmp:
        model.save(tmp / MODEL_FILE)
        predictions: list[str] = []
        confusion = _confusion_and_predictions(
            model, test, classes, tmp / "predictions" if spec.output.predictions else None
        )
        if spec.output.predictions:
            predictions = sorted(str(p) for p in (tmp / "predictions").iterdir())
        metrics = {"accuracy": accuracy, "loss": loss, **_per_class(confusion)}
        pngs: list[Path] = []
        if spec.interpret is not None and spec.interpret.shap:  # test images vs training ones
            from distml.interpret.keras_shap import write_keras_shap

            write_keras_shap(
                tmp / MODEL_FILE, test.path, tmp, test.pixels, test.width, train.path,
                rows=spec.interpret.samples, nsamples=spec.interpret.coalitions,
                plots_too=spec.output.plots,
            )  # fmt: skip
            if (tmp / "shap_summary.png").exists():
                pngs.append(tmp / "shap_summary.png")
        if spec.output.plots:
            from distml.deep.plots import training_curve

            if history:
                pngs.append(training_curve(history, tmp / "training_curve.png"))
            pngs.append(
                job_plots.confusion_matrix(
                    metrics["confusion_matrix"], tmp / "confusion_matrix.png"
                )
            )
        summary = {
            "job": spec.name,
            "task": "classification",
            "backend": f"local ({where})",
            "solver": "mirrored",
            "strategy": type(strategy).__name__,
            "devices": device_names,
            "replicas": replicas,
            "architecture": architecture,
            "epochs": settings.epochs,
            "epochs_run": epochs_run,
            "resumed_from_epoch": done,
            "batch_size": settings.batch_size,
            "global_batch_size": global_batch,
            "learning_rate": learning_rate,
            "rows_train": train.num_rows,
            "rows_test": test.num_rows,
            "fit_seconds": fit_seconds,
            "samples_per_second": (
                train.num_rows * epochs_run / sum(trained) if epochs_run else None
            ),
            "accuracy": accuracy,
            "loss": loss,
            "metrics": metrics,
            "history": {key: [row.get(key) for row in history] for key in _keys(history)},
            "model": {
                "architecture": architecture,
                "file": MODEL_FILE,
                "parameters": int(model.count_params()),
                "classes": list(range(classes)),
            },
        }
        (tmp / "metrics.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    state.remove()
    final = output.final  # a folder, or the run's object-store URL
    return RunResult(
        out=final,
        summary=summary,
        fitted=model,
        predictions=[output_path(final, "predictions", Path(p).name) for p in predictions],
        plots=[output_path(final, p.name) for p in pngs],
    )


def _open_data(spec: JobSpec) -> tuple[ImageFiles, ImageFiles]:
    pixels = spec.data.features[0] if spec.data.features else PIXELS
    label = spec.data.label or "label"
    train_path, test_path = spec.resolve(spec.data.train), spec.resolve(spec.data.test)
    assert train_path is not None and test_path is not None  # the spec checked both
    storage = spec.data.storage_options
    options = storage.model_dump(exclude_none=True) if storage is not None else None
    train = open_images(train_path, label, pixels, options if is_object_store(train_path) else None)
    test = open_images(test_path, label, pixels, options if is_object_store(test_path) else None)
    if test.width != train.width:
        raise DataError(
            f"{test.path}: images have {test.width} pixels, but {train.width} in {train.path}"
        )
    return train, test


def _trajectory(
    spec: JobSpec, settings: TrainSpec, train: ImageFiles, test: ImageFiles, replicas: int
) -> dict[str, Any]:
    """What a checkpoint must share with this run to be resumed (all but ``epochs``)."""
    return {
        "model": spec.model.model_dump(),
        "batch_size": settings.batch_size,
        "replicas": replicas,
        "shuffle_buffer": settings.shuffle_buffer,
        "seed": settings.seed,
        "train": {"path": train.path, "rows": train.num_rows},
        "test": {"path": test.path, "rows": test.num_rows},
    }


def _confusion_and_predictions(
    model: Any, data: ImageFiles, classes: int, out: Path | None
) -> np.ndarray:
    """Predict file by file (bounded memory); write ``out/part-NNNNN.parquet`` if asked."""
    counts = np.zeros((classes, classes), dtype=np.int64)
    if out is not None:
        out.mkdir()
    for i, file in enumerate(data.files):
        table = data.parquet(file).read()
        pixels = pixel_matrix(table.column(data.pixels), data.width)
        probability = model.predict(pixels, batch_size=4096, verbose=0)
        prediction = probability.argmax(axis=1).astype(np.int64)
        labels = table.column(data.label).to_numpy()
        np.add.at(counts, (labels, prediction), 1)
        if out is not None:
            pq.write_table(
                prediction_table(table, prediction, probability), out / f"part-{i:05d}.parquet"
            )
    return counts


def _per_class(counts: np.ndarray) -> dict[str, Any]:
    """Macro precision/recall/F1 and the confusion matrix, as the other classifiers report them."""
    tp = np.diag(counts).astype(float)
    predicted, support = counts.sum(axis=0), counts.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(tp), where=total > 0)
    return {
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1": float(f1.mean()),
        "confusion_matrix": {
            "labels": list(range(len(counts))),
            "counts": counts.tolist(),
        },
    }


def _keys(history: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    return keys
