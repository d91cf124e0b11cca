"""Keras on several workers: MultiWorkerMirroredStrategy in real worker processes started by
the local backend, a real Dask LocalCluster and a real local[2] Spark session.

One uninterrupted 2-worker run on the local backend is the reference; the Dask and Spark
runs each lose a worker process (SIGKILL after the first epoch), restart from the
per-rank checkpoints and must end with the reference's weights — which checks at once
that every launcher trains on the same shard plan and that a resumed run continues the
interrupted one exactly. The driver (this process) never imports TensorFlow: weights
are read from ``model.keras`` with h5py, accuracy from the predictions with pyarrow.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import BUCKET, REPO, S3Store, digits

from distml.backends.gang import Coordinator, GangTask, child_environment, reserve_port
from distml.data.mnist import load_idx_folder, mnist_table
from distml.deep.shards import iter_shard, plan_shards
from distml.errors import BackendError, SpecError
from distml.jobs import parse_spec, run_job
from distml.progress import Progress

MNIST = REPO.parent / "shared" / "data" / "mnist"
TRAIN_ROWS, TEST_ROWS = 1201, 500  # odd: 2 workers leave one training row out per epoch
EPOCHS = 2  # the seed's; a worker is killed after the first
STEPS = -(-(TRAIN_ROWS // 2) // 32)  # per epoch and worker: 600 rows in batches of 32


# -- data and helpers -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first rows of the real MNIST as Parquet (learnable synthetic digits where
    ``../shared`` is not beside the checkout, as on a clean CI clone: every claim here —
    shards, launchers, resumed weights — holds for any images): several files, several row
    groups each, so shards cut through both."""
    if (MNIST / "train-images-idx3-ubyte.gz").exists():
        arrays = load_idx_folder(MNIST)
        train = arrays.x_train[:TRAIN_ROWS], arrays.y_train[:TRAIN_ROWS]
        test = arrays.x_test[:TEST_ROWS], arrays.y_test[:TEST_ROWS]
    else:
        train, test = digits(TRAIN_ROWS, 1), digits(TEST_ROWS, 2)
    root = tmp_path_factory.mktemp("mnist-mw")
    for split, (images, labels), files in (("train", train, 3), ("test", test, 2)):
        (root / split).mkdir()
        bounds = np.linspace(0, len(labels), files + 1).astype(int)
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            table = mnist_table(images[lo:hi], labels[lo:hi], first_index=int(lo))
            pq.write_table(table, root / split / f"part-{i}.parquet", row_group_size=150)
    return root


def job(data: Path, backend: str = "local", **train: object) -> dict:
    return {
        "name": "mnist-mw",
        "backend": backend,
        "model": {"type": "keras", "params": {"architecture": "mlp"}},
        "data": {"train": str(data / "train"), "test": str(data / "test"), "label": "label"},
        "train": {
            "epochs": EPOCHS,
            "batch_size": 32,
            "workers": 2,
            "shuffle_buffer": 300,
            "seed": 3,
            "start_timeout": 60,
            "collective_timeout": 60,
            **train,
        },
        "output": {"plots": False},
    }


def weights(run: Path) -> dict[str, np.ndarray]:
    """Every array in ``model.keras``'s weights file by name (h5py, no TensorFlow)."""
    import h5py

    with zipfile.ZipFile(run / "model.keras") as archive, archive.open("model.weights.h5") as f:
        arrays: dict[str, np.ndarray] = {}
        with h5py.File(f, "r") as h5:
            h5.visititems(
                lambda name, item: (
                    arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None
                )
            )
    return arrays


def accuracy_from_predictions(run: Path, data: Path) -> float:
    """Test accuracy recomputed from the run's predictions and the test set's own labels."""
    predicted = pq.read_table(run / "predictions", columns=["index", "prediction"]).to_pandas()
    truth = pq.read_table(data / "test", columns=["index", "label"]).to_pandas()
    merged = truth.merge(predicted, on="index", validate="one_to_one")
    assert len(merged) == TEST_ROWS
    return float((merged["label"] == merged["prediction"]).mean())


