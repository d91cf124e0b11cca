"""The Dask backend on a real 2-worker LocalCluster: same models as local, workers write
predictions, a lost worker's partitions are re-read, a dead address fails in bounded time."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from article import assert_article_numbers
from conftest import REPO, assert_same_generated_data

pytest.importorskip("distributed", reason="the dask extra is not installed")
from distributed import Client, LocalCluster  # noqa: E402

import distml  # noqa: E402
from distml.backends import get_backend  # noqa: E402
from distml.data.generate import Recipe, generate  # noqa: E402
from distml.errors import BackendError, DataError, ModelError  # noqa: E402
from distml.jobs import load_spec, run_job  # noqa: E402
from distml.progress import Progress  # noqa: E402

pytestmark = pytest.mark.dask


def _cluster() -> LocalCluster:
    return LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        scheduler_kwargs={"dashboard": False},
    )


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dask-data")
    return {
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
        for kind in ("regression", "classification", "blobs")
    }


MODELS = {
    "regression": lambda solver="auto": distml.LinearRegression(solver=solver),
    "classification": lambda solver="auto": distml.LogisticRegression(solver=solver),
    "blobs": lambda solver="auto": distml.KMeans(n_clusters=5, random_state=0, solver=solver),
}


@pytest.mark.parametrize("kind", ["regression", "classification", "blobs"])
def test_same_model_and_predictions_as_local(
    kind: str, datasets, dask_address: str, tmp_path: Path
) -> None:
    ds = distml.Dataset(datasets[kind], label="y")
    split = None if kind == "blobs" else distml.Split(0.2, 3)
    with get_backend(dask_address) as dask_backend, get_backend("local") as local:
        on_dask = dask_backend.load(ds, split, keep_source=True)
        on_local = local.load(ds, split, keep_source=True)
        assert on_dask.train.partition_sizes == on_local.train.partition_sizes
        a = dask_backend.fit(MODELS[kind](), on_dask)
        b = local.fit(MODELS[kind](), on_local)
        evaluation = (on_dask.test, on_local.test) if split else (on_dask.train, on_local.train)
        assert dask_backend.evaluate(a, evaluation[0]) == local.evaluate(b, evaluation[1])
        files = dask_backend.write_predictions(a, evaluation[0], str(tmp_path / "dask"))
        local.write_predictions(b, evaluation[1], str(tmp_path / "local"))
    if kind == "regression":
        np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-8)
    elif kind == "classification":
        np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-6)
        assert a.objective_ == pytest.approx(b.objective_, rel=1e-6)
    else:
        assert a.inertia_ == pytest.approx(b.inertia_, rel=1e-9)
    assert a.fit_info_["backend"].startswith("dask(tcp://")
    assert len(files) == 6
    ours, theirs = pq.read_table(tmp_path / "dask"), pq.read_table(tmp_path / "local")
    assert ours.num_rows == evaluation[0].n_rows
    assert ours.equals(theirs)


def test_seed_jobs_run_unchanged_on_dask(dask_address: str, tmp_path: Path) -> None:
    for name in ("linear_regression", "logistic_regression", "kmeans"):
        spec_path = REPO / "jobs" / f"{name}.yaml"
        data = [f"data.train={tmp_path / name}"]
        on_dask = run_job(
            load_spec(spec_path, data, backend=dask_address), tmp_path / "dask" / name
        )
        on_local = run_job(load_spec(spec_path, data), tmp_path / "local" / name)
        written = [json.loads((r.out / "metrics.json").read_text()) for r in (on_dask, on_local)]
        assert written[0]["metrics"] == written[1]["metrics"]
        assert written[0]["model"] == written[1]["model"]
        assert pq.read_table(on_dask.out / "predictions").equals(
            pq.read_table(on_local.out / "predictions")
        )
        assert_article_numbers(on_dask.out, name)  # the article's printed numbers, on this engine


def test_backend_starts_and_closes_its_own_local_cluster(tmp_path: Path) -> None:
    spec = load_spec(
        REPO / "jobs" / "kmeans.yaml",
        [f"data.train={tmp_path / 'd'}", "backend.workers=2"],
        backend="dask",
    )
    backend = get_backend(spec.backend.name, **spec.backend.options())
    result = run_job(spec, tmp_path / "run", backend=backend)
    assert result.summary["backend"] == "dask(LocalCluster 2x1)"
    assert backend.cluster is not None and len(backend.cluster.workers) == 2
    backend.stop()
    assert backend.cluster.status.name == "closed"
    backend.stop()  # safe twice


def test_a_closed_port_is_one_line() -> None:
    with pytest.raises(
        BackendError, match=r"dask scheduler dask://127.0.0.1:9: nothing listens there"
    ):
        get_backend("dask://127.0.0.1:9", timeout=2).start()


@pytest.mark.timeout(60)  # a guard against the hang this test is about, not a timing claim
@pytest.mark.parametrize("peer", ["http", "silent"])
def test_something_that_is_not_a_scheduler_is_refused_not_waited_on(peer: str) -> None:
    import http.server
    import socket

    if peer == "http":
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
    else:
        listener = socket.create_server(("127.0.0.1", 0))  # accepts, never speaks
        port = listener.getsockname()[1]
    try:
        with pytest.raises(
            BackendError,
            match=rf"dask scheduler dask://127.0.0.1:{port}: something listens there but it is "
            r"not a Dask scheduler",
        ):
            get_backend(f"dask://127.0.0.1:{port}", timeout=2).start()  # waits 2 s for a handshake
    finally:
        if peer == "http":
            server.shutdown()
        else:
            listener.close()


def test_worker_errors_keep_their_class_and_message(tmp_path: Path, dask_address: str) -> None:
    import pandas as pd
    from conftest import write_parts

    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0], "y": [1.0, 2.0, 3.0]})
    write_parts(tmp_path / "d", frame, 1)
    with (
        get_backend(dask_address) as backend,
        pytest.raises(DataError, match=r"part-00000.parquet: column 'a' has 1 missing"),
    ):
        backend.load(distml.Dataset(tmp_path / "d", label="y"))


def test_dask_ml_solver(datasets, dask_address: str) -> None:
    with get_backend(dask_address) as backend:
        reg = backend.load(distml.Dataset(datasets["regression"], label="y"))
        native = backend.fit(MODELS["regression"](), reg)
        library = backend.fit(MODELS["regression"]("dask-ml"), reg)
        assert library.fit_info_["solver"] == "dask-ml"
        np.testing.assert_allclose(library.coef_, native.coef_, rtol=1e-3)
        blobs = backend.load(distml.Dataset(datasets["blobs"], label="y"))
        km = backend.fit(MODELS["blobs"]("dask-ml"), blobs)
        assert backend.evaluate(km, blobs.train)["adjusted_rand"] > 0.99
        classes3 = backend.load(distml.Dataset(datasets["classification"], label="y"))
        with pytest.raises(
            distml.errors.ModelError,
            match="binary logistic regression only; the label has 3 classes",
        ):
            backend.fit(MODELS["classification"]("dask-ml"), classes3)


def test_killed_worker_does_not_change_the_model(tmp_path: Path) -> None:
    path = generate(
        Recipe("classification", rows=300_000, features=10, partitions=12, seed=4), tmp_path / "c"
    )
    ds = distml.Dataset(path, label="y")
    model = lambda: distml.LogisticRegression(C=1e4, tol=1e-10, max_iter=500)  # noqa: E731
    with _cluster() as cluster:
        with get_backend(cluster.scheduler_address) as backend:
            undisturbed = backend.fit(model(), backend.load(ds))
        with Client(cluster, set_as_default=False) as client:
            pids = list(client.run(os.getpid).values())
        with get_backend(cluster.scheduler_address) as backend:
            data = backend.load(ds)
            killer = _KillAfterPasses(pids[0], "binary_loss_grad", 2)
            data.train.progress = killer  # the kill lands mid-fit, whatever the machine's speed
            disturbed = backend.fit(model(), data)
            assert killer.killed
        with Client(cluster, set_as_default=False) as client:
            assert pids[0] not in client.run(os.getpid).values()  # the worker really died
    assert undisturbed.n_iter_ >= 2  # passes after the one the worker died in
    np.testing.assert_allclose(disturbed.coef_, undisturbed.coef_, rtol=1e-12)
    assert disturbed.n_iter_ == undisturbed.n_iter_


class _KillAfterPasses(Progress):
    """Kills a worker process after the ``n``-th pass of ``fn``: the next pass loses it."""

    def __init__(self, pid: int, fn: str, n: int) -> None:
        super().__init__()
        self.pid, self.fn, self.n, self.seen, self.killed = pid, fn, n, 0, False

    def step(self, n: int = 1, detail: str | None = None) -> None:
        super().step(n, detail)
        if detail == self.fn:
            self.seen += 1
            if self.seen == self.n:
                os.kill(self.pid, signal.SIGKILL)
                self.killed = True


def test_broadcast_values_are_opaque_to_the_task_graph(datasets, dask_address: str) -> None:
    # A tuple starting with a callable, or a string shaped like a task key, must reach the
    # function as given; embedded raw in a Dask task they would be run or substituted.
    import operator

    ds = distml.Dataset(datasets["regression"], label="y")
    with get_backend(dask_address) as backend:
        engine = backend.load(ds).train
        doubled = engine.map_reduce(lambda part, f, args: f(part.n_rows, *args), operator.mul, (2,))
        assert doubled == 2 * engine.n_rows
        key = "distml-map-0"
        echoed = engine.map_reduce(lambda part, text: [text], key, combine=lambda a, b: a + b)
        assert echoed == [key] * engine.num_partitions


def test_a_pass_is_one_task_per_worker_thread_in_partition_order(
    datasets, dask_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each worker runs one task over the partitions it holds (Dask's cost per task made
    many small tasks the cost of a pass); the results are combined in partition order, so
    a pass gives what the local engine gives, bit for bit, however the partitions are
    spread."""
    from distributed import get_task_stream

    ds = distml.Dataset(datasets["classification"], label="y")
    with get_backend(dask_address) as backend, get_backend("local") as local:
        engine, here = backend.load(ds).train, local.load(ds).train
        assert engine.num_partitions == 6
        w = np.linspace(-1.0, 1.0, engine.n_features)

        def gradient(part, w):  # type: ignore[no-untyped-def]
            return part.X.T @ (part.X @ w - part.y)

        with get_task_stream(client=backend.client) as stream:
            got = engine.map_reduce(gradient, w)
        holders = {where[0] for where in backend.client.who_has(engine.parts).values()}
        tasks = [task["key"].split("-")[0] for task in stream.data]
        assert tasks == ["_apply_each"] * len(holders)  # one per worker holding partitions
        assert np.array_equal(got, here.map_reduce(gradient, w))
        # interleaved holders (0, 2, 4 on one worker; 1, 3, 5 on the other): the results
        # must still be put back in partition order
        workers = sorted(backend.client.nthreads())
        interleaved = {part.key: (workers[i % 2],) for i, part in enumerate(engine.parts)}
        monkeypatch.setattr(backend.client, "who_has", lambda futures: interleaved)
        with get_task_stream(client=backend.client) as stream:
            order = engine.map_reduce(
                lambda part: [int(part.row_ids[0])], combine=lambda a, b: a + b
            )
        assert len(stream.data) == 2
        assert order == sorted(order) and len(order) == 6
        assert np.array_equal(engine.map_reduce(gradient, w), got)


