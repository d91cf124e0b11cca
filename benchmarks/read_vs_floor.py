"""The cached read against the floor, in one process, alternating (warm page cache).

``distml bench`` runs each candidate in a fresh process after the others (scikit-learn
takes 8 GB at 10⁷ rows), so the page cache the floor and distml read from differs from run
to run on a host that reclaims memory in the background; this script reads the same files
back to back instead. Per thread count: the floor (every file decoded by pyarrow, one
thread per file, as ``distml bench``'s floor) then ``LocalBackend(threads).load`` (decode
+ the float64 feature matrix), ``--repeat`` times::

    python benchmarks/read_vs_floor.py /tmp/benchdata/classification-10000000x20-p40-s0
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow.parquet as pq


def floor(files: list[str], threads: int, columns: list[str]) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        sum(
            pool.map(lambda f: pq.read_table(f, columns=columns, use_threads=False).num_rows, files)
        )
    return time.perf_counter() - started


def main() -> None:
    import distml
    from distml.backends import get_backend

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args()
    files = sorted(glob.glob(os.path.join(args.data, "*.parquet")))
    dataset = distml.Dataset(args.data, label="y")
    columns = [*dataset.features, "y"]
    for threads in (int(t) for t in args.threads.split(",")):
        floors, reads = [], []
        with get_backend(f"local[{threads}]") as backend:
            for _ in range(args.repeat):
                floors.append(floor(files, threads, columns))
                started = time.perf_counter()
                data = backend.load(dataset)
                reads.append(time.perf_counter() - started)
                data.train.release()
                del data
        f, r = statistics.median(floors), statistics.median(reads)
        print(
            f"{threads} thread(s): floor {f:.2f} s ({min(floors):.2f}-{max(floors):.2f}), "
            f"distml read {r:.2f} s ({min(reads):.2f}-{max(reads):.2f}), {r / f:.2f}x"
        )


if __name__ == "__main__":
    main()