class KillAfterFirstEpoch:
    """Watches the job's per-rank checkpoints; once both ranks finished epoch 1, SIGKILLs
    rank 1's worker process (its pid is in its checkpoint's metrics)."""

    def __init__(self, out: Path) -> None:
        self.checkpoints = out.parent / f".{out.name}.workers" / "checkpoints"
        self.seen: dict[int, dict] = {}
        self.killed: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> KillAfterFirstEpoch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        while not self._stop.is_set():
            done = [self.checkpoints / f"rank-{r}" / "epoch-0001.npz" for r in (0, 1)]
            if all(path.exists() for path in done):
                for rank in (0, 1):
                    row = self.checkpoints / f"rank-{rank}" / "epoch-0001.json"
                    self.seen[rank] = json.loads(row.read_text())
                self.killed = int(self.seen[1]["pid"])
                os.kill(self.killed, signal.SIGKILL)
                return
            time.sleep(0.02)


# -- the shard plan (no TensorFlow) ---------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_shards_cover_every_row_once(mnist_small: Path, workers: int) -> None:
    files = sorted(str(p) for p in (mnist_small / "train").glob("*.parquet"))
    # the dataset's rows in order, from the footers and the files themselves (not the plan)
    sizes = [pq.ParquetFile(f).metadata.num_rows for f in files]
    assert sum(sizes) == TRAIN_ROWS
    index = pq.read_table(files, columns=["index"]).column("index").to_numpy()
    np.testing.assert_array_equal(index, np.arange(TRAIN_ROWS))
    per = TRAIN_ROWS // workers
    shards = plan_shards(files, workers, equal=True)
    seen = []
    for rank, pieces in enumerate(shards):
        rows = np.concatenate(
            [
                pq.ParquetFile(p.file)
                .read_row_group(p.group, columns=["index"])
                .column("index")
                .to_numpy()[p.start : p.stop]
                for p in pieces
            ]
        )
        np.testing.assert_array_equal(rows, np.arange(rank * per, (rank + 1) * per))
        seen.append(rows)
        # one shuffled epoch of the shard holds exactly its rows' labels and pixels
        labels = pq.read_table(files, columns=["label"]).column("label").to_numpy()
        chunks = list(
            iter_shard(pieces, "pixels", "label", 784, 32, shuffle_buffer=100, seed=1, rank=rank)
        )
        assert {len(y) for _, y in chunks[:-1]} == {32}
        got = np.concatenate([y for _, y in chunks])
        np.testing.assert_array_equal(np.sort(got), np.sort(labels[rows]))
        assert not np.array_equal(got, labels[rows]) or per < 2  # shuffled
    everything = np.concatenate(seen)
    assert len(np.unique(everything)) == len(everything) == per * workers
    assert TRAIN_ROWS - len(everything) == TRAIN_ROWS % workers  # fewer than one per worker
    # evaluation shards: every row, once
    evaluation = plan_shards(files, workers, equal=False)
    assert sum(p.rows for shard in evaluation for p in shard) == TRAIN_ROWS


# -- specs, ports, environment, timeouts (no TensorFlow) ------------------------------------------
@pytest.mark.parametrize(
    ("train", "backend", "message"),
    [
        ({"workers": 0}, "local", "train.workers: Input should be greater than or equal to 1"),
        ({"threads": 0}, "local", "train.threads: Input should be greater than or equal to 1"),
        ({"max_restarts": -1}, "local", "train.max_restarts: Input should be greater than"),
        ({"collective_timeout": 0}, "local", "train.collective_timeout: Input should be greater"),
        ({"start_timeout": -5}, "local", "train.start_timeout: Input should be greater"),
        ({"devices": 2}, "local", "train.devices is for one process"),
        ({"workers": None}, "dask", "Keras jobs run on the local backend"),
        ({"steps_per_execution": 0}, "local", "train.steps_per_execution: Input should be"),
        (
            {"workers": None, "steps_per_execution": 8},
            "local",
            "train.steps_per_execution is for train.workers jobs",
        ),
        ({"workerz": 2}, "local", "did you mean 'workers'"),
    ],
)
def test_bad_multiworker_specs(train: dict, backend: str, message: str, tmp_path: Path) -> None:
    raw = job(tmp_path, backend, **train)
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec(raw, base_dir=tmp_path)


def test_a_reserved_port_is_held_and_children_get_no_proxy(monkeypatch) -> None:
    sock, port = reserve_port("127.0.0.1")
    try:
        other = socket.socket()
        with pytest.raises(OSError):
            other.bind(("127.0.0.1", port))  # nobody can take it while it is held
        other.close()
        monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
        monkeypatch.setenv("GRPC_PROXY", "http://127.0.0.1:9")
        monkeypatch.setenv("TF_CONFIG", '{"stale": true}')
        task = GangTask(module="x", env={"A": "1"}, peer_env=lambda r, p, g: {"R": f"{r}/{p}"})
        env = child_environment(task, 1, ["h:1", "h:2"], False, [], 3, sock.fileno())
    finally:
        sock.close()
    assert not {k for k in env if k.lower().endswith("proxy")}
    assert "TF_CONFIG" not in env
    assert env["R"] == "1/['h:1', 'h:2']" and env["A"] == "1"
    assert env["OMP_NUM_THREADS"] == env["TF_NUM_INTRAOP_THREADS"] == "3"
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["DISTML_GANG_PEERS"] == "h:1,h:2" and env["DISTML_GANG_RANK"] == "1"
    assert "DISTML_GANG_CPUS" not in env  # bound only where given (local gangs)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux's")