def test_streaming_gives_the_cached_model(datasets, dask_address: str) -> None:
    """With cache=False the workers re-read every partition on every pass (bigger-than-memory
    data); linear regression, k-means and logistic regression give the cached model."""
    from distml.preprocess import Pipeline, Scale

    ds = distml.Dataset(datasets["regression"], label="y")
    split = distml.Split(0.2, 3)
    with get_backend(dask_address) as cached, get_backend(dask_address, cache=False) as streaming:
        a, b = cached.load(ds, split), streaming.load(ds, split)
        assert a.train.can_cache and not b.train.can_cache
        assert b.train.partition_sizes == a.train.partition_sizes
        lin_a, lin_b = (
            cached.fit(MODELS["regression"](), a),
            streaming.fit(MODELS["regression"](), b),
        )
        np.testing.assert_allclose(lin_b.coef_, lin_a.coef_, rtol=1e-12)
        assert streaming.evaluate(lin_b, b.test) == cached.evaluate(lin_a, a.test)
        raw = distml.Dataset(datasets["regression"], label="y", raw=True)  # derive() streams too
        scaled = [
            e.fit(Pipeline([Scale()], distml.LinearRegression()), e.load(raw))
            for e in (cached, streaming)
        ]
        np.testing.assert_allclose(scaled[1].model.coef_, scaled[0].model.coef_, rtol=1e-12)
        with pytest.raises(ModelError, match=r"a Pipeline needs the raw feature columns"):
            cached.fit(Pipeline([Scale()], distml.LinearRegression()), a)
        blobs = distml.Dataset(datasets["blobs"], label="y")
        km_a = cached.fit(MODELS["blobs"](), cached.load(blobs))
        km_b = streaming.fit(MODELS["blobs"](), streaming.load(blobs))
        np.testing.assert_allclose(km_b.cluster_centers_, km_a.cluster_centers_, rtol=1e-12)
        classes = distml.Dataset(datasets["classification"], label="y")
        log_a = cached.fit(MODELS["classification"](), cached.load(classes))
        log_b = streaming.fit(MODELS["classification"](), streaming.load(classes))
        assert log_b.n_iter_ == log_a.n_iter_ > 1
        np.testing.assert_allclose(log_b.coef_, log_a.coef_, rtol=1e-12)


