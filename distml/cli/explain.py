"""``distml explain``: SHAP values of a saved model over a Parquet dataset."""

from __future__ import annotations

from pathlib import Path

import click

from distml.cli.app import console, err_console, main, overwrite_option
from distml.display import progress_for


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", required=True, help="Parquet folder, file or URL of the rows to explain.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Folder to write.")
@click.option("--backend", default="local", show_default=True, help="local[N], dask, spark, URL.")
@click.option("--background", help="Rows whose mean is the baseline (default: --data itself).")
@click.option("--rows/--no-rows", default=True, help="Write per-row SHAP values (shap/).")
@click.option("--plot-rows", default=1000, show_default=True, help="Rows drawn in the plot.")
@click.option("--samples", default=20, show_default=True, help="Keras: images explained.")
@click.option("--coalitions", default=1000, show_default=True, help="Keras: coalitions per image.")
@overwrite_option
def explain(
    model: Path,
    data: str,
    out: Path | None,
    backend: str,
    background: str | None,
    rows: bool,
    plot_rows: int,
    samples: int,
    coalitions: int,
    overwrite: bool,
) -> None:
    """Explain MODEL (a model folder or a run folder) with SHAP values of every row of DATA
    (a Keras model: kernel SHAP of a deterministic sample of its images)."""
    from distml.interpret.command import explain_model

    with progress_for(err_console) as progress:
        folder, info = explain_model(
            model, data, out, backend, background, rows, plot_rows, overwrite, progress,
            samples=samples, coalitions=coalitions,
        )  # fmt: skip
    console.print(
        f"SHAP ({info['method']}, {info['output']}): {info['explained_rows']:,} rows explained "
        f"against {info['background']['rows']:,} background rows"
    )
    if "rows" in info:  # per-feature summary rows (linear models, k-means)
        for row in sorted(info["rows"], key=lambda r: -r["mean_abs_shap"])[:5]:
            where = f" [{row['output']}]" if "output" in row else ""
            console.print(f"  {row['feature']}{where}: mean |SHAP| {row['mean_abs_shap']:.6g}")
    else:  # images: the pixels that matter most to each class
        for top in info["top_pixels"][:3]:
            console.print(f"  class {top['class']}: top pixels {top['pixels'][:5]}")
    console.print(f"  folder: {folder}")
