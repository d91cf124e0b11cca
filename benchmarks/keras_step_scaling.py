"""Does this host scale to 2 Keras workers when they do not communicate?

Each process trains the ``cnn`` (distml's) on random images held in memory, one thread,
64 steps per ``tf.function`` call, for 20 s, and prints its samples/s: first alone on each
core, then one per core at once. Their sum against one alone is the most 2 workers could
reach; what ``workers 2x1`` gets below it is the price of communicating (see
``keras_allreduce.py``). Run by hand (not part of the test suite):

    python benchmarks/keras_step_scaling.py [--batch-size 32] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def step_rate(batch: int, seconds: float) -> float:
    """Samples/s of the cnn's training step in this process, on one thread."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np

    from distml.deep.devices import import_tensorflow
    from distml.deep.models import build_model

    tf = import_tensorflow()
    import keras

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    model = build_model("cnn", 784, 10, 1e-3)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, 255, (64 * batch, 784), dtype=np.uint8))
    y = tf.constant(rng.integers(0, 10, (64 * batch,)), dtype=tf.int64)

    @tf.function
    def steps():  # type: ignore[no-untyped-def]
        for i in tf.range(64):
            xb, yb = x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch]
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(
                    keras.losses.sparse_categorical_crossentropy(yb, model(xb, training=True))
                )
            gradients = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    steps()  # tracing
    started, rows = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        steps()
        rows += 64 * batch
    return rows / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--core", type=int, help=argparse.SUPPRESS)  # one measuring process
    args = parser.parse_args()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
        print(f"{step_rate(args.batch_size, args.seconds):.0f}", flush=True)
        return
    cores = sorted(os.sched_getaffinity(0))[:2]
    if len(cores) < 2:
        sys.exit("needs 2 cores")

    def start(core: int) -> subprocess.Popen[str]:
        command = [sys.executable, __file__, "--core", str(core)]
        command += ["--batch-size", str(args.batch_size), "--seconds", str(args.seconds)]
        return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)

    alone = [float(start(core).communicate()[0]) for core in cores]
    together = [float(p.communicate()[0]) for p in [start(core) for core in cores]]
    print(f"alone, per core: {', '.join(f'{r:,.0f}' for r in alone)} samples/s")
    print(f"one per core at once: {' + '.join(f'{r:,.0f}' for r in together)} samples/s")
    print(f"together / alone: {sum(together) / (sum(alone) / len(alone)):.2f}x")


if __name__ == "__main__":
    main()
