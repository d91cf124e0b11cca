"""``distml track``: log an existing run folder to MLflow."""

from __future__ import annotations

from pathlib import Path

import click

from distml.cli.app import console, main
from distml.errors import SpecError


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else MLflow's).")
@click.option("--experiment", help="Experiment name (default: the job's name).")
@click.option("--run-name", help="MLflow run name (default: the folder's name).")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag for the run.")
def track(
    run_dir: Path,
    uri: str | None,
    experiment: str | None,
    run_name: str | None,
    tags: tuple[str, ...],
) -> None:
    """Log RUN_DIR (params, metrics, artifacts, model) to MLflow."""
    from distml.tracking import track_run

    pairs = {}
    for item in tags:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SpecError(f"--tag {item!r}: expected KEY=VALUE")
        pairs[key] = value
    where = track_run(run_dir, uri=uri, experiment=experiment, run_name=run_name, tags=pairs)
    print_tracked(where)


def print_tracked(where: dict) -> None:
    console.print(
        f"  tracked: MLflow run {where['run_id']} in experiment '{where['experiment']}' "
        f"at {where['uri']}"
    )
