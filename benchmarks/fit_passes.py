"""Where a cached fit's time goes, pass by pass, on the local backend.

Loads a dataset on ``local[N]`` (every partition cached), then fits one model and times
every ``map_reduce`` pass (the kernel's name, its seconds) and what the driver does
between passes (L-BFGS steps, k-means‖ reclustering). Run by hand (not part of the test
suite):

    python benchmarks/fit_passes.py /tmp/benchdata/classification-10000000x20-p40-s0 logistic_regression
    python benchmarks/fit_passes.py /tmp/benchdata/blobs-10000000x20-p40-s0-k5 kmeans --clusters 5
"""

from __future__ import annotations

import argparse
import collections
import time

import distml
from distml.algorithms.engine import Engine
from distml.models.base import model_class


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("model", choices=["linear_regression", "logistic_regression", "kmeans"])
    parser.add_argument("--clusters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    passes: list[tuple[str, float]] = []
    original = Engine.map_reduce

    def timed(self, fn, *broadcast, **kwargs):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return original(self, fn, *broadcast, **kwargs)
        finally:
            passes.append((getattr(fn, "__name__", repr(fn)), time.perf_counter() - started))

    Engine.map_reduce = timed  # type: ignore[method-assign]
    params = {"n_clusters": args.clusters, "random_state": 0} if args.model == "kmeans" else {}
    label = None if args.model == "kmeans" else "y"
    with distml.get_backend(f"local[{args.threads}]") as backend:
        data = backend.load(distml.Dataset(args.data, label=label))
        for repeat in range(args.repeat):
            passes.clear()
            started = time.perf_counter()
            model = backend.fit(model_class(args.model)(**params), data)
            total = time.perf_counter() - started
            per_kernel: dict[str, list[float]] = collections.defaultdict(list)
            for name, seconds in passes:
                per_kernel[name].append(seconds)
            in_passes = sum(seconds for _, seconds in passes)
            print(
                f"repeat {repeat + 1}: fit {total:.2f} s, {len(passes)} passes {in_passes:.2f} s, "
                f"driver between passes {total - in_passes:.2f} s "
                f"(n_iter_ {getattr(model, 'n_iter_', '-')})"
            )
            for name, times in per_kernel.items():
                print(
                    f"  {name:24s} {len(times):3d} x {sum(times) / len(times) * 1e3:7.1f} ms "
                    f"= {sum(times):.2f} s"
                )


if __name__ == "__main__":
    main()
