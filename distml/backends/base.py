"""The backend abstraction: one class per engine, one contract for all.

A backend owns its engine's lifecycle (start or connect; close only what it
started), reads a :class:`~distml.data.Dataset` into partitions cached where the
data is processed, and fits, predicts and evaluates there. Fitting dispatches on
the estimator's ``solver``: ``native`` runs distml's engine-neutral algorithms
through the backend's :class:`~distml.algorithms.engine.Engine`; library solvers
(scikit-learn, dask-ml, MLlib) are entries in the backend's ``solvers`` table.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from distml.algorithms import metrics
from distml.algorithms.engine import Engine, concat
from distml.data.dataset import Dataset
from distml.data.split import Split
from distml.data.writer import write_partition_predictions
from distml.errors import BackendError, ModelError
from distml.models.base import Model
from distml.preprocess.pipeline import Pipeline
from distml.progress import Progress
from distml.units import parse_bytes  # noqa: F401  (re-exported: backends import it from here)

if TYPE_CHECKING:
    from distml.backends.gang import GangResult, GangTask
    from distml.predict.task import InputFile, ScoreJob

log = logging.getLogger(__name__)
T = TypeVar("T")

# Partitions stay cached while the data takes at most this fraction of the memory available
# to the workers; beyond it every pass re-reads the files (streaming).
CACHE_MEMORY_FRACTION = 0.5


def feature_bytes(dataset: Dataset) -> float:
    """Roughly what a dataset's partitions take in memory: float64 features, label, row id."""
    return dataset.num_rows * (len(dataset.features) + 2) * 8.0


SolverFn = Callable[["Backend", Model, Engine], None]


@dataclass
class LoadedData:
    """A dataset read by a backend: training partitions and, with a split, test partitions."""

    train: Engine
    test: Engine | None
    dataset: Dataset
    read_seconds: float


@contextmanager
def model_input(model: Any, engine: Engine) -> Iterator[tuple[Any, Engine]]:
    """The fitted model a pass applies, and the engine of its input: for a pipeline, its
    model and the partitions preprocessed where they live (freed afterwards)."""
    if isinstance(model, Pipeline):
        rows = model.transformed(engine)
        try:
            yield model.model, rows
        finally:
            rows.release()
    else:
        yield model, engine


