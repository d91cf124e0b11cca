"""Which rows each worker of a multi-worker Keras job reads: a plan made from footers.

The driver reads only the Parquet footers (row-group sizes) and cuts the dataset's
global row order — files in sorted order, rows in file order — into one contiguous
range per rank. A range is a list of :class:`Piece` s (a row group, or the part of
one that the range covers), so a worker reads only the row groups it needs. The
plan depends on the files and the number of workers alone, never on the engine
that launches them, so every launcher trains on the same rows.

Training shards are **equal**: each rank gets ``rows // workers`` rows and the last
``rows % workers`` (fewer than one per worker) are left out, so every rank runs the
same number of steps with batches of the same sizes — a rank with one batch more
would wait forever at the next all-reduce (tensorflow#36153, #37112). Evaluation
shards cover every row (sizes may differ by one; evaluation sums, no step lock).

Each epoch a rank visits its pieces in an order drawn from ``(seed, epoch, rank)``
and shuffles windows of ``shuffle_buffer`` rows, like the single-machine pipeline,
so a run resumed after a lost worker sees the epochs it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from distml.deep.pipeline import Batch, _concat, _cut, pixel_matrix


@dataclass(frozen=True)
class Piece:
    """Rows ``[start, stop)`` of row group ``group`` of ``file``."""

    file: str
    group: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def row_groups(files: Sequence[str], filesystem: Any = None) -> list[tuple[str, int, int]]:
    """``(file, group, rows)`` for every row group, in the dataset's row order (footers only;
    ``filesystem``: the object store holding ``files``, ``None`` for local disk)."""
    groups = []
    for file in files:
        metadata = pq.read_metadata(file, filesystem=filesystem)
        for g in range(metadata.num_row_groups):
            groups.append((file, g, metadata.row_group(g).num_rows))
    return groups


def plan_shards(
    files: Sequence[str], workers: int, *, equal: bool, filesystem: Any = None
) -> list[list[Piece]]:
    """One list of pieces per rank: equal contiguous ranges (``equal``), else all rows."""
    groups = row_groups(files, filesystem)
    total = sum(rows for _, _, rows in groups)
    if equal:
        per = total // workers
        bounds = [rank * per for rank in range(workers + 1)]
    else:
        bounds = [total * rank // workers for rank in range(workers + 1)]
    shards: list[list[Piece]] = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        pieces, offset = [], 0
        for file, group, rows in groups:
            start, stop = max(lo, offset), min(hi, offset + rows)
            if start < stop:
                pieces.append(Piece(file, group, start - offset, stop - offset))
            offset += rows
        shards.append(pieces)
    return shards


def shard_rows(pieces: Sequence[Piece]) -> int:
    return sum(piece.rows for piece in pieces)


def iter_shard(
    pieces: Sequence[Piece],
    pixels: str,
    label: str,
    width: int,
    chunk: int,
    *,
    shuffle_buffer: int = 0,
    seed: int = 0,
    epoch: int = 0,
    rank: int = 0,
    filesystem: Any = None,
) -> Iterator[Batch]:
    """One epoch of a shard as ``(pixels uint8 [n, width], label int64 [n])`` chunks.

    Every row of the shard appears once; all chunks hold ``chunk`` rows but the
    last. With ``shuffle_buffer`` > 0 the order is a function of ``(seed, epoch,
    rank)``: pieces in a permuted order, rows permuted within each window.
    """
    shuffle = shuffle_buffer > 0
    rng = np.random.default_rng([seed, epoch, rank])
    order = rng.permutation(len(pieces)) if shuffle else range(len(pieces))
    window = max(shuffle_buffer, chunk)
    files: dict[str, pq.ParquetFile] = {}
    pending: list[Batch] = []
    held = 0
    for i in order:
        piece = pieces[i]
        if piece.file not in files:
            files[piece.file] = pq.ParquetFile(piece.file, filesystem=filesystem)
        table = files[piece.file].read_row_group(piece.group, columns=[pixels, label])
        table = table.slice(piece.start, piece.rows)
        pending.append(
            (
                pixel_matrix(table.column(pixels), width),
                table.column(label).to_numpy().astype(np.int64, copy=False),
            )
        )
        held += piece.rows
        if held < window:
            continue
        arrays = _concat(pending, rng if shuffle else None)
        full = held - held % chunk
        yield from _cut(arrays, 0, full, chunk)
        pending = [tuple(a[full:] for a in arrays)]
        held -= full
    if held:
        arrays = _concat(pending, rng if shuffle else None)
        yield from _cut(arrays, 0, held, chunk)
