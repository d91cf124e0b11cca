"""Batch prediction seconds: ``distml predict`` on each backend vs the floor, MLlib's
``transform`` and dask-ml's ``ParallelPostFit``, on the same files in the same run.

Run by hand (not part of the test suite):

    distml data generate regression --rows 1e7 --features 20 --partitions 64 --out DATA
    python benchmarks/predict_bench.py --data DATA --work WORK --repeat 2

Every candidate runs in a fresh process, interleaved within each repeat; engine
start-up (LocalCluster, SparkSession) is timed apart from the scoring. Scoring is
read → predict → write Parquet, for two outputs: ``--columns all`` (every input
column beside ``prediction``, what MLlib's ``transform`` keeps) and ``--columns none``
(``prediction`` only, what ``ParallelPostFit.predict`` returns). The floor is the
bench's (``distml.bench.child``): every file decoded by pyarrow in one thread per
core, of the columns the candidates read, nothing written. The peers are used the
plain way: MLlib ``spark.read.parquet`` → ``VectorAssembler`` →
``LinearRegressionModel.transform`` → ``write.parquet``; dask-ml ``dd.read_parquet``
→ ``ParallelPostFit(LinearRegression).predict`` → ``assign`` → ``to_parquet``. Every
output's row count and the sum of its predictions are checked against distml's local
output after the run (untimed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

CANDIDATES = ("floor", "distml-local", "distml-dask", "distml-spark", "mllib", "dask-ml")
RESULT = "PREDICT-BENCH "


def _columns(data: str) -> tuple[list[str], list[str]]:
    """(features, every column) of the generated data."""
    first = sorted(Path(data).glob("*.parquet"))[0]
    names = pq.read_schema(first).names
    return [n for n in names if n.startswith("x")], names


# -- candidates (each in a child process) --------------------------------------------------------
def floor(spec: dict[str, Any]) -> dict[str, float]:
    from concurrent.futures import ThreadPoolExecutor

    features, every = _columns(spec["data"])
    columns = every if spec["columns"] == "all" else features
    files = sorted(str(p) for p in Path(spec["data"]).glob("*.parquet"))

    def decode(path: str) -> int:
        return pq.read_table(path, columns=columns, use_threads=False).num_rows

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        sum(pool.map(decode, files))
    return {"startup": 0.0, "score": time.perf_counter() - started}


def distml_candidate(spec: dict[str, Any], name: str) -> dict[str, float]:
    import distml
    from distml.predict.runner import predict

    options: dict[str, Any] = {}
    backend_name = {"distml-local": "local[2]", "distml-dask": "dask", "distml-spark": "spark"}[
        name
    ]
    if name == "distml-dask":
        options = {"workers": 2, "threads": 1}
    elif name == "distml-spark":
        options = {"master": "local[2]", "console_progress": False, "driver_memory": "4g"}
    started = time.perf_counter()
    backend = distml.get_backend(backend_name, **options)
    backend.start()
    startup = time.perf_counter() - started
    try:
        started = time.perf_counter()
        predict(spec["model"], spec["data"], spec["out"], backend, columns=spec["columns"])
        return {"startup": startup, "score": time.perf_counter() - started}
    finally:
        backend.stop()


def mllib(spec: dict[str, Any]) -> dict[str, float]:
    import distml

    started = time.perf_counter()
    backend = distml.get_backend(
        "spark", master="local[2]", console_progress=False, driver_memory="4g"
    )
    backend.start()
    spark = backend.spark
    startup = time.perf_counter() - started
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import LinearRegression

    features, _ = _columns(spec["data"])
    assembler = VectorAssembler(inputCols=features, outputCol="features")
    sample = sorted(Path(spec["data"]).glob("*.parquet"))[0]  # the model: fitted untimed
    model = LinearRegression(labelCol="y").fit(assembler.transform(spark.read.parquet(str(sample))))
    started = time.perf_counter()
    frame = model.transform(assembler.transform(spark.read.parquet(spec["data"])))
    frame = frame.drop("features") if spec["columns"] == "all" else frame.select("prediction")
    frame.write.mode("overwrite").parquet(spec["out"])
    seconds = time.perf_counter() - started
    backend.stop()
    return {"startup": startup, "score": seconds}


def dask_ml(spec: dict[str, Any]) -> dict[str, float]:
    import warnings

    import dask.dataframe as dd
    from dask_ml.wrappers import ParallelPostFit
    from distributed import Client, LocalCluster
    from sklearn.linear_model import LinearRegression

    import distml

    warnings.simplefilter("ignore")
    fitted = distml.load_model(spec["model"])
    estimator = LinearRegression()  # distml's coefficients in scikit-learn's model
    estimator.coef_, estimator.intercept_ = fitted.coef_, fitted.intercept_
    estimator.n_features_in_ = len(fitted.coef_)
    started = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0")
    client = Client(cluster)
    startup = time.perf_counter() - started
    try:
        features, _ = _columns(spec["data"])
        started = time.perf_counter()
        frame = dd.read_parquet(spec["data"])
        prediction = ParallelPostFit(estimator).predict(frame[features])
        if spec["columns"] == "all":
            out = frame.assign(prediction=prediction)
        else:
            out = dd.from_dask_array(prediction, columns=["prediction"])
        out.to_parquet(spec["out"], write_index=False)
        return {"startup": startup, "score": time.perf_counter() - started}
    finally:
        client.close()
        cluster.close()


def child(spec: dict[str, Any]) -> dict[str, float]:
    name = spec["candidate"]
    if name == "floor":
        return floor(spec)
    if name.startswith("distml-"):
        return distml_candidate(spec, name)
    return mllib(spec) if name == "mllib" else dask_ml(spec)


# -- the driver ----------------------------------------------------------------------------------
def check(out: Path) -> tuple[int, float]:
    """Rows and the sum of ``prediction`` over an output folder (untimed)."""
    rows, total = 0, 0.0
    for path in sorted(out.rglob("*.parquet")):
        column = pq.read_table(path, columns=["prediction"]).column(0).to_numpy()
        rows += len(column)
        total += float(np.sum(column))
    return rows, total


def run_one(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"status": "timeout"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT):
            result = json.loads(line[len(RESULT) :])
            result["wall"] = time.perf_counter() - started
            return result
    return {"status": "error", "error": proc.stderr.strip().splitlines()[-3:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--work", type=Path, default=Path("bench-out/predict"))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--columns", default="all,none")
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(RESULT + json.dumps(child(json.loads(args.child))), flush=True)
        return
    import distml

    data = str(args.data.resolve())
    args.work.mkdir(parents=True, exist_ok=True)
    model = args.work / "model"
    if not model.exists():  # the linear model every candidate applies: fitted on one file
        first = sorted(args.data.glob("*.parquet"))[0]
        frame = pq.read_table(first).to_pandas()
        features = [c for c in frame.columns if c.startswith("x")]
        distml.LinearRegression().fit(frame[features], frame["y"]).save(model)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    checks: dict[tuple[str, str], tuple[int, float]] = {}
    for repeat in range(args.repeat):
        for columns in args.columns.split(","):
            for name in args.candidates.split(","):
                out = args.work / f"out-{name}-{columns}"
                shutil.rmtree(out, ignore_errors=True)
                spec = {"candidate": name, "data": data, "model": str(model), "out": str(out),
                        "columns": columns}  # fmt: skip
                result = run_one(spec, args.timeout)
                print(f"repeat {repeat} columns={columns} {name}: {result}", flush=True)
                results.setdefault((columns, name), []).append(result)
                if out.exists():
                    checks[(columns, name)] = check(out)
                    shutil.rmtree(out, ignore_errors=True)
    print(
        "\n| columns | candidate | start-up s | score s (median) | × floor | rows | Σ prediction |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for columns in args.columns.split(","):
        floors = [r["score"] for r in results.get((columns, "floor"), []) if "score" in r]
        base = statistics.median(floors) if floors else float("nan")
        for name in args.candidates.split(","):
            runs = [r for r in results[(columns, name)] if "score" in r]
            if not runs:
                status = results[(columns, name)][0].get("status")
                print(f"| {columns} | {name} | | {status} | | | |")
                continue
            score = statistics.median(r["score"] for r in runs)
            startup = statistics.median(r["startup"] for r in runs)
            rows, total = checks.get((columns, name), (0, float("nan")))
            print(
                f"| {columns} | {name} | {startup:.2f} | {score:.2f} | {score / base:.2f} | "
                f"{rows if name != 'floor' else ''} | {total if name != 'floor' else ''} |"
            )


if __name__ == "__main__":
    main()
