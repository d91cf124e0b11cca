"""``distml cluster``, ``distml submit`` and ``distml jobs``: clusters on this machine,
submission to any cluster, and detached jobs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from distml.cli.app import err_console, main, overwrite_option
from distml.cli.run import print_result
from distml.display import progress_for
from distml.errors import DistmlError

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
@overwrite_option
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
    overwrite: bool,
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
    from distml.predict.spec import is_predict_spec

    if is_predict_spec(job):  # `predict:` instead of `model:`: a batch prediction job
        from distml.cli.predict import submit_predict_job

        return submit_predict_job(
            job, cluster_url, kind, out, overrides, overwrite, detach, spark_properties, job_id,
            state,
        )  # fmt: skip
    spec = load_spec(job, list(overrides), backend=cluster_url)  # validated before anything runs
    from distml.jobs.runner import run_output

    run_output(spec, out, overwrite)  # a bad run folder is refused before anything starts
    if detach:
        out = (out or default_out(spec)).resolve()
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
            code = submit_spark(
                job, cluster_url, out, list(overrides), state, spark_properties, overwrite
            )
        else:
            with progress_for(err_console) as progress:
                result = submit_dask(
                    job, cluster_url, out, list(overrides), state, progress, overwrite
                )
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
