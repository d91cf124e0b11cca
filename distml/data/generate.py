"""Synthetic partitioned Parquet datasets, written chunk by chunk in bounded memory.

Each partition draws from its own generator seeded by ``(seed, partition)``, so
the output is deterministic and partitions can be written in parallel. The true
parameters (coefficients, centres) go to ``_truth.json`` beside the files
(ignored when reading, like every ``_``-prefixed file).
"""

from __future__ import annotations

import functools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from distml.data.arrow import arrow_array
from distml.data.storage import Location, writable
from distml.errors import DataError
from distml.outputs import output_dir

KINDS = ("regression", "classification", "blobs")
CHUNK_ROWS = 1 << 17
LABEL = "y"


@dataclass(frozen=True)
class Recipe:
    """What to generate: kind, size and the random seed."""

    kind: str
    rows: int
    features: int = 20
    partitions: int = 4
    seed: int = 0
    classes: int = 2
    centers: int = 5
    noise: float = 1.0
    truth: dict[str, Any] = field(default_factory=dict, compare=False)

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise DataError(f"unknown dataset kind '{self.kind}'; choose one of {', '.join(KINDS)}")
        for name in ("rows", "features", "partitions"):
            if getattr(self, name) < 1:
                raise DataError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.partitions > self.rows:
            raise DataError(f"--partitions ({self.partitions}) exceeds --rows ({self.rows})")
        if self.kind == "classification" and self.classes < 2:
            raise DataError(f"--classes must be >= 2, got {self.classes}")
        if self.kind == "blobs" and self.centers < 1:
            raise DataError(f"--centers must be >= 1, got {self.centers}")


def true_parameters(recipe: Recipe) -> dict[str, Any]:
    """The generating parameters, drawn from a stream independent of the partitions."""
    rng = np.random.default_rng([recipe.seed, 1 << 31])
    d = recipe.features
    if recipe.kind == "regression":
        return {"coef": rng.normal(0.0, 2.0, d).tolist(), "intercept": float(rng.normal(0, 2))}
    if recipe.kind == "classification":
        k = 1 if recipe.classes == 2 else recipe.classes
        return {
            "coef": rng.normal(0.0, 1.0, (k, d)).tolist(),
            "intercept": rng.normal(0.0, 0.5, k).tolist(),
            "classes": list(range(recipe.classes)),
        }
    return {"centers": rng.uniform(-10.0, 10.0, (recipe.centers, d)).tolist(), "cluster_std": 1.0}


def _chunk(recipe: Recipe, truth: dict[str, Any], rng: np.random.Generator, n: int) -> pa.Table:
    d = recipe.features
    if recipe.kind == "blobs":
        centers = np.asarray(truth["centers"])
        label = rng.integers(0, len(centers), n)
        X = centers[label] + rng.standard_normal((n, d))
        y: np.ndarray = label.astype(np.int64)
    else:
        X = rng.standard_normal((n, d))
        coef = np.asarray(truth["coef"])
        if recipe.kind == "regression":
            y = X @ coef + truth["intercept"] + recipe.noise * rng.standard_normal(n)
        elif recipe.classes == 2:
            z = X @ coef[0] + truth["intercept"][0]
            y = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(np.int64)
        else:
            scores = X @ coef.T + np.asarray(truth["intercept"]) + rng.gumbel(size=(n, len(coef)))
            y = scores.argmax(axis=1).astype(np.int64)
    columns = [arrow_array(X[:, j]) for j in range(d)] + [arrow_array(y)]
    return pa.Table.from_arrays(columns, names=[*(f"x{j}" for j in range(d)), LABEL])


def _write_partition(
    recipe: Recipe,
    truth: dict[str, Any],
    out: str | Location,
    sizes: list[int],
    first_stream: int,
    p: int,
) -> str:
    """Write partition ``p`` (runs wherever it is sent: a thread, a Dask worker, a Spark task)."""
    rows = sizes[p]
    rng = np.random.default_rng([recipe.seed, first_stream + p])
    fs, path = writable(out, f"part-{p:05d}.parquet")
    with pq.ParquetWriter(path, _schema(recipe), filesystem=fs) as writer:
        for start in range(0, rows, CHUNK_ROWS):
            writer.write_table(_chunk(recipe, truth, rng, min(CHUNK_ROWS, rows - start)))
    return path


def _schema(recipe: Recipe) -> pa.Schema:
    label_type = pa.float64() if recipe.kind == "regression" else pa.int64()
    fields = [pa.field(f"x{j}", pa.float64()) for j in range(recipe.features)]
    return pa.schema(fields + [pa.field(LABEL, label_type)])


def generate(
    recipe: Recipe,
    out: str | os.PathLike[str],
    overwrite: bool = False,
    threads: int | None = None,
    backend: Any = None,
    first_stream: int = 0,
) -> Path | str:
    """Write the dataset into the folder or ``s3://`` prefix ``out`` (atomically) and
    return it.

    Partitions are written by ``threads`` here, or in parallel by a started
    ``backend``'s workers (which must see ``out``). ``first_stream`` shifts the
    partitions' random streams: the same truth with other rows (a held-out set).
    """
    recipe.validate()
    output = output_dir(out, "dataset", overwrite=overwrite)
    with output as tmp:
        truth = true_parameters(recipe)
        sizes = np.diff(np.linspace(0, recipe.rows, recipe.partitions + 1).astype(np.int64))
        write = functools.partial(
            _write_partition, recipe, truth, output.shared, [int(s) for s in sizes], first_stream
        )
        if backend is not None:
            backend.run_tasks(write, list(range(recipe.partitions)))
        else:
            workers = threads or min(os.cpu_count() or 1, recipe.partitions)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(write, range(recipe.partitions)))
        meta = {
            "kind": recipe.kind,
            "rows": recipe.rows,
            "features": recipe.features,
            "partitions": recipe.partitions,
            "seed": recipe.seed,
            "label": LABEL,
            **truth,
        }
        (tmp / "_truth.json").write_text(json.dumps(meta, indent=2))
    return output.final
