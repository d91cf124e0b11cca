"""A gang on Dask: one task per member, each pinned to its own worker.

The tasks are submitted with ``workers=[address], allow_other_workers=False`` to N
distinct workers (sorted by address), so no two members share a worker. Pinned
tasks are the trap of dask/distributed#7346 and #8320: when their worker dies the
scheduler waits for it forever. So the gang is watched from here — a member whose
connection to the coordinator closes, a task that errs, or a pinned worker that
leaves the cluster ends the gang as lost (:class:`~distml.backends.gang.GangLost`),
every other member is aborted and every task cancelled; the caller decides whether
to start it again (Keras jobs do, from their last checkpoint).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from typing import Any

from distml.backends.gang import Coordinator, GangResult, GangTask, local_gpus, run_member
from distml.errors import BackendError
from distml.progress import Progress


def run_dask_gang(
    client: Any, task: GangTask, size: int, progress: Progress, timeout: float, where: str
) -> GangResult:
    """Run ``task`` on ``size`` distinct workers of ``client``'s cluster and wait for it."""
    workers = pick_workers(client, size, timeout, where)
    host = _address_towards(client.scheduler.address)
    coordinator = Coordinator(size, host, progress, task.start_timeout, name=task.name)
    gang = uuid.uuid4().hex[:12]
    futures = [
        client.submit(
            dask_member,
            task,
            rank,
            coordinator.address,
            coordinator.token,
            key=f"distml-gang-{gang}-{rank}",
            workers=[worker],
            allow_other_workers=False,
            pure=False,
            retries=0,
        )
        for rank, worker in enumerate(workers)
    ]

    def engine_lost() -> str | None:
        for rank, future in enumerate(futures):
            if future.status in ("error", "cancelled", "lost"):
                return f"the dask task of member {rank} ended ({future.status})"
        try:
            present = set(client.scheduler_info()["workers"])
        except Exception as exc:  # noqa: BLE001 - the scheduler itself is gone
            return f"lost the dask scheduler ({exc})"
        for rank, worker in enumerate(workers):
            if worker not in present:
                return f"dask worker {worker} (member {rank}) left the cluster"
        return None

    try:
        return coordinator.run(engine_lost)
    finally:
        coordinator.close()  # a member still running sees its connection close and stops
        with contextlib.suppress(Exception):
            client.cancel(futures, force=True)


def pick_workers(client: Any, size: int, timeout: float, where: str) -> list[str]:
    """``size`` distinct worker addresses, waiting up to ``timeout`` s for enough to join."""
    deadline = time.monotonic() + timeout
    while True:
        workers = sorted(client.scheduler_info()["workers"])
        if len(workers) >= size:
            return workers[:size]
        if time.monotonic() > deadline:
            raise BackendError(
                f"dask: train.workers={size} needs {size} workers (one member each), but "
                f"{where} has {len(workers)} after {timeout:g}s; start more workers or lower "
                "train.workers"
            )
        time.sleep(0.2)


def dask_member(
    task: GangTask, rank: int, coordinator: tuple[str, int], token: str
) -> dict[str, Any]:
    """The body of one pinned task, on its worker: a member of the gang."""
    from distributed import get_worker

    worker = get_worker()
    host = worker.address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    threads = task.threads or int(getattr(worker.state, "nthreads", 1) or 1)
    return run_member(
        task,
        rank,
        tuple(coordinator),  # type: ignore[arg-type]
        token,
        host,
        gpu_ids=_worker_gpus(worker, task.gpus),
        threads=threads,
    )


def _worker_gpus(worker: Any, wanted: int) -> list[str]:
    """The GPUs this worker owns: its ``CUDA_VISIBLE_DEVICES`` (dask-cuda sets one per
    worker), else all of the machine's when the worker declares a ``GPU`` resource."""
    if not wanted:
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [g for g in visible.split(",") if g.strip() and g.strip() != "-1"][:wanted]
    resources = getattr(worker.state, "total_resources", {}) or {}
    if resources.get("GPU"):
        return local_gpus()[:wanted]
    return []


def _address_towards(scheduler: str) -> str:
    """This machine's address on the route to the scheduler (what the workers can reach)."""
    host = scheduler.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if host in ("127.0.0.1", "localhost", "::1"):
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, 9))  # no packet is sent: this only picks the route
            return str(probe.getsockname()[0])
        except OSError:
            return socket.gethostbyname(socket.gethostname())
