"""``distml predict``: score partitioned Parquet with a saved model, published atomically.

Everything that can be wrong is checked before any work: the model, ``--output``
for its kind, the input's schema against the model's columns (one line naming the
column), ``--columns``, and the destination (absent, empty, or — with
``overwrite`` — a folder distml wrote). The backend then scores every file where
the data lives (:meth:`~distml.backends.base.Backend.score`) into a hidden sibling
of ``--out``; only when every file is written do ``_manifest.json`` and ``_SUCCESS``
go in and the folder is renamed into place. A failed or killed run leaves the
destination as it was: absent, or the previous complete output.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from distml.backends import get_backend
from distml.backends.base import Backend
from distml.errors import BackendError, DataError, did_you_mean
from distml.outputs import Output, output_dir
from distml.predict.inputs import ScoringInput
from distml.predict.loading import LoadedModel, load_scorer
from distml.predict.scorers import OUTPUTS
from distml.predict.task import ScoreJob
from distml.progress import Progress

SUCCESS = "_SUCCESS"
MANIFEST = "_manifest.json"
KIND = "predictions"


@dataclass
class PredictResult:
    """A published predictions folder: where, how many rows and files, how long."""

    out: Path | str  # a folder, or an s3:// URL
    rows: int
    files: int
    seconds: float
    manifest: dict[str, Any]


def resolve_columns(columns: str | list[str] | None, source: ScoringInput) -> list[str]:
    """``all`` (every column stored in the files), ``none``, or a comma-separated list; hive
    keys stay in the folder names, so they are never copied into the files."""
    stored = source.file_columns
    if columns is None or columns == "all":
        return stored
    if columns == "none":
        return []
    names = [c.strip() for c in columns.split(",")] if isinstance(columns, str) else list(columns)
    if not all(names):
        raise DataError(f"--columns {columns!r}: an empty column name")
    kept: list[str] = []
    for name in names:
        if name in source.partition_keys:
            continue  # kept: the output keeps the key=value folders
        if name not in stored:
            raise DataError(
                f"--columns: column '{name}' not found in {source.uri}"
                f"{did_you_mean(name, source.columns)}"
            )
        if name not in kept:
            kept.append(name)
    return kept


def output_schema(source: ScoringInput, keep: list[str], added: list[pa.Field]) -> pa.Schema:
    """Kept input columns (their stored types), then the columns scoring adds."""
    fields = [source.schema.field(name) for name in keep] + added
    return pa.schema(fields)  # no input metadata (pandas' would describe other columns)


def _where(uri: str) -> str:
    """A location as the manifest records it: URLs as given, local paths absolute."""
    return uri if "://" in uri else os.path.abspath(uri)


def _check_names(keep: list[str], added: list[pa.Field], source: ScoringInput) -> None:
    for field in added:
        if field.name in keep or field.name in source.partition_keys:
            raise DataError(
                f"{source.uri}: input column '{field.name}' has the name of an output column; "
                f"leave it out with --columns (e.g. --columns none) or rename it"
            )


def predict(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    backend: str | Backend = "local",
    columns: str | list[str] | None = "all",
    output: str = "predict",
    overwrite: bool = False,
    progress: Progress | None = None,
    backend_options: dict[str, Any] | None = None,
    filters: list[Any] | None = None,
) -> PredictResult:
    """Score ``data`` with the saved ``model`` into the folder ``out``.

    Parameters
    ----------
    model:
        A run folder, a ``model/`` folder or a ``model.keras`` file.
    data:
        Partitioned Parquet (a folder, hive ``key=value`` folders, a file or a URL).
    out:
        The predictions folder: one Parquet file per input file, at the same relative path.
    backend:
        ``local[N]``, ``dask``, ``spark`` or a cluster URL, or a started :class:`Backend`
        (left running).
    columns:
        Input columns copied to the output: ``all``, ``none`` or a comma-separated list.
    output:
        ``predict`` (``prediction``), ``proba`` (``probability`` per class in ``classes_``
        order; k-means: ``distance`` to each centre) or ``both``.
    """
    started = time.perf_counter()
    if output not in OUTPUTS:
        raise DataError(f"--output {output}: choose one of {', '.join(OUTPUTS)}")
    owned = not isinstance(backend, Backend)
    engine = get_backend(backend, **(backend_options or {})) if owned else backend
    assert isinstance(engine, Backend)
    if progress is not None:
        engine.progress = progress

    def checked() -> tuple[LoadedModel, ScoringInput, list[str], pa.Schema, Output]:
        """The model, the input's footers and the destination, checked before any task."""
        loaded = load_scorer(model)
        loaded.scorer.check_output(output)
        source = ScoringInput(data, filters=filters)
        loaded.scorer.check_schema(source.schema, source.uri)
        keep = resolve_columns(columns, source)
        added = loaded.scorer.output_fields(output)
        _check_names(keep, added, source)
        schema = output_schema(source, keep, added)
        destination = output_dir(out, KIND, overwrite=overwrite, inputs=[data, loaded.path])
        return loaded, source, keep, schema, destination

    try:
        loaded, source, keep, schema, destination = engine.start_while(checked)
        scorer = loaded.scorer
    except BaseException:
        if owned:
            engine.stop()
        raise
    try:
        tmp = destination.open()  # an unwritable place fails here, before any task
        job = ScoreJob(
            scorer, source.uri, destination.shared, tuple(keep), output, schema, source.storage
        )
        files = source.files
        rows = engine.score(files, job)
        for file, count in zip(files, rows, strict=True):
            if count != file.num_rows:
                raise BackendError(
                    f"{file.path}: scored {count} rows, but its footer says {file.num_rows}"
                )
        manifest = {
            "model": {"path": _where(loaded.path), "type": loaded.type, "task": loaded.task},
            "input": _where(source.uri),
            "filters": filters,
            "backend": engine.description,
            "columns": keep,
            "output": output,
            "schema": [f"{field.name}: {field.type}" for field in schema],
            "rows": int(sum(rows)),
            "files": [
                {"path": file.relpath, "rows": int(count)}
                for file, count in zip(files, rows, strict=True)
            ],
            "seconds": time.perf_counter() - started,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        (tmp / SUCCESS).write_text("")
        final = destination.publish(
            {"model": manifest["model"]["path"], "input": manifest["input"]}
        )
    except BaseException:
        destination.discard()
        raise
    finally:
        if owned:
            engine.stop()
    return PredictResult(
        final, manifest["rows"], len(files), time.perf_counter() - started, manifest
    )
