"""Running a job spec end to end: data → backend → fit → evaluate → run folder.

The run folder (``metrics.json``, ``model/``, ``predictions/``, PNG plots) is
built in a hidden sibling and renamed into place only when everything
succeeded, so a failed run leaves no half-written folder behind.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from distml.backends import Backend, get_backend
from distml.data.dataset import Dataset
from distml.data.examples import EXAMPLES, write_example
from distml.data.generate import Recipe, generate
from distml.data.split import Split
from distml.data.storage import Location
from distml.errors import DataError
from distml.jobs import plots
from distml.jobs.checks import check_before_work
from distml.jobs.insights import write_insights
from distml.jobs.result import RunResult
from distml.jobs.spec import KERAS, CVSpec, JobSpec, build_estimator
from distml.models.base import Model
from distml.outputs import Output, output_dir, output_path
from distml.preprocess import Pipeline
from distml.progress import Progress
from distml.remote_output import is_remote
from distml.selection import Candidate, best, cross_validate, search, set_candidate

log = logging.getLogger(__name__)


def ensure_data(spec: JobSpec) -> str:
    """The training data path, generated first when missing and the spec says how."""
    train = spec.resolve(spec.data.train)
    assert train is not None
    recipe = spec.data.generate
    if recipe is None or "://" in train or Path(train).exists():
        return train
    log.info("generating %s data into %s", recipe.kind, train)
    if recipe.kind in EXAMPLES:
        write_example(recipe.kind, train)
    else:
        generate(Recipe(**recipe.model_dump()), train)
    return train


def _inputs(spec: JobSpec, task: str) -> tuple[Dataset, Dataset | None, Split | None]:
    """The job's datasets (their footers read) and split, checked before any pass."""
    train_path = ensure_data(spec)
    raw = bool(spec.preprocess)  # a pipeline reads missing values and strings as they are
    storage = spec.data.storage_options
    options = storage.model_dump(exclude_none=True) if storage is not None else None
    dataset = Dataset(
        train_path, spec.data.label, spec.data.features, spec.data.filters, raw, options
    )
    test_path = spec.resolve(spec.data.test)
    test_dataset = (
        Dataset(test_path, spec.data.label, dataset.features, spec.data.filters, raw, options)
        if test_path
        else None
    )
    split_spec = spec.effective_split(task)
    split = Split(split_spec.test_size, split_spec.seed) if split_spec else None
    check_before_work(spec, dataset, split, selection_plan(spec, task))
    return dataset, test_dataset, split


def default_out(spec: JobSpec) -> Path:
    return Path("runs") / f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_output(spec: JobSpec, out: str | Path | None, overwrite: bool = False) -> Output:
    """The run folder ``out`` (default ``runs/NAME-TIME``; an ``s3://`` prefix is published
    there), checked before any work: never the job's data or spec (nor a folder holding
    them), never a non-empty folder distml did not write, and a folder distml wrote only
    with ``overwrite``."""
    inputs = [spec.resolve(spec.data.train), spec.resolve(spec.data.test)]
    if Path(spec.source).is_file():
        inputs.append(spec.source)
    target = out if out is not None else default_out(spec)
    storage = spec.data.storage_options  # the data's store is the usual place for runs too
    options = storage.model_dump(exclude_none=True) if storage is not None else None
    return output_dir(
        target,
        "run",
        overwrite=overwrite,
        inputs=inputs,
        what="run folder",
        storage_options=options if is_remote(target) else None,
    )


def run_job(
    spec: JobSpec,
    out: str | Path | None = None,
    backend: Backend | None = None,
    progress: Progress | None = None,
    verbose: bool = False,
    overwrite: bool = False,
) -> RunResult:
    """Run ``spec`` and write its run folder to ``out`` (default ``runs/NAME-TIME``).

    ``progress`` receives the backend's reads and passes (default: log lines);
    ``verbose`` lets TensorFlow print its start-up logs (Keras jobs); ``overwrite``
    replaces a previous run folder (only one distml wrote).
    """
    output = run_output(spec, out, overwrite)
    output.open()  # an unwritable destination fails here, before any work
    try:
        result = _run(spec, output, backend, progress, verbose)
    finally:
        output.discard()  # a no-op once published
    if spec.tracking is not None:  # after publishing: a tracking failure never loses the run
        from distml.tracking import track_result

        result.tracking = track_result(result, spec.tracking, spec.name)
    return result


