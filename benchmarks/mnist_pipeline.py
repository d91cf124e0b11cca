"""Keras MNIST training throughput: Parquet pipeline vs in-memory numpy, 1 and 2 replicas.

Run by hand (not part of the test suite):

    python benchmarks/mnist_pipeline.py --source ../shared/data/mnist --repeat 5 --epochs 3

Every measurement is a fresh process (MirroredStrategy's logical CPU devices are
fixed per process) training the seed's model: one warm-up epoch (tracing), then
``--epochs`` timed epochs without validation. Candidates are interleaved within
each repeat so machine drift hits all alike. Per timed epoch it records wall time
and the process's CPU time (all threads); the tables give medians over all timed
epochs of all repeats, and the best epoch. In-memory input is ``model.fit(x, y)``
on numpy arrays, Keras's own path. On a shared machine compare ratios, and prefer
CPU seconds per sample: another process taking a core stretches wall time, not
the CPU work this one does. The last table is the input pipeline alone (no
model, no strategy): how fast it produces global batches.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

SHUFFLE_BUFFER = 10_000
KINDS = ("numpy", "parquet", "feed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="../shared/data/mnist", help="IDX folder or 'keras'")
    parser.add_argument("--data", type=Path, default=Path("bench-out/data/mnist"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up")
    parser.add_argument("--replicas", default="1,2")
    parser.add_argument("--batch-size", type=int, default=32, help="per replica")
    parser.add_argument("--architecture", default="mlp")
    parser.add_argument("--worker", nargs=2, metavar=("INPUT", "REPLICAS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args, args.worker[0], int(args.worker[1]))))
        return
    if not (args.data / "train").exists():
        from distml.data.mnist import write_mnist

        write_mnist(args.data, args.source)
    replica_counts = [int(n) for n in args.replicas.split(",")]
    candidates = [(kind, n) for n in replica_counts for kind in KINDS]
    runs: dict[tuple[str, int], list[dict]] = {c: [] for c in candidates}
    for r in range(args.repeat):
        for kind, replicas in candidates:
            result = spawn(args, kind, replicas)
            runs[(kind, replicas)].append(result)
            rates = ", ".join(f"{result['rows'] / s:,.0f}" for s in result["wall"])
            print(f"# repeat {r + 1}: {kind} x{replicas}: {rates}", file=sys.stderr, flush=True)
    rows = runs[candidates[0]][0]["rows"]
    print(
        f"# {rows:,} training rows, {args.architecture}, batch {args.batch_size} per replica, "
        f"{args.epochs} timed epochs x {args.repeat} repeats\n"
    )
    print(
        "| replicas | numpy samples/s (median / best) | Parquet samples/s (median / best) "
        "| Parquet / numpy (median / best) | CPU ms per 1k samples numpy / Parquet "
        "| Parquet CPU overhead |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for n in replica_counts:
        numpy, parquet = runs[("numpy", n)], runs[("parquet", n)]
        wall_np, wall_pq = rates_of(numpy, "wall"), rates_of(parquet, "wall")
        cpu_np, cpu_pq = cpu_ms_per_1k(numpy), cpu_ms_per_1k(parquet)
        print(
            f"| {n} | {statistics.median(wall_np):,.0f} / {max(wall_np):,.0f} "
            f"| {statistics.median(wall_pq):,.0f} / {max(wall_pq):,.0f} "
            f"| {statistics.median(wall_pq) / statistics.median(wall_np):.3f} / "
            f"{max(wall_pq) / max(wall_np):.3f} "
            f"| {cpu_np:.1f} / {cpu_pq:.1f} | {cpu_pq / cpu_np - 1:+.1%} |"
        )
    print("\n| global batch | pipeline alone, no model: samples/s (median / best) |")
    print("| --- | --- |")
    for n in replica_counts:
        feed = rates_of(runs[("feed", n)], "wall")
        print(f"| {args.batch_size * n} | {statistics.median(feed):,.0f} / {max(feed):,.0f} |")


def spawn(args: argparse.Namespace, kind: str, replicas: int) -> dict:
    command = [
        sys.executable,
        __file__,
        "--data", str(args.data),
        "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size),
        "--architecture", args.architecture,
        "--worker", kind, str(replicas),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def rates_of(results: list[dict], clock: str) -> list[float]:
    """Samples per second of every timed epoch (each run's warm-up epoch excluded)."""
    return [r["rows"] / s for r in results for s in r[clock][1:]]


def cpu_ms_per_1k(results: list[dict]) -> float:
    return statistics.median(1e6 / rate for rate in rates_of(results, "cpu"))


def worker(args: argparse.Namespace, kind: str, replicas: int) -> dict:
    """One measurement in this (fresh) process."""
    from distml.deep.devices import import_tensorflow, mirrored_strategy, select_devices

    import_tensorflow()
    import keras
    import numpy as np
    import pyarrow.parquet as pq

    from distml.deep.models import build_model
    from distml.deep.pipeline import (
        batches_per_epoch,
        distribute,
        make_dataset,
        open_images,
        pixel_matrix,
    )

    strategy = mirrored_strategy(select_devices(replicas))
    global_batch = args.batch_size * strategy.num_replicas_in_sync
    data = open_images(args.data / "train")
    clock = Clock()
    if kind == "feed":  # the pipeline alone: global batches, no model, no strategy
        for e in range(args.epochs + 1):
            batches = make_dataset(
                data, global_batch, shuffle_buffer=SHUFFLE_BUFFER, epochs=range(e, e + 1)
            )
            clock.start()
            for _ in batches:
                pass
            clock.stop()
        return {"rows": data.num_rows, **clock.result()}

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, e: int, logs: dict | None = None) -> None:
            clock.start()

        def on_epoch_end(self, e: int, logs: dict | None = None) -> None:
            clock.stop()

    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model(args.architecture, data.width, 10)
    epochs = args.epochs + 1
    if kind == "numpy":
        table = pq.read_table(list(data.files))
        x = pixel_matrix(table.column("pixels"), data.width)
        y = table.column("label").to_numpy().astype(np.int64)
        model.fit(x, y, batch_size=global_batch, epochs=epochs, verbose=0, callbacks=[Timer()])
    else:
        stream = distribute(
            strategy,
            data,
            global_batch,
            shuffle_buffer=SHUFFLE_BUFFER,
            epochs=range(epochs),
        )
        steps = batches_per_epoch(data, global_batch)  # one iterator for every epoch
        model.fit(
            stream,
            epochs=epochs,
            steps_per_epoch=steps,
            shuffle=False,
            verbose=0,
            callbacks=[Timer()],
        )
    return {"rows": data.num_rows, **clock.result()}


class Clock:
    """Wall and process CPU seconds (all threads) per epoch."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def start(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        self.wall.append(time.perf_counter() - self._wall)
        self.cpu.append(time.process_time() - self._cpu)

    def result(self) -> dict[str, list[float]]:
        return {"wall": self.wall, "cpu": self.cpu}


if __name__ == "__main__":
    main()
