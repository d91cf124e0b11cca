"""Fault tolerance for Keras runs: per-epoch checkpoints beside the run folder.

The run folder itself is written atomically at the very end, so the training
state lives in a hidden sibling derived from ``--out`` (``.NAME.resume/``): Keras's
``BackupAndRestore`` state after every epoch, a JSON line of metrics per finished
epoch, and the settings it belongs to. A run started again with the same
``--out`` resumes after the last finished epoch; a successful run removes the
folder. Importing this module imports TensorFlow (see :mod:`distml.deep.devices`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from distml.deep.devices import import_tensorflow
from distml.errors import SpecError

import_tensorflow()
import keras  # noqa: E402


def local_anchor(final: str | os.PathLike[str]) -> Path:
    """The local path a run's resume state sits beside: the run folder itself, or — for a
    run folder published on an object store — ``$XDG_CACHE_HOME/distml/runs/BUCKET/KEY``
    (``~/.cache`` by default), so a rerun on this machine resumes from the last epoch."""
    from distml.remote_output import as_url

    url = as_url(final)
    if url is None:
        return Path(final).resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    scheme, rest = url.split("://", 1)
    return (cache / "distml" / "runs" / scheme / rest.strip("/")).resolve()


class ResumeState:
    """The resume folder of the run that writes ``out``.

    Parameters
    ----------
    out:
        The run folder the job writes.
    settings:
        What defines the training trajectory (model, batch size, replicas, data,
        seed). A checkpoint made with other settings is refused, not silently
        mixed in; ``epochs`` is left out so a finished-early run can be extended.
    """

    def __init__(self, out: str | os.PathLike[str], settings: dict[str, Any]) -> None:
        out = local_anchor(out)
        self.dir = out.parent / f".{out.name}.resume"
        self.backup_dir = self.dir / "backup"
        self.history_path = self.dir / "history.jsonl"
        self.settings_path = self.dir / "settings.json"
        self.settings = json.loads(json.dumps(settings, default=str))

    def open(self) -> int:
        """Prepare the folder; return how many epochs a previous attempt finished (0: none)."""
        if self.settings_path.exists():
            previous = json.loads(self.settings_path.read_text())
            if previous != self.settings:
                key = next(
                    k
                    for k in {**previous, **self.settings}
                    if previous.get(k) != self.settings.get(k)
                )
                raise SpecError(
                    f"{self.dir}: holds the checkpoint of an unfinished run with other settings "
                    f"({key}: {previous.get(key)!r} -> {self.settings.get(key)!r}); "
                    "delete that folder to start afresh, or choose another --out"
                )
        self.dir.mkdir(parents=True, exist_ok=True)
        self.settings_path.write_text(json.dumps(self.settings, indent=2))
        done = self.finished_epochs()
        self._keep_history(done)
        return done

    def finished_epochs(self) -> int:
        """Epochs in the checkpoint (Keras's ``BackupAndRestore`` metadata), 0 without one."""
        metadata = self.backup_dir / "training_metadata.json"
        if not (self.backup_dir / "latest.weights.h5").exists() or not metadata.exists():
            return 0
        return int(json.loads(metadata.read_text())["epoch"])

    def history(self) -> list[dict[str, Any]]:
        """Per-epoch metrics of every finished epoch, this process's and earlier ones'."""
        if not self.history_path.exists():
            return []
        rows = [json.loads(line) for line in self.history_path.read_text().splitlines() if line]
        latest = {row["epoch"]: row for row in rows}  # an epoch re-run after a kill: keep the last
        return [latest[epoch] for epoch in sorted(latest)]

    def callbacks(self, first_epoch: int) -> list[Any]:
        """The callbacks ``fit`` needs: epoch log first, then the checkpoint.

        In that order a checkpoint always has its epoch's line in the history; a
        line without a checkpoint (killed in between) is dropped on resume.
        """
        return [
            EpochLog(self.history_path, first_epoch),
            keras.callbacks.BackupAndRestore(
                str(self.backup_dir), double_checkpoint=True, delete_checkpoint=False
            ),
        ]

    def remove(self) -> None:
        """Delete the folder (the run succeeded)."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def _keep_history(self, epochs: int) -> None:
        rows = [row for row in self.history() if row["epoch"] < epochs]
        text = "".join(json.dumps(row) + "\n" for row in rows)
        self.history_path.write_text(text)


class EpochLog(keras.callbacks.Callback):
    """Times training (not validation) and logs each finished epoch.

    Each line is flushed and synced before the checkpoint that follows it, so it
    survives a kill.
    """

    def __init__(self, path: Path, first_epoch: int) -> None:
        super().__init__()
        self.path = path
        self.next_epoch = first_epoch  # the input pipeline's: it starts there
        self.train_seconds: list[float] = []
        self._start = 0.0
        self._trained: float | None = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch != self.next_epoch:  # the data would be another epoch's order
            raise RuntimeError(
                f"Keras began epoch {epoch}; the input pipeline is at {self.next_epoch}"
            )
        self.next_epoch += 1
        self._start = time.perf_counter()
        self._trained = None

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._trained is None:  # validation at the end of the epoch starts now
            self._trained = time.perf_counter() - self._start

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        seconds = time.perf_counter() - self._start
        trained = self._trained if self._trained is not None else seconds
        self.train_seconds.append(trained)
        row = {"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}}
        row.update(train_seconds=trained, epoch_seconds=seconds, pid=os.getpid())
        with open(self.path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
