"""Where ``distml cluster`` and ``distml submit --detach`` keep what they started.

One folder per cluster (``<state>/<id>/cluster.json`` plus its logs, certificates
and secrets) and per detached job (``<state>/jobs/<id>/``). The state folder is
``--state-dir``, else ``$DISTML_STATE_DIR``, else ``~/.distml/clusters``, so tests
and several users never collide. Secrets are written with mode 0600.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from distml.errors import SpecError

RECORD = "cluster.json"


def state_dir(option: str | os.PathLike[str] | None = None) -> Path:
    """The state folder: the option, ``$DISTML_STATE_DIR`` or ``~/.distml/clusters``."""
    chosen = option or os.environ.get("DISTML_STATE_DIR") or Path.home() / ".distml" / "clusters"
    path = Path(chosen).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_private(path: Path, text: str) -> Path:
    """Write a secret (key, password) readable by its owner only (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
    return path


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace a JSON file atomically (readers never see half of it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


@dataclass
class ProcessInfo:
    """A process distml started: its pid and start time (which guards against pid reuse)."""

    role: str
    pid: int
    started: float
    log: str


@dataclass
class ClusterRecord:
    """A cluster started by ``distml cluster up``."""

    id: str
    kind: str
    address: str
    folder: str
    workers: int
    processes: list[ProcessInfo] = field(default_factory=list)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    tls: dict[str, str] | None = None  # client CA/certificate/key files (Dask --tls)
    secret_file: str | None = None  # Spark properties holding the --auth secret
    cores: int | None = None  # task slots per worker (Spark), for submit to wait for them all

    def save(self) -> None:
        write_json(Path(self.folder) / RECORD, asdict(self))

    @classmethod
    def load(cls, folder: Path) -> ClusterRecord:
        data = json.loads((folder / RECORD).read_text())
        data["processes"] = [ProcessInfo(**p) for p in data["processes"]]
        return cls(**data)


def new_cluster_folder(state: Path, kind: str) -> tuple[str, Path]:
    """A fresh ``<state>/<kind>-<random>`` folder for a cluster's files."""
    cluster_id = f"{kind}-{secrets.token_hex(3)}"
    folder = state / cluster_id
    folder.mkdir(mode=0o700)
    return cluster_id, folder


def clusters(state: Path) -> list[ClusterRecord]:
    """Every cluster recorded in ``state``, oldest first."""
    found = []
    for folder in sorted(state.iterdir()):
        if (folder / RECORD).is_file():
            found.append(ClusterRecord.load(folder))
    return sorted(found, key=lambda r: r.created)


def find_cluster(state: Path, which: str | None) -> list[ClusterRecord]:
    """The clusters ``which`` names (an id, an address, or None for all)."""
    records = clusters(state)
    if which is None:
        return records
    chosen = [r for r in records if which in (r.id, r.address)]
    if not chosen:
        known = ", ".join(f"{r.id} ({r.address})" for r in records) or "none"
        raise SpecError(f"no cluster '{which}' in {state}; known: {known}")
    return chosen


def cluster_for_address(state: Path, address: str) -> ClusterRecord | None:
    """The recorded cluster serving ``address`` (``dask://`` and ``tcp://`` alike), if any."""

    def bare(url: str) -> str:
        return url.split("://", 1)[-1]

    for record in clusters(state):
        if bare(record.address) == bare(address):
            return record
    return None
