"""``distml data``: synthetic partitioned Parquet, the seed's examples and MNIST."""

from __future__ import annotations

import math
from pathlib import Path

import click

from distml.cli.app import console, main, overwrite_option

#: The most rows ``data generate`` accepts (a trillion: far past any disk here).
MAX_ROWS = 10**12


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
@overwrite_option
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
    from distml.outputs import check_output

    if not math.isfinite(rows) or rows != int(rows) or not 1 <= rows <= MAX_ROWS:
        raise click.BadParameter(
            f"{rows:g} is not a whole number of rows between 1 and {MAX_ROWS:.0e}",
            param_hint="--rows",
        )
    recipe = Recipe(
        kind=kind,
        rows=int(rows),
        features=features,
        partitions=partitions,
        seed=seed,
        classes=classes,
        centers=centers,
    )
    recipe.validate()
    check_output(out, "dataset folder", overwrite)  # before any engine starts
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
@overwrite_option
def data_examples(out: Path, overwrite: bool) -> None:
    """Write the seed's examples 1-3 as Parquet (out/example1 ... example3)."""
    from distml.data.examples import write_examples

    for path in write_examples(out, overwrite=overwrite):
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
@overwrite_option
def data_mnist(out: Path, source: str, partitions: int, overwrite: bool) -> None:
    """Write MNIST as partitioned Parquet: out/train and out/test (pixels, label, index)."""
    from distml.data.mnist import write_mnist

    with console.status(f"writing MNIST from {source}"):
        path = write_mnist(out, source, partitions, overwrite=overwrite)
    for split in ("train", "test"):
        console.print(f"wrote {path / split}")
