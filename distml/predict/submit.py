"""``distml submit`` of a predict job spec (:mod:`distml.predict.spec`) to a cluster.

The same two ways as training jobs (:mod:`distml.jobs.submit`): on a Dask cluster
this process is the client, distml is zipped and uploaded to the workers, and
:func:`~distml.predict.runner.predict` runs with that client; on a Spark cluster
``spark-submit`` runs ``distml predict`` as the driver in client mode, distml
shipped as ``--py-files``. Either way the workers must see the data and the
output folder (a shared filesystem), as for training.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from distml.backends import get_backend
from distml.clusters.state import cluster_for_address
from distml.outputs import check_output as check_destination
from distml.predict.runner import KIND, PredictResult, predict
from distml.predict.spec import PredictJobSpec
from distml.progress import Progress


def default_out(spec: PredictJobSpec) -> Path:
    return Path("runs") / f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_output(spec: PredictJobSpec, out: Path | None, overwrite: bool) -> Path | str:
    """The predictions folder (absolute) or ``s3://`` prefix, checked before anything
    connects (see :mod:`distml.outputs`)."""
    target = out if out is not None else default_out(spec)
    inputs = [spec.resolve(spec.predict.data), spec.resolve(spec.predict.model)]
    return check_destination(target, f"{KIND} folder", overwrite, inputs)


def _arguments(spec: PredictJobSpec, out: Path, overwrite: bool, backend: str) -> list[str]:
    block = spec.predict
    columns = block.columns if isinstance(block.columns, str) else ",".join(block.columns)
    arguments = [spec.resolve(block.model), "--data", spec.resolve(block.data)]
    arguments += ["--out", str(out), "--backend", backend, "--columns", columns]
    arguments += ["--output", block.output]
    return arguments + (["--overwrite"] if overwrite else [])


def submit_predict_dask(
    spec: PredictJobSpec,
    cluster: str,
    out: Path,
    state: Path,
    progress: Progress,
    overwrite: bool = False,
) -> PredictResult:
    """Score with this process as the Dask client; distml shipped to the workers."""
    from distml.packaging import package_zip

    options = spec.backend.options()
    record = cluster_for_address(state, cluster)
    if record is not None and record.tls and "tls" not in options:
        options["tls"] = record.tls
    backend = get_backend(cluster, **options)
    backend.progress = progress
    with backend, tempfile.TemporaryDirectory(prefix="distml-ship-") as folder:
        shipped = package_zip(Path(folder))
        backend.client.upload_file(str(shipped))  # type: ignore[attr-defined]
        progress.message(f"shipped {shipped.name} to the workers of {cluster}")
        block = spec.predict
        return predict(
            spec.resolve(block.model),
            spec.resolve(block.data),
            out,
            backend=backend,
            columns=block.columns,
            output=block.output,
            overwrite=overwrite,
            progress=progress,
            filters=block.filters,
        )


def submit_predict_spark(
    spec: PredictJobSpec,
    cluster: str,
    out: Path,
    state: Path,
    properties: Path | None = None,
    overwrite: bool = False,
) -> int:
    """``spark-submit`` of ``distml predict`` in client mode; its exit status."""
    from distml.backends.spark.session import probe_master
    from distml.jobs.submit import spark_submit

    if spec.predict.filters:
        from distml.errors import SpecError

        raise SpecError(f"{spec.source}: predict.filters: not supported by spark submission yet")
    probe_master(cluster, spec.backend.timeout or 10.0)
    arguments = ["predict", *_arguments(spec, out, overwrite, cluster)]
    return spark_submit(cluster, arguments, state, properties)
