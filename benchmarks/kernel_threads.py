"""Do the native algorithms' per-partition kernels run in parallel on threads?

The local backend maps a pass over partitions with one thread per core, so a kernel that
holds the GIL while it computes runs one partition at a time whatever the thread count.
For each kernel, two 250,000 × 20 partitions are processed one after the other on one
thread, then one per thread on two: ``scaling`` is the first time over the second (2.0
is perfect on 2 cores). Run by hand (not part of the test suite):

    python benchmarks/kernel_threads.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from distml.algorithms import kmeans, linear, logistic
from distml.algorithms.engine import Partition


def partitions(rows: int, features: int) -> list[Partition]:
    rng = np.random.default_rng(0)
    parts = []
    for i in range(2):
        X = np.asfortranarray(rng.normal(size=(rows, features)))
        y = (X @ rng.normal(size=features) + rng.normal(size=rows) > 0).astype(np.float64)
        parts.append(Partition(X, y, i * rows, i))
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    parts = partitions(args.rows, args.features)
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(5, args.features))
    candidates = rng.normal(size=(25, args.features))
    w = rng.normal(size=args.features + 1) * 0.1
    kernels = {
        "linear moments": lambda p: linear.partition_moments(p, True),
        "logistic loss + gradient": lambda p: logistic.binary_loss_grad(p, w, 1.0, True),
        "k-means Lloyd step": lambda p: kmeans.lloyd_step(p, centers),
        "k-means closest distance": lambda p: kmeans._closest(p, centers),
        "k-means|| candidate counts": lambda p: kmeans.closest_counts(p, candidates),
    }
    print(
        f"{'kernel':28s} {'1 thread':>9s} {'2 threads':>9s} scaling  (ms for 2 partitions; "
        "median, then best: this host is noisy)"
    )
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(2) as pool:
        for name, kernel in kernels.items():
            kernel(parts[0])  # warm: squared norms cached, code paths loaded
            one, two = [], []
            for _ in range(args.repeat):
                started = time.perf_counter()
                for part in parts:
                    kernel(part)
                one.append(time.perf_counter() - started)
                started = time.perf_counter()
                list(pool.map(kernel, parts))
                two.append(time.perf_counter() - started)
            a, b = statistics.median(one), statistics.median(two)
            print(
                f"{name:28s} {a * 1e3:9.1f} {b * 1e3:9.1f} {a / b:7.2f}   best: "
                f"{min(one) * 1e3:.1f} {min(two) * 1e3:.1f} {min(one) / min(two):.2f}"
            )


if __name__ == "__main__":
    main()