def test_generation_on_the_workers_writes_the_files_threads_write(
    tmp_path: Path, dask_address: str
) -> None:
    recipe = Recipe("blobs", rows=9_000, features=4, partitions=6, seed=3, centers=3)
    here = generate(recipe, tmp_path / "threads")
    with get_backend(dask_address) as backend:
        there = generate(recipe, tmp_path / "workers", backend=backend)
    assert_same_generated_data(here, there, 6)


def test_an_error_distml_reports_is_one_line_without_worker_logs(tmp_path: Path) -> None:
    import subprocess
    import sys

    generate(Recipe("regression", rows=400, features=3, partitions=2, seed=0), tmp_path / "d")
    spec = tmp_path / "job.yaml"
    spec.write_text("name: c\nmodel: {type: logistic_regression}\ndata: {train: d, label: y}\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "distml",
            "run",
            str(spec),
            "--backend",
            "dask",
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Compute Failed" not in done.stderr and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {tmp_path / 'd'}: label column 'y' has continuous values")
    assert not (tmp_path / "r").exists()


def test_tasks_lost_to_a_dying_worker_are_one_line_naming_the_cause() -> None:
    """A worker that dies under a task (as a nanny's memory kill does) ends the job in one
    BackendError line saying so, with the caller's hint, not an internal error."""
    import dask

    from distml.backends.dask import scheduler_errors

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        backend = get_backend("dask", workers=1, threads=1)
        with backend:
            with pytest.raises(BackendError) as caught:
                with scheduler_errors(backend.client, hint="solver native streams instead"):
                    backend.client.submit(os._exit, 1, pure=False).result(timeout=60)
            assert backend.client.status == "running"  # the scheduler itself is fine
    message = str(caught.value)
    assert message.startswith("dask: the job lost its tasks (KilledWorker: ")
    assert message.endswith(
        "a worker died or was restarted, often over its memory limit; solver native streams instead"
    )
    assert "\n" not in message