def _run(
    spec: JobSpec,
    output: Output,
    backend: Backend | None,
    progress: Progress | None,
    verbose: bool,
) -> RunResult:
    if spec.model.type == KERAS and spec.train is not None and spec.train.workers:
        from distml.deep.launch import run_multiworker_job  # worker processes: a backend's gang

        return run_multiworker_job(spec, output, backend, progress or Progress())
    if spec.model.type == KERAS:  # MirroredStrategy on this machine's devices, not a Backend
        from distml.deep.train import run_keras_job

        return run_keras_job(spec, output, progress or Progress(), verbose=verbose)
    estimator = build_estimator(spec)
    task = estimator.task
    owned = backend is None
    engine_backend = backend or get_backend(spec.backend.name, **spec.backend.options())
    if progress is not None:
        engine_backend.progress = progress
    try:
        dataset, test_dataset, split = engine_backend.start_while(lambda: _inputs(spec, task))
        engine_backend.progress.message(
            f"{spec.name}: {dataset.num_rows:,} rows in {len(dataset.partitions)} partition(s) "
            f"on {engine_backend.description}"
        )
        keep = spec.output.predictions
        solver = engine_backend.resolve_solver(estimator)
        loaded = engine_backend.load(
            dataset, split, keep_source=keep and test_dataset is None, solver=solver
        )
        evaluation = loaded.test
        if test_dataset is not None:
            evaluation = engine_backend.load(test_dataset, None, keep_source=keep).train
        if evaluation is None:
            evaluation = loaded.train
        plan = selection_plan(spec, task)
        searched: list[Candidate] = []
        if plan is not None:  # k-fold scores of every candidate, then the best refitted on all
            searched = cross_validate(engine_backend, estimator, loaded, plan)
            estimator = set_candidate(estimator, best(searched, plan).params)
        try:
            engine_backend.fit(estimator, loaded)
        except DataError as exc:  # a worker's finding about "the label": name the column
            text = str(exc)
            if not text.startswith("the label "):
                raise
            raise DataError(
                f"{dataset.uri}: label column '{dataset.label}'{text[len('the label') :]}"
            ) from None
        with output as tmp:
            metrics = engine_backend.evaluate(
                estimator, evaluation, has_labels=dataset.label is not None
            )
            estimator.save(tmp / "model")
            engine_backend.save_native_model(estimator, tmp / "model")
            predictions: list[str] = []
            if spec.output.predictions:
                predictions = engine_backend.write_predictions(
                    estimator, evaluation, _join_shared(output.shared, "predictions")
                )
            pngs = (
                _plots(engine_backend, estimator, evaluation, metrics, dataset, tmp)
                if spec.output.plots
                else []
            )
            pngs += write_insights(  # importance.json, coefficients, ROC, residuals
                engine_backend, estimator, evaluation, tmp, loaded.train, spec.output.plots
            )
            if spec.interpret is not None and spec.interpret.shap:
                pngs += _shap(spec, engine_backend, estimator, evaluation, loaded.train, tmp)
            summary = {
                "job": spec.name,
                "task": task,
                "backend": engine_backend.description,
                "solver": estimator.fit_info_["solver"],
                "rows_train": loaded.train.n_rows,
                "rows_test": evaluation.n_rows if evaluation is not loaded.train else 0,
                "read_seconds": loaded.read_seconds,
                "fit_seconds": estimator.fit_info_["fit_seconds"],
                "metrics": metrics,
                "model": model_summary(estimator),
            }
            if plan is not None:
                summary["cv"] = search.summary(searched, plan, best(searched, plan))
                search.write_table(searched, plan, tmp / "search.csv")
            text = json.dumps(_finite_or_null(summary), indent=2, default=_plain, allow_nan=False)
            (tmp / "metrics.json").write_text(text)
        final = output.final
        return RunResult(
            out=final,
            summary=summary,
            fitted=estimator,
            predictions=[output_path(final, "predictions", Path(p).name) for p in predictions],
            plots=[output_path(final, Path(p).name) for p in pngs],
        )
    finally:
        if owned:
            engine_backend.stop()


