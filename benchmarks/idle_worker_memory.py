"""Resident memory of Dask workers around a distml fit: bare, holding the data, and idle after.

Issue 16's goal: an idle Dask worker that has run a distml pass stays ≤ 150 MB. Run by hand
on data made with ``distml data generate regression --rows 2e6 --features 20
--partitions 16 --out /tmp/wp/reg``::

    python benchmarks/idle_worker_memory.py /tmp/wp/reg

The last line also shows what a full trim would reach (gc, Arrow's pool, ``malloc_trim``).
"""

from __future__ import annotations

import os
import sys
import time


def rss_mb() -> float:
    """This process's resident memory in MB (runs on the workers)."""
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def trimmed_mb() -> float:
    """Resident memory after returning every free page there is (for comparison)."""
    import ctypes
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_mb()


def main() -> None:
    import distml
    from distml.backends import get_backend

    with get_backend("dask", workers=2, threads=1) as dask:

        def show(what: str, fn=rss_mb) -> None:  # type: ignore[no-untyped-def]
            values = sorted(dask.client.run(fn).values())
            print(f"{what}: {', '.join(f'{v:.0f}' for v in values)} MB")

        show("bare workers")
        data = dask.load(distml.Dataset(sys.argv[1], label="y"))
        model = dask.fit(distml.LinearRegression(), data)
        dask.evaluate(model, data.train)
        show("holding the partitions")
        data.train.release()
        time.sleep(2)
        show("idle after the fit")
        show("idle, fully trimmed", trimmed_mb)


if __name__ == "__main__":
    main()
