"""What a 2-worker Dask ``LocalCluster`` costs a job: import, start, first task, close.

Run once per start method, alternating, e.g.::

    for i in 1 2 3; do for m in spawn forkserver; do python benchmarks/dask_cluster_start.py $m; done; done

(2026-12-03, this 2-core machine: spawn starts in 0.83–0.89 s, forkserver in 1.54–1.66 s;
distml keeps Dask's default, spawn.)
"""

from __future__ import annotations

import sys
import time


def main() -> None:
    method = sys.argv[1] if len(sys.argv) > 1 else "spawn"
    t0 = time.perf_counter()
    import dask
    from distributed import Client, LocalCluster

    t1 = time.perf_counter()
    with dask.config.set({"distributed.worker.multiprocessing-method": method}):
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
        t2 = time.perf_counter()
        client.run(lambda: 1)
        t3 = time.perf_counter()
        client.close()
        cluster.close()
    t4 = time.perf_counter()
    print(
        f"{method}: import {t1 - t0:.2f} s, start {t2 - t1:.2f} s, first task on every worker "
        f"{t3 - t2:.2f} s, close {t4 - t3:.2f} s, total {t4 - t0:.2f} s"
    )


if __name__ == "__main__":
    main()
