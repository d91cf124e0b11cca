"""``distml bench``: engines, solvers and their peers side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from distml.cli.app import console, err_console, main, overwrite_option
from distml.display import progress_for


def _csv(kind: type) -> Any:
    def parse(ctx: click.Context, param: click.Parameter, value: str) -> list[Any]:
        try:
            return [kind(float(v)) if kind is int else kind(v) for v in value.split(",") if v]
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a comma-separated list") from None

    return parse


@main.command()
@click.option(
    "--tasks",
    default="linreg,logreg,kmeans",
    show_default=True,
    callback=_csv(str),
    help="linreg, logreg, kmeans and mnist (the Keras network; needs the tf extra).",
)
@click.option("--backends", default="local,dask,spark", show_default=True, callback=_csv(str))
@click.option(
    "--solvers",
    default="native,library",
    show_default=True,
    callback=_csv(str),
    help="native and/or each backend's library solver.",
)
@click.option(
    "--rows",
    default="1e5,1e6",
    show_default=True,
    callback=_csv(int),
    help="Sizes, e.g. 1e5,1e6,1e7.",
)
@click.option("--features", type=int, default=20, show_default=True)
@click.option(
    "--workers",
    default="1,2",
    show_default=True,
    callback=_csv(int),
    help="Worker counts (two or more draw the speed-up plot).",
)
@click.option("--repeat", type=int, default=3, show_default=True)
@click.option(
    "--timeout",
    type=float,
    default=900,
    show_default=True,
    help="Seconds one run may take; past it the candidate is not run again at that size or above.",
)
@click.option(
    "--memory-limit",
    default=None,
    help="Per worker (e.g. 400MB): below the data's size, distml streams.",
)
@click.option(
    "--mnist-source",
    default="keras",
    show_default=True,
    help="The mnist task's images: keras (downloads once) or a folder of MNIST IDX files.",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench-out/data"),
    show_default=True,
    help="Where datasets are generated and reused.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Results folder [default: bench-out/run-TIME].",
)
@overwrite_option
def bench(
    tasks: list[str],
    backends: list[str],
    solvers: list[str],
    rows: list[int],
    features: int,
    workers: list[int],
    repeat: int,
    timeout: float,
    memory_limit: str | None,
    mnist_source: str,
    data_dir: Path,
    out: Path | None,
    overwrite: bool,
) -> None:
    """Benchmark engines, solvers and their peers side by side (a fresh process per run)."""
    import time as time_module

    from distml.bench import run_bench
    from distml.bench.plan import BenchConfig

    config = BenchConfig(
        tasks=tasks,
        backends=backends,
        solvers=solvers,
        rows=rows,
        features=features,
        workers=workers,
        repeat=repeat,
        timeout=timeout,
        memory_limit=memory_limit,
        mnist_source=mnist_source,
    )
    config.validate()
    out = out or Path("bench-out") / f"run-{time_module.strftime('%Y%m%d-%H%M%S')}"
    with progress_for(err_console) as progress:
        result = run_bench(config, out, data_dir, progress, overwrite=overwrite)
    console.print(result["summary"])
    console.print(f"results: {out / 'results.md'}")
