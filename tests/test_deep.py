"""Keras MNIST on MirroredStrategy: IDX loading, the Parquet pipeline, training, resume.

Trainings run ``distml run`` in subprocesses: logical CPU devices must be declared
before TensorFlow initialises, once per process. The pipeline test shares one
2-device TensorFlow set-up in this process.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from conftest import REPO, digits

from distml.cli import main
from distml.data.mnist import (
    IMAGES_MAGIC,
    LABELS_MAGIC,
    load_idx_folder,
    mnist_table,
    read_idx,
    write_mnist,
)
from distml.deep.pipeline import iter_batches, open_images, pixel_matrix
from distml.errors import DataError, SpecError
from distml.jobs import load_spec, parse_spec, run_job

pytestmark = pytest.mark.tf

MNIST = REPO.parent / "shared" / "data" / "mnist"
NEEDS_TF = "Keras tests need TensorFlow: pip install 'distml[tf]'"
TF_NOISE = ("oneDNN", "I0000", "W0000", "absl", "cpu_feature_guard", "cuda", "tensorflow/")


# -- helpers --------------------------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray, magic: int, gz: bool) -> Path:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def idx_folder(folder: Path, n_train: int, n_test: int, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        images, labels = digits(n, seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, IMAGES_MAGIC, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, LABELS_MAGIC, gz)
    return folder


def keras_spec(folder: Path, data: Path, **train: object) -> Path:
    spec = {
        "name": "mnist-test",
        "model": {"type": "keras", "params": {"architecture": "mlp"}},
        "data": {"train": str(data / "train"), "test": str(data / "test"), "label": "label"},
        "train": {"epochs": 2, "batch_size": 16, "devices": 2, **train},
    }
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def distml_run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "distml.cli", "run", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_clean_env(),
    )


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    env["COLUMNS"] = "200"
    return env


def _python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter: its exit code, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_clean_env(),
    )


def epoch_lines(stdout: str) -> list[str]:
    """Keras's one-line-per-epoch summaries (``verbose=2``): ``125/125 - 1s - ...``."""
    return [line for line in stdout.splitlines() if re.match(r"^\d+/\d+ - ", line)]


@pytest.fixture(scope="session")
def strategy2():
    """One MirroredStrategy over 2 logical CPU devices for this test process."""
    pytest.importorskip("tensorflow", reason=NEEDS_TF)
    from distml.deep.devices import mirrored_strategy, select_devices

    strategy = mirrored_strategy(select_devices(2))
    assert strategy.num_replicas_in_sync == 2
    return strategy


@pytest.fixture
def needs_tf() -> None:
    pytest.importorskip("tensorflow", reason=NEEDS_TF)


# -- IDX files and the Parquet layout -------------------------------------------------------------
@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_idx_files_load_exactly(tmp_path: Path, gz: bool) -> None:
    folder = idx_folder(tmp_path / "idx", 50, 20, gz=gz)
    images, labels = digits(50, 1)
    suffix = ".gz" if gz else ""
    read = read_idx(folder / f"train-images-idx3-ubyte{suffix}", IMAGES_MAGIC)
    assert read.dtype == np.uint8 and read.shape == (50, 28, 28)
    np.testing.assert_array_equal(read, images)
    arrays = load_idx_folder(folder)
    np.testing.assert_array_equal(arrays.y_train, labels)
    np.testing.assert_array_equal(arrays.x_test, digits(20, 2)[0])
    assert arrays.y_test.shape == (20,)


def test_write_mnist_layout(tmp_path: Path) -> None:
    folder = idx_folder(tmp_path / "idx", 103, 41)
    result = CliRunner().invoke(
        main,
        [
            "data",
            "mnist",
            "--source",
            str(folder),
            "--out",
            str(tmp_path / "pq"),
            "--partitions",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    images, labels = digits(103, 1)
    files = sorted((tmp_path / "pq" / "train").glob("*.parquet"))
    assert len(files) == 3
    table = pq.read_table(files)
    assert table.schema.field("pixels").type == pa.binary(784)
    assert table.schema.field("label").type == pa.int64()
    assert table.column("index").to_pylist() == list(range(103))
    pixels = np.array([np.frombuffer(v, np.uint8) for v in table.column("pixels").to_pylist()])
    np.testing.assert_array_equal(pixels.reshape(-1, 28, 28), images)
    np.testing.assert_array_equal(table.column("label").to_numpy(), labels)
    assert pq.read_table(tmp_path / "pq" / "test").num_rows == 41


def _truncate(path: Path) -> None:
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[:-100]))


