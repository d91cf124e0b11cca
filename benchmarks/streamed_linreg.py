"""Streamed linear regression (read and fit in one pass) against the bare parallel decode,
in one process, on the same files.

Run by hand (not part of the test suite):

    distml data generate regression --rows 1e7 --features 20 --partitions 40 --out DATA
    python benchmarks/streamed_linreg.py --data DATA --repeat 3

``memory_limit`` below the data's size makes the local backend stream: every pass re-reads
the files, so one fit is the whole read + fit. The floor decodes every file with pyarrow
on as many threads and drops the tables.
"""

from __future__ import annotations

import argparse
import glob
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow.parquet as pq

import distml
from distml.backends import get_backend


def floor(files: list[str], threads: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda f: pq.read_table(f, use_threads=False).num_rows, files))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    files = sorted(glob.glob(os.path.join(args.data, "*.parquet")))
    dataset = distml.Dataset(args.data, label="y")
    with get_backend(f"local[{args.threads}]", memory_limit="100MB") as backend:
        for _ in range(args.repeat):
            started = time.perf_counter()
            backend.fit(distml.LinearRegression(), backend.load(dataset))
            streamed = time.perf_counter() - started
            bare = floor(files, args.threads)
            print(f"streamed read+fit {streamed:.2f} s, floor {bare:.2f} s, {streamed / bare:.2f}x")


if __name__ == "__main__":
    main()
