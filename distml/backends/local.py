"""The local backend: this machine's cores, threads over in-process partitions.

Partitions are read in parallel threads (pyarrow and numpy release the GIL)
and cached in memory when they fit; otherwise each pass re-reads them
(streaming), which linear regression and k-means support. ``solver: sklearn``
gathers the partitions and calls scikit-learn itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
from threadpoolctl import threadpool_limits

from distml.algorithms.engine import Engine, Partition, tree_reduce
from distml.backends.base import (
    CACHE_MEMORY_FRACTION,
    Backend,
    LoadedData,
    feature_bytes,
    parse_bytes,
)
from distml.data.dataset import Dataset, PartitionSpec
from distml.data.reader import load_partition
from distml.data.split import Split, split_sizes
from distml.models.base import Model
from distml.models.sklearn_solver import fit_with_sklearn


class LocalEngine(Engine):
    """Partitions in this process, mapped by a thread pool, reduced in tree order."""

    def __init__(
        self,
        pool: ThreadPoolExecutor,
        threads: int,
        sizes: list[int],
        n_features: int,
        cached: list[Partition] | None,
        loader: Callable[[int], Partition] | None = None,
    ) -> None:
        self._pool = pool
        self._threads = threads
        self._sizes = sizes
        self._n_features = n_features
        self._cached = cached
        self._loader = loader

    @property
    def partition_sizes(self) -> list[int]:
        return self._sizes

    @property
    def n_features(self) -> int:
        return self._n_features

    @property
    def can_cache(self) -> bool:
        return self._cached is not None

    def _map_reduce(self, fn, broadcast, combine):  # type: ignore[no-untyped-def]
        if self._cached is not None:
            cached = self._cached

            def run(i: int) -> Any:
                return fn(cached[i], *broadcast)
        else:
            loader = self._loader
            assert loader is not None

            def run(i: int) -> Any:
                return fn(loader(i), *broadcast)

        indices = range(len(self._sizes))
        if self._threads == 1:
            results = [run(i) for i in indices]
        else:
            with threadpool_limits(limits=1, user_api="blas"):
                results = list(self._pool.map(run, indices))
        return tree_reduce(results, combine)

    def derive(self, fn, *broadcast):  # type: ignore[no-untyped-def]
        def apply(part: Partition) -> Partition:
            return fn(part, *broadcast)

        if self._cached is not None:
            with threadpool_limits(limits=1, user_api="blas"):
                parts = list(self._pool.map(apply, self._cached))
            sizes, n_features = [p.n_rows for p in parts], int(parts[0].X.shape[1])
            engine = LocalEngine(self._pool, self._threads, sizes, n_features, parts)
        else:  # streaming: derive on every read; one read now learns the new shapes
            loader = self._loader
            assert loader is not None

            def load(i: int) -> Partition:
                return apply(loader(i))

            shapes = list(self._pool.map(lambda i: load(i).X.shape, range(len(self._sizes))))
            sizes, n_features = [int(s[0]) for s in shapes], int(shapes[0][1])
            engine = LocalEngine(self._pool, self._threads, sizes, n_features, None, load)
        engine.progress = self.progress
        return engine

    def partitions(self) -> list[Partition]:
        """All partitions in order (cached, or read now)."""
        if self._cached is not None:
            return self._cached
        assert self._loader is not None
        return list(self._pool.map(self._loader, range(len(self._sizes))))


def _fit_sklearn(backend: Backend, estimator: Model, engine: Engine) -> None:
    parts = engine.partitions()  # type: ignore[attr-defined]
    X = np.concatenate([p.X for p in parts])
    y = None if parts[0].y is None else np.concatenate([p.labels() for p in parts])
    fit_with_sklearn(estimator, X, y)


class LocalBackend(Backend):
    """Runs on this machine with ``threads`` worker threads (default: every core)."""

    name = "local"
    solvers = {"sklearn": _fit_sklearn}

    def __init__(self, threads: int | None = None, memory_limit: int | str | None = None) -> None:
        super().__init__()
        self.threads = threads or os.cpu_count() or 1
        self.memory_limit = None if memory_limit is None else parse_bytes(memory_limit)
        self._pool: ThreadPoolExecutor | None = None

    @property
    def description(self) -> str:
        return f"local[{self.threads}]"

    def _start(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="distml")

    def _stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _memory_budget(self) -> float:
        if self.memory_limit is not None:
            return float(self.memory_limit)
        return psutil.virtual_memory().available * CACHE_MEMORY_FRACTION

    def load(
        self,
        dataset: Dataset,
        split: Split | None = None,
        keep_source: bool = False,
        solver: str | None = None,
    ) -> LoadedData:
        self.start()
        assert self._pool is not None
        started = time.perf_counter()
        specs = dataset.partitions
        n_total = dataset.num_rows
        estimated = feature_bytes(dataset)

        def read(spec: PartitionSpec, reuse: bool = False) -> tuple[Partition, Partition | None]:
            return load_partition(
                dataset.uri,
                spec,
                dataset.features,
                dataset.label,
                split,
                n_total,
                keep_source,
                dataset.raw,
                reuse,
            )

        d = 0 if dataset.raw else len(dataset.features)  # raw: a pipeline builds X
        if estimated <= self._memory_budget():
            self.progress.start("reading", total=len(specs))
            pairs = []
            for pair in self._pool.map(read, specs):  # in order, as they complete
                pairs.append(pair)
                self.progress.step()
            self.progress.finish()
            # the decoded tables are freed; mimalloc would keep their pages (~180 MB at 10⁷
            # rows on two threads) for the whole fit. Not after each partition: a streaming
            # pass would fault them in again for the next one (25% slower, measured)
            pa.default_memory_pool().release_unused()
            train = [p[0] for p in pairs]
            engine = self._engine([p.n_rows for p in train], d, train)
            test = None
            if split is not None:
                tests = [p[1] for p in pairs]
                test = self._engine([p.n_rows for p in tests], d, tests)
            return LoadedData(engine, test, dataset, time.perf_counter() - started)

        # streaming: nothing cached, each pass re-reads; sizes follow from the split alone
        planned = split_sizes(specs, split, n_total)

        def sizes(which: int) -> list[int]:
            return [pair[which] for pair in planned]

        def loader(which: int) -> Callable[[int], Partition]:
            def load_one(i: int) -> Partition:
                pair = read(specs[i], reuse=True)  # the thread's scratch buffer, when free
                return pair[which] if which == 0 or pair[1] is None else pair[1]

            return load_one

        self.progress.message(
            f"streaming: {estimated / 1e9:.1f} GB of features exceed the memory budget "
            f"({self._memory_budget() / 1e9:.1f} GB); every pass re-reads the files"
        )
        engine = self._engine(sizes(0), d, None, loader(0))
        test = None if split is None else self._engine(sizes(1), d, None, loader(1))
        return LoadedData(engine, test, dataset, time.perf_counter() - started)

    def score(self, files, job):  # type: ignore[no-untyped-def]
        from distml.predict.task import score_file

        self.start()  # one file per task on the thread pool; the job is shared, not copied
        assert self._pool is not None
        self.progress.start("scoring", total=len(files))
        rows = []
        with threadpool_limits(limits=1, user_api="blas"):
            for count in self._pool.map(lambda file: score_file(file, job), files):
                rows.append(count)
                self.progress.step()
        self.progress.finish()
        return rows

    def run_gang(self, task, size):  # type: ignore[no-untyped-def]
        from distml.backends.gang import run_local_gang

        return run_local_gang(task, size, self.progress)  # processes on this machine

    def run_tasks(self, fn, items):  # type: ignore[no-untyped-def]
        self.start()
        assert self._pool is not None
        return list(self._pool.map(fn, items))

    def _engine(
        self,
        sizes: list[int],
        n_features: int,
        cached: list[Partition] | None,
        loader: Callable[[int], Partition] | None = None,
    ) -> LocalEngine:
        assert self._pool is not None
        engine = LocalEngine(self._pool, self.threads, sizes, n_features, cached, loader)
        engine.progress = self.progress
        return engine