def _wrong_magic(path: Path) -> None:
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[3] = 0x01  # 2049: a label file's magic number
    path.write_bytes(gzip.compress(bytes(data)))


def _fewer_labels(path: Path) -> None:
    labels = read_idx(path, LABELS_MAGIC)
    write_idx(path, labels[:-1], LABELS_MAGIC, gz=True)


def _trailing(path: Path) -> None:
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()) + b"\0\0"))


def _not_gzip(path: Path) -> None:
    path.write_bytes(b"\x1f\x8b" + b"garbage" * 10)


@pytest.mark.parametrize(
    ("damage", "name", "message"),
    [
        (_wrong_magic, "train-images-idx3-ubyte.gz", "magic number 2049, expected 2051"),
        (_truncate, "train-images-idx3-ubyte.gz", "truncated: 78,300 data bytes"),
        (_fewer_labels, "train-labels-idx1-ubyte.gz", "holds 99 labels"),
        (_trailing, "t10k-images-idx3-ubyte.gz", "2 unexpected bytes after"),
        (_not_gzip, "t10k-labels-idx1-ubyte.gz", "not a readable IDX file"),
        (Path.unlink, "t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte[.gz] not found"),
    ],
    ids=["wrong-magic", "truncated", "count-mismatch", "trailing-bytes", "bad-gzip", "missing"],
)
def test_bad_idx_files_name_the_file(tmp_path: Path, damage, name: str, message: str) -> None:
    folder = idx_folder(tmp_path / "idx", 100, 10)
    damage(folder / name)
    with pytest.raises(DataError, match=re.escape(message)) as caught:
        load_idx_folder(folder)
    culprit = "idx" if damage is Path.unlink else name
    assert culprit in str(caught.value)
    assert not (tmp_path / "pq").exists()
    result = CliRunner().invoke(
        main, ["data", "mnist", "--source", str(folder), "--out", str(tmp_path / "pq")]
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and message in result.output
    assert not (tmp_path / "pq").exists()  # nothing half-written


# -- job specs ------------------------------------------------------------------------------------
def _spec(**changes: object) -> dict:
    spec = yaml.safe_load((REPO / "jobs" / "mnist_mirrored.yaml").read_text())
    for key, value in changes.items():
        node = spec
        *parents, last = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return spec


def test_the_job_spec_and_overrides() -> None:
    spec = load_spec(REPO / "jobs" / "mnist_mirrored.yaml", ["train.devices=2"])
    assert spec.model.type == "keras" and spec.model.params == {"architecture": "mlp"}
    assert spec.train is not None
    assert (spec.train.epochs, spec.train.batch_size, spec.train.devices) == (2, 32, 2)
    assert spec.resolve(spec.data.train) == str((REPO / "data" / "mnist" / "train").resolve())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"backend": "dask"}, "Keras jobs run on the local backend"),
        ({"model__params__architectur": "cnn"}, "did you mean 'architecture'"),
        (
            {"model__params__architecture": "cnm"},
            "unknown architecture 'cnm' (did you mean 'cnn'?)",
        ),
        ({"model__params__learning_rate": -1}, "learning_rate must be a positive number"),
        ({"train__epoch": 3}, "unknown key 'epoch' in train (did you mean 'epochs'?)"),
        ({"train__devices": 0}, "train.devices: Input should be greater than or equal to 1"),
        ({"data__test": None}, "data.test is required for Keras jobs"),
        ({"split": {"test_size": 0.2}}, "split: not supported for Keras jobs"),
    ],
)
def test_bad_keras_specs(changes: dict, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec(_spec(**changes), base_dir=REPO / "jobs")


def test_train_section_belongs_to_keras_jobs() -> None:
    raw = yaml.safe_load((REPO / "jobs" / "linear_regression.yaml").read_text())
    raw["train"] = {"epochs": 3}
    with pytest.raises(SpecError, match="only Keras jobs"):
        parse_spec(raw)


# -- bad Parquet input ----------------------------------------------------------------------------
def test_missing_or_invalid_parquet_is_a_data_error(tmp_path: Path) -> None:
    images, labels = digits(30, 0)
    good = mnist_table(images, labels)
    bad = tmp_path / "bad"
    bad.mkdir()
    pq.write_table(good.rename_columns(["pixel", "label", "index"]), bad / "part-0.parquet")
    with pytest.raises(
        DataError, match=r"part-0\.parquet: image column 'pixels' not found \(did you mean 'pixel'"
    ):
        open_images(bad)
    floats = good.set_column(1, "label", pa.array(labels.astype(float)))
    pq.write_table(floats, bad / "part-0.parquet")
    with pytest.raises(DataError, match="label column 'label' has type double"):
        open_images(bad)
    pq.write_table(
        good.set_column(1, "label", pa.array(labels.astype(np.int64) - 20)), bad / "part-0.parquet"
    )
    with pytest.raises(DataError, match="label column 'label' has negative value"):
        open_images(bad)
    # through a job: the missing folder is named before TensorFlow starts
    spec = parse_spec(_spec(data__train=str(tmp_path / "nowhere")), base_dir=tmp_path)
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'nowhere'}: no such file")):
        run_job(spec, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# -- the input pipeline ---------------------------------------------------------------------------
def _parquet(folder: Path, n: int, files: int) -> Path:
    images, labels = digits(n, 3)
    folder.mkdir(parents=True)
    bounds = np.linspace(0, n, files + 1).astype(int)
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        table = mnist_table(images[lo:hi], labels[lo:hi], first_index=int(lo))
        pq.write_table(table, folder / f"part-{i}.parquet", row_group_size=97)
    return folder


def test_batches_cover_every_row_once(tmp_path: Path) -> None:
    data = open_images(_parquet(tmp_path / "pq", 1003, 3))
    assert (data.num_rows, data.width, data.classes) == (1003, 784, 10)
    plain = list(iter_batches(data, 64, with_index=True))
    assert [len(b[0]) for b in plain] == [64] * 15 + [43]
    assert np.concatenate([b[2] for b in plain]).tolist() == list(range(1003))
    epoch0 = np.concatenate(
        [b[2] for b in iter_batches(data, 64, shuffle_buffer=300, epoch=0, with_index=True)]
    )
    again = np.concatenate(
        [b[2] for b in iter_batches(data, 64, shuffle_buffer=300, epoch=0, with_index=True)]
    )
    epoch1 = np.concatenate(
        [b[2] for b in iter_batches(data, 64, shuffle_buffer=300, epoch=1, with_index=True)]
    )
    assert sorted(epoch0.tolist()) == sorted(epoch1.tolist()) == list(range(1003))
    assert epoch0.tolist() == again.tolist()  # the order is a function of (seed, epoch)
    assert epoch0.tolist() != epoch1.tolist() and epoch0.tolist() != list(range(1003))


def test_a_fixed_size_list_pixels_column_reads_as_the_same_images(tmp_path: Path) -> None:
    images, labels = digits(200, 4)
    flat = images.reshape(200, -1)
    folder = tmp_path / "lists"
    folder.mkdir()
    table = pa.table(
        {
            "pixels": pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), 784),
            "label": pa.array(labels.astype(np.int64)),
            "index": pa.array(np.arange(200, dtype=np.int64)),
        }
    )
    pq.write_table(table, folder / "part-0.parquet", row_group_size=64)
    data = open_images(folder)
    assert data.width == 784
    read = list(iter_batches(data, 50, with_index=True))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in read]), flat)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in read]), labels)
    # a slice of a fixed_size_binary column starts at its own offset
    binary = mnist_table(images, labels).column("pixels").combine_chunks()
    np.testing.assert_array_equal(pixel_matrix(binary.slice(17, 5), 784), flat[17:22])


