"""The Dask backend: a dask.distributed cluster, started here or reached by address.

Partitions are read *on the workers* (``client.map`` of the shared partition
reader) and stay there as futures, one per Parquet file or row-group chunk; X
and y live in one object, so they can never disagree. ``map_reduce`` runs one task
per worker thread over the partitions that worker holds; the small per-partition
statistics come back and are combined in
:func:`~distml.algorithms.engine.tree_reduce`'s pairing order, so the model equals
every other engine's. (Streaming passes are one read task per partition, combined
on the workers in the same order.) If a
worker dies, the scheduler re-runs the reads of its partitions from their
lineage and the fit goes on.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import psutil
from distributed import Client, Future, LocalCluster, Security
from distributed import wait as wait_for_futures
from distributed.client import FutureCancelledError
from distributed.comm import CommClosedError
from distributed.scheduler import KilledWorker

from distml.algorithms.engine import Engine, concat, tree_reduce
from distml.algorithms.logistic import find_classes
from distml.backends.base import CACHE_MEMORY_FRACTION, Backend, LoadedData, feature_bytes
from distml.backends.dask_tasks import (
    _X,
    _Apply,
    _apply_each,
    _n_rows,
    _pick,
    _shape,
    _shape_list,
    _y,
    release_arrow_pages,
)
from distml.data.dataset import Dataset, PartitionSpec
from distml.data.reader import PartitionReader, ReadThenApply, load_partition
from distml.data.split import Split, split_sizes
from distml.errors import BackendError, ModelError
from distml.models.base import Model

log = logging.getLogger(__name__)

#: How long a job waits for a cluster that has lost every worker to get one back before it
#: fails in one line (Dask's own client waits forever: dask/distributed#7346, #8320).
NO_WORKERS_TIMEOUT_S = float(os.environ.get("DISTML_DASK_NO_WORKERS_TIMEOUT", "60"))
_POLL_S = 1.0


class DaskEngine(Engine):
    """Partitions as futures on the workers (or, streaming, read by them on every pass);
    reductions run on the workers too."""

    def __init__(
        self,
        client: Client,
        parts: list[Any],
        sizes: list[int],
        n_features: int,
        reader: PartitionReader | None = None,
    ) -> None:
        self.client = client
        self.parts = parts  # futures of partitions, or PartitionSpecs when streaming
        self._sizes = sizes
        self._n_features = n_features
        self._reader = reader

    @property
    def can_cache(self) -> bool:
        return self._reader is None

    @property
    def partition_sizes(self) -> list[int]:
        return self._sizes

    @property
    def n_features(self) -> int:
        return self._n_features

    def derive(self, fn, *broadcast):  # type: ignore[no-untyped-def]
        if self._reader is not None:  # streaming: derive on every read
            engine = DaskEngine(self.client, self.parts, [], 0, self._reader.then(fn, broadcast))
            shapes = engine._map_reduce(_shape_list, (), concat)
        else:
            parts = self.client.map(_Apply(fn, broadcast), self.parts, pure=False)
            with scheduler_errors(self.client):
                shapes = gather(self.client, self.client.map(_shape, parts, pure=False))
            engine = DaskEngine(self.client, parts, [], 0)
        engine._sizes, engine._n_features = [int(s[0]) for s in shapes], int(shapes[0][1])
        engine.progress = self.progress
        return engine

    def release(self) -> None:
        # dropping the futures frees them once no derived engine depends on them (lineage)
        self.parts = []

    def _map_reduce(self, fn, broadcast, combine):  # type: ignore[no-untyped-def]
        if self._reader is None:
            with scheduler_errors(self.client):
                return tree_reduce(self._map_where_cached(_Apply(fn, broadcast)), combine)
        return self._map_reduce_graph(fn, broadcast, combine)

    def _map_where_cached(self, call: _Apply) -> list[Any]:
        """``[call(p) for p in parts]``, as one task per worker thread over the partitions
        that worker holds, not one per partition: Dask's cost per task exceeds a
        partition's arithmetic (docs/benchmarks.md). A partition that moved since the
        scheduler said where it was is fetched; one held nowhere yet (being recomputed
        after a lost worker) gets a task of its own, placed by the scheduler."""
        holders = self.client.who_has(self.parts)
        threads = self.client.nthreads()
        groups: dict[str | None, list[int]] = {}
        for i, part in enumerate(self.parts):
            where = holders.get(part.key) or ()
            groups.setdefault(where[0] if where else None, []).append(i)
        batches: list[tuple[list[int], Future]] = []
        for worker, indices in groups.items():
            n = max(1, min(len(indices), threads.get(worker, 1))) if worker else len(indices)
            for chunk in np.array_split(np.asarray(indices), n):
                chunk_list = [int(i) for i in chunk]
                place = {"workers": [worker], "allow_other_workers": True} if worker else {}
                future = self.client.submit(
                    _apply_each, call, [self.parts[i] for i in chunk_list], pure=False, **place
                )
                batches.append((chunk_list, future))
        results: list[Any] = [None] * len(self.parts)
        for (indices, _), values in zip(
            batches, gather(self.client, [future for _, future in batches]), strict=True
        ):
            for i, value in zip(indices, values, strict=True):
                results[i] = value
        return results

    def _map_reduce_graph(self, fn, broadcast, combine):  # type: ignore[no-untyped-def]
        # Streaming, one graph per pass: a read-then-apply task per partition, then
        # tree_reduce's pairing as combine tasks on the workers; one result back.
        token = uuid.uuid4().hex
        graph: dict[str, Any] = {}
        call = ReadThenApply(self._reader, fn, broadcast)
        level = []
        for i, part in enumerate(self.parts):
            key = f"distml-map-{token}-{i}"
            graph[key] = (call, part)
            level.append(key)
        depth = 0
        while len(level) > 1:
            nxt = []
            for i in range(0, len(level) - 1, 2):
                key = f"distml-combine-{token}-{depth}-{i}"
                graph[key] = (combine, level[i], level[i + 1])
                nxt.append(key)
            if len(level) % 2:
                nxt.append(level[-1])
            level, depth = nxt, depth + 1
        with scheduler_errors(self.client):
            [result] = gather(self.client, [self.client.get(graph, level[0], sync=False)])
            return result


def as_finished(client: Client, futures: list[Future]) -> Iterator[Future]:
    """``futures`` as each finishes (like ``as_completed``), or a :class:`BackendError` once
    the cluster has had no worker at all for :data:`NO_WORKERS_TIMEOUT_S`: its tasks could
    then never run, and Dask would wait for a worker forever."""
    pending, empty_since = set(futures), None
    while pending:
        try:
            with client.as_current():  # distml never sets a default client
                done, pending = wait_for_futures(
                    pending, timeout=_POLL_S, return_when="FIRST_COMPLETED"
                )
        except TimeoutError:
            if client.nthreads():
                empty_since = None
            elif empty_since is None:
                empty_since = time.monotonic()
            elif time.monotonic() - empty_since > NO_WORKERS_TIMEOUT_S:
                client.cancel(list(pending))
                raise BackendError(
                    f"dask: the cluster at {client.scheduler.address} has had no workers for "
                    f"{NO_WORKERS_TIMEOUT_S:g}s, so the job's tasks cannot run (workers died or "
                    "were stopped: check their memory limits and logs, or start workers)"
                ) from None
            continue
        yield from done


def gather(client: Client, futures: list[Future]) -> list[Any]:
    """``client.gather(futures)``, failing in one line when no worker is left to run them."""
    for _ in as_finished(client, futures):
        pass
    return client.gather(futures)


@contextmanager
def scheduler_errors(client: Client, hint: str = "") -> Iterator[None]:
    """Lost work becomes one :class:`BackendError` line: the scheduler lost mid-job (it fails
    at once), or tasks lost to workers that died or were restarted by their nannies (over
    their memory limit, most often); ``hint`` is added to the latter."""
    try:
        yield
    except (FutureCancelledError, CommClosedError) as exc:
        reason = str(exc).splitlines()[0]
        lost = isinstance(exc, CommClosedError) or exc.reason == "scheduler-connection-lost"
        if lost or client.status != "running":
            raise BackendError(
                f"dask: lost the scheduler {client.scheduler.address} during the job ({reason})"
            ) from None
        raise _lost_tasks(exc, hint) from None
    except KilledWorker as exc:
        raise _lost_tasks(exc, hint) from None
    except BaseException as exc:
        if not isinstance(exc, Exception):  # Ctrl-C or SIGTERM: the client's pending wait is
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # abandoned; no log noise
        raise


def _lost_tasks(exc: BaseException, hint: str) -> BackendError:
    reason = str(exc).splitlines()[0][:160]
    return BackendError(
        f"dask: the job lost its tasks ({type(exc).__name__}: {reason}); a worker died or was "
        f"restarted, often over its memory limit{'; ' + hint if hint else ''}"
    )


def _fit_dask_ml(backend: Backend, estimator: Model, engine: Engine) -> None:
    """``solver: dask-ml``: dask-ml on dask arrays built from the cached partitions."""
    assert isinstance(engine, DaskEngine)
    with engine.client.as_current(), warnings.catch_warnings():
        # dask-ml 2025.1 still sets a deprecated dask config key; not the user's concern
        warnings.filterwarnings("ignore", category=FutureWarning, module="dask")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="dask_glm")
        # dask-ml keeps several copies of the data in worker memory (dask-ml#717): workers
        # over their limit are restarted by their nannies and the fit's tasks are lost
        hint = "solver 'dask-ml' holds copies of the data; solver native streams instead"
        with scheduler_errors(engine.client, hint):
            _fit_with_dask_ml(estimator, engine)


def _fit_with_dask_ml(estimator: Model, engine: DaskEngine) -> None:
    import dask.array as da
    from dask_ml import cluster, linear_model

    client, d = engine.client, engine.n_features
    blocks = client.map(_X, engine.parts)
    X = da.concatenate(
        [
            da.from_delayed(b, shape=(n, d), dtype=float)
            for b, n in zip(blocks, engine.partition_sizes, strict=True)
        ]
    )
    params = estimator.get_params()
    if estimator.model_type == "kmeans":
        init = params["init"] if isinstance(params["init"], str) else np.asarray(params["init"])
        model = cluster.KMeans(
            n_clusters=params["n_clusters"],
            init="k-means||" if isinstance(init, str) and init in ("k-means++", "auto") else init,
            max_iter=params["max_iter"],
            tol=params["tol"],
            random_state=params["random_state"],
        ).fit(X)
        estimator.cluster_centers_ = np.asarray(model.cluster_centers_)
        estimator.inertia_ = float(model.inertia_)
        estimator.n_iter_ = int(getattr(model, "n_iter_", 0))
        return
    y_blocks = client.map(_y, engine.parts)
    y = da.concatenate(
        [
            da.from_delayed(b, shape=(n,), dtype=float)
            for b, n in zip(y_blocks, engine.partition_sizes, strict=True)
        ]
    )
    # dask-glm's L1 solvers (proximal_grad, admm) stop short of the penalised optimum (0.2-2%
    # off scikit-learn's coefficients, measured) and its elastic-net proximal operator is the
    # identity, so only L2 and no penalty are mapped; dask-glm's defaults of standardising X
    # and penalising the intercept are turned off, so the objective is scikit-learn's
    if estimator.model_type == "linear_regression":
        penalty = params["penalty"] if params["alpha"] > 0 else None
    else:
        penalty = estimator.effective_penalty()[0]  # type: ignore[attr-defined]
    if penalty in ("l1", "elasticnet"):
        raise ModelError(
            f"solver 'dask-ml' cannot fit {estimator.model_type} with penalty '{penalty}' "
            "(dask-glm's L1 solvers do not reach the optimum); use solver native"
        )
    exact = {"solver": "lbfgs", "solver_kwargs": {"normalize": False}}
    if estimator.model_type == "linear_regression":
        if penalty is None:
            model = linear_model.LinearRegression(
                fit_intercept=params["fit_intercept"], solver="lbfgs"
            )
            model.fit(X, y)
            intercept = float(model.intercept_)
        else:  # Ridge's Σr² + alpha·||w||² is dask-glm's Σr² + ½||w||²/C on centred data
            mean_x, mean_y = np.zeros(d), 0.0
            if params["fit_intercept"]:
                mean_x, mean_y = da.compute(X.mean(axis=0), y.mean())
            model = linear_model.LinearRegression(
                penalty="l2",
                C=1.0 / (2.0 * params["alpha"]),
                fit_intercept=False,
                tol=params["tol"],
                max_iter=params["max_iter"],
                **exact,
            )
            model.fit(X - mean_x, y - mean_y)
            intercept = float(mean_y - mean_x @ np.asarray(model.coef_, dtype=float))
        estimator.coef_ = np.asarray(model.coef_, dtype=float)
        estimator.intercept_ = intercept
        estimator.rank_ = d
        estimator.singular_ = np.zeros(0)
        estimator._set_iterations(None, None)  # type: ignore[attr-defined]
        return
    classes = find_classes(engine)
    if len(classes) != 2:
        raise ModelError(
            f"solver 'dask-ml' fits binary logistic regression only; the label has {len(classes)} "
            "classes (use solver native for multinomial)"
        )
    from dask_glm.regularizers import L2

    class L2WithoutIntercept(L2):
        """½||w||² over all but the last weight (dask-glm appends the intercept last)."""

        name = "distml-l2-without-intercept"

        @staticmethod
        def _mask(beta: Any) -> np.ndarray:
            mask = np.ones(beta.shape[0])
            mask[-1] = 0.0
            return mask

        def f(self, beta: Any) -> Any:
            return super().f(beta * self._mask(beta))

        def gradient(self, beta: Any) -> Any:
            return beta * self._mask(beta)

    model = linear_model.LogisticRegression(
        penalty=L2WithoutIntercept() if params["fit_intercept"] else "l2",
        C=np.inf if penalty is None else params["C"],  # dask-glm's weight is 1/C
        fit_intercept=params["fit_intercept"],
        tol=params["tol"],
        max_iter=params["max_iter"],
        **exact,
    )
    model.fit(X, (y == classes[1]).astype(int))
    estimator.coef_ = np.asarray(model.coef_, dtype=float).reshape(1, -1)
    estimator.intercept_ = np.atleast_1d(np.asarray(model.intercept_, dtype=float))
    estimator.classes_ = classes
    estimator.n_iter_ = int(params["max_iter"])


def security(tls: dict[str, str] | None) -> Security | None:
    """The client side of a TLS cluster: its CA, a client certificate and key (None: TCP)."""
    if not tls:
        return None
    return Security(
        tls_ca_file=tls["ca_file"],
        tls_client_cert=tls["cert"],
        tls_client_key=tls["key"],
        require_encryption=True,
    )


def _scheduler_address(address: str) -> str:
    return "tcp://" + address[len("dask://") :] if address.startswith("dask://") else address


@contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """SIGINT ignored while worker processes start, so they inherit SIG_IGN (kept across
    exec); without it a Ctrl-C makes every worker print a KeyboardInterrupt traceback and
    die before the driver can close the cluster in order."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def probe_scheduler(address: str, shown: str, timeout: float) -> None:
    """Fail fast unless a plain-TCP address speaks Dask's protocol.

    A Dask scheduler writes its handshake frame as soon as a connection is accepted;
    an HTTP server or another service writes nothing (or text), and ``Client`` would
    wait on it far beyond its own timeout.
    """
    if not address.startswith("tcp://"):
        return  # TLS and other transports: the Client's own timeout applies
    host, _, port = address[len("tcp://") :].rpartition(":")
    if not port.isdigit():
        raise BackendError(f"dask scheduler {shown}: expected HOST:PORT")
    try:
        sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    except ConnectionRefusedError:
        raise BackendError(
            f"dask scheduler {shown}: nothing listens there (connection refused)"
        ) from None
    except OSError as exc:
        raise BackendError(
            f"dask scheduler {shown} did not answer within {timeout:g}s ({exc})"
        ) from None
    with sock:
        sock.settimeout(min(timeout, 5.0))
        try:
            first = sock.recv(16)
        except (TimeoutError, OSError):
            first = b""
    # the handshake: 8 bytes of total length, then 8 bytes of frame count (little-endian)
    frames = int.from_bytes(first[8:16], "little") if len(first) >= 16 else -1
    if not 0 < frames < 64:
        said = " (it answered in text: an HTTP server?)" if first[:4].isascii() and first else ""
        raise BackendError(
            f"dask scheduler {shown}: something listens there but it is not a Dask scheduler"
            f"{said or ' (it sent no Dask handshake)'}"
        )


