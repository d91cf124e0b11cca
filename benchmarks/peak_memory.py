"""Wall time and peak resident memory of a command and every process it starts.

Run by hand (not part of the test suite), e.g. for data generation at scale:

    python benchmarks/peak_memory.py -- distml data generate regression --rows 5e7 \\
        --partitions 200 --out bench-out/data/reg50m --backend dask

The peak is the largest sum of resident memory over the command and its descendants
(a Dask LocalCluster's worker processes, Spark's JVM and Python workers), sampled every
0.1 s — the same measure ``distml bench`` reports for each run — and, for budgets that
are per process (Dask's ``memory_limit``), the largest resident memory each process
reached, largest first.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import psutil

from distml.bench.measure import SAMPLE_SECONDS, tree_rss


def main() -> None:
    command = sys.argv[1:]
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        sys.exit("usage: python benchmarks/peak_memory.py -- COMMAND [ARGS...]")
    started = time.perf_counter()
    proc = subprocess.Popen(command)
    root = psutil.Process(proc.pid)
    peak = 0
    each: dict[int, tuple[int, str]] = {}  # pid -> (largest resident bytes, what it runs)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(root))
            try:
                processes = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                processes = []
            for process in processes:
                try:
                    rss = process.memory_info().rss
                    if rss > each.get(process.pid, (0, ""))[0]:
                        each[process.pid] = (rss, " ".join(process.cmdline())[:90])
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    pass
            done.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    done.set()
    sampler.join()
    seconds = time.perf_counter() - started
    print(f"exit {code}, {seconds:.1f} s wall, peak resident memory {peak / 2**20:,.0f} MB")
    for pid, (rss, what) in sorted(each.items(), key=lambda item: -item[1][0])[:8]:
        print(f"  pid {pid}: peak {rss / 2**20:,.0f} MB  {what}")
    sys.exit(code)


if __name__ == "__main__":
    main()
