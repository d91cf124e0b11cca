"""The Spark backend on a real local[2] SparkSession: both solvers give the local backend's
model, executors write the predictions, bad set-ups fail in one line and bounded time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from article import assert_article_numbers
from conftest import REPO, assert_same_generated_data, write_parts

pytest.importorskip("pyspark", reason="the spark extra is not installed")
from sklearn.datasets import make_blobs  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

import distml  # noqa: E402
from distml.algorithms.engine import concat  # noqa: E402
from distml.backends import get_backend  # noqa: E402
from distml.backends.spark.session import java_version, probe_master  # noqa: E402
from distml.data.generate import Recipe, generate  # noqa: E402
from distml.errors import BackendError, DataError, ModelError  # noqa: E402
from distml.jobs import load_spec, run_job  # noqa: E402
from distml.progress import Progress  # noqa: E402

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("spark-data")
    paths = {
        kind: generate(
            Recipe(
                kind,
                rows=40_000,
                features=5,
                partitions=6,
                seed=2,
                classes=3 if kind == "classification" else 2,
            ),
            root / kind,
        )
        for kind in ("regression", "classification")
    }
    paths["binary"] = generate(
        Recipe("classification", rows=40_000, features=5, partitions=6, seed=5), root / "binary"
    )
    # well separated: adjusted Rand index 1.0 is reachable by any correct k-means
    X, truth = make_blobs(
        n_samples=30_000, centers=4, n_features=3, cluster_std=0.4, random_state=7
    )
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["y"] = truth
    paths["blobs"] = write_parts(root / "blobs", frame, 5)
    return paths


MODELS = {
    "regression": lambda solver: distml.LinearRegression(solver=solver),
    "ridge": lambda solver: distml.LinearRegression(alpha=300.0, solver=solver),
    "binary": lambda solver: distml.LogisticRegression(C=0.5, solver=solver),
    # 3 classes converged tightly: at the default tol=1e-4 both solvers stop ~1e-8 from the
    # optimum objective, and a test row that close to a class boundary may go either way
    "classification": lambda solver: distml.LogisticRegression(tol=1e-8, solver=solver),
    "blobs": lambda solver: distml.KMeans(n_clusters=4, random_state=0, solver=solver),
}


@pytest.mark.parametrize("solver", ["native", "mllib"])
@pytest.mark.parametrize("case", ["regression", "ridge", "binary", "classification", "blobs"])
def test_same_model_and_predictions_as_local(
    case: str, solver: str, datasets, spark_session, tmp_path: Path
) -> None:
    data_kind = "regression" if case == "ridge" else case
    ds = distml.Dataset(datasets[data_kind], label="y")
    split = None if case == "blobs" else distml.Split(0.2, 3)
    with get_backend("spark") as spark, get_backend("local") as local:
        on_spark = spark.load(ds, split, keep_source=True, solver=solver)
        on_local = local.load(ds, split, keep_source=True)
        assert on_spark.train.partition_sizes == on_local.train.partition_sizes
        a = spark.fit(MODELS[case](solver), on_spark)
        b = local.fit(MODELS[case]("native"), on_local)
        evaluation = (on_spark.test, on_local.test) if split else (on_spark.train, on_local.train)
        ours, theirs = spark.evaluate(a, evaluation[0]), local.evaluate(b, evaluation[1])
        files = spark.write_predictions(a, evaluation[0], str(tmp_path / "spark"))
        local.write_predictions(b, evaluation[1], str(tmp_path / "local"))
    assert a.fit_info_["solver"] == solver and a.fit_info_["backend"] == "spark(local[2])"
    if data_kind == "regression":
        np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-6)
        assert a.intercept_ == pytest.approx(b.intercept_, rel=1e-6)
    elif data_kind in ("binary", "classification"):
        assert a.objective_ == pytest.approx(b.objective_, rel=1e-5)
        assert ours["confusion_matrix"] == theirs["confusion_matrix"]  # same test predictions
    else:
        assert a.inertia_ == pytest.approx(b.inertia_, rel=1e-3)
        assert ours["adjusted_rand"] == 1.0 and theirs["adjusted_rand"] == 1.0
    if solver == "native":  # the very same code and partitions: the very same model
        assert ours == theirs
    assert len(files) == len(ds.partitions)  # one file per partition, written by the executors
    spark_rows = pq.read_table(tmp_path / "spark").to_pandas()
    local_rows = pq.read_table(tmp_path / "local").to_pandas()
    assert spark_rows.drop(columns=["prediction", "probability"], errors="ignore").equals(
        local_rows.drop(columns=["prediction", "probability"], errors="ignore")
    )
    if data_kind == "regression":
        np.testing.assert_allclose(spark_rows["prediction"], local_rows["prediction"], rtol=1e-6)
    elif case == "blobs":  # the same clusters, numbered in each solver's own order
        assert adjusted_rand_score(spark_rows["prediction"], local_rows["prediction"]) == 1.0
    else:
        assert (spark_rows["prediction"] == local_rows["prediction"]).all()


def test_kmeans_mllib_recovers_well_separated_blobs(datasets, spark_session) -> None:
    ds = distml.Dataset(datasets["blobs"], label="y")
    frame = pq.read_table(datasets["blobs"]).to_pandas()
    with get_backend("spark") as spark:
        model = spark.fit(MODELS["blobs"]("mllib"), spark.load(ds, solver="mllib"))
    assert adjusted_rand_score(frame["y"], model.predict(frame[ds.features].to_numpy())) == 1.0


def test_seed_jobs_run_unchanged_on_spark(spark_session, tmp_path: Path) -> None:
    for name in ("linear_regression", "logistic_regression", "kmeans"):
        spec_path = REPO / "jobs" / f"{name}.yaml"
        data = [f"data.train={tmp_path / name}"]
        on_spark = run_job(load_spec(spec_path, data, backend="spark"), tmp_path / "spark" / name)
        on_local = run_job(load_spec(spec_path, data), tmp_path / "local" / name)
        written = [json.loads((r.out / "metrics.json").read_text()) for r in (on_spark, on_local)]
        assert written[0]["backend"] == "spark(local[2])"
        assert written[0]["metrics"] == written[1]["metrics"]
        assert written[0]["model"] == written[1]["model"]
        assert pq.read_table(on_spark.out / "predictions").equals(
            pq.read_table(on_local.out / "predictions")
        )
        assert_article_numbers(on_spark.out, name)  # the article's printed numbers, on this engine


def test_mllib_run_keeps_sparks_own_model_beside_distmls(spark_session, tmp_path: Path) -> None:
    from pyspark.ml.regression import LinearRegressionModel

    spec = load_spec(
        REPO / "jobs" / "linear_regression.yaml",
        [f"data.train={tmp_path / 'ex1'}", "model.solver=mllib"],
        backend="spark",
    )
    result = run_job(spec, tmp_path / "run")
    reloaded = LinearRegressionModel.load(str(result.out / "model" / "mllib"))
    assert reloaded.coefficients.toArray().tolist() == pytest.approx(result.model.coef_.tolist())
    portable = distml.load_model(result.out / "model")
    assert portable.fit_info_["solver"] == "mllib"
    assert portable.coef_.tolist() == pytest.approx([0.6857142857142857], rel=1e-9)


def test_a_killed_service_task_is_replaced_and_the_model_is_unchanged(
    spark_session, tmp_path: Path
) -> None:
    path = generate(
        Recipe("classification", rows=300_000, features=10, partitions=12, seed=4), tmp_path / "c"
    )
    ds = distml.Dataset(path, label="y")
    model = lambda: distml.LogisticRegression(C=1e4, tol=1e-10, max_iter=500)  # noqa: E731
    with get_backend("spark") as spark:
        data = spark.load(ds)
        undisturbed = spark.fit(model(), data)
        pids = data.train.map_reduce(lambda part: [os.getpid()], combine=concat)
        # killed between the fit's 3rd and 4th pass (a pass takes milliseconds: a timer
        # could not land inside the fit)
        killer = KillAfterPasses(pids[0], passes=3)
        spark.progress = data.train.progress = killer
        disturbed = spark.fit(model(), data)
        assert killer.killed_at == 3
        after = set(data.train.map_reduce(lambda part: [os.getpid()], combine=concat))
    assert pids[0] not in after  # the partitions were re-read by a new task
    assert undisturbed.n_iter_ >= 2  # Newton's passes after the 3rd: the kill was mid-fit
    np.testing.assert_allclose(disturbed.coef_, undisturbed.coef_, rtol=1e-12)
    assert disturbed.n_iter_ == undisturbed.n_iter_


class KillAfterPasses(Progress):
    """Kills a process once the fit has made ``passes`` passes (from the driver's thread)."""

    def __init__(self, pid: int, passes: int) -> None:
        super().__init__()
        self.pid, self.passes = pid, passes
        self.killed_at: int | None = None

    def step(self, n: int = 1, detail: str | None = None) -> None:
        super().step(n, detail)
        fitting = (self.stage_name or "").startswith("fitting")
        if fitting and self.killed_at is None and self.completed >= self.passes:
            self.killed_at = self.completed
            os.kill(self.pid, signal.SIGKILL)


def test_worker_errors_keep_their_class_and_message(tmp_path: Path, spark_session) -> None:
    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0], "y": [1.0, 2.0, 3.0, 4.0]})
    write_parts(tmp_path / "d", frame, 1)
    ds = distml.Dataset(tmp_path / "d", label="y")
    with get_backend("spark") as spark:
        with pytest.raises(DataError, match=r"part-00000.parquet: column 'a' has 1 missing"):
            spark.load(ds)  # read by distml's reader in the executors
        with pytest.raises(DataError, match=r"part-00000.parquet: column 'a' has 1 missing"):
            spark.load(ds, solver="mllib")  # read by Spark, located by Spark


