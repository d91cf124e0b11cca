"""``distml predict``: score partitioned Parquet with a saved model (see :mod:`distml.predict`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from distml.cli.app import console, err_console, main, overwrite_option
from distml.display import progress_for


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", required=True, help="Parquet folder, file or URL to score.")
@click.option(
    "--out", required=True, type=click.Path(file_okay=False, path_type=Path),
    help="Predictions folder: one Parquet file per input file, same relative paths.",
)  # fmt: skip
@click.option(
    "--backend", default="local", show_default=True,
    help="local[N], dask, spark, or a cluster URL (dask://, tcp://, tls://, spark://).",
)  # fmt: skip
@click.option(
    "--columns", default="all", show_default=True,
    help="Input columns kept beside the predictions: all, none or a,b,c.",
)  # fmt: skip
@click.option(
    "--output", type=click.Choice(["predict", "proba", "both"]), default="predict",
    show_default=True,
    help="prediction, probability per class (k-means: distance to each centre), or both.",
)  # fmt: skip
@overwrite_option
def predict(
    model: Path,
    data: str,
    out: Path,
    backend: str,
    columns: str,
    output: str,
    overwrite: bool,
) -> None:
    """Score DATA with MODEL (a run folder, model/ folder or model.keras) where the data lives."""
    from distml.backends.registry import parse_backend
    from distml.predict.runner import predict as run_predict

    engine_draws = parse_backend(backend)[0] == "spark"
    with progress_for(err_console, engine_draws=engine_draws) as progress:
        result = run_predict(
            model, data, out, backend, columns, output, overwrite, progress=progress
        )
    console.print(
        f"scored {result.rows} rows in {result.files} file(s) with {result.manifest['model']['type']} "
        f"on {result.manifest['backend']} in {result.seconds:.2f}s → {result.out}"
    )


def submit_predict_job(
    job: Path,
    cluster_url: str,
    kind: str,
    out: Path | None,
    overrides: tuple[str, ...],
    overwrite: bool,
    detach: bool,
    spark_properties: Path | None,
    job_id: str | None,
    state: Path,
) -> None:
    """``distml submit`` of a predict job spec (``predict:`` instead of ``model:``)."""
    from distml.errors import DistmlError
    from distml.jobs import detached
    from distml.predict.spec import load_predict_spec
    from distml.predict.submit import check_output, submit_predict_dask, submit_predict_spark

    spec = load_predict_spec(job, list(overrides), backend=cluster_url)
    out = check_output(spec, out, overwrite)  # refused before anything starts
    if detach:
        arguments = [str(job.resolve()), "--cluster", cluster_url, "--out", str(out)]
        arguments += [item for override in overrides for item in ("--set", override)]
        arguments += ["--state-dir", str(state)]
        if overwrite:
            arguments.append("--overwrite")
        if spark_properties is not None:
            arguments += ["--spark-properties", str(spark_properties.resolve())]
        click.echo(detached.start(state, arguments, str(job), cluster_url, str(out)))
        return
    code = 1
    try:
        if kind == "spark":
            code = submit_predict_spark(spec, cluster_url, out, state, spark_properties, overwrite)
        else:
            with progress_for(err_console) as progress:
                result = submit_predict_dask(spec, cluster_url, out, state, progress, overwrite)
            console.print(
                f"scored {result.rows} rows in {result.files} file(s) on "
                f"{result.manifest['backend']} in {result.seconds:.2f}s → {result.out}"
            )
            code = 0
    except DistmlError:
        code = 2
        raise
    finally:
        if job_id is not None:
            detached.finish(state, job_id, code)
    if code:
        sys.exit(code)
