"""Wall time and peak resident memory of a command and every process it starts.

Run by hand (not part of the test suite), e.g. for data generation at scale:

    python benchmarks/peak_memory.py -- distml data generate regression --rows 5e7 \\
        --partitions 200 --out bench-out/data/reg50m --backend dask

The peak is the largest sum of memory over the command and its descendants (a Dask
LocalCluster's worker processes, Spark's JVM and Python workers), sampled every 0.1 s —
the same measures ``distml bench`` reports for each run (``distml.bench.measure``): the
sum of resident sets (RSS; shared libraries count once per process) and the sum of
proportional set sizes (PSS; a page shared by n processes counts 1/n in each, so the sum
is what the tree occupies). For budgets that are per process (Dask's ``memory_limit``),
the largest RSS and PSS each process reached, largest first.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import psutil


def _measure_module():  # type: ignore[no-untyped-def]
    """``distml.bench.measure`` loaded from its file, without importing the ``distml``
    package: this process then maps no numpy or Arrow library, whose pages it would share
    with the measured tree (a shared page counts 1/n in each process's PSS)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "distml" / "bench" / "measure.py"
    spec = importlib.util.spec_from_file_location("distml_bench_measure", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_measure = _measure_module()
SAMPLE_SECONDS, tree_processes = _measure.SAMPLE_SECONDS, _measure.tree_processes


def main() -> None:
    command = sys.argv[1:]
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        sys.exit("usage: python benchmarks/peak_memory.py -- COMMAND [ARGS...]")
    started = time.perf_counter()
    proc = subprocess.Popen(command)
    root = psutil.Process(proc.pid)
    peak = [0, 0]  # RSS, PSS summed over the tree
    each: dict[int, list] = {}  # pid -> [largest RSS, largest PSS, what it runs]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            found = tree_processes(root)  # one read of each process's memory per sample
            peak[0] = max(peak[0], sum(rss for rss, _ in found.values()))
            peak[1] = max(peak[1], sum(pss for _, pss in found.values()))
            for pid, (rss, pss) in found.items():
                seen = each.setdefault(pid, [0, 0, ""])
                if not seen[2]:
                    try:
                        seen[2] = " ".join(psutil.Process(pid).cmdline())[:90]
                    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                        pass
                seen[0], seen[1] = max(seen[0], rss), max(seen[1], pss)
            done.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    done.set()
    sampler.join()
    seconds = time.perf_counter() - started
    print(
        f"exit {code}, {seconds:.1f} s wall, peak resident memory {peak[0] / 2**20:,.0f} MB"
        f" (sum of RSS), {peak[1] / 2**20:,.0f} MB (sum of PSS)"
    )
    for pid, (rss, pss, what) in sorted(each.items(), key=lambda item: -item[1][0])[:8]:
        print(f"  pid {pid}: peak RSS {rss / 2**20:,.0f} MB, PSS {pss / 2**20:,.0f} MB  {what}")
    sys.exit(code)


if __name__ == "__main__":
    main()
