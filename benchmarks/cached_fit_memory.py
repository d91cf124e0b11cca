"""Peak resident memory of a cached fit in one process, against the feature matrix's size.

Loads a dataset on ``local[N]`` (every partition cached), fits a linear regression and
prints the resident memory after each step and the process's peak (``ru_maxrss``), as
multiples of the float64 feature matrix. Run by hand (not part of the test suite):

    distml data generate regression --rows 1e7 --features 20 --partitions 64 --out /tmp/reg10m
    python benchmarks/cached_fit_memory.py /tmp/reg10m
    MIMALLOC_PURGE_DELAY=0 python benchmarks/cached_fit_memory.py /tmp/reg10m  # Arrow's pool
"""

from __future__ import annotations

import argparse
import resource
import time

import psutil

import distml
from distml.models.base import model_class


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a Parquet folder with a label column")
    parser.add_argument("--label", default="y")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    def resident() -> float:
        return psutil.Process().memory_info().rss / 2**20

    dataset = distml.Dataset(args.data, label=args.label)
    matrix = dataset.num_rows * len(dataset.features) * 8 / 2**20
    with distml.get_backend(f"local[{args.threads}]") as backend:
        start = resident()
        began = time.perf_counter()
        data = backend.load(dataset)
        loaded, load_s = resident(), time.perf_counter() - began
        began = time.perf_counter()
        backend.fit(model_class("linear_regression")(), data)  # as `distml run` fits
        fitted, fit_s = resident(), time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(
        f"matrix {matrix:.0f} MiB | resident: start {start:.0f}, loaded {loaded:.0f}, "
        f"fitted {fitted:.0f} MiB | peak {peak:.0f} MiB = {peak / matrix:.3f}x | "
        f"load {load_s:.2f} s, fit {fit_s:.2f} s"
    )


if __name__ == "__main__":
    main()