def test_a_cluster_that_lost_every_worker_fails_in_one_line_not_a_hang(
    datasets, monkeypatch
) -> None:
    """Dask waits forever for a worker to run tasks on (dask/distributed#7346); distml gives
    up once the cluster has had none for ``NO_WORKERS_TIMEOUT_S`` (2 s here) and says so."""
    monkeypatch.setattr("distml.backends.dask.NO_WORKERS_TIMEOUT_S", 2.0)
    ds = distml.Dataset(datasets["regression"], label="y")
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", dashboard_address=":0"
    ) as cluster:
        with get_backend(cluster.scheduler_address) as backend:
            data = backend.load(ds)  # cached on the only worker
            cluster.scale(0)
            deadline = time.monotonic() + 30
            while backend.client.nthreads() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert backend.client.nthreads() == {}
            with pytest.raises(BackendError) as caught:
                backend.fit(distml.LinearRegression(), data)
    message = str(caught.value)
    assert message.startswith(
        f"dask: the cluster at {cluster.scheduler_address} has had no workers for 2s"
    )
    assert "\n" not in message


def test_local_cluster_workers_drop_only_the_noise_the_driver_reports_itself() -> None:
    """The filter a LocalCluster's workers get: a heartbeat failing because the driver's
    scheduler has gone (Ctrl-C raced the cluster's close in CI) and "Compute Failed" for a
    distml error are dropped; other records, a foreign exception's included, are kept."""
    import logging

    from distml.backends.dask_quiet import SCHEDULER_GONE, _DropReportedErrors

    def record(msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("distributed.worker", logging.ERROR, "w.py", 1, msg, args, None)

    keep = _DropReportedErrors().filter
    failed = "Compute Failed\nKey: %s\nState: %s\nTask: %s\nException: %s\nTraceback: %s"
    assert keep(record(SCHEDULER_GONE)) is False
    assert keep(record(failed, "k", "s", "t", "DataError('x.parquet: bad')", "")) is False
    assert keep(record(failed, "k", "s", "t", "ZeroDivisionError('x')", "")) is True
    assert keep(record("Unexpected exception during heartbeat. Closing worker.")) is True


def test_workers_distml_starts_serve_temporaries_from_the_heap(monkeypatch) -> None:
    """Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_``, which freezes glibc's mmap threshold at
    128 KiB (every bigger temporary a fresh mmap and its page faults); the LocalCluster
    distml starts gives its workers ``MALLOC_MMAP_THRESHOLD_`` (``dask_environ``), and a
    value the user set wins."""

    def environ() -> tuple[str | None, str | None]:
        return os.environ.get("MALLOC_MMAP_THRESHOLD_"), os.environ.get("MALLOC_TRIM_THRESHOLD_")

    with get_backend("dask", workers=1, threads=1) as backend:
        assert list(backend.client.run(environ).values()) == [("4194304", "65536")]
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    with get_backend("dask", workers=1, threads=1) as backend:
        assert list(backend.client.run(environ).values()) == [("1048576", "65536")]