def test_distributed_pipeline_feeds_each_row_once_per_epoch(tmp_path: Path, strategy2) -> None:
    from distml.deep.pipeline import CHUNK_ROWS, distribute

    images, labels = digits(1003, 3)
    data = open_images(_parquet(tmp_path / "pq", 1003, 3))
    dataset = distribute(
        strategy2, data, 64, shuffle_buffer=300, seed=5, epochs=range(3, 5), with_index=True
    )
    iterator = iter(dataset)  # one iterator for both epochs, as fit uses it
    orders = []
    for epoch in (3, 4):
        # the epoch's order is (seed, epoch)'s: chunks of CHUNK_ROWS, cut into 64s
        chunks = iter_batches(data, CHUNK_ROWS, shuffle_buffer=300, seed=5, epoch=epoch,
                              with_index=True)  # fmt: skip
        order = np.concatenate([chunk[2] for chunk in chunks])
        per_replica: list[list[np.ndarray]] = [[], []]
        for step in range(16):  # ceil(1003 / 64) global steps
            x, y, index = next(iterator)
            parts = zip(
                *(strategy2.experimental_local_results(t) for t in (x, y, index)), strict=True
            )
            batch = []
            for replica, (xr, yr, ir) in enumerate(parts):
                ids = ir.numpy()
                per_replica[replica].append(ids)
                batch.append(ids)
                assert len(ids) <= 32  # a global batch of 64 split in two
                np.testing.assert_array_equal(xr.numpy(), images[ids].reshape(-1, 784))
                np.testing.assert_array_equal(yr.numpy(), labels[ids])
            np.testing.assert_array_equal(np.concatenate(batch), order[step * 64 : step * 64 + 64])
        seen = [np.concatenate(ids) for ids in per_replica]
        assert min(len(s) for s in seen) >= 480  # both replicas trained on about half
        union = np.concatenate(seen)
        assert len(union) == 1003 and sorted(union.tolist()) == list(range(1003))
        orders.append(order.tolist())
    assert orders[0] != orders[1]  # reshuffled per epoch
    with pytest.raises(StopIteration):  # two epochs of 16 steps each, no more
        next(iterator)


