"""Clusters started on this machine by ``distml cluster up`` and what they are doing.

``up`` starts a real Dask or Spark standalone cluster, detached, recorded in the
state folder (:mod:`.state`); ``status`` reports each recorded process;
``down`` stops exactly the processes a record names (:mod:`.processes`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from distml.clusters.processes import alive, stop
from distml.clusters.state import ClusterRecord, clusters, find_cluster, state_dir


def status(state: Path) -> list[dict[str, Any]]:
    """One entry per recorded cluster: id, kind, address and each process's pid and liveness."""
    return [
        {
            "id": record.id,
            "kind": record.kind,
            "address": record.address,
            "tls": bool(record.tls),
            "auth": bool(record.secret_file),
            "processes": [
                {"role": p.role, "pid": p.pid, "alive": alive(p), "log": p.log}
                for p in record.processes
            ],
        }
        for record in clusters(state)
    ]


def down(state: Path, which: str | None = None) -> list[ClusterRecord]:
    """Stop the named cluster (or every recorded one) and remove its folder."""
    stopped = []
    for record in find_cluster(state, which):
        survivors = stop(record.processes)
        if survivors:
            raise RuntimeError(f"processes {survivors} of {record.id} did not stop")
        shutil.rmtree(record.folder, ignore_errors=True)
        stopped.append(record)
    return stopped


__all__ = ["ClusterRecord", "down", "state_dir", "status"]
