"""The ``distml`` command line: parse, call the library, print.

Exit codes: 0 success; 2 bad input (one line on stderr, no traceback unless
``--debug``); 1 an internal error.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console

from distml.backends.registry import parse_backend
from distml.display import progress_for
from distml.errors import DistmlError

console = Console()
err_console = Console(stderr=True)


class DistmlGroup(click.Group):
    """Turns :class:`DistmlError` into one line and exit code 2; other errors into exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except DistmlError as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if debug:
                traceback.print_exc()
            click.echo(
                f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)", err=True
            )
            sys.exit(1)


def _engine_warnings_only(record: logging.LogRecord) -> bool:
    """Dask's, distributed's and py4j's records reach the user from WARNING up."""
    return record.levelno >= logging.WARNING or not record.name.startswith(
        ("distributed", "dask", "py4j")
    )


@click.group(cls=DistmlGroup)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="distml")
def main(debug: bool) -> None:
    """distml: train linear, logistic and k-means models on local, Dask or Spark engines."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not debug:  # the engines set their loggers to INFO when imported: filter at our handler
        for handler in logging.getLogger().handlers:
            handler.addFilter(_engine_warnings_only)


# -- run ------------------------------------------------------------------------------------------
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
@click.option("--verbose", is_flag=True, help="Show TensorFlow's start-up logs (Keras jobs).")
def run(
    job: Path, backend: str | None, overrides: tuple[str, ...], out: Path | None, verbose: bool
) -> None:
    """Run a job spec and write its run folder."""
    from distml.jobs import load_spec, run_job
    from distml.jobs.spec import KERAS

    spec = load_spec(job, list(overrides), backend)
    # Keras (per-epoch bars) and Spark (its console progress bar) draw on the terminal
    # themselves: a second, live bar would garble both, so distml prints lines beside them
    engine_draws = spec.model.type == KERAS or parse_backend(spec.backend.name)[0] == "spark"
    with progress_for(err_console, engine_draws=engine_draws) as progress:
        result = run_job(spec, out, progress=progress, verbose=verbose)
    print_result(result)


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


# -- data -----------------------------------------------------------------------------------------
@main.group()
def data() -> None:
    """Create datasets: synthetic partitioned Parquet, the seed examples and MNIST."""


@data.command("generate")
@click.argument("kind", type=click.Choice(["regression", "classification", "blobs"]))
@click.option("--rows", type=float, required=True, help="Number of rows (1e6 style accepted).")
@click.option("--features", type=int, default=20, show_default=True)
@click.option(
    "--partitions", type=int, default=4, show_default=True, help="Parquet files to write."
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--classes", type=int, default=2, show_default=True, help="classification only")
@click.option("--centers", type=int, default=5, show_default=True, help="blobs only")
@click.option("--overwrite", is_flag=True, help="Replace an existing folder.")
@click.option(
    "--backend",
    default=None,
    help="Write the partitions in parallel on this backend's workers (dask, spark, a URL).",
)
def data_generate(
    kind: str,
    rows: float,
    features: int,
    partitions: int,
    out: Path,
    seed: int,
    classes: int,
    centers: int,
    overwrite: bool,
    backend: str | None,
) -> None:
    """Generate a synthetic dataset as partitioned Parquet (bounded memory)."""
    from distml.data.generate import Recipe, generate

    if rows != int(rows):
        raise click.BadParameter(f"{rows} is not a whole number", param_hint="--rows")
    recipe = Recipe(
        kind=kind,
        rows=int(rows),
        features=features,
        partitions=partitions,
        seed=seed,
        classes=classes,
        centers=centers,
    )
    if backend is None:
        with console.status(f"writing {int(rows):,} rows into {partitions} files"):
            path = generate(recipe, out, overwrite=overwrite)
    else:
        from distml.backends import get_backend

        with (
            get_backend(backend) as engine,
            console.status(
                f"writing {int(rows):,} rows into {partitions} files on {engine.description}"
            ),
        ):
            path = generate(recipe, out, overwrite=overwrite, backend=engine)
    console.print(f"wrote {int(rows):,} rows x {features} features in {partitions} files to {path}")


@data.command("examples")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def data_examples(out: Path) -> None:
    """Write the seed's examples 1-3 as Parquet (out/example1 ... example3)."""
    from distml.data.examples import write_examples

    for path in write_examples(out):
        console.print(f"wrote {path}")


