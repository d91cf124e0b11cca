"""Running one benchmark child: wall time, peak memory of every process it starts, a timeout.

The peak is the largest sum of memory over the child and all its descendants — the
driver, Dask's worker processes, Spark's JVM and its Python workers — sampled every
:data:`SAMPLE_SECONDS`, two ways:

* ``peak_mb``, the sum of each process's resident set (RSS). Pages that several of the
  processes map — the interpreter, numpy's and Arrow's shared libraries — count once per
  process, so this overstates what a tree of similar processes occupies.
* ``peak_pss_mb``, the sum of each process's proportional set size (PSS, from
  ``/proc/PID/smaps_rollup``): a page shared by *n* processes counts 1/*n* in each, so
  the sum is the physical memory the tree occupies (``smem``'s measure; where the
  kernel has no ``smaps_rollup``, RSS stands in).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

SAMPLE_SECONDS = 0.1
RESULT = "DISTML-BENCH-RESULT "


def tree_memory(root: psutil.Process) -> tuple[int, int]:
    """``(RSS, PSS)`` bytes summed over ``root`` and every descendant (those that vanish
    count 0)."""
    each = tree_processes(root).values()
    return sum(rss for rss, _ in each), sum(pss for _, pss in each)


def tree_processes(root: psutil.Process) -> dict[int, tuple[int, int]]:
    """``{pid: (RSS, PSS)}`` of ``root`` and every descendant still running (RSS stands in
    for PSS where :func:`process_memory` cannot read it)."""
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    found: dict[int, tuple[int, int]] = {}
    for proc in processes:
        own = process_memory(proc.pid)
        if own is None:
            try:
                resident = proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            own = (resident, resident)
        found[proc.pid] = own
    return found


def process_memory(pid: int) -> tuple[int, int] | None:
    """``(RSS, PSS)`` bytes of one process from ``/proc/PID/smaps_rollup``; None where the
    file is missing (not Linux ≥ 4.14, or the process is gone)."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            for line in rollup:
                key, _, rest = line.partition(b":")
                if key in (b"Rss", b"Pss"):
                    values[key.decode()] = int(rest.split()[0]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    if len(values) != 2:
        return None
    return values["Rss"], values["Pss"]


def run_child(spec: dict[str, Any], log: Path, timeout: float) -> dict[str, Any]:
    """Run one benchmark in a fresh process; its result plus ``wall``, ``peak_mb`` and ``status``."""
    started = time.perf_counter()
    with open(log, "w") as errors:
        proc = subprocess.Popen(
            [sys.executable, "-m", "distml.bench.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            start_new_session=True,
        )
        root = psutil.Process(proc.pid)
        peak = [0, 0]  # RSS, PSS
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                rss, pss = tree_memory(root)
                peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
                done.wait(SAMPLE_SECONDS)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            out, _ = proc.communicate(json.dumps(spec), timeout=timeout)
            status = None
        except subprocess.TimeoutExpired:
            _kill_tree(root)
            out, _ = proc.communicate()
            status = "timeout"
        finally:
            done.set()
            sampler.join()
    result: dict[str, Any] = {
        "status": "error",
        "error": f"no result (exit code {proc.returncode}); see {log}",
    }
    for line in (out or "").splitlines():
        if line.startswith(RESULT):
            result = json.loads(line[len(RESULT) :])
    if status == "timeout":
        result = {"status": "timeout", "error": f"still running after {timeout:g}s"}
    result["wall"] = time.perf_counter() - started
    result["peak_mb"] = peak[0] / 2**20
    result["peak_pss_mb"] = peak[1] / 2**20
    return result


def _kill_tree(root: psutil.Process) -> None:
    try:
        victims = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in victims:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=10)
