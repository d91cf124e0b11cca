"""Read + fit seconds: distml's native solvers on the local backend vs scikit-learn.

Run by hand (not part of the test suite):

    python benchmarks/native_vs_sklearn.py --rows 2000000 --features 20 --partitions 16 --repeat 3

Candidates are interleaved within each repeat so machine drift hits all alike;
the table reports medians and the ratio to scikit-learn (what to compare: this
machine is shared and noisy). The floor is a bare pyarrow read of the same
files into one float64 matrix.
"""

from __future__ import annotations

import argparse
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

TASKS = {
    "linreg": (
        "regression",
        lambda: linear_model.LinearRegression(),
        lambda: distml.LinearRegression(),
    ),
    "logreg": (
        "classification",
        lambda: linear_model.LogisticRegression(),
        lambda: distml.LogisticRegression(),
    ),
    "kmeans": (
        "blobs",
        lambda: cluster.KMeans(n_clusters=5, random_state=0),
        lambda: distml.KMeans(n_clusters=5, random_state=0),
    ),
}


def dataset(kind: str, rows: int, features: int, partitions: int, root: Path) -> Path:
    path = root / f"{kind}-{rows}x{features}-p{partitions}"
    if not path.exists():
        generate(Recipe(kind, rows=rows, features=features, partitions=partitions, seed=0), path)
    return path


def read_matrix(path: Path, features: list[str]) -> tuple[np.ndarray, np.ndarray]:
    table = pq.read_table(path)
    X = np.column_stack([table.column(f).to_numpy() for f in features])
    return X, table.column("y").to_numpy()


def floor(path: Path, features: list[str]) -> dict[str, float]:
    start = time.perf_counter()
    read_matrix(path, features)
    return {"total": time.perf_counter() - start}


def sklearn_run(path: Path, features: list[str], make: Callable, task: str) -> dict[str, float]:
    start = time.perf_counter()
    X, y = read_matrix(path, features)
    read = time.perf_counter() - start
    model = make()
    model.fit(X) if task == "kmeans" else model.fit(X, y)
    total = time.perf_counter() - start
    quality = model.inertia_ if task == "kmeans" else model.score(X, y)
    return {"total": total, "read": read, "fit": total - read, "quality": float(quality)}


def distml_run(path: Path, make: Callable, task: str, backend: str) -> dict[str, float]:
    start = time.perf_counter()
    ds = distml.Dataset(path, label="y")
    with distml.get_backend(backend) as engine:
        data = engine.load(ds)
        read = time.perf_counter() - start
        model = engine.fit(make(), data)
        total = time.perf_counter() - start
        if task == "kmeans":
            quality = model.inertia_
        elif task == "linreg":
            quality = engine.evaluate(model, data.train)["r2"]
        else:
            quality = engine.evaluate(model, data.train)["accuracy"]
    return {"total": total, "read": read, "fit": total - read, "quality": float(quality)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=2e6)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tasks", default="linreg,logreg,kmeans")
    parser.add_argument("--backend", default="local")
    parser.add_argument("--data", type=Path, default=Path("bench-out/data"))
    args = parser.parse_args()
    rows = int(args.rows)
    print(
        f"# {rows:,} rows x {args.features} features in {args.partitions} files, "
        f"backend {args.backend}, {args.repeat} repeats (median seconds)\n"
    )
    print(
        "| task | floor (pyarrow read) | scikit-learn read+fit | distml native read+fit "
        "| native / sklearn | native read / fit | quality sklearn / native |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for task in args.tasks.split(","):
        kind, make_sklearn, make_distml = TASKS[task]
        path = dataset(kind, rows, args.features, args.partitions, args.data)
        features = [f"x{j}" for j in range(args.features)]
        runs: dict[str, list[dict[str, float]]] = {"floor": [], "sklearn": [], "native": []}
        for _ in range(args.repeat):
            for name in runs:
                gc.collect()
                if name == "floor":
                    runs[name].append(floor(path, features))
                elif name == "sklearn":
                    runs[name].append(sklearn_run(path, features, make_sklearn, task))
                else:
                    runs[name].append(distml_run(path, make_distml, task, args.backend))

        def med(name: str, key: str = "total", runs: dict = runs) -> float:
            return statistics.median(r[key] for r in runs[name])

        print(
            f"| {task} | {med('floor'):.2f} | {med('sklearn'):.2f} | {med('native'):.2f} "
            f"| {med('native') / med('sklearn'):.2f}x | {med('native', 'read'):.2f} / "
            f"{med('native', 'fit'):.2f} | {runs['sklearn'][0]['quality']:.6g} / "
            f"{runs['native'][0]['quality']:.6g} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
