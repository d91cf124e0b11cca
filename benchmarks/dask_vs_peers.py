"""Read + fit seconds on Dask: distml (native) vs dask-ml called directly vs scikit-learn.

Run by hand (not part of the test suite):

    python benchmarks/dask_vs_peers.py --rows 2e6 --features 20 --partitions 16 --workers 2 --repeat 2

distml and dask-ml share one LocalCluster (worker processes, 1 thread each), started
before timing; scikit-learn runs in this process. dask-ml is used the plain way:
``dd.read_parquet`` → ``to_dask_array(lengths=True)`` → ``persist`` → estimator with
its defaults. Candidates are interleaved within each repeat; compare the ratios.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
from common import dataset, distml_run, interleaved, median, sklearn_run
from distributed import Client, LocalCluster
from sklearn.metrics import accuracy_score, r2_score


def dask_ml_run(path: Path, features: list[str], task: str, client: Client) -> dict[str, float]:
    import dask.dataframe as dd
    from dask_ml import cluster, linear_model

    with client.as_current(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        frame = dd.read_parquet(str(path), columns=features + ["y"])
        array = frame.to_dask_array(lengths=True).persist()
        X, y = array[:, :-1], array[:, -1]
        X.compute_chunk_sizes()
        read = time.perf_counter() - start
        if task == "linreg":
            model = linear_model.LinearRegression().fit(X, y)
        elif task == "logreg":
            model = linear_model.LogisticRegression().fit(X, y.astype(int))
        else:
            model = cluster.KMeans(n_clusters=5, random_state=0).fit(X)
        total = time.perf_counter() - start
        # quality, untimed: scikit-learn's metrics on the gathered arrays
        if task == "kmeans":
            quality = float(model.inertia_)
        else:
            truth, predicted = np.asarray(y), np.asarray(model.predict(X))
            score = r2_score if task == "linreg" else accuracy_score
            quality = float(score(truth.astype(int) if task == "logreg" else truth, predicted))
    return {"total": total, "read": read, "fit": total - read, "quality": quality}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=2e6)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--tasks", default="linreg,logreg,kmeans")
    parser.add_argument("--data", type=Path, default=Path("bench-out/data"))
    args = parser.parse_args()
    rows = int(args.rows)
    cluster = LocalCluster(
        n_workers=args.workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        scheduler_kwargs={"dashboard": False},
        silence_logs=logging.ERROR,
    )
    client = Client(cluster, set_as_default=False)
    address = cluster.scheduler_address
    print(
        f"# {rows:,} rows x {args.features} features in {args.partitions} files, "
        f"{args.workers} Dask workers, {args.repeat} repeats (median seconds)\n"
    )
    print(
        "| task | scikit-learn | dask-ml | distml-dask (native) | distml read / fit "
        "| dask-ml / distml | distml / sklearn | quality sklearn / dask-ml / distml |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    try:
        for task in args.tasks.split(","):
            path = dataset(task, rows, args.features, args.partitions, args.data)
            features = [f"x{j}" for j in range(args.features)]
            runs = interleaved(
                {
                    "sklearn": partial(sklearn_run, path, features, task),
                    "dask-ml": partial(dask_ml_run, path, features, task, client),
                    "distml": partial(distml_run, path, task, address),
                },
                args.repeat,
            )
            sk, dm, ours = runs["sklearn"], runs["dask-ml"], runs["distml"]
            print(
                f"| {task} | {median(sk):.2f} | {median(dm):.2f} | {median(ours):.2f} "
                f"| {median(ours, 'read'):.2f} / {median(ours, 'fit'):.2f} "
                f"| {median(dm) / median(ours):.1f}x | {median(ours) / median(sk):.2f}x "
                f"| {sk[0]['quality']:.6g} / {dm[0]['quality']:.6g} / {ours[0]['quality']:.6g} |",
                flush=True,
            )
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
