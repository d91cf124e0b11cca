"""SHAP on many rows: distml's exact linear SHAP on each engine vs the shap library.

    python benchmarks/shap_bench.py --rows 1e7 --data /tmp/shap-bench/data

Generates (or reuses) a regression dataset, fits linear regression once (local), then
times ``write_shap`` (background mean + one pass over every row: values, mean |SHAP|) on
local, Dask (a 2-worker LocalCluster) and Spark (local[2]), each after its own read, and
``shap.LinearExplainer(model, Independent(X, max_samples=n)).shap_values(X)`` on the same
rows held in memory (read time reported separately). Prints one JSON line per candidate
and the largest difference of mean |SHAP| from shap's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=float, default=1e7)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--data", default="/tmp/shap-bench/data")
    parser.add_argument("--backends", default="local,dask,spark,shap")
    args = parser.parse_args()
    from distml import Dataset, LinearRegression, get_backend
    from distml.data.generate import Recipe, generate
    from distml.interpret import write_shap

    data = Path(args.data)
    if not data.exists():
        generate(Recipe(kind="regression", rows=int(args.rows), features=args.features,
                        partitions=32, seed=0), str(data))  # fmt: skip
    ds = Dataset(str(data), "y")
    with get_backend("local") as local:
        model = local.fit(LinearRegression(), local.load(ds))
    results = {}
    for name in args.backends.split(","):
        if name == "shap":
            import pyarrow.parquet as pq
            import shap

            started = time.perf_counter()
            X = np.column_stack([
                pq.read_table(str(data), columns=[f]).column(0).to_numpy() for f in ds.features
            ])  # fmt: skip
            read = time.perf_counter() - started
            started = time.perf_counter()
            masker = shap.maskers.Independent(X, max_samples=len(X))
            phi = shap.LinearExplainer(model, masker).shap_values(X)
            mean_abs = np.abs(phi).mean(axis=0)
            seconds = time.perf_counter() - started
            results[name] = mean_abs
            print(json.dumps({"candidate": "shap", "rows": len(X), "read_seconds": read,
                              "shap_seconds": seconds}), flush=True)  # fmt: skip
            del X, phi
            continue
        target = {"dask": "dask", "spark": "spark", "local": "local"}[name]
        options = {"workers": 2, "threads": 1} if name == "dask" else {}
        if name == "spark":
            options = {"master": "local[2]", "driver_memory": "8g"}
        with get_backend(target, **options) as backend:
            started = time.perf_counter()
            rows = backend.load(ds).train
            read = time.perf_counter() - started
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                info = write_shap(backend, model, rows, Path(tmp), plots_too=False)
                seconds = time.perf_counter() - started
        results[name] = np.array([r["mean_abs_shap"] for r in info["rows"]])
        print(json.dumps({"candidate": name, "rows": info["explained_rows"],
                          "read_seconds": read, "shap_seconds": seconds}), flush=True)  # fmt: skip
    if "shap" in results:
        for name, values in results.items():
            diff = float(np.max(np.abs(values - results["shap"]) / np.abs(results["shap"])))
            print(json.dumps({"candidate": name, "max_rel_diff_mean_abs_vs_shap": diff}))


if __name__ == "__main__":
    main()
