"""Hidden siblings left by a writer that died (SIGKILL) are swept by the next writer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from distml.atomic import OutputDir, _owner


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_next_writer_removes_only_what_dead_local_writers_left(tmp_path: Path) -> None:
    host = _owner().split("@", 1)[1]
    dead = _dead_pid()
    left = {
        "dead": tmp_path / f".run.tmp-{dead}@{host}-ab12cd34",
        "dead_trash": tmp_path / f".run.old-{dead}@{host}-zz99yy88",
        "alive": tmp_path / f".run.tmp-{os.getppid()}@{host}-ef56gh78",
        "other_host": tmp_path / f".run.tmp-{dead}@elsewhere.example-ij90kl12",
        "other_output": tmp_path / f".runs.tmp-{dead}@{host}-mn34op56",
        "not_ours": tmp_path / ".run.tmp-handmade",
    }
    for folder in left.values():
        folder.mkdir()
        (folder / "part-0.parquet").write_bytes(b"x")

    with OutputDir(tmp_path / "run", "run") as tmp:
        assert tmp.name.startswith(f".run.tmp-{os.getpid()}@{host}-")
        (tmp / "metrics.json").write_text("{}")

    kept = {name for name, folder in left.items() if folder.exists()}
    assert kept == {"alive", "other_host", "other_output", "not_ours"}
    assert (tmp_path / "run" / "metrics.json").read_text() == "{}"
