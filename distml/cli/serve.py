"""``distml serve``: saved models over HTTP (MLflow's protocol and the Open Inference Protocol)."""

from __future__ import annotations

import click

from distml.cli.app import main


@main.command()
@click.argument("models", nargs=-1, required=True, metavar="MODEL [MODEL ...]")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port, announced on start).",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes sharing the port, each with its own copy of the models.",
)
@click.option(
    "--timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Seconds a scoring request may take (reading, parsing, scoring): 504 past it.",
)
@click.option(
    "--max-body-mb",
    default=64.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Largest request body in MB: 413 above it.",
)
@click.option(
    "--max-concurrency",
    default=256,
    show_default=True,
    type=click.IntRange(1),
    help="Scoring requests in flight per process: 503 above it.",
)
@click.option("--debug", is_flag=True, help="Access log, and tracebacks in 500 replies.")
def serve(
    models: tuple[str, ...],
    host: str,
    port: int,
    workers: int,
    timeout: float,
    max_body_mb: float,
    max_concurrency: int,
    debug: bool,
) -> None:
    """Serve saved models over HTTP until SIGTERM or Ctrl-C (then exit 0).

    MODEL is a run folder (distml run --out), a model folder or a model.keras file,
    optionally NAME=PATH; by default it is named by its job. Endpoints: MLflow's
    /invocations (the first model, or ?model=NAME), /ping, /health, /version; the Open
    Inference Protocol's /v2/health/live, /v2/health/ready, /v2/models/NAME[/ready|/infer];
    /metrics (Prometheus) and /docs.
    """
    from distml.serve.app import Settings
    from distml.serve.server import serve_models

    settings = Settings(
        timeout=timeout,
        max_body_bytes=int(max_body_mb * 2**20),
        max_concurrency=max_concurrency,
        debug=debug,
    )
    serve_models(
        list(models),
        host=host,
        port=port,
        workers=workers,
        settings=settings,
        announce=lambda line: click.echo(line, err=True),
    )
