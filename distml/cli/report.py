"""``distml report``: a run folder as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

import click

from distml.cli.app import main, overwrite_option


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="HTML file to write (default RUN_DIR/report.html).",
)
@overwrite_option
def report(run_dir: Path, out: Path | None, overwrite: bool) -> None:
    """Write one self-contained HTML page for a run folder: metrics, tables and plots."""
    from distml.report import write_report

    click.echo(str(write_report(run_dir, out, overwrite=overwrite)))
