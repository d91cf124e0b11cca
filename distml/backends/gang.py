"""Gangs: N cooperating processes started together, the backends' second primitive.

Beside ``map_reduce`` over cached partitions, a backend can start a *gang*: one
process per rank, all alive at once, each knowing every other's address (what
``tf.distribute.MultiWorkerMirroredStrategy`` and other collective libraries need).
Spark starts the members as a barrier stage, Dask as tasks pinned to distinct
workers, the local backend as threads here; each member then runs the same code
(:func:`run_member`), so what the processes see does not depend on the engine:

1. **reserve a port** — bind it and hold it (:func:`reserve_port`); the socket is
   handed to the child, which closes it the moment its own server takes the port,
   so no other process can take it in between (the race of choose-then-bind);
2. **check in** with the driver's :class:`Coordinator` (a TCP server that accepts a
   member only with the gang's random token) and learn every member's address
   (Spark exchanges them with ``allGather`` first);
3. **start the child** — always a fresh interpreter (``python -m MODULE``), whose
   environment has no proxy variables, the gang's ranks and addresses, thread
   counts and the devices it may use (``CUDA_VISIBLE_DEVICES``); on the local backend,
   where distml owns the machine, also the cores it may run on (:func:`cpu_sets`);
4. **relay** the child's output lines to the driver and obey an ``abort``: the
   child's process group is terminated, then killed.

The coordinator treats the gang as one unit: the first member that fails, is
killed or drops its connection makes it abort every other member, so nobody waits
on a peer that is gone. A member killed by a signal, or lost, raises
:class:`GangLost` (the caller may start the gang again, e.g. from a checkpoint); a
member that exits with an error raises :class:`GangFailed` with its last line.

Nothing here imports an engine or a deep-learning library.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distml.errors import BackendError
from distml.progress import Progress

log = logging.getLogger(__name__)

#: Variables a child never inherits: gRPC honours them even for peers on localhost.
PROXY_VARIABLES = (
    "http_proxy", "https_proxy", "all_proxy", "grpc_proxy",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "GRPC_PROXY",
)  # fmt: skip
#: Thread-count variables set in a child's environment.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
)  # fmt: skip
#: Exit status a child uses when its reserved port was taken after all (retried).
EXIT_PORT_TAKEN = 75
#: Exit status a child uses when a collective timed out or lost a peer (retried).
EXIT_PEER_LOST = 76
RETRIABLE = (EXIT_PORT_TAKEN, EXIT_PEER_LOST)
TAIL_LINES = 20


class GangLost(BackendError):
    """A member was killed or lost (its process, worker or executor died): retriable."""


class GangFailed(BackendError):
    """A member's process exited with an error: not retried."""


PeerEnv = Callable[[int, list[str], bool], dict[str, str]]


@dataclass(frozen=True)
class GangTask:
    """What every member runs: ``python -m module *args`` in a fresh process.

    Parameters
    ----------
    module, args:
        The child's entry point and arguments (the same on every rank).
    env:
        Extra environment variables for the child.
    peer_env:
        ``(rank, addresses, all_gpu) -> variables``: the environment that wires a
        child into its gang (e.g. ``TF_CONFIG``), called where the member runs.
    threads:
        CPU threads per child; default: the slot's cores (Spark ``spark.task.cpus``,
        a Dask worker's threads, this machine's cores / members locally).
    gpus:
        GPUs given to each child when its slot has them (``CUDA_VISIBLE_DEVICES``).
    start_timeout:
        Seconds for every member to check in; past it the gang fails with one line.
    bind_cpus:
        Local gangs only: give each child its own ``threads`` cores (when they fit in
        this process's), so that members do not take turns on the same core. Spark and
        Dask place members beside other tasks and never bind.
    name:
        What the gang does, for messages.
    """

    module: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    peer_env: PeerEnv | None = None
    threads: int | None = None
    gpus: int = 1
    start_timeout: float = 120.0
    bind_cpus: bool = True
    name: str = "gang"