def test_mllib_refuses_given_centres(datasets, spark_session) -> None:
    ds = distml.Dataset(datasets["blobs"], label="y")
    with get_backend("spark") as spark, pytest.raises(ModelError, match="cannot start from given"):
        spark.fit(
            distml.KMeans(n_clusters=2, init=np.zeros((2, 3)), solver="mllib"),
            spark.load(ds, solver="mllib"),
        )


def test_an_active_session_is_reused_and_left_running(spark_session) -> None:
    backend = get_backend("spark")
    backend.start()
    assert backend.spark is spark_session
    backend.stop()
    assert spark_session.sparkContext._jsc is not None  # still running
    with pytest.raises(BackendError, match=r"already runs a SparkSession on local\[2\]"):
        get_backend("spark://127.0.0.1:7077").start()


def test_settings_a_running_session_cannot_take_are_named(
    spark_session, caplog: pytest.LogCaptureFixture
) -> None:
    with get_backend("spark", driver_memory="3g", conf={"spark.sql.shuffle.partitions": 7}):
        pass
    assert (
        "spark: this process already runs a SparkSession on local[2]; not applied to it: "
        "driver_memory, spark.sql.shuffle.partitions"
    ) in caplog.messages
    with get_backend("spark"):
        pass
    assert sum("not applied to it" in m for m in caplog.messages) == 1


