"""Jobs submitted with ``--detach``: started in the background, followed by id.

Each job has ``<state>/jobs/<id>/``: ``job.json`` (the command, the process, and,
once it ends, its exit code) and ``output.log`` (everything it printed). The
background process is ``distml submit`` itself, which records its own exit code.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from distml.clusters.processes import alive, spawn
from distml.clusters.state import ProcessInfo, write_json
from distml.errors import SpecError


def jobs_dir(state: Path) -> Path:
    folder = state / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def start(state: Path, arguments: list[str], spec: str, cluster: str, out: str) -> str:
    """Start ``distml submit <arguments> --job-id ID`` in the background; return ID."""
    job_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    folder = jobs_dir(state) / job_id
    folder.mkdir()
    command = [sys.executable, "-m", "distml.cli", "submit", *arguments, "--job-id", job_id]
    record: dict[str, Any] = {
        "id": job_id,
        "spec": spec,
        "cluster": cluster,
        "out": out,
        "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(folder / "job.json", record)
    process = spawn("job", command, folder / "output.log")
    record["process"] = process.__dict__
    write_json(folder / "job.json", record)
    return job_id


def finish(state: Path, job_id: str, exit_code: int) -> None:
    """Record how the job ended (called by the background process itself)."""
    path = jobs_dir(state) / job_id / "job.json"
    if path.is_file():
        record = json.loads(path.read_text())
        record.update(exit_code=exit_code, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        write_json(path, record)


def load(state: Path, job_id: str) -> dict[str, Any]:
    path = jobs_dir(state) / job_id / "job.json"
    if not path.is_file():
        known = ", ".join(sorted(p.name for p in jobs_dir(state).iterdir())) or "none"
        raise SpecError(f"no job '{job_id}' in {jobs_dir(state)}; known: {known}")
    record = json.loads(path.read_text())
    record["status"] = _status(record)
    return record


def listing(state: Path) -> list[dict[str, Any]]:
    """Every detached job, oldest first, with its status."""
    return [load(state, p.name) for p in sorted(jobs_dir(state).iterdir()) if p.is_dir()]


def log_path(state: Path, job_id: str) -> Path:
    load(state, job_id)  # names the job in the error when it does not exist
    return jobs_dir(state) / job_id / "output.log"


def _status(record: dict[str, Any]) -> str:
    if "exit_code" in record:
        return "succeeded" if record["exit_code"] == 0 else f"failed (exit {record['exit_code']})"
    process = record.get("process")
    if process is None:
        return "starting"
    return "running" if alive(ProcessInfo(**process)) else "lost (ended without a status)"
