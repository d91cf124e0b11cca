"""Running one benchmark child: wall time, peak memory of every process it starts, a timeout.

The peak is the largest sum of resident memory over the child and all its
descendants — the driver, Dask's worker processes, Spark's JVM and its Python
workers — sampled every :data:`SAMPLE_SECONDS`.
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


def tree_rss(root: psutil.Process) -> int:
    """Resident bytes of ``root`` and every descendant (those that vanish count 0)."""
    total = 0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for proc in processes:
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return total


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
        peak = [0]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], tree_rss(root))
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