class DaskBackend(Backend):
    """Dask on a ``LocalCluster`` of worker processes, or on an existing scheduler.

    Parameters
    ----------
    address:
        ``dask://host:port``, ``tcp://…`` or ``tls://…`` of a running scheduler (never
        closed by distml); without it a ``LocalCluster`` is started and closed here.
    workers, threads:
        Worker processes (default: one per core) and threads per worker (default 1).
    memory_limit:
        Per-worker memory limit of the LocalCluster (e.g. ``"2GB"``).
    dashboard:
        Serve the dashboard (off by default); its link is logged.
    timeout:
        Seconds to wait for a scheduler before failing.
    cache:
        Keep partitions on the workers (default: when they fit in half the workers'
        memory); otherwise every pass re-reads them (streaming; logistic regression
        then says how much memory it needs).
    tls:
        ``{ca_file, cert, key}`` of a ``tls://`` cluster (``distml cluster up dask --tls``
        writes them; ``distml submit`` finds them in its state folder).
    """

    name = "dask"
    solvers = {"dask-ml": _fit_dask_ml}

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        threads: int | None = None,
        memory_limit: str | int | None = None,
        dashboard: bool = False,
        timeout: float = 10.0,
        tls: dict[str, str] | None = None,
        cache: bool | None = None,
    ) -> None:
        super().__init__()
        self.address = address
        self.tls = tls
        self.cache = cache
        self.workers = workers or os.cpu_count() or 1
        self.threads = threads or 1
        self.memory_limit = memory_limit
        self.dashboard = dashboard
        self.timeout = timeout
        self.client: Client | None = None
        self.cluster: LocalCluster | None = None

    @property
    def description(self) -> str:
        if self.address:
            return f"dask({self.address})"
        return f"dask(LocalCluster {self.workers}x{self.threads})"

    def _start(self) -> None:
        from distml.backends.dask_quiet import quiet_sync_cancel_race

        quiet_sync_cancel_race()  # a Ctrl-C racing distributed's sync(): no traceback
        if self.address:
            address = _scheduler_address(self.address)
            if address.startswith("tls://") and not self.tls:
                raise BackendError(
                    f"dask scheduler {self.address} speaks TLS: give the cluster's certificates "
                    "(backend.tls: {ca_file, cert, key}; distml submit finds those of clusters "
                    "started by distml cluster up)"
                )
            probe_scheduler(address, self.address, self.timeout)
            try:
                self.client = Client(
                    address,
                    timeout=f"{self.timeout}s",
                    security=security(self.tls),
                    set_as_default=False,
                )
            except (OSError, TimeoutError) as exc:
                raise BackendError(
                    f"dask scheduler {self.address} did not answer within {self.timeout:g}s ({exc})"
                ) from None
        else:
            options: dict[str, Any] = {}
            if self.memory_limit is not None:
                options["memory_limit"] = self.memory_limit
            import dask

            from distml.backends.dask_environ import worker_environ

            environ = {
                f"distributed.nanny.pre-spawn-environ.{name}": value
                for name, value in worker_environ().items()
            }
            with _workers_ignore_ctrl_c(), dask.config.set(environ):  # Ctrl-C reaches the
                self.cluster = LocalCluster(  # process group: the driver alone closes the cluster
                    n_workers=self.workers,
                    threads_per_worker=self.threads,
                    processes=True,
                    dashboard_address=":0",
                    scheduler_kwargs={"dashboard": self.dashboard},
                    silence_logs=logging.ERROR,
                    **options,
                )
            self.client = Client(self.cluster, set_as_default=False)
            from distml.backends.dask_quiet import QuietDistmlErrors

            self.client.register_plugin(QuietDistmlErrors())  # our workers print to the terminal
        if self.dashboard and self.client.dashboard_link:
            self.progress.message(f"dask dashboard: {self.client.dashboard_link}")

    def _stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:  # only what we started; an existing scheduler stays up
            self.cluster.close()

    def load(
        self,
        dataset: Dataset,
        split: Split | None = None,
        keep_source: bool = False,
        solver: str | None = None,
    ) -> LoadedData:
        self.start()
        assert self.client is not None
        started = time.perf_counter()
        specs: list[PartitionSpec] = dataset.partitions
        d = 0 if dataset.raw else len(dataset.features)  # raw: a pipeline builds X
        if not self._caches(dataset):
            return self._streaming(dataset, split, keep_source, d, started)
        pairs = self.client.map(
            load_partition,
            [dataset.uri] * len(specs),
            specs,
            features=dataset.features,
            label=dataset.label,
            split=split,
            n_total=dataset.num_rows,
            keep_source=keep_source,
            raw=dataset.raw,
            pure=False,
        )
        train = self.client.map(_pick, pairs, which=0, pure=False)
        test = self.client.map(_pick, pairs, which=1, pure=False) if split is not None else None

        def engine(parts: list[Any], stage: str | None) -> DaskEngine:
            # waiting for the sizes waits for every read; a worker's DataError re-raises here
            futures = self.client.map(_n_rows, parts, pure=False)
            if stage is not None:
                self.progress.start(stage, total=len(futures))
                with scheduler_errors(self.client):
                    for _ in as_finished(self.client, futures):
                        self.progress.step()
                self.progress.finish()
            with scheduler_errors(self.client):
                sizes = gather(self.client, futures)
            result = DaskEngine(self.client, parts, list(sizes), d)
            result.progress = self.progress
            return result

        loaded = LoadedData(
            engine(train, "reading"),
            engine(test, None) if test is not None else None,
            dataset,
            time.perf_counter() - started,
        )
        with scheduler_errors(self.client):  # every read is done: Arrow's pages go back
            self.client.run(release_arrow_pages)
        return loaded

    def run_tasks(self, fn, items):  # type: ignore[no-untyped-def]
        self.start()
        assert self.client is not None
        with scheduler_errors(self.client):
            return gather(self.client, self.client.map(fn, items, pure=False))

    def score(self, files, job):  # type: ignore[no-untyped-def]
        from distml.predict.task import score_file

        self.start()
        assert self.client is not None
        # the job (the model) is sent to every worker once and deserialised there once; each
        # task — one per input file — receives that worker's copy
        with scheduler_errors(self.client):
            [shared] = self.client.scatter([job], broadcast=True, hash=False)
        futures = self.client.map(score_file, files, job=shared, pure=False)
        self.progress.start("scoring", total=len(futures))
        with scheduler_errors(self.client):
            for _ in as_finished(self.client, futures):
                self.progress.step()
        self.progress.finish()
        with scheduler_errors(self.client):
            return gather(self.client, futures)

    def run_gang(self, task, size):  # type: ignore[no-untyped-def]
        from distml.backends.dask_gang import run_dask_gang

        self.start()  # one task per member, pinned to distinct workers
        return run_dask_gang(self.client, task, size, self.progress, self.timeout, self.description)

    def _caches(self, dataset: Dataset) -> bool:
        """Whether the partitions fit in the workers' memory (else every pass re-reads them)."""
        if self.cache is not None:
            return self.cache
        assert self.client is not None
        workers = self.client.scheduler_info()["workers"].values()
        total = sum(w.get("memory_limit") or psutil.virtual_memory().total for w in workers)
        return feature_bytes(dataset) <= CACHE_MEMORY_FRACTION * total

    def _streaming(
        self, dataset: Dataset, split: Split | None, keep_source: bool, d: int, started: float
    ) -> LoadedData:
        assert self.client is not None
        self.progress.message(
            f"streaming: {feature_bytes(dataset) / 1e9:.1f} GB of features exceed the workers' "
            "memory budget; every pass re-reads the files on the workers"
        )
        load = {
            "uri": dataset.uri,
            "features": dataset.features,
            "label": dataset.label,
            "split": split,
            "n_total": dataset.num_rows,
            "keep_source": keep_source,
            "raw": dataset.raw,
        }
        planned = split_sizes(dataset.partitions, split, dataset.num_rows)

        def engine(which: int) -> DaskEngine:
            sizes = [pair[which] for pair in planned]
            result = DaskEngine(
                self.client, list(dataset.partitions), sizes, d, PartitionReader(load, which)
            )
            result.progress = self.progress
            return result

        return LoadedData(
            engine(0),
            engine(1) if split is not None else None,
            dataset,
            time.perf_counter() - started,
        )
