"""Linear regression's raw products by partition width: compact blocks against one SYRK.

``linear.raw_products`` takes ``XᵀX``, the column sums and ``Xᵀy`` from one GEMM per
cache-sized block of ``[X | y | 1]`` up to ``COMPACT_MAX_FEATURES`` features; wider
partitions take one SYRK over the whole partition and a sweep each for the other two. For
each width, both ways on one thread (4·10⁶ values per partition; best of ``--repeat``,
ms). Run by hand (not part of the test suite):

    python benchmarks/moments_width.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from distml.algorithms import linear


def whole_partition(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.dot(X.T, X), X.sum(axis=0), np.dot(X.T, y)


def compact_blocks(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    limit = linear.COMPACT_MAX_FEATURES
    linear.COMPACT_MAX_FEATURES = X.shape[1]  # the compact path at every width
    try:
        return linear.raw_products(X, y)
    finally:
        linear.COMPACT_MAX_FEATURES = limit


def best_ms(fn, X: np.ndarray, y: np.ndarray, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn(X, y)
        times.append(time.perf_counter() - started)
    return min(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'features':>8} {'rows/block':>10} {'SYRK':>8} {'blocks':>8} {'ratio':>6}  (ms)")
    with threadpool_limits(1):
        for d in (8, 16, 20, 24, 32, 48, 64, 128):
            n = 4_000_000 // d
            X = np.asfortranarray(rng.standard_normal((n, d)))
            y = rng.standard_normal(n)
            rows = min(linear.PRODUCT_ROWS, linear.SMALL_PRODUCT // (d * (d + 2)), n)
            old = best_ms(whole_partition, X, y, args.repeat)
            new = best_ms(compact_blocks, X, y, args.repeat)
            print(f"{d:>8} {rows:>10} {old:>8.1f} {new:>8.1f} {new / old:>6.2f}")


if __name__ == "__main__":
    main()
