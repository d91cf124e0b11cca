"""Training one rank of a multi-worker Keras job (runs inside :mod:`distml.deep.worker`).

Keras 3.15's ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` (keras#20585,
tensorflow#72388: its symbolic build all-reduces a data batch, and its per-replica
metric reduction asks a scalar for axis 0), so each rank runs a plain
``strategy.run`` loop over the *same* Keras model and optimizer the single-machine
run builds (:func:`~distml.deep.models.build_model`); the spike behind this choice
is in ``docs/keras_multiworker.md``. Per step: every replica's loss is its examples'
summed loss over the global batch (all replicas hold batches of equal size), so the
all-reduced gradient is the global batch's mean, exactly as one process would
compute it. Per epoch: one all-reduce of (loss sum, correct, count) for training,
one for the evaluation of each rank's share of the test set, then this rank's
checkpoint (:mod:`distml.deep.checkpoints`). The chief (rank 0) finally writes the
run folder's files — ``model.keras``, ``metrics.json``, predictions, plots — into the
driver's temporary folder, which the driver publishes atomically.

On CPUs TensorFlow's op determinism is switched on: with one device per worker and
the same shard plan, every launcher gives the same weights.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from distml.data.dataset import filesystem_for
from distml.data.storage import StorageOptions, is_object_store, options_from_environment
from distml.deep.checkpoints import RankCheckpoints, StateFolder
from distml.deep.devices import import_tensorflow
from distml.deep.iterators import released_in_background
from distml.deep.models import build_model
from distml.deep.pipeline import CHUNK_ROWS, epoch_after_epoch, open_images
from distml.deep.shards import Piece, iter_shard, shard_rows
from distml.errors import BackendError

tf = import_tensorflow()
import keras  # noqa: E402

EVAL_ROWS = 4096
EPSILON = 1e-7  # Keras's clipping of probabilities in the cross-entropy


class RankTrainer:
    """The model, data and loop of one rank."""

    def __init__(self, plan: dict[str, Any], strategy: Any, rank: int) -> None:
        self.plan = plan
        self.strategy = strategy
        self.rank = rank
        self.world = int(plan["workers"])
        self.replicas = int(strategy.num_replicas_in_sync)
        if self.replicas != self.world:
            raise BackendError(
                f"worker {rank}: the strategy has {self.replicas} replicas for "
                f"{self.world} workers; each worker must see exactly one device"
            )
        self.gpu = bool(tf.config.list_logical_devices("GPU"))
        if not self.gpu:
            tf.config.experimental.enable_op_determinism()
        self.batch = int(plan["batch_size"])
        self.steps_per_call = int(plan["steps_per_execution"])
        self.storage = options_from_environment(plan["train"]["path"])
        self.filesystem = _filesystem(plan["train"]["path"], self.storage)
        self.test_filesystem = _filesystem(
            plan["test"]["path"], options_from_environment(plan["test"]["path"])
        )
        self.train = [Piece(**p) for p in plan["train"]["shards"][rank]]
        self.test = [Piece(**p) for p in plan["test"]["shards"][rank]]
        self.rows = shard_rows(self.train)
        self.steps = math.ceil(self.rows / self.batch)
        self.chunk = self.batch * max(1, CHUNK_ROWS // self.batch)
        keras.utils.set_random_seed(int(plan["seed"]))
        args = (plan["architecture"], int(plan["width"]), int(plan["classes"]))
        with strategy.scope():
            self.model = build_model(*args, float(plan["learning_rate"]))
            self.model.optimizer.build(self.model.trainable_variables)
        self.plain = build_model(*args, float(plan["learning_rate"]))  # evaluation, saving
        self.forward = tf.function(lambda x: self.plain(x, training=False))
        self.state = self.model.variables + self.model.optimizer.variables
        self.checkpoints = RankCheckpoints(plan["checkpoints"], rank, self.world)
        self._steps = self._train_steps()

    # -- data ------------------------------------------------------------------------------
    def _dataset(self, first: int, last: int) -> Any:
        """This rank's batches for epochs ``first`` … ``last - 1``, one after the other
        (:func:`~distml.deep.pipeline.epoch_after_epoch`): one iterator for the whole run."""
        plan, width = self.plan, int(self.plan["width"])

        def generate(epoch: Any) -> Any:
            yield from iter_shard(
                self.train,
                plan["pixels"],
                plan["label"],
                width,
                self.chunk,
                shuffle_buffer=int(plan["shuffle_buffer"]),
                seed=int(plan["seed"]),
                epoch=int(epoch),
                rank=self.rank,
                filesystem=self.filesystem,
            )

        signature = (tf.TensorSpec([None, width], tf.uint8), tf.TensorSpec([None], tf.int64))
        dataset = epoch_after_epoch(generate, signature, self.batch, range(first, last))
        return dataset.prefetch(tf.data.AUTOTUNE)

    # -- steps -----------------------------------------------------------------------------
    def _train_steps(self) -> Any:
        model, strategy, replicas = self.model, self.strategy, self.replicas

        def replica(x: Any, y: Any) -> Any:
            with tf.GradientTape() as tape:
                probabilities = model(x, training=True)
                losses = keras.losses.sparse_categorical_crossentropy(y, probabilities)
                total = tf.reduce_sum(losses)
                loss = total / tf.cast(tf.shape(y)[0] * replicas, total.dtype)
            gradients = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
            predicted = tf.argmax(probabilities, axis=1, output_type=tf.int64)
            correct = tf.reduce_sum(tf.cast(tf.equal(predicted, y), tf.float32))
            return tf.stack([total, correct, tf.cast(tf.shape(y)[0], tf.float32)])

        @tf.function
        def steps(iterator: Any, count: Any) -> Any:
            # many steps per call: no Python dispatch and no host sync between steps
            totals = tf.zeros([3], tf.float64)
            for _ in tf.range(count):
                x, y = next(iterator)
                results = strategy.experimental_local_results(strategy.run(replica, args=(x, y)))
                totals += tf.cast(tf.add_n(list(results)), tf.float64)
            return totals

        return steps

    def all_sum(self, values: np.ndarray) -> np.ndarray:
        """``values`` summed over every worker (one all-reduce; also a barrier)."""
        value = tf.constant(np.asarray(values, dtype=np.float64))
        per_replica = self.strategy.experimental_distribute_values_from_function(lambda _: value)
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None).numpy()

    def evaluate_local(self) -> np.ndarray:
        """(loss sum, correct, count) of this rank's share of the test set."""
        self.plain.set_weights(self.model.get_weights())
        plan, sums = self.plan, np.zeros(3)
        for x, y in iter_shard(
            self.test,
            plan["pixels"],
            plan["label"],
            int(plan["width"]),
            EVAL_ROWS,
            filesystem=self.test_filesystem,
        ):
            probabilities = self.forward(x).numpy()
            picked = np.clip(probabilities[np.arange(len(y)), y], EPSILON, 1 - EPSILON)
            sums += (
                -np.log(picked.astype(np.float64)).sum(),
                (probabilities.argmax(1) == y).sum(),
                len(y),
            )
        return sums

    # -- the loop --------------------------------------------------------------------------
    def fit(self, say: Any) -> tuple[list[dict[str, Any]], int, list[float]]:
        """Train the epochs not in the checkpoints; ``(history, resumed from, train seconds)``."""
        epochs = int(self.plan["epochs"])
        done = min(self.checkpoints.common_epoch(), epochs)
        if done:
            for variable, array in zip(self.state, self.checkpoints.load(done), strict=True):
                variable.assign(array)
            say(f"resuming after epoch {done}, the last one every worker finished")
        history = self.checkpoints.history(done)
        trained: list[float] = []
        dataset = self._dataset(done, epochs)
        distributed = self.strategy.distribute_datasets_from_function(lambda _: dataset)
        # freed off this thread once dropped: tearing it down took 8–29 s (deep/iterators.py)
        iterator = iter(released_in_background(distributed))
        for epoch in range(done, epochs):
            started = time.perf_counter()
            local, remaining = np.zeros(3), self.steps
            while remaining:
                count = min(remaining, self.steps_per_call)
                local += self._steps(iterator, tf.constant(count)).numpy()
                remaining -= count
            seconds = time.perf_counter() - started
            loss, correct, count = self.all_sum(local)
            val_loss, val_correct, val_count = self.all_sum(self.evaluate_local())
            row = {
                "epoch": epoch,
                "loss": loss / count,
                "accuracy": correct / count,
                "val_loss": val_loss / val_count,
                "val_accuracy": val_correct / val_count,
                "train_seconds": seconds,
                "epoch_seconds": time.perf_counter() - started,
                "samples_per_second": count / seconds,
                "pid": os.getpid(),
                "parent": os.getppid(),
            }
            arrays = [np.asarray(v.numpy()) for v in self.state]
            self.checkpoints.save(epoch + 1, arrays, row)
            history.append(row)
            trained.append(seconds)
            say(
                f"epoch {epoch + 1}/{epochs} - {seconds:.1f}s - {count / seconds:,.0f} samples/s"
                f" - loss: {row['loss']:.4f} - accuracy: {row['accuracy']:.4f}"
                f" - val_loss: {row['val_loss']:.4f} - val_accuracy: {row['val_accuracy']:.4f}"
            )
        return history, done, trained

    def saved_model(self) -> Any:
        """A plain (undistributed) copy of the trained model, optimizer state included."""
        self.plain.set_weights(self.model.get_weights())
        self.plain.optimizer.build(self.plain.trainable_variables)
        for mine, theirs in zip(
            self.plain.optimizer.variables, self.model.optimizer.variables, strict=True
        ):
            mine.assign(theirs.numpy())
        return self.plain