@data.command("mnist")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option(
    "--source",
    default="keras",
    show_default=True,
    help="'keras' (keras.datasets.mnist, downloads once) or a folder of MNIST IDX files.",
)
@click.option(
    "--partitions", type=int, default=4, show_default=True, help="Parquet files per split."
)
def data_mnist(out: Path, source: str, partitions: int) -> None:
    """Write MNIST as partitioned Parquet: out/train and out/test (pixels, label, index)."""
    from distml.data.mnist import write_mnist

    with console.status(f"writing MNIST from {source}"):
        path = write_mnist(out, source, partitions)
    for split in ("train", "test"):
        console.print(f"wrote {path / split}")


# -- demo -----------------------------------------------------------------------------------------
@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("distml-demo"),
    show_default=True,
    help="Folder for the example data and run folders.",
)
@click.option("--backend", default="local", show_default=True)
def demo(out: Path, backend: str) -> None:
    """Run the seed's examples 1-3 end to end and print their results."""
    from distml.demo import demo_specs
    from distml.jobs import run_job

    for spec in demo_specs(out, backend):
        with progress_for(err_console) as progress:
            result = run_job(spec, out / "runs" / spec.name, progress=progress)
        print_result(result)


# -- bench --------------------------------------------------------------------------------------
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
        result = run_bench(config, out, data_dir, progress)
    console.print(result["summary"])
    console.print(f"results: {out / 'results.md'}")


# -- clusters, submission, detached jobs ---------------------------------------------------------
state_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where clusters and jobs are recorded [default: $DISTML_STATE_DIR or ~/.distml/clusters].",
)


@main.group()
def cluster() -> None:
    """Start, inspect and stop Dask and Spark clusters on this machine (127.0.0.1)."""


@cluster.group("up")
def cluster_up() -> None:
    """Start a cluster, detached; print its address once every worker has joined."""


@cluster_up.command("dask")
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="Threads per worker.")
@click.option("--memory-limit", default=None, help="Per worker, e.g. 2GB.")
@click.option(
    "--tls", is_flag=True, help="Mutual TLS under a private CA written to the state folder."
)
@state_option
def cluster_up_dask(
    workers: int, threads: int, memory_limit: str | None, tls: bool, state_dir: Path | None
) -> None:
    """A dask scheduler and WORKERS dask workers."""
    from distml.clusters import dask_cluster
    from distml.clusters import state_dir as resolve

    with err_console.status(f"starting a dask scheduler and {workers} worker(s)"):
        record = dask_cluster.up(resolve(state_dir), workers, threads, memory_limit, tls)
    err_console.print(f"dask cluster {record.id} up: {workers} worker(s), logs in {record.folder}")
    click.echo(record.address)


@cluster_up.command("spark")
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--cores", type=int, default=1, show_default=True, help="Cores per worker.")
@click.option("--memory", default="1g", show_default=True, help="Memory per worker.")
@click.option("--auth", is_flag=True, help="Require spark.authenticate with a generated secret.")
@state_option
def cluster_up_spark(
    workers: int, cores: int, memory: str, auth: bool, state_dir: Path | None
) -> None:
    """A Spark standalone master and WORKERS workers, from the pyspark installation."""
    from distml.clusters import spark_cluster
    from distml.clusters import state_dir as resolve

    with err_console.status(f"starting a Spark master and {workers} worker(s)"):
        record = spark_cluster.up(resolve(state_dir), workers, cores, memory, auth)
    err_console.print(f"spark cluster {record.id} up: {workers} worker(s), logs in {record.folder}")
    click.echo(record.address)


@cluster.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@state_option
def cluster_status(as_json: bool, state_dir: Path | None) -> None:
    """The recorded clusters and whether each of their processes is alive."""
    import json as json_module

    from distml.clusters import state_dir as resolve
    from distml.clusters import status

    entries = status(resolve(state_dir))
    if as_json:
        click.echo(json_module.dumps(entries, indent=2))
        return
    if not entries:
        click.echo("no clusters")
    for entry in entries:
        live = sum(p["alive"] for p in entry["processes"])
        flags = " tls" if entry["tls"] else " auth" if entry["auth"] else ""
        click.echo(
            f"{entry['id']}  {entry['address']}{flags}  {live}/{len(entry['processes'])} processes alive"
        )
        for p in entry["processes"]:
            click.echo(f"  {p['role']:<10} pid {p['pid']:<8} {'alive' if p['alive'] else 'gone'}")


