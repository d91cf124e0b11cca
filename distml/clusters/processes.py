"""Starting detached processes and stopping exactly those, by pid.

A process is started in its own session (so it outlives the command that started
it and can be signalled with its children as one process group) with its output
in a log file. It is recognised later by pid *and* start time, so a pid reused by
an unrelated process is never signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from distml.clusters.state import ProcessInfo


def spawn(
    role: str, args: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> ProcessInfo:
    """Start ``args`` detached, stdout and stderr to ``log``."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(args),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            cwd=log.parent,
        )
    return ProcessInfo(
        role=role, pid=proc.pid, started=psutil.Process(proc.pid).create_time(), log=str(log)
    )


def process(info: ProcessInfo) -> psutil.Process | None:
    """The live process ``info`` describes, or None (gone, a zombie, or its pid reused)."""
    try:
        proc = psutil.Process(info.pid)
        if abs(proc.create_time() - info.started) > 0.05 or proc.status() == psutil.STATUS_ZOMBIE:
            _reap(info.pid)
            return None
        return proc
    except psutil.NoSuchProcess:
        return None


def alive(info: ProcessInfo) -> bool:
    return process(info) is not None


def stop(infos: Sequence[ProcessInfo], timeout: float = 15.0) -> list[int]:
    """Stop these processes and their children (SIGTERM, then SIGKILL); the pids still alive."""
    targets: list[psutil.Process] = []
    for info in infos:
        proc = process(info)
        if proc is None:
            continue
        try:
            targets.extend([proc, *proc.children(recursive=True)])
        except psutil.NoSuchProcess:
            continue
    for proc in targets:
        _signal(proc, signal.SIGTERM)
    _, remaining = psutil.wait_procs(targets, timeout=timeout)
    for proc in remaining:
        _signal(proc, signal.SIGKILL)
    _, remaining = psutil.wait_procs(remaining, timeout=5)
    for proc in targets:
        _reap(proc.pid)
    return [p.pid for p in remaining]


def _signal(proc: psutil.Process, sig: signal.Signals) -> None:
    try:
        proc.send_signal(sig)
    except psutil.NoSuchProcess:
        pass


def _reap(pid: int) -> None:
    """Collect the exit status of a child of this process (no zombie is left behind)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_until(check, timeout: float, interval: float = 0.2) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``check()`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return bool(check())
