"""One pass over cached partitions on a Dask LocalCluster (2 workers × 1 thread): how it is
submitted decides what it costs.

Three ways, same partitions, same function, interleaved, median of ``--repeat``:

- ``graph``: one task per partition plus ``tree_reduce``'s pairing as combine tasks on the
  workers (distml before 2026-12-03: 2n − 1 tasks a pass);
- ``map``: one task per partition, combined on the driver (n tasks);
- ``distml``: what ``DaskEngine.map_reduce`` does now: one task per worker thread over the
  partitions that worker holds, combined on the driver (2 tasks here).

A no-op (the scheduling alone) and a logistic-regression-sized gradient ``X.T @ (X w - y)``.
Run by hand (not part of the test suite), e.g. on the 2M-row data of whole_process.py:

    python benchmarks/dask_pass.py /tmp/wp/cls --repeat 8
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from operator import add
from typing import Any

import numpy as np

from distml.algorithms.engine import tree_reduce
from distml.backends import get_backend
from distml.backends.dask import DaskEngine, gather
from distml.backends.dask_tasks import _Apply
from distml.data.dataset import Dataset


def noop(part: Any, w: np.ndarray) -> np.ndarray:
    return np.zeros_like(w)


def gradient(part: Any, w: np.ndarray) -> np.ndarray:
    return part.X.T @ (part.X @ w - part.y)


def graph_pass(engine: DaskEngine, fn: Any, w: np.ndarray) -> Any:
    """The former pass: map tasks, then combine tasks in tree_reduce's pairing."""
    token, graph, level = uuid.uuid4().hex, {}, []
    for i, part in enumerate(engine.parts):
        graph[f"map-{token}-{i}"] = (_Apply(fn, (w,)), part)
        level.append(f"map-{token}-{i}")
    depth = 0
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            graph[f"combine-{token}-{depth}-{i}"] = (add, level[i], level[i + 1])
            nxt.append(f"combine-{token}-{depth}-{i}")
        if len(level) % 2:
            nxt.append(level[-1])
        level, depth = nxt, depth + 1
    [result] = gather(engine.client, [engine.client.get(graph, level[0], sync=False)])
    return result


def map_pass(engine: DaskEngine, fn: Any, w: np.ndarray) -> Any:
    futures = engine.client.map(_Apply(fn, (w,)), engine.parts, pure=False)
    return tree_reduce(gather(engine.client, futures), add)


def distml_pass(engine: DaskEngine, fn: Any, w: np.ndarray) -> Any:
    return engine.map_reduce(fn, w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a Parquet folder with a label column y")
    parser.add_argument("--repeat", type=int, default=8)
    args = parser.parse_args()
    ways = {"graph": graph_pass, "map": map_pass, "distml": distml_pass}
    with get_backend("dask") as backend:
        engine = backend.load(Dataset(args.data, "y")).train
        w = np.linspace(-1.0, 1.0, engine.n_features)
        print(f"{engine.num_partitions} partitions, {engine.n_rows:,} rows")
        print("| function | way | median s | min s |")
        print("| --- | --- | ---: | ---: |")
        for fn in (noop, gradient):
            seen: dict[str, list[float]] = {name: [] for name in ways}
            results = {}
            for _ in range(args.repeat):
                for name, way in ways.items():
                    started = time.perf_counter()
                    results[name] = way(engine, fn, w)
                    seen[name].append(time.perf_counter() - started)
            same = all(np.array_equal(results["graph"], r) for r in results.values())
            for name, times in seen.items():
                print(
                    f"| {fn.__name__} | {name} | {statistics.median(times):.3f} | "
                    f"{min(times):.3f} |"
                )
            print(f"(same bits from every way: {same})")


if __name__ == "__main__":
    main()