@dataclass
class GangResult:
    """How a gang ended: every rank's exit status and last output lines."""

    exit_codes: list[int]
    tails: dict[int, list[str]]
    seconds: float


# -- ports and environment --------------------------------------------------------------------
def reserve_port(host: str = "") -> tuple[socket.socket, int]:
    """A socket bound to a free port (not listening), held until the child's server binds it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.set_inheritable(True)
    return sock, int(sock.getsockname()[1])


def release_reserved_port() -> None:
    """In a child: close the port socket its member reserved (call right before binding it)."""
    fd = os.environ.pop("DISTML_GANG_PORT_FD", None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(int(fd))


def cpu_sets(size: int, threads: int) -> list[list[int]] | None:
    """``size`` disjoint sets of ``threads`` cores each, from the cores this process may use
    (in order); None when they do not fit."""
    try:
        available = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None
    if size * threads > len(available):
        return None
    return [available[rank * threads : (rank + 1) * threads] for rank in range(size)]


def bind_cpus() -> None:
    """In a child: run on the cores its member was given (``DISTML_GANG_CPUS``), if any.
    Call before starting threads: the ones started later inherit the set."""
    cpus = os.environ.pop("DISTML_GANG_CPUS", "")
    if cpus and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError, ValueError):
            os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})


def guard_parent() -> None:
    """In a child: die with the member that started it (Linux ``PR_SET_PDEATHSIG``; else a
    thread that watches the parent), so an aborted or lost member leaves no orphan."""
    parent = int(os.environ.get("DISTML_GANG_PARENT", "0") or 0)
    if not parent:
        return
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(EXIT_PORT_TAKEN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="distml-gang-parent", daemon=True).start()


def child_environment(
    task: GangTask,
    rank: int,
    peers: list[str],
    all_gpu: bool,
    gpu_ids: list[str],
    threads: int,
    port_fd: int,
    cpus: list[int] | None = None,
) -> dict[str, str]:
    """The child's environment: ours minus proxies, plus the gang's wiring."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    env.pop("TF_CONFIG", None)
    env.update(task.env)
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)  # empty: the child sees no GPU
    env.pop("DISTML_GANG_CPUS", None)
    if cpus:
        env["DISTML_GANG_CPUS"] = ",".join(str(c) for c in cpus)
    env.update(
        DISTML_GANG_RANK=str(rank),
        DISTML_GANG_SIZE=str(len(peers)),
        DISTML_GANG_PEERS=",".join(peers),
        DISTML_GANG_ALL_GPU="1" if all_gpu else "0",
        DISTML_GANG_PORT_FD=str(port_fd),
        DISTML_GANG_PARENT=str(os.getpid()),
        PYTHONUNBUFFERED="1",
    )
    root = distml_root()  # a shipped zip on cluster workers: the child imports the same distml
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([root, *[p for p in paths if p != root]])
    if task.peer_env is not None:
        env.update(task.peer_env(rank, peers, all_gpu))
    return env


def distml_root() -> str:
    """The folder (or zip) this process imports distml from."""
    import distml

    return str(Path(distml.__file__).resolve().parent.parent)