class Backend(ABC):
    """Base class of every engine's backend; use it as a context manager."""

    name: ClassVar[str]
    default_solver: ClassVar[str] = "native"
    solvers: ClassVar[dict[str, SolverFn]] = {}

    def __init__(self) -> None:
        self._started = False
        self._stopped = False
        #: Where reads and passes are reported; the CLI replaces it with a display.
        self.progress = Progress()

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Backend:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start or connect to the engine (idempotent)."""
        if not self._started:
            self._start()
            self._started = True

    def start_while(self, work: Callable[[], T]) -> T:
        """Start the engine on this thread while ``work()`` runs on another; its result.

        ``work`` reads and checks a job's inputs (footers, a model): a LocalCluster's
        processes or a JVM no longer wait for them. The engine starts on the calling (main)
        thread, where signal handlers can be set. A bad input stays the error raised even
        when the engine failed too; the caller stops what started.
        """
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="distml-inputs") as pool:
            checked = pool.submit(work)
            try:
                self.start()
            except BaseException:
                problem = checked.exception()  # waits for the inputs
                if problem is not None:
                    raise problem from None
                raise
            return checked.result()

    def stop(self) -> None:
        """Release what this backend started; safe to call twice."""
        if self._started and not self._stopped:
            self._stopped = True
            self._stop()

    def _start(self) -> None:  # noqa: B027 - engines without a lifecycle keep the default
        """Start the engine (override)."""

    def _stop(self) -> None:  # noqa: B027
        """Stop what ``_start`` started (override)."""

    @property
    def description(self) -> str:
        """The backend as written in ``metrics.json`` (name plus address/parallelism)."""
        return self.name

    # -- data ------------------------------------------------------------------------------
    @abstractmethod
    def load(
        self,
        dataset: Dataset,
        split: Split | None = None,
        keep_source: bool = False,
        solver: str | None = None,
    ) -> LoadedData:
        """Read the dataset into cached partitions (test rows keep their input columns
        when ``keep_source``; without a split every row does). ``solver`` says which
        solver will fit the data, for engines whose library solvers read it their own way."""

    # -- fitting ---------------------------------------------------------------------------
    def resolve_solver(self, estimator: Model) -> str:
        solver = estimator.solver  # type: ignore[attr-defined]
        if solver == "auto":
            return self.default_solver
        if solver != "native" and solver not in self.solvers:
            available = ", ".join(["native", *self.solvers])
            raise ModelError(
                f"solver '{solver}' is not available on the {self.name} backend; "
                f"choose one of auto, {available}"
            )
        return solver

    def fit(self, estimator: Model, data: LoadedData) -> Model:
        """Fit ``estimator`` on the training partitions; records ``fit_info_``."""
        estimator.validate()
        solver = self.resolve_solver(estimator)
        self.progress.start(f"fitting {estimator.model_type} ({solver})")
        started = time.perf_counter()
        if isinstance(estimator, Pipeline):  # stages first; the model sees assembled features
            features, target = estimator.fit_stages(data.train), estimator.model
        else:
            features, target = data.train, estimator
        try:
            if solver == "native":
                target.fit_engine(features)
            else:
                self.solvers[solver](self, target, features)
        finally:
            if features is not data.train:
                features.release()
        if isinstance(estimator, Pipeline):
            target.set_feature_info(estimator.feature_names_out_, None)
        seconds = time.perf_counter() - started
        self.progress.finish()
        estimator.set_feature_info(data.dataset.features, data.dataset.feature_dtypes())
        estimator.fit_info_ = {
            "backend": self.description,
            "solver": solver,
            "rows": data.train.n_rows,
            "partitions": data.train.num_partitions,
            "fit_seconds": seconds,
            "train": data.dataset.uri,
            "label": data.dataset.label,
            "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        log.info("fitted %s with solver %s in %.3fs", estimator.model_type, solver, seconds)
        return estimator

    # -- evaluation and prediction ---------------------------------------------------------
    def evaluate(self, model: Model, engine: Engine, has_labels: bool = True) -> dict[str, Any]:
        """The task's metrics on ``engine``'s rows, computed on the workers."""
        self.progress.start("evaluating")
        with model_input(model, engine) as (fitted, rows):
            kernel = fitted.kernel()  # what the workers need: numpy arrays, no scikit-learn
            if model.task == "regression":
                result = metrics.regression_metrics(rows, kernel)
            elif model.task == "classification":
                result = metrics.classification_metrics(rows, kernel)
            else:
                result = metrics.clustering_metrics(rows, kernel, has_labels)
        self.progress.finish()
        return result

    def write_predictions(self, model: Model, engine: Engine, out_dir: str) -> list[str]:
        """Each partition writes ``part-NNNNN.parquet`` into ``out_dir`` where it lives."""
        self.progress.start("writing predictions")
        with model_input(model, engine) as (fitted, rows):
            files = rows.map_reduce(
                write_partition_predictions, fitted.kernel(), out_dir, combine=concat
            )
        self.progress.finish()
        return files

    @abstractmethod
    def run_tasks(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        """``[fn(item) for item in items]`` run in parallel on the workers (data generation)."""

    def run_gang(self, task: GangTask, size: int) -> GangResult:
        """Start ``size`` cooperating processes running ``task`` — one per rank, all at once,
        each told every member's address — and wait for them (:mod:`distml.backends.gang`).

        Raises :class:`~distml.backends.gang.GangLost` when a member is killed or lost
        (the caller may start the gang again) and ``GangFailed`` when one exits with an error.
        """
        raise BackendError(f"the {self.name} backend cannot start a gang of processes")

    def score(self, files: list[InputFile], job: ScoreJob) -> list[int]:
        """Score every input file where the data lives — one output Parquet file per input
        file, at the same relative path under ``job.out_dir`` — and return the rows written
        per file, in ``files`` order (:mod:`distml.predict.task`; the third primitive beside
        ``map_reduce`` and ``run_gang``). The model travels once per worker, not per file."""
        from distml.predict.task import score_file

        self.progress.start("scoring", total=len(files))
        rows = []
        for file in files:  # engines override this with their parallel version
            rows.append(score_file(file, job))
            self.progress.step()
        self.progress.finish()
        return rows

    def save_native_model(self, model: Model, model_dir: Path) -> Path | None:
        """Save the engine library's own model inside ``model_dir`` when its solver made one."""
        return None

    def sample(
        self, engine: Engine, m: int = 2000, model: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """A small uniform sample of rows for plots (preprocessed when ``model`` is a pipeline)."""
        with model_input(model, engine) as (_, rows):
            return metrics.sample_rows(rows, m)
