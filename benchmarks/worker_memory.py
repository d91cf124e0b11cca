"""Resident memory of Dask workers that distml started: idle, then after one streamed pass.

Run by hand (not part of the test suite), from a plain script so that the spawned workers
do not re-import a test runner's modules:

    distml data generate regression --rows 2e6 --features 20 --partitions 16 --out /tmp/wp/reg
    python benchmarks/worker_memory.py --data /tmp/wp/reg

Prints each worker's resident MB and the heavy packages it has imported (scikit-learn,
SciPy, pandas, matplotlib) before any task and after a streamed linear-regression pass.
"""

from __future__ import annotations

import argparse
import time

HEAVY = ("sklearn", "scipy", "pandas", "matplotlib")


def worker_state() -> tuple[int, list[str]]:
    """Runs on each worker: (resident MB, heavy packages imported)."""
    import sys

    import psutil

    heavy = sorted({name.split(".")[0] for name in sys.modules} & set(HEAVY))
    return psutil.Process().memory_info().rss // 2**20, heavy


def main() -> None:
    import distml
    from distml.backends import get_backend

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a Parquet folder with a label y")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with get_backend("dask", workers=args.workers, cache=False) as backend:
        print("started:", backend.client.run(worker_state))
        data = backend.load(distml.Dataset(args.data, label="y"))
        backend.fit(distml.LinearRegression(), data)
        time.sleep(2)  # let the workers settle
        print("after a streamed pass:", backend.client.run(worker_state))


if __name__ == "__main__":
    main()
