"""Read + fit seconds on Spark: distml (mllib and native solvers) vs MLlib used directly.

Run by hand (not part of the test suite):

    python benchmarks/spark_vs_mllib.py --rows 2e6 --features 20 --partitions 16 --repeat 2

One ``local[2]`` SparkSession, started before timing, serves every candidate. MLlib
"the plain way" is ``spark.read.parquet`` → ``VectorAssembler`` → the estimator with
its defaults (MLlib caches its input itself). distml's candidates include starting
their partition service (native) or reading and caching the assembled frame (mllib).
Candidates are interleaved within each repeat; compare the ratios.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

from common import dataset, distml_run, interleaved, median

import distml


def mllib_run(spark, path: Path, features: list[str], task: str) -> dict[str, float]:
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import LinearRegression

    start = time.perf_counter()
    frame = spark.read.parquet(str(path))
    frame = VectorAssembler(inputCols=features, outputCol="features").transform(frame)
    if task == "linreg":
        model = LinearRegression(labelCol="y").fit(frame)
        quality = model.summary.r2
    elif task == "logreg":
        model = LogisticRegression(labelCol="y").fit(frame)
        quality = model.summary.accuracy
    else:
        model = KMeans(k=5, seed=0).fit(frame)
        quality = model.summary.trainingCost
    total = time.perf_counter() - start
    return {"total": total, "read": float("nan"), "fit": float("nan"), "quality": float(quality)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=2e6)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--tasks", default="linreg,logreg,kmeans")
    parser.add_argument("--data", type=Path, default=Path("bench-out/data"))
    args = parser.parse_args()
    rows = int(args.rows)
    session = distml.get_backend("spark", master=args.master, console_progress=False)
    session.start()  # the JVM starts once, untimed; every candidate attaches to it
    print(
        f"# {rows:,} rows x {args.features} features in {args.partitions} files, "
        f"Spark {args.master}, {args.repeat} repeats (median seconds)\n"
    )
    print(
        "| task | MLlib direct | distml mllib | distml native | native read / fit "
        "| mllib / direct | direct / native | quality direct / mllib / native |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    try:
        for task in args.tasks.split(","):
            path = dataset(task, rows, args.features, args.partitions, args.data)
            features = [f"x{j}" for j in range(args.features)]
            runs = interleaved(
                {
                    "direct": partial(mllib_run, session.spark, path, features, task),
                    "mllib": partial(distml_run, path, task, "spark", "mllib"),
                    "native": partial(distml_run, path, task, "spark", "native"),
                },
                args.repeat,
            )
            direct, ours_mllib, ours_native = runs["direct"], runs["mllib"], runs["native"]
            print(
                f"| {task} | {median(direct):.2f} | {median(ours_mllib):.2f} "
                f"| {median(ours_native):.2f} | {median(ours_native, 'read'):.2f} / "
                f"{median(ours_native, 'fit'):.2f} | {median(ours_mllib) / median(direct):.2f}x "
                f"| {median(direct) / median(ours_native):.1f}x | {direct[0]['quality']:.6g} / "
                f"{ours_mllib[0]['quality']:.6g} / {ours_native[0]['quality']:.6g} |",
                flush=True,
            )
    finally:
        session.stop()


if __name__ == "__main__":
    main()