@pytest.mark.parametrize(("threads", "bind"), [(1, True), (1, False), (None, True)])
def test_local_gang_members_run_on_their_own_cores(
    tmp_path: Path, threads: int | None, bind: bool
) -> None:
    """Real child processes report the cores they may run on: with ``bind_cpus`` and room
    for every member, disjoint sets of ``threads`` cores in order; else all of ours."""
    from distml.backends.gang import run_local_gang

    (tmp_path / "show_cpus.py").write_text(
        "import os\n"
        "from distml.backends.gang import bind_cpus\n"
        "bind_cpus()\n"
        "print('cpus', sorted(os.sched_getaffinity(0)), flush=True)\n"
    )
    size = 2
    task = GangTask(
        module="show_cpus",
        env={"PYTHONPATH": str(tmp_path)},
        threads=threads,
        bind_cpus=bind,
        start_timeout=60,
    )
    result = run_local_gang(task, size, Progress())
    assert result.exit_codes == [0, 0]
    seen = [[line for line in result.tails[r] if line.startswith("cpus ")] for r in range(size)]
    ours = sorted(os.sched_getaffinity(0))
    per = threads or max(1, (os.cpu_count() or 1) // size)
    if bind and size * per <= len(ours):
        expected = [ours[r * per : (r + 1) * per] for r in range(size)]
    else:
        expected = [ours] * size
    assert seen == [[f"cpus {cores}"] for cores in expected]


def test_members_that_never_check_in_fail_in_one_line() -> None:
    coordinator = Coordinator(2, "127.0.0.1", Progress(), start_timeout=1.0, name="job x")
    with pytest.raises(BackendError) as caught:
        coordinator.run()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("job x: only 0 of 2 members started within 1s")


# -- real worker processes ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(mnist_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted 2-worker run on the local backend (a dead proxy in the environment:
    gRPC would use it for the workers' own addresses if it reached them)."""
    pytest.importorskip("tensorflow")
    out = tmp_path_factory.mktemp("reference") / "run"
    saved = {k: os.environ.get(k) for k in ("http_proxy", "HTTP_PROXY", "all_proxy", "TMPDIR")}
    os.environ.update(http_proxy="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    os.environ["all_proxy"] = "http://127.0.0.1:9"
    (out.parent / "workers-tmp").mkdir()
    os.environ["TMPDIR"] = str(out.parent / "workers-tmp")  # the workers' temporary files
    try:
        spec = parse_spec(job(mnist_small, "local", threads=1), base_dir=mnist_small)
        run_job(spec, out)
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    return out


@pytest.mark.tf
def test_local_processes_train_mnist(reference: Path, mnist_small: Path) -> None:
    summary = json.loads((reference / "metrics.json").read_text())
    assert (summary["workers"], summary["replicas"], summary["strategy"]) == (
        2,
        2,
        "MultiWorkerMirroredStrategy",
    )
    assert summary["launcher"] == "local processes" and summary["restarts"] == 0
    assert summary["rows_per_worker"] == TRAIN_ROWS // 2
    assert summary["rows_left_out_per_epoch"] == 1
    assert summary["global_batch_size"] == 64
    assert len(summary["history"]["loss"]) == EPOCHS
    assert summary["history"]["loss"][-1] < summary["history"]["loss"][0]
    accuracy = accuracy_from_predictions(reference, mnist_small)
    assert accuracy == pytest.approx(summary["accuracy"], abs=1e-9)
    assert accuracy > 0.8  # 1,200 real MNIST rows, 2 epochs: ~0.85 (synthetic: ~1); chance 0.1
    assert sorted(p.name for p in reference.iterdir()) == [
        "_distml.json",
        "metrics.json",
        "model.keras",
        "predictions",
    ]
    assert not list(reference.parent.glob(".run*"))  # no state or temporary folder left
    # the workers end with os._exit (gRPC threads can hold a normal exit back), after the
    # exit handlers: TensorFlow's autograph files (4 a worker) are removed, not left in TMPDIR
    assert not list((reference.parent / "workers-tmp").iterdir())


@pytest.mark.tf
@pytest.mark.dask
def test_dask_resumes_after_a_killed_worker_with_the_same_weights(
    reference: Path, mnist_small: Path, dask_address: str, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    # one step per call into TensorFlow (the reference makes one call per epoch): the same weights
    spec = parse_spec(job(mnist_small, dask_address, steps_per_execution=1), base_dir=mnist_small)
    with KillAfterFirstEpoch(out) as killer:
        run_job(spec, out)
    _check_resumed(out, reference, mnist_small, killer, "dask tasks pinned to distinct workers")


@pytest.mark.tf
@pytest.mark.spark
def test_spark_resumes_after_a_killed_worker_with_the_same_weights(
    reference: Path, mnist_small: Path, spark_session, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    spec = parse_spec(job(mnist_small, "spark", steps_per_execution=5), base_dir=mnist_small)
    with KillAfterFirstEpoch(out) as killer:
        run_job(spec, out)
    _check_resumed(out, reference, mnist_small, killer, "spark barrier stage")


def _check_resumed(
    out: Path, reference: Path, data: Path, killer: KillAfterFirstEpoch, launcher: str
) -> None:
    assert killer.killed is not None, "the run ended before a worker could be killed"
    # per-rank checkpoints, written by two different processes
    assert killer.seen[0]["pid"] != killer.seen[1]["pid"]
    assert killer.seen[0]["loss"] == killer.seen[1]["loss"]  # all-reduced
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["launcher"] == launcher
    assert summary["restarts"] == 1
    assert 1 <= summary["resumed_from_epoch"] < EPOCHS
    assert len(summary["history"]["loss"]) == EPOCHS
    # the same shard plan and seeds, resumed exactly: the uninterrupted run's weights
    # (CPU op determinism on; the tolerance only absorbs float32 summation order)
    expected, got = weights(reference), weights(out)
    assert sorted(got) == sorted(expected)
    assert len(got) == 14  # 2 Dense layers' kernel and bias; Adam's step, rate and 2 x 4 moments
    assert int(got["optimizer/vars/0"]) == EPOCHS * STEPS  # every step once, none twice
    for name, array in expected.items():
        np.testing.assert_allclose(got[name], array, rtol=1e-5, atol=1e-6, err_msg=name)
    reference_summary = json.loads((reference / "metrics.json").read_text())
    assert summary["accuracy"] == pytest.approx(reference_summary["accuracy"], abs=1e-9)
    assert accuracy_from_predictions(out, data) == pytest.approx(summary["accuracy"], abs=1e-9)
    assert not (out.parent / f".{out.name}.workers").exists()


# -- not enough slots, a dead address: one line, quickly ------------------------------------------
@pytest.mark.spark
def test_spark_with_too_few_slots_is_one_line(mnist_small: Path, spark_session, tmp_path) -> None:
    spec = parse_spec(job(mnist_small, "spark", workers=3), base_dir=mnist_small)
    with pytest.raises(BackendError) as caught:
        run_job(spec, tmp_path / "run")
    message = str(caught.value)
    assert "\n" not in message
    assert "train.workers=3 needs 3 task slots at once" in message and "offers 2" in message
    assert not (tmp_path / "run").exists()


@pytest.mark.dask
def test_dask_with_too_few_workers_is_one_line(
    mnist_small: Path, dask_address: str, tmp_path: Path
) -> None:
    raw = job(mnist_small, dask_address, workers=3)
    raw["backend"] = {"name": dask_address, "timeout": 1}
    spec = parse_spec(raw, base_dir=mnist_small)
    with pytest.raises(BackendError) as caught:
        run_job(spec, tmp_path / "run")
    message = str(caught.value)
    assert "\n" not in message
    assert "train.workers=3 needs 3 workers" in message and "has 2 after 1s" in message
    assert not (tmp_path / "run").exists()


@pytest.mark.dask
def test_a_dead_dask_address_is_one_line(mnist_small: Path, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    raw = job(mnist_small, dead)
    raw["backend"] = {"name": dead, "timeout": 1}
    with pytest.raises(BackendError) as caught:
        run_job(parse_spec(raw, base_dir=mnist_small), tmp_path / "run")
    assert "\n" not in str(caught.value) and dead.split("//")[1] in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_a_member_that_fails_ends_the_gang_in_one_line(tmp_path: Path) -> None:
    """Real child processes (no TensorFlow reached): an error is GangFailed (not retried),
    named by its last line, and every member is stopped."""
    from distml.backends.gang import GangFailed, run_local_gang

    missing = tmp_path / "no-plan.json"
    task = GangTask(module="distml.deep.worker", args=(str(missing),), start_timeout=60)
    with pytest.raises(GangFailed) as caught:
        run_local_gang(task, 2, Progress())
    message = str(caught.value)
    assert "\n" not in message
    assert "failed: FileNotFoundError" in message and str(missing) in message


# -- on an object store -------------------------------------------------------------------------
def _keys(store: S3Store, prefix: str) -> list[str]:
    pages = store.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@pytest.mark.tf
def test_a_gang_reads_and_publishes_on_s3_with_the_weights_from_disk(
    reference: Path, mnist_small: Path, s3_store: S3Store, tmp_path: Path
) -> None:
    """The 2-worker job with its data on S3 (each worker reads its row groups from the store)
    and its run folder published there (plan and checkpoints beside it on the store, the
    chief uploading into the staging prefix) trains the very weights it trains from disk."""
    client = s3_store.client()
    for path in sorted(mnist_small.rglob("*.parquet")):
        client.upload_file(
            str(path), BUCKET, f"mnist-mw/{path.relative_to(mnist_small).as_posix()}"
        )
    spec = job(mnist_small, "local", threads=1)
    spec["data"].update(
        train=f"s3://{BUCKET}/mnist-mw/train",
        test=f"s3://{BUCKET}/mnist-mw/test",
        storage_options=s3_store.options(),
    )
    out = f"s3://{BUCKET}/runs/mnist-mw"
    result = run_job(parse_spec(spec, base_dir=tmp_path), out)
    assert result.out == out and result.summary["workers"] == 2
    published = _keys(s3_store, "runs/mnist-mw/")
    assert "runs/mnist-mw/model.keras" in published
    assert "runs/mnist-mw/predictions/part-00000.parquet" in published
    assert result.predictions == [f"{out}/predictions/part-00000.parquet",
                                  f"{out}/predictions/part-00001.parquet"]  # fmt: skip
    marker = json.loads(
        client.get_object(Bucket=BUCKET, Key="runs/mnist-mw/_distml.json")["Body"].read()
    )
    assert marker["state"] == "complete"
    assert _keys(s3_store, "runs/.mnist-mw") == []  # no state or staging prefix left
    local = tmp_path / "copy"
    for key in published:
        target = local / key[len("runs/mnist-mw/") :]
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(BUCKET, key, str(target))
    ours, theirs = weights(local), weights(reference)
    assert ours.keys() == theirs.keys()
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    reference_summary = json.loads((reference / "metrics.json").read_text())
    assert result.summary["accuracy"] == reference_summary["accuracy"]


def test_rank_checkpoints_on_s3_commit_keep_and_resume(s3_store: S3Store, monkeypatch) -> None:
    """Per-rank checkpoints on the store: the last epoch both ranks finished, the last two
    arrays kept per rank, every epoch's metrics kept, arrays read back exactly; the options
    reach a worker through its environment, never a file."""
    from distml.data.storage import StorageOptions, options_environment
    from distml.deep.checkpoints import RankCheckpoints

    url = f"s3://{BUCKET}/state/checkpoints"
    options = StorageOptions(**s3_store.options())
    monkeypatch.setenv(*next(iter(options_environment((url, options)).items())))
    ranks = [RankCheckpoints(url, rank, 2) for rank in range(2)]  # options from the environment
    rng = np.random.default_rng(0)
    arrays = {e: [rng.normal(size=(3, 4)), rng.normal(size=5)] for e in (1, 2, 3)}
    for epoch in (1, 2, 3):
        ranks[0].save(epoch, arrays[epoch], {"epoch": epoch, "loss": 1.0 / epoch})
    for epoch in (1, 2):  # rank 1 was killed while saving epoch 3
        ranks[1].save(epoch, arrays[epoch], {"epoch": epoch})
    assert ranks[0].common_epoch() == 2
    assert ranks[0].finished(0) == [2, 3]  # the oldest arrays were deleted
    assert [row["epoch"] for row in ranks[0].history(3)] == [1, 2, 3]
    for saved, expected in zip(ranks[1].load(2), arrays[2], strict=True):
        np.testing.assert_array_equal(saved, expected)
    assert "state/checkpoints/rank-0/epoch-0001.npz" not in _keys(s3_store, "state/")
