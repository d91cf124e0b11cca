"""Spike: does Keras 3's ``model.fit`` train under MultiWorkerMirroredStrategy here?

Run by hand (not part of the test suite); the finding is in docs/keras_multiworker.md:

    python benchmarks/keras_fit_multiworker_spike.py            # fit on a tf.data.Dataset
    python benchmarks/keras_fit_multiworker_spike.py numpy      # fit on numpy arrays
    python benchmarks/keras_fit_multiworker_spike.py patched    # Dataset, symbolic build skipped

Two worker processes on this machine (CPU, RING collectives, ``TF_CONFIG`` with two
127.0.0.1 ports, no proxy variables) build the seed's 784-128-10 network inside the
strategy's scope, compile it and call ``fit`` for 2 epochs on 512 random rows. Each
worker's exit status and the end of its output are printed; Keras's traceback
filtering is off so the failing frame is visible.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys


def worker(rank: int, ports: list[int], mode: str) -> None:
    peers = [f"127.0.0.1:{p}" for p in ports]
    config = {"cluster": {"worker": peers}, "task": {"type": "worker", "index": rank}}
    os.environ["TF_CONFIG"] = json.dumps(config)
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras
    import numpy as np

    keras.config.disable_traceback_filtering()
    rng = np.random.default_rng(0)
    x = rng.random((512, 784), dtype=np.float32)
    y = rng.integers(0, 10, 512)
    with strategy.scope():
        model = keras.Sequential(
            [
                keras.Input((784,)),
                keras.layers.Dense(128, activation="relu"),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    if mode == "patched":  # build everything first and skip the failing symbolic build
        model.build((None, 784))
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
        model._maybe_symbolic_build = lambda *args, **kwargs: None
    if mode == "numpy":
        history = model.fit(x, y, batch_size=64, epochs=2, verbose=2)
    else:
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
        history = model.fit(data, epochs=2, verbose=2)
    print(f"rank {rank}: fit OK, loss {history.history['loss']}", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        rank, ports, mode = int(sys.argv[2]), sys.argv[3], sys.argv[4]
        worker(rank, [int(p) for p in ports.split(",")], mode)
        return
    mode = sys.argv[1] if len(sys.argv) > 1 else "dataset"
    probes = [socket.socket() for _ in range(2)]
    for probe in probes:
        probe.bind(("127.0.0.1", 0))
    ports = ",".join(str(p.getsockname()[1]) for p in probes)
    for probe in probes:
        probe.close()  # a spike: the choose-then-bind race is acceptable here
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("proxy")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", str(rank), ports, mode],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    for rank, proc in enumerate(procs):
        try:
            out, _ = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0] + "\n(killed after 300 s)"
        frames = [line.strip() for line in out.splitlines() if line.strip().startswith("File ")]
        last = [line for line in out.splitlines() if line.strip()][-1:]
        print(f"== rank {rank}: exit {proc.returncode}")
        print("\n".join(frames[-16:] + last)[:4000])


if __name__ == "__main__":
    main()