def test_a_dropped_iterator_is_freed_off_the_dropping_thread(strategy2) -> None:
    """Dropping a distributed iterator can wait up to a minute on a tf.data thread (see
    distml/deep/iterators.py): the drop is handed to a background thread instead."""
    import tensorflow as tf

    from distml.deep.iterators import released_in_background

    distributed = strategy2.experimental_distribute_dataset(tf.data.Dataset.range(64).batch(8))
    dataset = released_in_background(distributed)
    assert dataset is distributed and released_in_background(dataset) is dataset
    assert isinstance(dataset, tf.distribute.DistributedDataset)  # Keras uses it as it is
    iterator = iter(dataset)
    assert isinstance(iterator, tf.distribute.DistributedIterator)
    first = [t.numpy().tolist() for t in strategy2.experimental_local_results(next(iterator))]
    assert first == [[0, 1, 2, 3], [4, 5, 6, 7]]  # a global batch of 8 split in two
    freed_on: list[str] = []
    weakref.finalize(iterator, lambda: freed_on.append(threading.current_thread().name))
    del iterator
    deadline = time.monotonic() + 120
    while not freed_on:
        assert time.monotonic() < deadline, "the dropped iterator was never freed"
        time.sleep(0.05)
    assert freed_on == ["distml-iterator-drops"]
    again = iter(dataset)  # the dataset still makes iterators, from the start
    assert [t.numpy().tolist() for t in strategy2.experimental_local_results(next(again))] == first


def _drop_in_progress(seconds: float) -> str:
    """A script's start: an iterator handed to the drop thread whose freeing sleeps
    ``seconds`` without the GIL (as TensorFlow's wait does), then prints 'freed'."""
    return (
        "import atexit, time\n"
        "import distml.deep.iterators as iterators\n"
        "class SlowToFree:\n"
        "    def __del__(self):\n"
        f"        time.sleep({seconds})\n"
        "        print('freed', flush=True)\n"
        "class Iterator:\n"
        "    def __init__(self):\n"
        "        self.held = SlowToFree()\n"
        "    def __next__(self):\n"
        "        raise StopIteration\n"
        "class Dataset:\n"
        "    def __iter__(self):\n"
        "        return Iterator()\n"
        "iterator = iter(iterators.released_in_background(Dataset()))\n"
        "del iterator\n"
        "time.sleep(0.5)  # the drop has begun\n"
    )