def test_unreachable_master_fails_in_bounded_time() -> None:
    started = time.monotonic()
    with pytest.raises(
        BackendError, match=r"spark master spark://127.0.0.1:9 did not answer within 2s"
    ):
        probe_master("spark://127.0.0.1:9", timeout=2)
    assert time.monotonic() - started < 5


def _fake_java(folder: Path, version_line: str) -> Path:
    java = folder / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(0o755)
    return folder


def test_missing_or_old_java_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"Java not found .*install openjdk-17-jre-headless"):
        java_version({"PATH": str(tmp_path)})
    old = _fake_java(tmp_path / "jdk11", 'openjdk version "11.0.21" 2023-10-17')
    with pytest.raises(BackendError, match=r"Spark needs Java 17\+, found Java 11 at .*jdk11"):
        java_version({"JAVA_HOME": str(old)})
    ancient = _fake_java(tmp_path / "jdk8", 'java version "1.8.0_392"')
    with pytest.raises(BackendError, match=r"found Java 8 at"):
        java_version({"JAVA_HOME": str(ancient)})
    with pytest.raises(BackendError, match=r"JAVA_HOME=.*nowhere has no bin/java"):
        java_version({"JAVA_HOME": str(tmp_path / "nowhere")})
    path, major = java_version()
    assert major >= 17 and Path(path).name == "java"


def test_cli_run_on_spark_is_quiet(tmp_path: Path) -> None:
    """A user sees distml's lines only: no JVM start-up noise, no BLAS or log4j warnings.

    The environment is not activated (its bin/ is off PATH, as when a user runs
    ``venv/bin/distml``): Spark's Python workers must still be this Python, not the first
    ``python3`` on PATH, which has no distml (PySpark takes it from PYSPARK_PYTHON only)."""
    own_bin = os.path.dirname(sys.executable)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != own_bin)
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_PYTHON", "VIRTUAL_ENV")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "distml.cli",
            "run",
            str(REPO / "jobs" / "logistic_regression.yaml"),
            "--backend",
            "spark",
            "--set",
            "backend.master=local[2]",
            "--set",
            f"data.train={tmp_path / 'ex2'}",
            "--set",
            "model.solver=mllib",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "PATH": path},
    )
    assert result.returncode == 0, result.stderr
    assert "accuracy:" in result.stdout
    noisy = [
        line
        for line in result.stderr.splitlines()
        if any(word in line for word in ("WARN", "WARNING", "netlib", "log4j", "incubator"))
    ]
    assert noisy == []
    assert (tmp_path / "run" / "model" / "mllib" / "metadata").is_dir()


