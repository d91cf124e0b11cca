"""One benchmark run, in its own process: ``python -m distml.bench.child < run.json``.

It starts what the candidate needs (a LocalCluster, a SparkSession, or nothing),
reads the data, fits, and scores the model on held-out rows; it prints one JSON
line with the seconds of each phase. Peers are used the plain way a user would:
scikit-learn on a pyarrow-read matrix, dask-ml on ``dd.read_parquet`` arrays,
MLlib on ``spark.read.parquet`` + ``VectorAssembler`` with their defaults.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from typing import Any

import numpy as np
import pyarrow.parquet as pq

LABEL = "y"
# Spark's 1 GB default heap is too small for MLlib at 10M rows; both Spark candidates get this
SPARK_DRIVER_MEMORY = "8g"


def read_matrix(path: str, features: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A folder's features and label, as a scikit-learn user reads them (``pq.read_table``)."""
    table = pq.read_table(path, columns=[*features, LABEL])
    X = np.column_stack([table.column(f).to_numpy() for f in features])
    return X, table.column(LABEL).to_numpy()


def read_holdout(path: str, features: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The held-out rows, read by distml's planner and reader: ``pq.read_table`` on a folder
    goes through ``pyarrow.dataset`` and ``to_numpy``, which import pandas — ~100 MB that
    every candidate's process would carry (distml's own runs never import it)."""
    from distml.data.dataset import Dataset
    from distml.data.reader import read_matrix as read_partition

    dataset = Dataset(path, label=LABEL, features=features)
    parts = [read_partition(dataset.uri, spec, features, LABEL) for spec in dataset.partitions]
    return np.concatenate([X for X, _ in parts]), np.concatenate([y for _, y in parts])


def quality(task: str, predict: Any, centers: Any, holdout: tuple[np.ndarray, np.ndarray]) -> float:
    """MSE (linreg), accuracy (logreg) or inertia (kmeans) on the held-out rows."""
    X, y = holdout
    if task == "kmeans":
        C = np.asarray(centers)
        d2 = (X * X).sum(1)[:, None] - 2 * X @ C.T + (C * C).sum(1)
        return float(np.maximum(d2, 0).min(axis=1).sum())
    predicted = np.asarray(predict(X))
    if task == "linreg":
        return float(np.mean((predicted - y) ** 2))
    return float(np.mean(predicted == y))


def run(spec: dict[str, Any]) -> dict[str, Any]:
    task, kind = spec["task"], spec["candidate"]["kind"]
    if task == "mnist":
        return _floor(spec, ["pixels", "label"]) if kind == "floor" else _keras(spec)
    features = [f"x{j}" for j in range(spec["features"])]
    runner = {
        "floor": lambda spec, features: _floor(spec, [*features, LABEL]),
        "sklearn": _sklearn,
        "distml": _distml,
        "dask-ml": _dask_ml,
        "mllib": _mllib,
    }[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peers' convergence and deprecation chatter
        result = runner(spec, features)
    if "predict" in result or "centers" in result:
        # read after the run, its engine stopped: the candidate's peak memory is its own
        holdout = read_holdout(spec["holdout"], features)
        result["quality"] = quality(
            task, result.pop("predict", None), result.pop("centers", None), holdout
        )
    return result


def _floor(spec: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """The least any reader can take: every file decoded by pyarrow, in parallel threads
    (one per core), each table dropped at once — decoding, without building a matrix."""
    import glob
    import os
    from concurrent.futures import ThreadPoolExecutor

    files = sorted(glob.glob(os.path.join(spec["data"], "*.parquet")))

    def decode(path: str) -> int:
        return pq.read_table(path, columns=columns, use_threads=False).num_rows

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        sum(pool.map(decode, files))
    return {"startup": 0.0, "read": time.perf_counter() - started, "fit": 0.0}


def _sklearn(spec: dict[str, Any], features: list[str]) -> dict[str, Any]:
    from sklearn import cluster, linear_model

    started = time.perf_counter()
    X, y = read_matrix(spec["data"], features)
    read = time.perf_counter() - started
    task = spec["task"]
    if task == "kmeans":
        model = cluster.KMeans(n_clusters=spec["clusters"], random_state=spec["seed"]).fit(X)
        result = {"centers": model.cluster_centers_}
    else:
        model = (
            linear_model.LinearRegression()
            if task == "linreg"
            else linear_model.LogisticRegression()
        ).fit(X, y)
        result = {"predict": model.predict}
    return {"startup": 0.0, "read": read, "fit": time.perf_counter() - started - read, **result}


def _distml(spec: dict[str, Any], features: list[str]) -> dict[str, Any]:
    import distml
    from distml.models.base import model_class

    candidate, workers, task = spec["candidate"], spec["workers"], spec["task"]
    backend_name = candidate["backend"]
    options: dict[str, Any] = {}
    if backend_name == "local":
        backend_name = f"local[{workers}]"
    elif backend_name == "dask":
        options = {"workers": workers, "threads": 1}
    else:
        options = {
            "master": f"local[{workers}]",
            "console_progress": False,
            "driver_memory": SPARK_DRIVER_MEMORY,
        }
    if spec.get("memory_limit"):
        options["memory_limit"] = spec["memory_limit"]
    started = time.perf_counter()
    backend = distml.get_backend(backend_name, **options)
    backend.start()
    startup = time.perf_counter() - started
    try:
        solver = candidate["solver"]
        # distml's own models, as `distml run` fits them (the estimators would add
        # scikit-learn's import to the time and the memory measured)
        model = {
            "linreg": lambda: model_class("linear_regression")(solver=solver),
            "logreg": lambda: model_class("logistic_regression")(solver=solver),
            "kmeans": lambda: model_class("kmeans")(
                n_clusters=spec["clusters"], random_state=spec["seed"], solver=solver
            ),
        }[task]()
        data = backend.load(distml.Dataset(spec["data"], label=LABEL), solver=solver)
        read = time.perf_counter() - started - startup
        backend.fit(model, data)
        fit = time.perf_counter() - started - startup - read
        streamed = not data.train.can_cache
    finally:
        backend.stop()
    kernel = model.kernel()
    result = (
        {"centers": model.cluster_centers_} if task == "kmeans" else {"predict": kernel.predict}
    )
    return {"startup": startup, "read": read, "fit": fit, "streamed": streamed, **result}


def _dask_ml(spec: dict[str, Any], features: list[str]) -> dict[str, Any]:
    import dask.dataframe as dd
    from dask_ml import cluster, linear_model
    from distributed import Client, LocalCluster, wait

    started = time.perf_counter()
    options = {"memory_limit": spec["memory_limit"]} if spec.get("memory_limit") else {}
    with (
        LocalCluster(
            n_workers=spec["workers"],
            threads_per_worker=1,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
            **options,
        ) as local,
        Client(local) as _,
    ):
        startup = time.perf_counter() - started
        frame = dd.read_parquet(spec["data"], columns=[*features, LABEL])
        array = frame.to_dask_array(lengths=True).persist()
        wait(array)
        X, y = array[:, :-1], array[:, -1]
        read = time.perf_counter() - started - startup
        task = spec["task"]
        if task == "kmeans":
            model = cluster.KMeans(n_clusters=spec["clusters"], random_state=spec["seed"]).fit(X)
            result = {"centers": np.asarray(model.cluster_centers_)}
        else:
            model = (
                linear_model.LinearRegression()
                if task == "linreg"
                else linear_model.LogisticRegression()
            )
            model.fit(X, y if task == "linreg" else y.astype(int))
            coef, intercept = (
                np.asarray(model.coef_).ravel(),
                float(np.asarray(model.intercept_).ravel()[0]),
            )
            if task == "linreg":
                result = {"predict": lambda A: A @ coef + intercept}
            else:
                result = {"predict": lambda A: (A @ coef + intercept > 0).astype(int)}
        fit = time.perf_counter() - started - startup - read
    return {"startup": startup, "read": read, "fit": fit, **result}


def _mllib(spec: dict[str, Any], features: list[str]) -> dict[str, Any]:
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import LinearRegression
    from pyspark.sql import SparkSession

    from distml.backends.base import parse_bytes

    started = time.perf_counter()
    builder = SparkSession.builder.master(f"local[{spec['workers']}]").config(
        "spark.ui.enabled", "false"
    )
    limit = spec.get("memory_limit")
    # the JVM's own spelling (512m): "400MB" is not a valid -Xmx
    heap = f"{parse_bytes(limit) // 2**20}m" if limit else SPARK_DRIVER_MEMORY
    builder = builder.config("spark.driver.memory", heap)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    startup = time.perf_counter() - started
    try:
        frame = VectorAssembler(inputCols=features, outputCol="features").transform(
            spark.read.parquet(spec["data"])
        )
        task = spec["task"]
        if task == "kmeans":
            model = KMeans(k=spec["clusters"], seed=spec["seed"]).fit(frame)
            result = {"centers": np.array([np.asarray(c) for c in model.clusterCenters()])}
        else:
            model = (
                LinearRegression(labelCol=LABEL)
                if task == "linreg"
                else LogisticRegression(labelCol=LABEL)
            ).fit(frame)
            coef, intercept = model.coefficients.toArray(), float(model.intercept)
            if task == "linreg":
                result = {"predict": lambda A: A @ coef + intercept}
            else:
                result = {"predict": lambda A: (A @ coef + intercept > 0).astype(int)}
        read_and_fit = time.perf_counter() - started - startup
    finally:
        spark.stop()
    return {
        "startup": startup,
        "read": None,
        "fit": read_and_fit,
        **result,
    }  # MLlib reads lazily, inside fit


MNIST_EPOCHS = 2  # the seed's
MNIST_BATCH = 32  # per replica, the seed's


def _keras(spec: dict[str, Any]) -> dict[str, Any]:
    """The seed's MNIST network for 2 epochs on ``workers`` MirroredStrategy replicas, fed
    from Parquet by distml's pipeline, or the plain Keras way: the images read into numpy
    and ``model.fit(x, y)``. Quality: accuracy on the test images."""
    started = time.perf_counter()
    from distml.deep.devices import import_tensorflow, mirrored_strategy, select_devices

    import_tensorflow()
    import keras

    from distml.deep.models import build_model, default_learning_rate
    from distml.deep.pipeline import batches_per_epoch, distribute, open_images, pixel_matrix

    data = open_images(spec["data"])
    strategy = mirrored_strategy(select_devices(spec["workers"]))
    replicas = strategy.num_replicas_in_sync
    keras.utils.set_random_seed(spec["seed"])
    with strategy.scope():
        model = build_model("mlp", data.width, 10, learning_rate=default_learning_rate(replicas))
    startup = time.perf_counter() - started
    begun = time.perf_counter()
    if spec["candidate"]["kind"] == "keras":
        table = pq.read_table(list(data.files), columns=[data.pixels, data.label])
        x = pixel_matrix(table.column(data.pixels), data.width)
        y = table.column(data.label).to_numpy()
        read = time.perf_counter() - begun
        model.fit(x, y, batch_size=MNIST_BATCH * replicas, epochs=MNIST_EPOCHS, verbose=0)
    else:  # the images stream from the files every epoch: reading is part of the fit
        read = 0.0
        global_batch = MNIST_BATCH * replicas
        stream = distribute(
            strategy,
            data,
            global_batch,
            shuffle_buffer=10_000,
            seed=spec["seed"],
            epochs=range(MNIST_EPOCHS),
        )
        steps = batches_per_epoch(data, global_batch)  # one iterator for every epoch
        model.fit(stream, epochs=MNIST_EPOCHS, steps_per_epoch=steps, shuffle=False, verbose=0)
    fit = time.perf_counter() - begun - read
    test = pq.read_table(spec["holdout"], columns=[data.pixels, data.label])
    predicted = model.predict(pixel_matrix(test.column(data.pixels), data.width), verbose=0)
    accuracy = float(np.mean(predicted.argmax(axis=1) == test.column(data.label).to_numpy()))
    return {"startup": startup, "read": read, "fit": fit, "quality": accuracy}


def main() -> None:
    spec = json.loads(sys.stdin.read())
    try:
        result = {"status": "ok", **run(spec)}
    except Exception as exc:  # noqa: BLE001 - the parent records the failure and goes on
        result = {
            "status": "error",
            "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
        }
    print("DISTML-BENCH-RESULT " + json.dumps(result), flush=True)
    from distml.teardown import exit_without_waiting

    exit_without_waiting(0)  # a Keras run's last iterator can take a minute to free


if __name__ == "__main__":
    main()
