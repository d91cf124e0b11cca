"""Per-rank checkpoints of a multi-worker Keras job, in a folder every worker reaches.

Keras 3's ``BackupAndRestore`` is not worker-aware: every worker would write the
same ``latest.weights.h5``. Here each rank writes its own files,
``rank-R/epoch-EEEE.npz`` (every model and optimizer variable, as numpy arrays) and
``rank-R/epoch-EEEE.json`` (that epoch's metrics), the ``.npz`` renamed into place
last, so a file that exists is complete. A restarted gang resumes from the last
epoch that *every* rank finished: ranks move in lock-step (each step all-reduces),
so they differ by at most the epoch being saved when one was killed. Each rank
keeps its last two checkpoints (and every epoch's metrics). numpy and JSON only: no TensorFlow needed to read
them.

The folder is a local (shared) path or an object-store URL (:class:`StateFolder`): on a
store an object appears whole when its upload completes, so no rename is needed there.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from distml.data.storage import (
    StorageOptions,
    delete_prefix,
    is_object_store,
    open_location,
    options_from_environment,
)

KEEP = 2
_EPOCH = re.compile(r"^epoch-(\d{4,})\.npz$")


class StateFolder:
    """A folder on local disk or an object store (``s3://``, ``gs://``, ``abfs://``), with
    what a gang's state needs: list, read, write whole files, delete."""

    def __init__(self, where: str | os.PathLike[str], options: StorageOptions | None = None):
        self.where = str(where)
        self.remote = is_object_store(self.where)
        if self.remote:
            self.options = options if options is not None else options_from_environment(self.where)
            self.fs, self.root = open_location(self.where, self.options)
        else:
            self.options = None
            self.fs, self.root = pafs.LocalFileSystem(), os.path.abspath(self.where)

    def __str__(self) -> str:
        return self.where

    def child(self, name: str) -> StateFolder:
        return StateFolder(f"{self.where.rstrip('/')}/{name}", self.options)

    def names(self) -> list[str]:
        """The files directly in this folder (none when it does not exist)."""
        selector = pafs.FileSelector(self.root, allow_not_found=True)
        return [i.base_name for i in self.fs.get_file_info(selector) if i.is_file]

    def exists(self, name: str) -> bool:
        return self.fs.get_file_info(f"{self.root}/{name}").is_file

    def read(self, name: str) -> bytes:
        with self.fs.open_input_stream(f"{self.root}/{name}") as stream:
            return stream.read()

    def write(self, name: str, data: bytes) -> None:
        """``name`` with ``data``, all or nothing (a local file is renamed into place)."""
        if self.remote:
            with self.fs.open_output_stream(f"{self.root}/{name}") as stream:
                stream.write(data)
            return
        os.makedirs(self.root, exist_ok=True)
        tmp = os.path.join(self.root, f".{name}.{os.getpid()}")
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, os.path.join(self.root, name))

    def delete(self, name: str) -> None:
        try:
            self.fs.delete_file(f"{self.root}/{name}")
        except FileNotFoundError:
            pass

    def remove(self) -> None:
        """The folder and everything in it."""
        if self.remote:
            delete_prefix(self.fs, self.root)
        else:
            shutil.rmtree(self.root, ignore_errors=True)


class RankCheckpoints:
    """The checkpoints of one rank (``rank``) of a gang of ``world`` ranks under ``folder``."""

    def __init__(self, folder: str | os.PathLike[str] | StateFolder, rank: int, world: int):
        self.folder = folder if isinstance(folder, StateFolder) else StateFolder(folder)
        self.rank = rank
        self.world = world

    def _dir(self, rank: int) -> StateFolder:
        return self.folder.child(f"rank-{rank}")

    def finished(self, rank: int) -> list[int]:
        """Epochs ``rank`` has a complete checkpoint after (1 = after the first epoch)."""
        epochs = (_EPOCH.match(name) for name in self._dir(rank).names())
        return sorted(int(m.group(1)) for m in epochs if m)

    def common_epoch(self) -> int:
        """The last epoch every rank finished (0: start from scratch)."""
        common = None
        for rank in range(self.world):
            done = set(self.finished(rank))
            common = done if common is None else common & done
        return max(common) if common else 0

    def save(self, epoch: int, arrays: list[np.ndarray], metrics: dict[str, Any]) -> None:
        """This rank's state after ``epoch`` epochs (metrics first, arrays last: the commit)."""
        folder = self._dir(self.rank)
        folder.write(f"epoch-{epoch:04d}.json", json.dumps(metrics).encode())
        buffer = io.BytesIO()
        np.savez(buffer, *arrays)
        folder.write(f"epoch-{epoch:04d}.npz", buffer.getvalue())
        for old in self.finished(self.rank)[:-KEEP]:  # metrics stay: the history needs them
            folder.delete(f"epoch-{old:04d}.npz")

    def load(self, epoch: int) -> list[np.ndarray]:
        """This rank's arrays after ``epoch`` epochs."""
        data = self._dir(self.rank).read(f"epoch-{epoch:04d}.npz")
        with np.load(io.BytesIO(data)) as saved:
            return [saved[f"arr_{i}"] for i in range(len(saved.files))]

    def history(self, epoch: int) -> list[dict[str, Any]]:
        """The metrics rows of epochs 1..``epoch``."""
        folder, rows = self._dir(self.rank), []
        for e in range(1, epoch + 1):
            name = f"epoch-{e:04d}.json"
            if folder.exists(name):
                rows.append(json.loads(folder.read(name)))
        return rows
