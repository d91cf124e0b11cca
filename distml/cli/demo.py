"""``distml demo``: the article's examples, printed in the article's own words."""

from __future__ import annotations

from pathlib import Path

import click

from distml.cli.app import main


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("distml-demo"),
    show_default=True,
    help="Folder for the example data and run folders.",
)
@click.option("--backend", default="local", show_default=True)
@click.option(
    "--mnist",
    "mnist_source",
    default=None,
    help="Also run example 4 (Keras MNIST): a folder of MNIST IDX files, or 'keras' to "
    "download them with keras.datasets.mnist.",
)
def demo(out: Path, backend: str, mnist_source: str | None) -> None:
    """Run the article's examples 1-3 (4 with --mnist) and print what its code prints."""
    from distml.demo import (
        EXAMPLE_OF,
        article_lines,
        article_reference,
        article_values,
        compare,
        demo_specs,
    )
    from distml.jobs import run_job

    titles = {1: "linear regression", 2: "logistic regression", 3: "k-means clustering"}
    for spec in demo_specs(out, backend):
        number = EXAMPLE_OF[spec.name]
        result = run_job(spec, out / "runs" / spec.name, overwrite=True)
        labels = _labels(result.predictions) if spec.name == "kmeans" else None
        values = article_values(spec.name, result.summary, labels)
        click.echo(f"Example {number}: {titles[number]} (jobs/{spec.name.replace('-', '_')}.yaml)")
        for line in article_lines(spec.name, values):
            click.echo(line)
        reference = article_reference(spec.name)
        if reference is not None:
            click.echo("The article's code run with scikit-learn on the same arrays:")
            for line in compare(values, reference):
                click.echo(line)
        if spec.name == "kmeans":
            click.echo(f"Plot (red x at the centres): {result.out / 'clusters.png'}")
        click.echo(f"Run folder: {result.out}\n")
    if mnist_source is None:
        click.echo("Example 4 (Keras MNIST): run distml demo --mnist DIR (a folder of IDX files)")
        return
    _mnist_example(out, mnist_source)


def _labels(files: list[str]) -> list[int]:
    import pyarrow.parquet as pq

    return [
        v for path in sorted(files) for v in pq.read_table(path).column("prediction").to_pylist()
    ]


def _mnist_example(out: Path, source: str) -> None:
    """Example 4: the seed's network for 2 epochs with batch 32 (MirroredStrategy)."""
    from distml.data.mnist import write_mnist
    from distml.jobs import parse_spec, run_job

    data = out / "data" / "mnist"
    if not (data / "train").exists():
        write_mnist(data, source, overwrite=True)
    spec = parse_spec(
        {
            "name": "mnist",
            "model": {"type": "keras", "params": {"architecture": "mlp"}},
            "data": {"train": "data/mnist/train", "test": "data/mnist/test", "label": "label"},
            "train": {"epochs": 2, "batch_size": 32},
        },
        source="demo:mnist",
        base_dir=out,
    )
    click.echo("Example 4: Keras neural network on MNIST (jobs/mnist_mirrored.yaml)")
    result = run_job(spec, out / "runs" / "mnist", overwrite=True)
    click.echo(f"Test accuracy: {result.summary['accuracy']}")
    click.echo(f"Run folder: {result.out}")
