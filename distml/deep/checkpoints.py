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
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

KEEP = 2
_EPOCH = re.compile(r"^epoch-(\d{4,})\.npz$")


class RankCheckpoints:
    """The checkpoints of one rank (``rank``) of a gang of ``world`` ranks under ``folder``."""

    def __init__(self, folder: str | os.PathLike[str], rank: int, world: int) -> None:
        self.folder = Path(folder)
        self.rank = rank
        self.world = world

    def _dir(self, rank: int) -> Path:
        return self.folder / f"rank-{rank}"

    def finished(self, rank: int) -> list[int]:
        """Epochs ``rank`` has a complete checkpoint after (1 = after the first epoch)."""
        folder = self._dir(rank)
        if not folder.is_dir():
            return []
        epochs = (_EPOCH.match(p.name) for p in folder.iterdir())
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
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"epoch-{epoch:04d}"
        _write_atomic(stem.with_suffix(".json"), json.dumps(metrics).encode())
        tmp = folder / f".epoch-{epoch:04d}.{os.getpid()}.npz"
        with open(tmp, "wb") as handle:
            np.savez(handle, *arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, stem.with_suffix(".npz"))
        for old in self.finished(self.rank)[:-KEEP]:  # metrics stay: the history needs them
            (folder / f"epoch-{old:04d}.npz").unlink(missing_ok=True)

    def load(self, epoch: int) -> list[np.ndarray]:
        """This rank's arrays after ``epoch`` epochs."""
        with np.load(self._dir(self.rank) / f"epoch-{epoch:04d}.npz") as saved:
            return [saved[f"arr_{i}"] for i in range(len(saved.files))]

    def history(self, epoch: int) -> list[dict[str, Any]]:
        """The metrics rows of epochs 1..``epoch``."""
        rows = []
        for e in range(1, epoch + 1):
            path = self._dir(self.rank) / f"epoch-{e:04d}.json"
            if path.exists():
                rows.append(json.loads(path.read_text()))
        return rows


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
