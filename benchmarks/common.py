"""Pieces shared by the benchmark scripts: datasets, timed candidates, the table."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn import cluster, linear_model

import distml
from distml.data.generate import Recipe, generate

KINDS = {"linreg": "regression", "logreg": "classification", "kmeans": "blobs"}
SKLEARN = {
    "linreg": lambda: linear_model.LinearRegression(),
    "logreg": lambda: linear_model.LogisticRegression(),
    "kmeans": lambda: cluster.KMeans(n_clusters=5, random_state=0),
}
DISTML = {
    "linreg": lambda: distml.LinearRegression(),
    "logreg": lambda: distml.LogisticRegression(),
    "kmeans": lambda: distml.KMeans(n_clusters=5, random_state=0),
}


def dataset(task: str, rows: int, features: int, partitions: int, root: Path) -> Path:
    """The benchmark's Parquet folder for ``task``, generated once and reused."""
    kind = KINDS[task]
    path = root / f"{kind}-{rows}x{features}-p{partitions}"
    if not path.exists():
        generate(Recipe(kind, rows=rows, features=features, partitions=partitions, seed=0), path)
    return path


def read_matrix(path: Path, features: list[str]) -> tuple[np.ndarray, np.ndarray]:
    table = pq.read_table(path)
    X = np.column_stack([table.column(f).to_numpy() for f in features])
    return X, table.column("y").to_numpy()


def floor(path: Path, features: list[str], task: str) -> dict[str, float]:
    """A bare pyarrow read into one float64 matrix."""
    start = time.perf_counter()
    read_matrix(path, features)
    return {"total": time.perf_counter() - start}


def sklearn_run(path: Path, features: list[str], task: str) -> dict[str, float]:
    start = time.perf_counter()
    X, y = read_matrix(path, features)
    read = time.perf_counter() - start
    model = SKLEARN[task]()
    model.fit(X) if task == "kmeans" else model.fit(X, y)
    total = time.perf_counter() - start
    quality = model.inertia_ if task == "kmeans" else model.score(X, y)
    return {"total": total, "read": read, "fit": total - read, "quality": float(quality)}


def distml_run(path: Path, task: str, backend: str, solver: str = "auto") -> dict[str, float]:
    start = time.perf_counter()
    ds = distml.Dataset(path, label="y")
    with distml.get_backend(backend) as engine:
        data = engine.load(ds, solver=solver)
        read = time.perf_counter() - start
        model = engine.fit(DISTML[task]().set_params(solver=solver), data)
        total = time.perf_counter() - start
        if task == "kmeans":
            quality = model.inertia_
        else:
            quality = engine.evaluate(model, data.train)["r2" if task == "linreg" else "accuracy"]
    return {"total": total, "read": read, "fit": total - read, "quality": float(quality)}


def interleaved(
    candidates: dict[str, Callable[[], dict[str, float]]], repeat: int
) -> dict[str, list[dict[str, float]]]:
    """Run every candidate once per repeat, in turn, so drift hits all alike."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in candidates}
    for _ in range(repeat):
        for name, run in candidates.items():
            gc.collect()
            runs[name].append(run())
    return runs


def median(runs: list[dict[str, float]], key: str = "total") -> float:
    return statistics.median(r[key] for r in runs)
