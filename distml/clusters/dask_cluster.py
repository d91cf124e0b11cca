"""``distml cluster up dask``: a real ``dask scheduler`` and ``dask worker`` processes.

They run from this Python (``python -m distributed.cli.dask_scheduler`` / ``…worker``),
bound to 127.0.0.1, detached, with their logs in the cluster's folder. With
``tls=True`` every connection is mutual TLS under a private CA (:mod:`.tls`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from distml.backends.dask_environ import worker_environ
from distml.clusters.processes import spawn, stop, wait_until
from distml.clusters.state import ClusterRecord, new_cluster_folder
from distml.clusters.tls import make_certificates
from distml.errors import BackendError


def tls_arguments(files: dict[str, str]) -> list[str]:
    return [
        "--tls-ca-file",
        files["ca_file"],
        "--tls-cert",
        files["cert"],
        "--tls-key",
        files["key"],
    ]


def up(
    state: Path,
    workers: int = 2,
    threads: int = 1,
    memory_limit: str | None = None,
    tls: bool = False,
    host: str = "127.0.0.1",
    timeout: float = 60.0,
) -> ClusterRecord:
    """Start a scheduler and ``workers`` workers; return once all have joined."""
    if workers < 1 or threads < 1:
        raise BackendError("--workers and --threads must be >= 1")
    cluster_id, folder = new_cluster_folder(state, "dask")
    record = ClusterRecord(
        id=cluster_id, kind="dask", address="", folder=str(folder), workers=workers
    )
    try:
        certs = make_certificates(folder, host) if tls else None
        scheduler_file = folder / "scheduler.json"
        args = [
            sys.executable, "-m", "distributed.cli.dask_scheduler",
            "--host", host, "--port", "0",
            "--scheduler-file", str(scheduler_file),
            "--dashboard-address", f"{host}:0",
        ]  # fmt: skip
        if certs:
            args += ["--protocol", "tls", *tls_arguments(certs["scheduler"])]
        record.processes.append(spawn("scheduler", args, folder / "scheduler.log"))
        record.save()  # from here on, `distml cluster down` can clean up a half-started cluster
        if not wait_until(scheduler_file.exists, timeout):
            raise BackendError(
                f"the dask scheduler did not start within {timeout:g}s; see {folder / 'scheduler.log'}"
            )
        record.address = json.loads(scheduler_file.read_text())["address"]
        environ = {**os.environ, **worker_environ()}  # spawned workers inherit it
        for i in range(workers):
            worker = [
                sys.executable, "-m", "distributed.cli.dask_worker", record.address,
                "--host", host, "--nthreads", str(threads), "--nworkers", "1",
                "--name", f"worker-{i}", "--local-directory", str(folder / f"worker-{i}"),
                "--no-dashboard",
            ]  # fmt: skip
            if memory_limit is not None:
                worker += ["--memory-limit", str(memory_limit)]
            if certs:
                worker += tls_arguments(certs["worker"])
            log = folder / f"worker-{i}.log"
            record.processes.append(spawn(f"worker-{i}", worker, log, env=environ))
        record.tls = certs["client"] if certs else None
        record.save()
        _wait_for_workers(record, timeout)
        return record
    except BaseException:
        stop(record.processes)
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _wait_for_workers(record: ClusterRecord, timeout: float) -> None:
    from distributed import Client

    from distml.backends.dask import security

    with Client(
        record.address, security=security(record.tls), timeout=f"{timeout}s", set_as_default=False
    ) as client:
        try:
            client.wait_for_workers(record.workers, timeout=timeout)
        except TimeoutError:
            joined = len(client.scheduler_info()["workers"])
            raise BackendError(
                f"only {joined} of {record.workers} dask workers joined within {timeout:g}s; "
                f"see the worker logs in {record.folder}"
            ) from None