def _join_shared(shared: str | Location, name: str) -> str | Location:
    """A sub-folder of the place workers write into (a folder or an object-store prefix)."""
    if isinstance(shared, Location):
        return Location(f"{shared.url}/{name}", shared.options)
    return os.path.join(shared, name)


def _shap(
    spec: JobSpec, backend: Backend, model: Any, evaluation: Any, train: Any, out: Path
) -> list[Path]:
    """SHAP values of the evaluation rows against the training rows' mean (shap_summary.*)."""
    from distml.interpret import write_shap

    assert spec.interpret is not None
    write_shap(
        backend,
        model,
        evaluation,
        out,
        background=train,
        per_row=spec.interpret.rows,
        plot_rows=spec.interpret.plot_rows,
        plots_too=spec.output.plots,
    )
    png = out / "shap_summary.png"
    return [png] if png.exists() else []


def selection_plan(spec: JobSpec, task: str) -> search.Plan | None:
    """The cross-validation/search a spec asks for (``cv`` alone scores one candidate)."""
    if spec.cv is None and spec.search is None:
        return None
    cv = spec.cv or CVSpec()
    chosen = spec.search
    return search.Plan(
        candidates=search.candidates(
            chosen.grid if chosen else None,
            chosen.random if chosen else None,
            chosen.trials if chosen else 1,
            chosen.seed if chosen else 0,
        ),
        folds=cv.folds,
        seed=cv.seed,
        metric=(chosen.metric if chosen and chosen.metric else search.DEFAULT_METRIC[task]),
        parallel=chosen.parallel if chosen else 1,
    )


def model_summary(model: Any) -> dict[str, Any]:
    """The fitted parameters that fit on a screen (coefficients, classes, centres)."""
    if isinstance(model, Pipeline):
        return {
            **model_summary(model.model),
            "features": model.feature_names_out_,
            "preprocess": [stage.state() for stage in model.stages],
        }
    if model.task == "regression":
        return {"coef": np.asarray(model.coef_).tolist(), "intercept": float(model.intercept_)}
    if model.task == "classification":
        return {
            "classes": np.asarray(model.classes_).tolist(),
            "coef": np.asarray(model.coef_).tolist(),
            "intercept": np.asarray(model.intercept_).tolist(),
            "n_iter": model.n_iter_,
        }
    return {"cluster_centers": np.asarray(model.cluster_centers_).tolist(), "n_iter": model.n_iter_}


def _plots(
    backend: Backend, model: Model, engine, metrics, dataset: Dataset, out: Path
) -> list[Path]:  # type: ignore[no-untyped-def]
    if model.task == "classification":
        return [plots.confusion_matrix(metrics["confusion_matrix"], out / "confusion_matrix.png")]
    X, y = backend.sample(engine, model=model)
    if len(X) == 0:
        return []
    names = list(dataset.features)
    if isinstance(model, Pipeline):  # the sample is preprocessed: plot the model's own inputs
        names, model = model.feature_names_out_, model.model
    kernel = model.kernel()
    if model.task == "regression":
        return [
            plots.predicted_vs_actual(
                y.astype(float), kernel.predict(X), out / "predicted_vs_actual.png"
            )
        ]
    labels = kernel.predict(X)
    return [
        plots.clusters(X, labels, np.asarray(model.cluster_centers_), names, out / "clusters.png")
    ]


def _finite_or_null(value: Any) -> Any:
    """Undefined metrics (NaN, e.g. R² of one row) become JSON ``null``, keeping the file valid."""
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
