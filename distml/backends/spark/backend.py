"""The Spark backend: a SparkSession started here, or a cluster reached by its master.

Two solvers. ``native`` runs distml's engine-neutral algorithms over partitions
held in Spark tasks (:mod:`.service`), so the model equals the local and Dask
backends'. ``mllib`` fits Spark MLlib with scikit-learn's meaning (:mod:`.mllib`).
Predictions are written by the executors. ``native`` is the default: it is faster
than MLlib on the benchmark (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from distml.algorithms.engine import Engine, concat, tree_reduce
from distml.backends.base import (
    CACHE_MEMORY_FRACTION,
    Backend,
    LoadedData,
    feature_bytes,
    parse_bytes,
)
from distml.backends.spark import class_archive
from distml.backends.spark.service import LoadRequest, PartitionService, portable_exception
from distml.backends.spark.session import (
    StageLines,
    executors_here,
    expected_slots,
    java_version,
    launch_context,
    launches_jvm,
    log4j_config,
    probe_master,
    registered_context,
    slots,
    spark_default,
    stop_jvm,
    wait_for_executors,
)
from distml.data.dataset import Dataset
from distml.data.reader import PartitionReader, ReadThenApply
from distml.data.split import Split, split_sizes
from distml.errors import BackendError, ModelError
from distml.models.base import Model

#: The smallest heap Spark starts with (it refuses less than 1.5 × its 300 MB reserve).
MIN_JVM_HEAP_MB = 512


def local_jvm_heap(memory_limit: str | int) -> str:
    """``spark.driver.memory`` of a local session under a per-slot ``memory_limit``: the
    JVM only schedules (distml's Python workers hold the data), so one slot's budget, and
    never below what Spark needs to start — rather than Spark's default 1 GB."""
    return f"{max(MIN_JVM_HEAP_MB, int(parse_bytes(memory_limit) // 2**20))}m"


log = logging.getLogger(__name__)


class SparkEngine(Engine):
    """One side (train or test) of a dataset loaded on the Spark backend."""

    def __init__(
        self,
        backend: SparkBackend,
        key: str,
        which: int,
        sizes: list[int],
        dataset: Dataset | None,
        split: Split | None,
        n_features: int | None = None,
    ) -> None:
        self._backend = backend
        self._key = key
        self._which = which
        self._sizes = sizes
        self._dataset = dataset
        self._split = split
        if dataset is not None:  # raw data has no X until a pipeline builds it
            n_features = 0 if dataset.raw else len(dataset.features)
        self._n_features = n_features
        self._mllib: tuple[Any, dict[str, Any]] | None = None

    @property
    def partition_sizes(self) -> list[int]:
        return self._sizes

    @property
    def n_features(self) -> int:
        assert self._n_features is not None
        return self._n_features

    def _map_reduce(self, fn, broadcast, combine):  # type: ignore[no-untyped-def]
        results = self._backend.service.run_pass(self._key, self._which, fn, broadcast)
        return tree_reduce(results, combine)

    def derive(self, fn, *broadcast):  # type: ignore[no-untyped-def]
        key = uuid.uuid4().hex
        service = self._backend.service
        sizes = service.derive(key, self._key, self._which, fn, broadcast)
        engine = SparkEngine(
            self._backend, key, 0, [sizes[i][0] for i in sorted(sizes)], None, None,
            n_features=service.n_features[key],
        )  # fmt: skip
        engine.progress = self.progress
        return engine

    def release(self) -> None:
        if self._dataset is None:  # derived: nothing else refers to it
            self._backend.service.drop(self._key)

    def mllib_input(self) -> tuple[Any, dict[str, Any]]:
        """This side's rows as Spark reads them for MLlib (read once, cached) and their stats."""
        if self._dataset is None:
            raise ModelError("solver 'mllib' fits data read from Parquet, not derived partitions")
        if self._mllib is None:
            self._mllib = self._backend.read_for_mllib(self._dataset, self._split, self._which)
        return self._mllib


class _Guarded:
    """Run ``call`` in a Spark task, returning its exception as a value (kept as it was)."""

    def __init__(self, call: Any) -> None:
        self.call = call

    def __call__(self, spec: Any) -> tuple[bool, Any]:
        try:
            return True, self.call(spec)
        except Exception as exc:  # noqa: BLE001 - re-raised on the driver with its class
            return False, portable_exception(exc)


class SparkStreamingEngine(Engine):
    """Partitions read by Spark tasks on every pass: data bigger than the executors' memory."""

    def __init__(
        self,
        backend: SparkBackend,
        specs: list[Any],
        reader: PartitionReader,
        sizes: list[int],
        n_features: int,
    ) -> None:
        self._backend = backend
        self._specs = specs
        self._reader = reader
        self._sizes = sizes
        self._n_features = n_features

    @property
    def partition_sizes(self) -> list[int]:
        return self._sizes

    @property
    def n_features(self) -> int:
        return self._n_features

    @property
    def can_cache(self) -> bool:
        return False

    def _map_reduce(self, fn, broadcast, combine):  # type: ignore[no-untyped-def]
        sc = self._backend.spark.sparkContext
        work = _Guarded(ReadThenApply(self._reader, fn, broadcast))
        with self._backend.exclusive():  # ordinary tasks: the service must not hold the slots
            outcomes = sc.parallelize(self._specs, len(self._specs)).map(work).collect()
        for ok, value in outcomes:
            if not ok:
                raise value
        return tree_reduce([value for _, value in outcomes], combine)

    def derive(self, fn, *broadcast):  # type: ignore[no-untyped-def]
        engine = SparkStreamingEngine(
            self._backend, self._specs, self._reader.then(fn, broadcast), [], 0
        )
        shapes = engine._map_reduce(_shape_list, (), concat)
        engine._sizes, engine._n_features = [int(s[0]) for s in shapes], int(shapes[0][1])
        engine.progress = self.progress
        return engine


def _shape_list(part: Any) -> list[tuple[int, int]]:
    return [part.X.shape]


def _fit_mllib(backend: Backend, estimator: Model, engine: Engine) -> None:
    assert isinstance(backend, SparkBackend) and isinstance(engine, SparkEngine)
    frame, stats = engine.mllib_input()
    with backend.exclusive():
        from distml.backends.spark import mllib  # pandas: only where MLlib runs

        mllib.fit(estimator, frame, stats, engine._dataset.label)


class SparkBackend(Backend):
    """Spark on a local session (``local[*]`` by default) or on a cluster's master.

    Parameters
    ----------
    master:
        ``local[N]``, ``spark://host:port``, ``yarn``, ``k8s://…``; default ``local[*]``.
        When this process already has an active SparkSession, it is used (and left
        running) unless a different master is asked for.
    conf:
        Spark settings passed through unchanged (``{"spark.executor.memory": "2g"}``).
    driver_memory:
        ``spark.driver.memory`` of a session started here (e.g. ``"4g"``).
    ui:
        Serve the Spark UI (off by default).
    console_progress:
        Spark's console progress bar; default: on when stderr is a terminal. When
        off, one line per finished stage is reported instead.
    timeout:
        Seconds a standalone master may take to answer.
    executor_timeout:
        Seconds to wait for a cluster's first executors.
    cache:
        Hold the partitions in Spark tasks (default: when they fit the memory budget);
        otherwise every pass re-reads them in ordinary Spark tasks (streaming).
    memory_limit:
        Memory each task slot may hold (e.g. ``"2GB"``), the budget for ``cache``;
        default: this machine's available memory for local masters. A local session
        started here sizes its JVM's heap from it too (one slot's budget, at least the
        512 MB Spark needs) unless ``driver_memory`` says otherwise.
    """

    name = "spark"
    solvers = {"mllib": _fit_mllib}

    def __init__(
        self,
        master: str | None = None,
        conf: dict[str, Any] | None = None,
        driver_memory: str | None = None,
        ui: bool = False,
        console_progress: bool | None = None,
        timeout: float = 10.0,
        executor_timeout: float = 60.0,
        app_name: str = "distml",
        cache: bool | None = None,
        memory_limit: str | int | None = None,
    ) -> None:
        super().__init__()
        self.master = master
        self.conf = dict(conf or {})
        self.driver_memory = driver_memory
        self.ui = ui
        self.console_progress = (
            sys.stderr.isatty() if console_progress is None else console_progress
        )
        self.timeout = timeout
        self.executor_timeout = executor_timeout
        self.app_name = app_name
        self.cache = cache
        self.memory_limit = memory_limit
        self.spark: Any = None
        self._owned = False
        self._service: PartitionService | None = None
        self._stage_lines: StageLines | None = None
        self._java: str | None = None
        self._archive = class_archive.ArchivePlan("")

    @property
    def description(self) -> str:
        master = self.spark.sparkContext.master if self.spark is not None else self.master
        return f"spark({master or 'local[*]'})"

    @property
    def service(self) -> PartitionService:
        self.start()
        assert self._service is not None
        return self._service

    # -- lifecycle ---------------------------------------------------------------------------
    def _start(self) -> None:
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            running = active.sparkContext.master
            if self.master is not None and self.master != running:
                raise BackendError(
                    f"this process already runs a SparkSession on {running}; stop it before "
                    f"asking for master {self.master}"
                )
            ignored = [*(["driver_memory"] if self.driver_memory else []), *sorted(self.conf)]
            if ignored:  # a running JVM cannot take them; say so rather than drop them silently
                log.warning(
                    "spark: this process already runs a SparkSession on %s; not applied to it: %s",
                    running,
                    ", ".join(ignored),
                )
            self.spark = active
        else:
            master = self.master or "local[*]"
            self._java, _ = java_version()
            probe_master(master, self.timeout)
            conf = self._spark_conf(master)
            if master.startswith("local"):
                context = launch_context(conf)
            else:  # a standalone master that answered registers at once; YARN may take longer
                limit = self.timeout if master.startswith("spark://") else self.executor_timeout
                context = registered_context(conf, master, limit)
            self.spark = SparkSession(context)
            self._owned = True
            if not master.startswith("local"):
                try:
                    sc = self.spark.sparkContext
                    expected = expected_slots(sc.getConf())
                    wait_for_executors(sc, master, self.executor_timeout, expected)
                except BackendError:
                    self.spark.stop()
                    raise
        sc = self.spark.sparkContext
        self._service = PartitionService(sc, lambda: slots(sc), lambda: self.progress)
        if not self.console_progress:
            self._stage_lines = StageLines(sc, lambda text: self.progress.message(text))
            self._stage_lines.start()

    def _spark_conf(self, master: str) -> Any:
        from pyspark import SparkConf, SparkContext

        java_options = f"-Dlog4j2.configurationFile={log4j_config()}"
        settings: dict[str, Any] = {
            "spark.master": master,
            "spark.app.name": self.app_name,
            "spark.ui.enabled": self.ui,
            "spark.ui.showConsoleProgress": self.console_progress,
            "spark.sql.execution.arrow.pyspark.enabled": True,
            # a barrier stage that cannot get its slots fails fast, so distml can retry smaller
            "spark.scheduler.barrier.maxConcurrentTasksCheck.interval": "1s",
            "spark.scheduler.barrier.maxConcurrentTasksCheck.maxFailures": 5,
        }
        if self.driver_memory:
            settings["spark.driver.memory"] = self.driver_memory
        elif self.memory_limit is not None and master.startswith("local"):
            settings["spark.driver.memory"] = local_jvm_heap(self.memory_limit)
        if master.startswith("local") and not os.environ.get("PYSPARK_PYTHON"):
            # local executors run on this machine: this Python, with distml and its libraries
            # (not whatever `python3` is first on PATH, as when `venv/bin/distml` runs without
            # the venv activated). PySpark reads the worker's Python from the environment
            # variable, not from this setting, so both are set.
            settings["spark.pyspark.python"] = sys.executable
            os.environ["PYSPARK_PYTHON"] = sys.executable
        settings.update(self.conf)
        user_options = str(self.conf.get("spark.driver.extraJavaOptions", ""))
        if self._java is not None and launches_jvm():
            self._archive = class_archive.plan(self._java, user_options)
        options = (java_options, self._archive.java_options, user_options)
        settings["spark.driver.extraJavaOptions"] = " ".join(o for o in options if o)
        if not launches_jvm():  # attach to spark-submit's JVM: its settings are the defaults
            SparkContext._ensure_initialized()
        conf = SparkConf()
        if self._java is not None and executors_here(master):  # their classpath is ours
            key = "spark.executor.extraJavaOptions"
            found = str(self.conf.get(key, conf.get(key)) or spark_default(key) or "")
            options = class_archive.with_mapping(self._java, found)
            if options != found:
                settings[key] = options
        for key, value in settings.items():
            conf.set(key, str(value).lower() if isinstance(value, bool) else str(value))
        return conf

    def _stop(self) -> None:
        if self._stage_lines is not None:
            self._stage_lines.stop()
        if self._service is not None:
            self._service.stop()
        if self._owned and self.spark is not None:
            self.spark.stop()
            recording = self._archive.recording
            if recording is not None and self._java is not None:
                self.progress.message(
                    "spark: saving the driver JVM's classes for faster starts (once, ~15 s)"
                )
                if stop_jvm(timeout=180):
                    class_archive.publish(recording, self._java)
                else:
                    class_archive.discard(recording)
                self._archive = class_archive.ArchivePlan("")

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Free the executor slots held by the partition service while other Spark jobs run."""
        self.service.suspend()
        yield

    # -- data ---------------------------------------------------------------------------------
    def load(
        self,
        dataset: Dataset,
        split: Split | None = None,
        keep_source: bool = False,
        solver: str | None = None,
    ) -> LoadedData:
        self.start()
        started = time.perf_counter()
        key = uuid.uuid4().hex
        request = LoadRequest(
            uri=dataset.uri,
            specs=tuple(dataset.partitions),
            features=tuple(dataset.features),
            label=dataset.label,
            split=split,
            n_total=dataset.num_rows,
            keep_source=keep_source,
            raw=dataset.raw,
        )
        train = test = None
        if not self._caches(dataset):
            return self._streaming(dataset, request, split, started)
        if solver == "mllib":  # MLlib reads with Spark; distml's tasks read only if a pass needs it
            planned = dict(enumerate(split_sizes(dataset.partitions, split, dataset.num_rows)))
            self.service.register(key, request, planned)
            sizes = planned
        else:
            sizes = self.service.load(key, request)
        ordered = [sizes[i] for i in range(len(dataset.partitions))]
        train = SparkEngine(self, key, 0, [s[0] for s in ordered], dataset, split)
        if split is not None:
            test = SparkEngine(self, key, 1, [s[1] for s in ordered], dataset, split)
        for engine in (train, test):
            if engine is not None:
                engine.progress = self.progress
        if solver == "mllib":
            train.mllib_input()
        return LoadedData(train, test, dataset, time.perf_counter() - started)

    def run_tasks(self, fn, items):  # type: ignore[no-untyped-def]
        self.start()
        with self.exclusive():
            outcomes = (
                self.spark.sparkContext.parallelize(items, len(items)).map(_Guarded(fn)).collect()
            )
        for ok, value in outcomes:
            if not ok:
                raise value
        return [value for _, value in outcomes]

    def score(self, files, job):  # type: ignore[no-untyped-def]
        from distml.backends.spark.scoring import score_files

        self.start()  # ordinary tasks, one per file, the model broadcast (see .scoring)
        return score_files(self, files, job)

    def run_gang(self, task, size):  # type: ignore[no-untyped-def]
        from distml.backends.spark.gang import run_spark_gang

        self.start()  # a barrier stage of `size` tasks
        return run_spark_gang(self, task, size)

    def _caches(self, dataset: Dataset) -> bool:
        """Whether the partitions fit in the executors' memory budget (else: streaming)."""
        if self.cache is not None:
            return self.cache
        if self.memory_limit is not None:
            budget = parse_bytes(self.memory_limit) * slots(self.spark.sparkContext)
        elif self.spark.sparkContext.master.startswith("local"):
            budget = psutil.virtual_memory().available
        else:
            return True  # a cluster's executors' memory is unknown here: say cache=false to stream
        return feature_bytes(dataset) <= CACHE_MEMORY_FRACTION * budget

    def _streaming(
        self, dataset: Dataset, request: LoadRequest, split: Split | None, started: float
    ) -> LoadedData:
        self.progress.message(
            f"streaming: {feature_bytes(dataset) / 1e9:.1f} GB of features exceed the executors' "
            "memory budget; every pass re-reads the files in Spark tasks"
        )
        load = {
            "uri": request.uri,
            "features": list(request.features),
            "label": request.label,
            "split": request.split,
            "n_total": request.n_total,
            "keep_source": request.keep_source,
            "raw": request.raw,
        }
        planned = split_sizes(dataset.partitions, split, dataset.num_rows)
        d = 0 if dataset.raw else len(dataset.features)

        def engine(which: int) -> SparkStreamingEngine:
            sizes = [pair[which] for pair in planned]
            result = SparkStreamingEngine(
                self, list(dataset.partitions), PartitionReader(load, which), sizes, d
            )
            result.progress = self.progress
            return result

        test = engine(1) if split is not None else None
        return LoadedData(engine(0), test, dataset, time.perf_counter() - started)

    def read_for_mllib(
        self, dataset: Dataset, split: Split | None, which: int
    ) -> tuple[Any, dict[str, Any]]:
        """``spark.read.parquet`` → features assembled and cached → rows of one side, checked."""
        from pyspark.sql import functions as F

        from distml.backends.spark import mllib  # pandas: only where MLlib runs

        with self.exclusive():
            self.progress.start("reading with Spark")
            frame = mllib.read_frame(self.spark, dataset, split)
            if split is not None:
                test_rows = F.col(mllib.IS_TEST)
                frame = frame.where(test_rows if which else ~test_rows)
            stats = mllib.summarize(frame, dataset, split)
            self.progress.finish()
        return frame, stats

    def save_native_model(self, model: Model, model_dir: Path) -> Path | None:
        """MLlib's own model as ``model_dir/mllib`` (``model.write()``), for Spark users."""
        native = getattr(model, "native_model_", None)
        if native is None:
            return None
        path = model_dir / "mllib"
        with self.exclusive():
            native.write().overwrite().save(str(path))
        return path
