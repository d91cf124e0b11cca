"""Logging a run folder to MLflow: one run per folder, one child run per search candidate.

Everything but the model goes through ``MlflowClient`` (no process-wide state);
the model through ``mlflow.pyfunc.log_model`` / ``mlflow.keras.log_model`` inside the
run, with the tracking URI set only for that call. A run whose logging fails part-way
is marked FAILED in MLflow; the run folder itself is never touched.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from distml.tracking import store
from distml.tracking.record import RunRecord, read_run

log = logging.getLogger(__name__)

#: Folders of a run folder not uploaded as artifacts: per-row data, as big as the dataset.
SKIPPED = ("predictions", "shap")
_BATCH_PARAMS, _BATCH_METRICS = 100, 1000


def track_run(
    run_dir: str | os.PathLike[str],
    uri: str | None = None,
    experiment: str | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    timeout: float = store.PROBE_TIMEOUT,
) -> dict[str, Any]:
    """Log the run folder ``run_dir`` to MLflow and return where it went (``uri``,
    ``experiment``, ``experiment_id``, ``run_id``, ``model_uri``, ``children``).

    ``uri`` None: MLflow's default (:func:`store.resolve_uri`); ``experiment`` None: the
    job's name; ``run_name`` None: the folder's name. Raises :class:`TrackingError` (or
    ``DataError`` for a folder that is not a run) in one line naming the URI or folder.
    """
    from distml.remote_output import as_url, local_copy

    url = as_url(run_dir)
    if url is not None:  # a run folder published on an object store: log a local copy
        with local_copy(url) as local:
            named = {"distml.run_folder": url, **(tags or {})}
            return track_run(local, uri, experiment, run_name, named, timeout)
    record = read_run(run_dir)
    store.require_mlflow()
    resolved = store.resolve_uri(uri)
    store.check_reachable(resolved, timeout)
    try:
        with store.bounded_http():
            return _log(record, resolved, experiment, run_name, tags or {})
    except store.TrackingError:
        raise
    except Exception as exc:  # MLflow's own errors: one line naming the store
        message = " ".join(str(exc).split())[:300]
        raise store.TrackingError(
            f"MLflow tracking at {resolved} failed: {type(exc).__name__}: {message}"
        ) from exc


def track_result(result: Any, spec: Any, job: str) -> dict[str, Any]:
    """Track a finished run (a :class:`~distml.jobs.result.RunResult`) as ``spec`` (the job's
    ``tracking`` section) says; never raises: a failure is returned as ``error``."""
    try:
        return track_run(
            result.out,
            uri=spec.uri,
            experiment=spec.experiment or job,
            run_name=spec.run_name,
            tags=dict(spec.tags),
        )
    except Exception as exc:  # noqa: BLE001 - the run folder is published; report, keep it
        message = " ".join(str(exc).split())
        log.warning(
            "MLflow tracking failed, the run folder %s is complete (log it later with "
            "`distml track %s`): %s",
            result.out,
            result.out,
            message,
        )
        return {"error": message, "uri": spec.uri}


def _log(
    record: RunRecord, uri: str, experiment: str | None, run_name: str | None, tags: dict[str, str]
) -> dict[str, Any]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(tracking_uri=uri)
    name = experiment or str(record.summary.get("job") or "distml")
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found else client.create_experiment(name)
    run_tags = {
        "distml.run_folder": str(record.folder),  # an object store's run: its URL, in tags
        "distml.task": str(record.summary.get("task", "")),
        **tags,
    }
    run = client.create_run(experiment_id, run_name=run_name or record.folder.name, tags=run_tags)
    run_id = run.info.run_id
    try:
        stamp = _now_ms()
        params = [Param(k, v) for k, v in record.params.items()]
        metrics = [Metric(k, v, stamp, 0) for k, v in record.metrics.items()]
        for name_, values in record.history.items():  # Keras: one value per epoch
            metrics += [Metric(name_, v, stamp, step) for step, v in enumerate(values)]
        _batches(client, run_id, params, metrics)
        children = [
            _child(client, experiment_id, run_id, i, c.params, c.metrics, RunTag)
            for i, c in enumerate(record.candidates)
        ]
        _artifacts(client, run_id, record.folder)
        model_uri = _model(record, uri, run_id)
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        try:
            client.set_terminated(run_id, "FAILED")
        except Exception:  # noqa: BLE001 - the store may be what failed
            pass
        raise
    return {
        "uri": uri,
        "experiment": name,
        "experiment_id": experiment_id,
        "run_id": run_id,
        "model_uri": model_uri,
        "children": children,
    }


def _batches(client: Any, run_id: str, params: list[Any], metrics: list[Any]) -> None:
    for i in range(0, len(params), _BATCH_PARAMS):
        client.log_batch(run_id, params=params[i : i + _BATCH_PARAMS])
    for i in range(0, len(metrics), _BATCH_METRICS):
        client.log_batch(run_id, metrics=metrics[i : i + _BATCH_METRICS])


def _child(
    client: Any,
    experiment_id: str,
    parent: str,
    index: int,
    params: dict[str, str],
    metrics: dict[str, float],
    tag_cls: Any,
) -> str:
    """A search candidate as a child run (MLflow's ``mlflow.parentRunId`` tag)."""
    from mlflow.entities import Metric, Param

    child = client.create_run(
        experiment_id,
        run_name=f"candidate-{index}",
        tags={"mlflow.parentRunId": parent, "distml.candidate": str(index)},
    )
    stamp = _now_ms()
    client.log_batch(
        child.info.run_id,
        params=[Param(k, v) for k, v in params.items()],
        metrics=[Metric(k, v, stamp, 0) for k, v in metrics.items()],
    )
    client.set_terminated(child.info.run_id, "FINISHED")
    return str(child.info.run_id)


def _artifacts(client: Any, run_id: str, folder: Path) -> None:
    """Plots and ``report.html`` at the top (the UI shows them), the run folder under
    ``run/`` — without its per-row folders (:data:`SKIPPED`)."""
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in (".png", ".html"):
            client.log_artifact(run_id, str(path))
    with tempfile.TemporaryDirectory(prefix="distml-track-") as tmp:
        copy = Path(tmp) / "run"
        shutil.copytree(folder, copy, ignore=shutil.ignore_patterns(*SKIPPED))
        client.log_artifacts(run_id, str(copy), artifact_path="run")


def _model(record: RunRecord, uri: str, run_id: str) -> str | None:
    if record.model_kind is None:
        return None
    import mlflow

    from distml.tracking import pyfunc

    with store.fluent_uri(uri), mlflow.start_run(run_id=run_id):
        if record.model_kind == "keras":
            return pyfunc.log_keras_model(record.folder)
        return pyfunc.log_distml_model(record.folder)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