def local_gpus() -> list[str]:
    """GPU ids on this machine: ``CUDA_VISIBLE_DEVICES`` if set, else ``nvidia-smi -L``."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(listed.stdout.splitlines()) if line.startswith("GPU")]


# -- wire: JSON lines --------------------------------------------------------------------------
def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall((json.dumps(message) + "\n").encode())


class _Lines:
    """Splits what arrives on a socket or pipe into lines."""

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, data: bytes) -> list[str]:
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        return [line.decode(errors="replace").rstrip("\r") for line in lines]


# -- the member side (runs where the engine placed it) --------------------------------------------
def run_member(
    task: GangTask,
    rank: int,
    coordinator: tuple[str, int],
    token: str,
    host: str,
    *,
    gpu_ids: list[str] | None = None,
    threads: int | None = None,
    reserved: tuple[socket.socket, int] | None = None,
    peers: list[str] | None = None,
    all_gpu: bool | None = None,
    cpus: list[int] | None = None,
) -> dict[str, Any]:
    """Check in, start the child, relay its lines, obey an abort; return how it ended.

    ``peers``/``all_gpu`` are given when the engine exchanged addresses itself
    (Spark's ``allGather``); otherwise the coordinator sends them. ``cpus``: the cores
    the child may run on (local gangs, :func:`cpu_sets`); None leaves it unbound.
    """
    gpu_ids = list(gpu_ids or [])[: task.gpus] if task.gpus else []
    sock, port = reserved or reserve_port()
    try:
        link = socket.create_connection(coordinator, timeout=30)
    except OSError as exc:
        sock.close()
        return {"rank": rank, "exit": -1, "error": f"cannot reach the driver {coordinator}: {exc}"}
    try:
        _send(
            link,
            {"hello": rank, "token": token, "address": f"{host}:{port}", "gpus": len(gpu_ids)},
        )
        reader = _Lines()
        if peers is None:
            link.settimeout(task.start_timeout + 30)
            reply = _read_message(link, reader)
            if reply is None or "peers" not in reply:
                return {"rank": rank, "exit": -1, "error": "the driver ended the gang"}
            peers, all_gpu = list(reply["peers"]), bool(reply["all_gpu"])
        link.settimeout(None)
        env = child_environment(
            task, rank, peers, bool(all_gpu), gpu_ids, threads or 1, sock.fileno(), cpus
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", task.module, *task.args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(sock.fileno(),),
            start_new_session=True,
        )
        sock.close()
        return _supervise(proc, link, reader, rank)
    finally:
        sock.close()
        link.close()


def _read_message(link: socket.socket, reader: _Lines) -> dict[str, Any] | None:
    while True:
        try:
            data = link.recv(65536)
        except (OSError, TimeoutError):
            return None
        if not data:
            return None
        lines = [line for line in reader.feed(data) if line]
        if lines:
            return json.loads(lines[0])


def _supervise(
    proc: subprocess.Popen[bytes], link: socket.socket, reader: _Lines, rank: int
) -> dict[str, Any]:
    assert proc.stdout is not None
    out = proc.stdout.fileno()
    lines = _Lines()
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    aborted = None
    link_open = True
    while True:
        watched = [out] + ([link] if link_open else [])
        readable, _, _ = select.select(watched, [], [], 1.0)
        if link in readable:
            try:
                data = link.recv(65536)
            except OSError:
                data = b""
            if not data:  # the driver is gone: nobody will collect this gang
                link_open = False
                aborted = "the driver closed the connection"
            elif any("abort" in json.loads(m) for m in reader.feed(data) if m):
                aborted = "aborted by the driver"
            if aborted:
                _stop_group(proc)
        if out in readable:
            data = os.read(out, 65536)
            if not data:
                break
            for line in lines.feed(data):
                tail.append(line)
                if link_open:
                    with contextlib.suppress(OSError):
                        _send(link, {"log": line})
    code = proc.wait()
    result = {"rank": rank, "exit": code, "tail": list(tail), "aborted": aborted}
    if link_open:
        with contextlib.suppress(OSError):
            _send(link, {"exit": code, "tail": list(tail), "stopped": aborted is not None})
    return result


def _stop_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Terminate the child's process group, then kill it after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# -- the driver side ------------------------------------------------------------------------------
class Coordinator:
    """The driver's end of a gang: check-in, address exchange, log lines, the abort.

    Parameters
    ----------
    size:
        Members expected.
    host:
        The address members connect to (reachable from where they run).
    progress:
        Receives every member's output lines (``worker R: ...``).
    send_peers:
        Send the addresses once all members checked in (not for Spark, which
        exchanged them with ``allGather``).
    """

    def __init__(
        self,
        size: int,
        host: str,
        progress: Progress,
        start_timeout: float,
        send_peers: bool = True,
        bind: str | None = None,
        name: str = "gang",
    ) -> None:
        self.size = size
        self.progress = progress
        self.start_timeout = start_timeout
        self.send_peers = send_peers
        self.name = name
        self.token = secrets.token_hex(16)
        self._server = socket.create_server((bind if bind is not None else host, 0))
        self.address = (host, int(self._server.getsockname()[1]))
        self._members: dict[int, socket.socket] = {}
        self._abort = threading.Event()

    def abort(self) -> None:
        """Ask the coordinator to end the gang (from another thread, e.g. on Ctrl-C)."""
        self._abort.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._server.close()
        for conn in self._members.values():
            with contextlib.suppress(OSError):
                conn.close()

    def run(self, engine_lost: Callable[[], str | None] = lambda: None) -> GangResult:
        """Wait for the gang to finish; raise :class:`GangLost` or :class:`GangFailed`.

        ``engine_lost`` is asked every second; a reason string from it (the
        engine lost a member's worker) ends the gang as lost.
        """
        started = time.monotonic()
        try:
            addresses = self._check_in(engine_lost)
            log.info("%s: %d members at %s", self.name, self.size, ", ".join(addresses))
            return self._watch(engine_lost, started)
        finally:
            self.close()

    # -- check-in --------------------------------------------------------------------------
    def _check_in(self, engine_lost: Callable[[], str | None]) -> list[str]:
        deadline = time.monotonic() + self.start_timeout
        hello: dict[int, dict[str, Any]] = {}
        self._server.settimeout(0.5)
        while len(hello) < self.size:
            reason = engine_lost()
            if reason is not None:
                raise GangLost(f"{self.name}: {reason} before every member started")
            if self._abort.is_set():
                raise GangFailed(f"{self.name}: stopped before it started")
            if time.monotonic() > deadline:
                raise BackendError(
                    f"{self.name}: only {len(hello)} of {self.size} members started within "
                    f"{self.start_timeout:g}s (are {self.size} slots free, and can they reach "
                    f"this machine at {self.address[0]}?)"
                )
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            conn.settimeout(10)
            try:
                message = json.loads(conn.makefile("rb").readline() or b"{}")
                presented = str(message.get("token", ""))
                if not hmac.compare_digest(presented, self.token):
                    raise ValueError("wrong token")
                rank = int(message["hello"])
            except (ValueError, KeyError, OSError, TypeError):
                conn.close()  # not one of ours
                continue
            conn.settimeout(None)
            if rank in hello or not 0 <= rank < self.size:
                conn.close()
                continue
            self._members[rank] = conn
            hello[rank] = message
        addresses = [hello[r]["address"] for r in range(self.size)]
        if self.send_peers:
            all_gpu = all(int(hello[r].get("gpus", 0)) > 0 for r in range(self.size))
            for conn in self._members.values():
                _send(conn, {"peers": addresses, "all_gpu": all_gpu})
        return addresses

    # -- running ---------------------------------------------------------------------------
    def _watch(self, engine_lost: Callable[[], str | None], started: float) -> GangResult:
        readers = {rank: _Lines() for rank in self._members}
        live = dict(self._members)
        exits: dict[int, int] = {}
        tails: dict[int, list[str]] = {}
        lost: list[str] = []
        aborted: set[int] = set()  # members told to stop: how they end is no cause
        stopped: set[int] = set()  # members whose process they stopped themselves
        abort_deadline: float | None = None
        while live:
            reason = None if lost else engine_lost()
            if reason is not None:
                lost.append(reason)
            if self._abort.is_set() and abort_deadline is None:
                lost.append("stopped")
            if (lost or any(code != 0 for code in exits.values())) and abort_deadline is None:
                abort_deadline = time.monotonic() + 15.0
                aborted = {rank for rank in live if rank not in exits}
                for conn in live.values():
                    with contextlib.suppress(OSError):
                        _send(conn, {"abort": True})
            if abort_deadline is not None and time.monotonic() > abort_deadline:
                log.warning("%s: members %s did not stop when aborted", self.name, sorted(live))
                break  # closing their connections makes them kill their processes
            by_socket = {conn: rank for rank, conn in live.items()}
            readable, _, _ = select.select(list(by_socket), [], [], 1.0)
            for conn in readable:
                rank = by_socket[conn]
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    del live[rank]
                    if rank not in exits and rank not in aborted:
                        lost.append(f"member {rank} was lost (its connection closed)")
                    continue
                for line in readers[rank].feed(data):
                    if not line:
                        continue
                    message = json.loads(line)
                    if "log" in message:
                        self.progress.message(f"worker {rank}: {message['log']}")
                    elif "exit" in message:
                        exits[rank] = int(message["exit"])
                        tails[rank] = list(message.get("tail", []))
                        if message.get("stopped"):
                            stopped.add(rank)
        seconds = time.monotonic() - started
        if not lost and len(exits) == self.size and all(c == 0 for c in exits.values()):
            return GangResult([exits[r] for r in range(self.size)], tails, seconds)
        # A member's own account decides, not the order exits arrive in: when a worker is
        # killed, its peer may fail on the broken collective (exit 1) and report first; that
        # peer was not told to stop, the killed one was not stopped by its member, so the
        # gang counts as lost (retried), not as failed.
        causes = {rank: code for rank, code in exits.items() if rank not in stopped}
        raise self._failure(causes, tails, lost)

    def _failure(
        self, exits: dict[int, int], tails: dict[int, list[str]], lost: list[str]
    ) -> BackendError:
        killed = [r for r, code in sorted(exits.items()) if code < 0 or code in RETRIABLE]
        failed = [r for r, code in sorted(exits.items()) if code > 0 and code not in RETRIABLE]
        if killed or lost:
            what = [
                f"member {r} was killed by signal {-exits[r]}"
                if exits[r] < 0
                else f"member {r}'s port was taken"
                if exits[r] == EXIT_PORT_TAKEN
                else f"member {r}: {_last_error(tails.get(r, []))}"
                for r in killed
            ]
            return GangLost(f"{self.name}: {'; '.join(what + lost)}")
        if not failed:  # every member stopped on request without a reported cause
            return GangLost(f"{self.name}: the members stopped before finishing")
        rank = failed[0]
        return GangFailed(f"{self.name}: member {rank} failed: {_last_error(tails.get(rank, []))}")


def _last_error(tail: list[str]) -> str:
    """The child's one-line error (``error: ...``), else its last non-empty line."""
    for line in reversed(tail):
        if line.startswith("error: "):
            return line[len("error: ") :]
    lines = [line for line in tail if line.strip()]
    return lines[-1].strip() if lines else "exited without output"


# -- the local launcher ---------------------------------------------------------------------------
def run_local_gang(task: GangTask, size: int, progress: Progress) -> GangResult:
    """The gang as ``size`` processes on this machine (one member thread each)."""
    if size < 1:
        raise BackendError(f"{task.name}: a gang needs at least 1 member, got {size}")
    coordinator = Coordinator(size, "127.0.0.1", progress, task.start_timeout, name=task.name)
    gpus = local_gpus()
    per = task.gpus if task.gpus and len(gpus) >= size * task.gpus else 0
    threads = task.threads or max(1, (os.cpu_count() or 1) // size)
    cores = cpu_sets(size, threads) if task.bind_cpus else None
    results: dict[int, dict[str, Any]] = {}

    def member(rank: int) -> None:
        mine = gpus[rank * per : (rank + 1) * per]
        results[rank] = run_member(
            task,
            rank,
            coordinator.address,
            coordinator.token,
            "127.0.0.1",
            gpu_ids=mine,
            threads=threads,
            cpus=cores[rank] if cores else None,
        )

    threads_ = [
        threading.Thread(target=member, args=(rank,), name=f"distml-gang-{rank}", daemon=True)
        for rank in range(size)
    ]
    for thread in threads_:
        thread.start()
    try:
        return coordinator.run()
    finally:
        coordinator.close()  # members still running see the connection close and stop
        for thread in threads_:
            thread.join(timeout=30)