def test_hive_partitions_and_filters_on_both_solvers(tmp_path: Path, spark_session) -> None:
    from conftest import regression_frame

    frame = regression_frame(900)
    for i, year in enumerate((2023, 2024, 2025)):
        write_parts(tmp_path / "hive" / f"year={year}", frame.iloc[i * 300 : (i + 1) * 300], 2)
    ds = distml.Dataset(tmp_path / "hive", label="y", filters=[("year", ">=", 2024)])
    split = distml.Split(0.25, 1)
    with get_backend("spark") as spark, get_backend("local") as local:
        expected = local.fit(distml.LinearRegression(), local.load(ds, split))
        native = spark.fit(distml.LinearRegression(), spark.load(ds, split))
        data = spark.load(ds, split, solver="mllib")
        mllib = spark.fit(distml.LinearRegression(solver="mllib"), data)
    assert native.fit_info_["rows"] == mllib.fit_info_["rows"] == expected.fit_info_["rows"] == 450
    assert data.train.mllib_input()[1]["count"] == 450  # Spark read only the two kept years
    np.testing.assert_allclose(native.coef_, expected.coef_, rtol=1e-12)
    np.testing.assert_allclose(mllib.coef_, expected.coef_, rtol=1e-6)


def test_streaming_gives_the_cached_model(datasets, spark_session) -> None:
    """cache=False: Spark tasks re-read every partition on every pass (bigger-than-memory)."""
    from distml.preprocess import Pipeline, Scale

    ds = distml.Dataset(datasets["regression"], label="y")
    split = distml.Split(0.2, 3)
    with get_backend("spark") as cached:
        a = cached.load(ds, split)
        lin_a = cached.fit(distml.LinearRegression(), a)
        scores_a = cached.evaluate(lin_a, a.test)
        raw = distml.Dataset(datasets["regression"], label="y", raw=True)
        scaled_a = cached.fit(Pipeline([Scale()], distml.LinearRegression()), cached.load(raw))
        km_a = cached.fit(
            MODELS["blobs"]("native"), cached.load(distml.Dataset(datasets["blobs"], label="y"))
        )
        binary = distml.Dataset(datasets["binary"], label="y")
        log_a = cached.fit(MODELS["binary"]("native"), cached.load(binary))
    with get_backend("spark", cache=False) as streaming:
        b = streaming.load(ds, split)
        assert not b.train.can_cache and b.train.partition_sizes == a.train.partition_sizes
        lin_b = streaming.fit(distml.LinearRegression(), b)
        assert streaming.evaluate(lin_b, b.test) == scores_a
        scaled_b = streaming.fit(
            Pipeline([Scale()], distml.LinearRegression()), streaming.load(raw)
        )
        km_b = streaming.fit(
            MODELS["blobs"]("native"), streaming.load(distml.Dataset(datasets["blobs"], label="y"))
        )
        log_b = streaming.fit(MODELS["binary"]("native"), streaming.load(binary))
    assert log_b.n_iter_ == log_a.n_iter_ > 1
    np.testing.assert_allclose(log_b.coef_, log_a.coef_, rtol=1e-12)
    np.testing.assert_allclose(lin_b.coef_, lin_a.coef_, rtol=1e-12)
    np.testing.assert_allclose(scaled_b.model.coef_, scaled_a.model.coef_, rtol=1e-12)
    np.testing.assert_allclose(km_b.cluster_centers_, km_a.cluster_centers_, rtol=1e-12)


def test_generation_on_the_executors_writes_the_files_threads_write(
    tmp_path: Path, spark_session
) -> None:
    recipe = Recipe("regression", rows=9_000, features=4, partitions=6, seed=3)
    here = generate(recipe, tmp_path / "threads")
    with get_backend("spark") as backend:
        there = generate(recipe, tmp_path / "executors", backend=backend)
    assert_same_generated_data(here, there, 6)