def test_an_exit_waits_for_the_drop_in_progress() -> None:
    """Once the interpreter finalizes, a daemon thread coming back from TensorFlow's C++ is
    ended by pthread_exit, and that abort()s the process ("FATAL: exception not rethrown",
    exit -6, seen in CI). So the exit waits for the drop in progress: by the time the
    interpreter tears its modules down, the drop thread has ended."""
    code = _drop_in_progress(3) + (
        "class Teardown:\n"
        "    def __del__(self, thread=iterators._THREAD, print=print):\n"
        "        print('drop thread alive at teardown:', thread.is_alive(), flush=True)\n"
        "teardown = Teardown()\n"
    )
    done = _python(code)
    assert (done.returncode, done.stdout) == (0, "freed\ndrop thread alive at teardown: False\n")


def test_a_command_exits_without_waiting_for_the_drop() -> None:
    """A distml command whose work is done does not wait for a drop in progress (up to a
    minute in a Keras run): it exits with its code once the other exit handlers ran. The
    drop takes 60 s here; a process that waited for it would print 'freed'."""
    code = _drop_in_progress(60) + (
        "atexit.register(print, 'other exit handlers ran')\n"
        "from distml.cli import main\n"
        "main(['data', 'generate', 'nonsense', '--rows', '10', '--out', 'x'])  # a usage error\n"
    )
    done = _python(code, timeout=50)
    assert (done.returncode, done.stdout) == (2, "other exit handlers ran\n"), done.stderr
    assert "Invalid value for '{regression|classification|blobs}'" in done.stderr


def test_a_normal_exit_waits_for_native_work_on_any_daemon_thread() -> None:
    """The rule is not the drop thread's alone: whatever a daemon thread does inside
    ``teardown.native_work()`` ends before the interpreter's teardown, and a command leaves
    without waiting for it — after the threads a normal exit stops (an idle executor's)."""
    start = (
        "import threading, time\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from distml import teardown\n"
        "pool = ThreadPoolExecutor(2)  # its idle thread: a normal exit stops it, so must this\n"
        "pool.submit(print, 'pool ran', flush=True).result()\n"
        "def work():\n"
        "    with teardown.native_work():\n"
        "        time.sleep(1)  # without the GIL, as TensorFlow's C++ runs\n"
        "        print('work ended', flush=True)\n"
        "threading.Thread(target=work, daemon=True).start()\n"
        "time.sleep(0.3)\n"
    )
    waited = _python(start)
    assert (waited.returncode, waited.stdout) == (0, "pool ran\nwork ended\n"), waited.stderr
    left = _python(start + "teardown.exit_without_waiting(3)\nprint('not here')\n")
    assert (left.returncode, left.stdout) == (3, "pool ran\n"), left.stderr


def test_a_process_whose_fit_failed_still_exits(tmp_path: Path, needs_tf: None) -> None:
    """An iterator left in a traceback is collected at the interpreter's exit, when no new
    thread can start: it is kept, not handed to a thread (that exit once hung for good)."""
    data = _parquet(tmp_path / "pq", 300, 2)
    code = (
        "import keras\n"
        "from distml.deep.devices import import_tensorflow, mirrored_strategy, select_devices\n"
        "from distml.deep.pipeline import distribute, open_images\n"
        "import_tensorflow()\n"
        "strategy = mirrored_strategy(select_devices(2))\n"
        "with strategy.scope():\n"
        "    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)])\n"
        "    model.compile('adam', 'sparse_categorical_crossentropy')\n"
        f"data = distribute(strategy, open_images({str(data)!r}), 64, epochs=range(0))\n"
        "try:\n"
        "    model.fit(data, epochs=1, steps_per_epoch=5, verbose=0)\n"
        "except StopIteration:\n"
        "    print('fit failed: no batches', flush=True)\n"
    )
    done = _python(code, timeout=120)
    assert (done.returncode, done.stdout) == (0, "fit failed: no batches\n"), done.stderr[-2000:]


def test_a_checkpoint_of_other_settings_is_refused(tmp_path: Path, strategy2) -> None:
    from distml.deep.resume import ResumeState

    first = ResumeState(tmp_path / "run", {"model": "mlp", "batch_size": 32})
    assert first.open() == 0 and first.dir == tmp_path / ".run.resume"
    assert ResumeState(tmp_path / "run", {"model": "mlp", "batch_size": 32}).open() == 0
    other = ResumeState(tmp_path / "run", {"model": "mlp", "batch_size": 64})
    with pytest.raises(SpecError, match=r"\.run\.resume: .* \(batch_size: 32 -> 64\)"):
        other.open()