def train_rank(plan: dict[str, Any], strategy: Any, rank: int, strategy_seconds: float) -> None:
    """Train rank ``rank``'s shard; the chief writes the run folder's files."""
    chief = rank == 0

    def say(text: str) -> None:
        if chief:
            print(text, flush=True)

    trainer = RankTrainer(plan, strategy, rank)
    if chief:
        print(
            f"{trainer.world} workers x 1 {'GPU' if trainer.gpu else 'CPU'}, "
            f"{trainer.rows:,} rows and {trainer.steps} steps per worker per epoch, "
            f"global batch {trainer.batch * trainer.replicas} "
            f"(strategy ready in {strategy_seconds:.1f}s)",
            flush=True,
        )
    history, done, trained = trainer.fit(say)
    if chief:
        write_outputs(plan, trainer, history, done, trained)
    trainer.all_sum(np.zeros(1))  # nobody leaves while the chief still writes


def write_outputs(
    plan: dict[str, Any],
    trainer: RankTrainer,
    history: list[dict[str, Any]],
    done: int,
    trained: list[float],
) -> None:
    """The chief's files in the driver's temporary run folder, published by the driver (on
    an object store: drawn in a local folder, then uploaded into the staging prefix)."""
    if not is_object_store(plan["out"]):
        _write_outputs(Path(plan["out"]), plan, trainer, history, done, trained)
        return
    staging = StateFolder(plan["out"])
    with tempfile.TemporaryDirectory(prefix="distml-chief-") as local:
        _write_outputs(Path(local), plan, trainer, history, done, trained)
        for path in sorted(Path(local).rglob("*")):
            if path.is_file():
                folder = staging
                for part in path.relative_to(local).parts[:-1]:
                    folder = folder.child(part)
                folder.write(path.name, path.read_bytes())