@cluster.command("down")
@click.argument("which", required=False)
@state_option
def cluster_down(which: str | None, state_dir: Path | None) -> None:
    """Stop a cluster (id or address; default: every recorded one), by the pids it recorded."""
    from distml.clusters import down
    from distml.clusters import state_dir as resolve

    stopped = down(resolve(state_dir), which)
    for record in stopped:
        click.echo(f"stopped {record.id} ({record.address})")
    if not stopped:
        click.echo("no clusters")


@main.command()
@click.argument("job", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--cluster", "cluster_url", required=True, help="spark://, dask://, tcp:// or tls:// URL."
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="Run folder to write."
)
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a spec value."
)
@click.option("--detach", is_flag=True, help="Run in the background; print a job id.")
@click.option(
    "--spark-properties",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Spark properties for spark-submit (e.g. spark.authenticate.secret of your cluster).",
)
@click.option("--job-id", hidden=True, default=None)
@state_option
def submit(
    job: Path,
    cluster_url: str,
    out: Path | None,
    overrides: tuple[str, ...],
    detach: bool,
    spark_properties: Path | None,
    job_id: str | None,
    state_dir: Path | None,
) -> None:
    """Run a job spec on a cluster; distml is shipped to workers that lack it."""
    from distml.clusters import state_dir as resolve
    from distml.jobs import detached, load_spec
    from distml.jobs.runner import default_out
    from distml.jobs.submit import engine_of, submit_dask, submit_spark

    state = resolve(state_dir)
    kind = engine_of(cluster_url)
    spec = load_spec(job, list(overrides), backend=cluster_url)  # validated before anything runs
    if detach:
        out = (out or default_out(spec)).resolve()
        arguments = [str(job.resolve()), "--cluster", cluster_url, "--out", str(out)]
        arguments += [item for override in overrides for item in ("--set", override)]
        arguments += ["--state-dir", str(state)]
        if spark_properties is not None:
            arguments += ["--spark-properties", str(spark_properties.resolve())]
        click.echo(detached.start(state, arguments, str(job), cluster_url, str(out)))
        return
    code = 1
    try:
        if kind == "spark":
            code = submit_spark(job, cluster_url, out, list(overrides), state, spark_properties)
        else:
            with progress_for(err_console) as progress:
                result = submit_dask(job, cluster_url, out, list(overrides), state, progress)
            print_result(result)
            code = 0
    except DistmlError:
        code = 2
        raise
    finally:
        if job_id is not None:
            detached.finish(state, job_id, code)
    if code:
        sys.exit(code)


@main.group()
def jobs() -> None:
    """Jobs submitted with --detach."""


@jobs.command("list")
@state_option
def jobs_list(state_dir: Path | None) -> None:
    """Every detached job and its status."""
    from distml.clusters import state_dir as resolve
    from distml.jobs import detached

    entries = detached.listing(resolve(state_dir))
    if not entries:
        click.echo("no jobs")
    for entry in entries:
        click.echo(f"{entry['id']}  {entry['status']:<12} {entry['cluster']}  {entry['spec']}")


@jobs.command("status")
@click.argument("job_id")
@state_option
def jobs_status(job_id: str, state_dir: Path | None) -> None:
    """One job's status, cluster, spec and run folder."""
    from distml.clusters import state_dir as resolve
    from distml.jobs import detached

    entry = detached.load(resolve(state_dir), job_id)
    click.echo(f"{entry['id']}: {entry['status']}")
    click.echo(f"  cluster {entry['cluster']}\n  spec {entry['spec']}\n  out {entry['out']}")


@jobs.command("logs")
@click.argument("job_id")
@state_option
def jobs_logs(job_id: str, state_dir: Path | None) -> None:
    """Everything a job printed so far."""
    from distml.clusters import state_dir as resolve
    from distml.jobs import detached

    click.echo(detached.log_path(resolve(state_dir), job_id).read_text(errors="replace"), nl=False)


# -- report ---------------------------------------------------------------------------------------
@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="HTML file to write (default RUN_DIR/report.html).",
)
def report(run_dir: Path, out: Path | None) -> None:
    """Write one self-contained HTML page for a run folder: metrics, tables and plots."""
    from distml.report import write_report

    click.echo(str(write_report(run_dir, out)))


if __name__ == "__main__":  # pragma: no cover
    main()