# -- training -------------------------------------------------------------------------------------
def test_training_runs_on_two_replicas(tmp_path: Path, needs_tf: None, strategy2) -> None:
    import keras

    write_mnist(tmp_path / "mnist", idx_folder(tmp_path / "idx", 1200, 300), partitions=3)
    spec = keras_spec(tmp_path, tmp_path / "mnist")
    done = distml_run(str(spec), "--out", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and len(metrics["devices"]) == 2
    assert all("CPU" in d for d in metrics["devices"])
    assert (metrics["batch_size"], metrics["global_batch_size"]) == (16, 32)
    assert (metrics["rows_train"], metrics["rows_test"], metrics["epochs_run"]) == (1200, 300, 2)
    assert metrics["history"]["epoch"] == [0, 1]
    assert metrics["samples_per_second"] > 0 and metrics["fit_seconds"] > 0
    assert metrics["metrics"]["accuracy"] == metrics["accuracy"]
    assert metrics["accuracy"] > 0.9  # the bands are learnable: the replicas really trained
    # one line per epoch, with one step per global batch of 2 x 16 rows: ceil(1200 / 32) = 38
    lines = epoch_lines(done.stdout)
    assert len(lines) == 2 and all(line.startswith("38/38 - ") for line in lines), done.stdout
    # TensorFlow's start-up noise stays out; our own lines are all there is
    assert not [n for n in TF_NOISE if n in done.stderr], done.stderr
    assert all(line.startswith("mnist-test: ") for line in done.stderr.splitlines()), done.stderr
    # the saved model reproduces the reported accuracy and the written predictions
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    test = pq.read_table(tmp_path / "mnist" / "test")
    x = pixel_matrix(test.column("pixels"), 784)
    predicted = model.predict(x, verbose=0).argmax(axis=1)
    accuracy = float((predicted == test.column("label").to_numpy()).mean())
    assert accuracy == pytest.approx(metrics["accuracy"], abs=1e-6)
    written = pq.read_table(tmp_path / "run" / "predictions")
    assert written.column("index").to_pylist() == list(range(300))
    assert written.column("prediction").to_pylist() == predicted.tolist()
    counts = np.asarray(metrics["metrics"]["confusion_matrix"]["counts"])
    assert counts.sum() == 300 and np.trace(counts) == round(accuracy * 300)
    assert (tmp_path / "run" / "training_curve.png").stat().st_size > 10_000


def test_killed_run_resumes_after_its_last_finished_epoch(tmp_path: Path, needs_tf: None) -> None:
    write_mnist(tmp_path / "mnist", idx_folder(tmp_path / "idx", 1600, 200), partitions=2)
    spec = keras_spec(tmp_path, tmp_path / "mnist", epochs=3, batch_size=4)
    out = tmp_path / "run"
    resume = tmp_path / ".run.resume"
    command = [sys.executable, "-m", "distml.cli", "run", str(spec), "--out", str(out)]
    first = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_clean_env(),
        start_new_session=True,
    )
    metadata = resume / "backup" / "training_metadata.json"
    deadline = time.monotonic() + 240
    while not (metadata.exists() and json.loads(metadata.read_text() or "{}").get("epoch", 0) >= 1):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    assert not out.exists(), "the first run finished before it could be killed"
    finished = json.loads(metadata.read_text())["epoch"]
    assert 1 <= finished < 3
    killed_history = [
        json.loads(line) for line in (resume / "history.jsonl").read_text().splitlines()
    ]

    # the same checkpoint when every epoch asked for is done (killed before publishing):
    # published without training, with the killed run's epochs
    shutil.copytree(resume, tmp_path / ".done.resume")
    done = distml_run(
        str(spec), "--out", str(tmp_path / "done"), "--set", f"train.epochs={finished}"
    )
    assert done.returncode == 0, done.stderr
    published = json.loads((tmp_path / "done" / "metrics.json").read_text())
    assert (published["resumed_from_epoch"], published["epochs_run"]) == (finished, 0)
    assert published["history"]["loss"] == [row["loss"] for row in killed_history[:finished]]
    assert published["history"]["pid"] == [first.pid] * finished

    second = distml_run(str(spec), "--out", str(out))
    assert second.returncode == 0, second.stderr
    assert (
        f"resuming from the checkpoint in {resume}: {finished} of 3 epoch(s) done, "
        f"continuing with epoch {finished + 1}"
    ) in second.stderr
    started = re.findall(r"^Epoch (\d+)/3$", second.stdout, flags=re.M)
    assert started == [str(e) for e in range(finished + 1, 4)]  # finished epochs not repeated
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["resumed_from_epoch"], metrics["epochs_run"]) == (finished, 3 - finished)
    history = metrics["history"]
    assert history["epoch"] == [0, 1, 2]
    assert history["pid"][:finished] == [first.pid] * finished
    assert first.pid not in history["pid"][finished:]
    assert history["loss"][:finished] == [row["loss"] for row in killed_history[:finished]]
    assert not resume.exists()  # removed once the run folder is in place

    # resuming is exact: the same job run without interruption ends with the same model
    whole = distml_run(str(spec), "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    uninterrupted = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert uninterrupted["loss"] == pytest.approx(metrics["loss"], rel=1e-5)
    assert uninterrupted["history"]["loss"] == pytest.approx(history["loss"], rel=1e-5)


@pytest.mark.skipif(not MNIST.is_dir(), reason=f"real MNIST IDX files not found at {MNIST}")
@pytest.mark.parametrize(
    ("placement", "strategy"),
    [
        ("train.devices=2", "MirroredStrategy"),
        # two worker processes of one CPU each (local launcher): the weights are the same
        # through every launcher (test_keras_multiworker.py), so is this accuracy
        ("train.workers=2", "MultiWorkerMirroredStrategy"),
    ],
    ids=["mirrored", "two-workers"],
)
def test_seed_model_reaches_94_percent_on_real_mnist(
    tmp_path: Path, needs_tf: None, placement: str, strategy: str
) -> None:
    write_mnist(tmp_path / "mnist", MNIST)
    done = distml_run(
        str(REPO / "jobs" / "mnist_mirrored.yaml"),
        "--set",
        f"data.train={tmp_path / 'mnist' / 'train'}",
        "--set",
        f"data.test={tmp_path / 'mnist' / 'test'}",
        "--set",
        placement,
        "--set",
        "output.plots=false",
        "--out",
        str(tmp_path / "run"),
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["rows_train"], metrics["rows_test"]) == (20_000, 10_000)
    assert (metrics["replicas"], metrics["epochs_run"]) == (2, 2)
    assert metrics["strategy"] == strategy
    assert metrics["accuracy"] >= 0.94
    assert f"accuracy: {metrics['accuracy']:.6g}" in done.stdout


# -- distml bench --tasks mnist -------------------------------------------------------------------
def test_bench_mnist_task_compares_the_parquet_pipeline_with_keras_numpy(
    tmp_path: Path, needs_tf: None
) -> None:
    from distml.bench import run_bench
    from distml.bench.plan import BenchConfig

    source = idx_folder(tmp_path / "idx", 1200, 300)
    config = BenchConfig(
        tasks=["mnist"], backends=["local"], rows=[1000], workers=[2], repeat=1,
        timeout=300, mnist_source=str(source),
    )  # fmt: skip
    runs = run_bench(config, tmp_path / "out", tmp_path / "data")["runs"]
    assert [(r["candidate"], r["workers"]) for r in runs] == [
        ("floor (pyarrow decode)", 2), ("Keras numpy direct", 2), ("distml local/keras", 2),
    ]  # fmt: skip
    assert {r["status"] for r in runs} == {"ok"}, [r.get("error") for r in runs]
    assert {r["rows"] for r in runs} == {1200}  # the images there are, not --rows
    for run in runs[1:]:
        assert run["quality"] > 0.9  # the bands are learnable: the seed's 2 epochs trained
        assert run["fit"] > 0 and run["startup"] > 0
    streamed = [r for r in runs if r["candidate"] == "distml local/keras"]
    assert all(r["read"] == 0.0 for r in streamed)  # it reads inside the fit, every epoch
    assert (
        "| mnist | 1,200 | 2 | distml local/keras |"
        in (tmp_path / "out" / "results.md").read_text()
    )