def _write_outputs(
    out: Path,
    plan: dict[str, Any],
    trainer: RankTrainer,
    history: list[dict[str, Any]],
    done: int,
    trained: list[float],
) -> None:
    from distml.deep.train import MODEL_FILE, _confusion_and_predictions, _keys, _per_class
    from distml.jobs import plots as job_plots

    for name in (MODEL_FILE, "metrics.json", "predictions", "training_curve.png"):
        path = out / name  # what an attempt killed while writing may have left
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    model = trainer.saved_model()
    model.save(out / MODEL_FILE)
    test_path = plan["test"]["path"]
    test = open_images(
        test_path, plan["label"], plan["pixels"], options_from_environment(test_path)
    )
    classes = int(plan["classes"])
    confusion = _confusion_and_predictions(
        _Predictor(trainer.forward),
        test,
        classes,
        out / "predictions" if plan["predictions"] else None,
    )
    last = history[-1]
    metrics = {"accuracy": last["val_accuracy"], "loss": last["val_loss"], **_per_class(confusion)}
    if plan["plots"]:
        from distml.deep.plots import training_curve

        training_curve(history, out / "training_curve.png")
        job_plots.confusion_matrix(metrics["confusion_matrix"], out / "confusion_matrix.png")
    rows_per_epoch = trainer.rows * trainer.world
    summary = {
        "job": plan["name"],
        "task": "classification",
        "backend": None,  # the driver fills in the launcher
        "solver": "multiworker",
        "strategy": "MultiWorkerMirroredStrategy",
        "collective": "NCCL" if os.environ.get("DISTML_GANG_ALL_GPU") == "1" else "RING",
        "workers": trainer.world,
        "replicas": trainer.replicas,
        "devices_per_worker": 1,
        "device": "GPU" if trainer.gpu else "CPU",
        "architecture": plan["architecture"],
        "epochs": int(plan["epochs"]),
        "epochs_run": len(trained),
        "resumed_from_epoch": done,
        "batch_size": trainer.batch,
        "global_batch_size": trainer.batch * trainer.replicas,
        "learning_rate": float(plan["learning_rate"]),
        "rows_train": int(plan["train"]["rows"]),
        "rows_per_worker": trainer.rows,
        "rows_left_out_per_epoch": int(plan["train"]["rows"]) - rows_per_epoch,
        "rows_test": int(plan["test"]["rows"]),
        "fit_seconds": sum(row["epoch_seconds"] for row in history[done:]),
        "samples_per_second": (rows_per_epoch * len(trained) / sum(trained) if trained else None),
        "accuracy": metrics["accuracy"],
        "loss": metrics["loss"],
        "metrics": metrics,
        "history": {
            key: [row.get(key) for row in history]
            for key in _keys(history)
            if key not in ("pid", "parent")
        },
        "model": {
            "architecture": plan["architecture"],
            "file": MODEL_FILE,
            "parameters": int(model.count_params()),
            "classes": list(range(classes)),
        },
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, allow_nan=False))


def _filesystem(path: str, storage: StorageOptions | None) -> Any:
    """The object store holding ``path``'s files; ``None`` for local disk."""
    return filesystem_for(path, storage) if is_object_store(path) else None


class _Predictor:
    """``predict`` through the trainer's compiled forward pass (Keras's ``predict`` builds a
    tf.data pipeline per call, and TensorFlow 2.21 logs an error line about its ops)."""

    def __init__(self, forward: Any) -> None:
        self.forward = forward

    def predict(self, x: np.ndarray, batch_size: int = EVAL_ROWS, verbose: int = 0) -> np.ndarray:
        parts = [self.forward(x[i : i + batch_size]).numpy() for i in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