def test_executors_joining_one_by_one_are_all_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    from distml.backends.spark import session

    counts = iter([1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2])  # the second executor joins late
    monkeypatch.setattr(session, "slots", lambda sc: next(counts))
    started = time.monotonic()
    assert session.wait_for_executors(None, "spark://127.0.0.1:7077", timeout=10) == 2
    assert time.monotonic() - started < 5  # 1 s of quiet after the last change, not the limit


def test_a_job_waits_past_a_quiet_second_for_the_slots_it_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a loaded machine the second executor can register more than a quiet second after
    the first; with ``spark.cores.max`` known (``distml submit`` to a distml cluster) it is
    waited for: a job ran on one of two workers in CI that way."""
    from distml.backends.spark import session

    counts = iter([1] * 10 + [2] * 10)  # 2 s with one executor, then the second
    monkeypatch.setattr(session, "slots", lambda sc: next(counts))
    assert session.wait_for_executors(None, "spark://127.0.0.1:7077", 10, expected=2) == 2
    counts = iter([1] * 100)  # the second never comes: go on with one when the limit is reached
    assert session.wait_for_executors(None, "spark://127.0.0.1:7077", 1, expected=2) == 1


def test_a_rogue_client_is_refused_before_anything_is_unpickled(
    spark_session, tmp_path: Path
) -> None:
    """Whoever reaches the service's port while it starts cannot run code on the driver."""
    import pickle
    import socket
    import struct

    marker = tmp_path / ("pwned-" + "x" * 40)  # a long name: the payload is > the 36-byte hello

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (open, (str(marker), "w"))

    frame = pickle.dumps(Payload())
    path = generate(
        Recipe("regression", rows=2_000, features=3, partitions=2, seed=1), tmp_path / "r"
    )
    ds = distml.Dataset(path, label="y")
    attacks: list[bytes] = []

    with get_backend("spark") as spark:
        service = spark.service

        def attack() -> None:
            deadline = time.monotonic() + 60
            while service.address is None and time.monotonic() < deadline:
                time.sleep(0.001)
            if service.address is None:
                return
            with socket.create_connection(service.address, timeout=15) as rogue:
                rogue.sendall(struct.pack(">Q", len(frame)) + frame)  # the old wire: pickle first
                try:
                    attacks.append(rogue.recv(1))  # b"": the driver hung up on us
                except ConnectionResetError:  # ... with our unread bytes still in its buffer
                    attacks.append(b"")

        attacker = threading.Thread(target=attack)
        attacker.start()
        model = spark.fit(distml.LinearRegression(), spark.load(ds))
        attacker.join(timeout=60)
    assert attacks == [b""]
    assert service.rejected >= 1
    assert not marker.exists()  # the payload never ran
    with get_backend("local") as local:
        expected = local.fit(distml.LinearRegression(), local.load(ds))
    np.testing.assert_array_equal(model.coef_, expected.coef_)


def test_a_cluster_job_waits_for_the_task_slots_spark_cores_max_asks_for() -> None:
    from pyspark import SparkConf

    from distml.backends.spark.session import expected_slots

    conf = SparkConf(loadDefaults=False)
    assert expected_slots(conf) is None  # unset: wait until the count settles
    conf.set("spark.cores.max", "4")
    assert expected_slots(conf) == 4
    conf.set("spark.task.cpus", "2")
    assert expected_slots(conf) == 2  # two cores per task
    conf.set("spark.cores.max", "lots")
    assert expected_slots(conf) is None


def test_a_local_session_sizes_its_jvm_heap_from_the_memory_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under a per-slot ``memory_limit`` a local session's JVM gets one slot's budget (not
    Spark's default 1 GB), never less than the 512 MB Spark starts with; ``driver_memory``
    or the user's own setting wins, and a cluster's driver is left alone."""
    from distml.backends.spark.backend import SparkBackend

    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)  # _spark_conf would set it

    def heap(master: str = "local[2]", **options: object) -> str | None:
        conf = SparkBackend(master=master, **options)._spark_conf(master)  # type: ignore[arg-type]
        return conf.get("spark.driver.memory")

    assert heap(memory_limit="400MB") == "512m"
    assert heap(memory_limit="2GiB") == "2048m"
    assert heap(memory_limit="2GiB", driver_memory="3g") == "3g"
    assert heap(memory_limit="2GiB", conf={"spark.driver.memory": "5g"}) == "5g"
    assert heap("spark://127.0.0.1:7077", memory_limit="2GiB") is None
    assert heap() is None  # no budget: Spark's default
