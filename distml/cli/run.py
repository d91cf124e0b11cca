"""``distml run``: a job spec end to end, and the short summary printed after a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np

from distml.backends.registry import parse_backend
from distml.cli.app import console, err_console, main, overwrite_option
from distml.display import progress_for


@main.command()
@click.argument("job", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--backend", "backend", help="Override the spec's backend (local[N], dask, spark, URL)."
)
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a spec value."
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="Run folder to write."
)
@overwrite_option
@click.option("--verbose", is_flag=True, help="Show TensorFlow's start-up logs (Keras jobs).")
@click.option(
    "--track",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[URI]",
    help="Log the run to MLflow (URI default: the spec's, else MLflow's default).",
)
def run(
    job: Path,
    backend: str | None,
    overrides: tuple[str, ...],
    out: Path | None,
    overwrite: bool,
    verbose: bool,
    track: str | None,
) -> None:
    """Run a job spec and write its run folder."""
    from distml.jobs import load_spec, run_job
    from distml.jobs.spec import KERAS

    spec = load_spec(job, list(overrides), backend)
    if track is not None:
        from distml.jobs.spec import TrackingSpec

        spec.tracking = spec.tracking or TrackingSpec()
        spec.tracking.uri = track or spec.tracking.uri
    # Keras (per-epoch bars) and Spark (its console progress bar) draw on the terminal
    # themselves: a second, live bar would garble both, so distml prints lines beside them
    engine_draws = spec.model.type == KERAS or parse_backend(spec.backend.name)[0] == "spark"
    with progress_for(err_console, engine_draws=engine_draws) as progress:
        result = run_job(spec, out, progress=progress, verbose=verbose, overwrite=overwrite)
    print_result(result)
    if result.tracking is not None:
        print_tracking(result.tracking)


def print_tracking(where: dict[str, Any]) -> None:
    """Where the run was tracked (a failure was already logged as one warning line)."""
    if "error" not in where:
        from distml.cli.track import print_tracked

        print_tracked(where)


def print_result(result: Any) -> None:
    """A short human summary of a run: metrics and the fitted parameters."""
    s = result.summary
    console.print(
        f"[bold]{s['job']}[/] ({s['task']}, {s['backend']}, solver {s['solver']}): "
        f"{s['rows_train']} training rows, {s['rows_test']} test rows, "
        f"fit {s['fit_seconds']:.3f}s"
    )
    metrics = s["metrics"]
    for name, value in metrics.items():
        if isinstance(value, float):
            console.print(f"  {name}: {value:.6g}")
    model = s["model"]
    if s["task"] == "regression":
        console.print(f"  coefficients: {np.array2string(np.asarray(model['coef']), precision=6)}")
        console.print(f"  intercept: {model['intercept']:.6g}")
    elif s["task"] == "classification":
        console.print(f"  classes: {model['classes']}")
    else:
        console.print(
            f"  cluster centres:\n{np.array2string(np.asarray(model['cluster_centers']), precision=4)}"
        )
        labels = _small_prediction_column(result.predictions)
        if labels is not None:
            console.print(f"  labels: {labels}")
    console.print(f"  run folder: {result.out}")


def _small_prediction_column(files: list[str], limit: int = 50) -> list[Any] | None:
    import pyarrow.parquet as pq

    if not files:
        return None
    values: list[Any] = []
    for path in sorted(files):
        values.extend(pq.read_table(path, columns=["prediction"]).column(0).to_pylist())
        if len(values) > limit:
            return None
    return values
