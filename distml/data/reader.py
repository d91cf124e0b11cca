"""Reading one partition into numpy arrays, on whichever worker runs it.

Every backend calls :func:`load_partition` where the data is read (a local
thread, a Dask worker, a Spark executor), so validation messages, the
train/test split and the float64 feature matrix are the same everywhere.
"""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distml.algorithms.engine import Partition, realigned
from distml.data.arrow import arrow_array
from distml.data.dataset import PartitionSpec, filesystem_for
from distml.data.split import Split
from distml.errors import DataError


@contextmanager
def _reading(part: PartitionSpec) -> Iterator[None]:
    """Read errors as one line naming the file (and the host, when the file is missing)."""
    try:
        yield
    except FileNotFoundError:
        raise DataError(
            f"{part.path}: not found on {socket.gethostname()}, which read this partition; "
            "every worker must see the data (a shared filesystem, or an s3://, gs:// or hdfs:// URL)"
        ) from None
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"{part.path}: cannot read ({exc})") from None


def _open(uri: str, part: PartitionSpec) -> pq.ParquetFile:
    with _reading(part):
        return pq.ParquetFile(part.path, filesystem=filesystem_for(uri, part.storage))


def read_table(uri: str, part: PartitionSpec, columns: list[str] | None) -> pa.Table:
    """Rows of one partition; ``columns=None`` reads every column, partition keys included."""
    keys = part.partition_values
    file_columns = None if columns is None else [c for c in columns if c not in keys]
    parquet = _open(uri, part)
    with _reading(part):
        # one thread per partition: the engines already read partitions in parallel, one per
        # core, and Arrow's own pool on top of them only contends (2 threads were no faster
        # than 1 with it)
        if part.row_groups is None:
            table = parquet.read(columns=file_columns, use_threads=False)
        else:
            table = parquet.read_row_groups(
                list(part.row_groups), columns=file_columns, use_threads=False
            )
    for key, value in keys.items():
        if columns is None or key in columns:
            table = table.append_column(key, pa.array([value] * table.num_rows))
    return table


def read_matrix(
    uri: str, part: PartitionSpec, features: list[str], label: str | None, reuse: bool = False
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """One partition's features (float64, Fortran order) and label, filled column chunk by
    column chunk: each row group's columns are decoded one at a time and copied while still
    in cache, so one column chunk is in flight instead of a table (the read's memory peak)
    and Arrow's pool reuses the same pages for the next one (no fresh memory but ``X``'s).
    None where the row groups cannot be read apart (partition keys among the columns, no
    row groups).
    """
    wanted = features + ([label] if label is not None else [])
    if any(name in part.partition_values for name in wanted):
        return None
    parquet = _open(uri, part)
    groups = list(range(parquet.num_row_groups) if part.row_groups is None else part.row_groups)
    if not groups:
        return None
    if max(groups) >= parquet.num_row_groups:
        raise _replanned(part, parquet.metadata, groups)
    shape = (part.num_rows, len(features))
    X = scratch_matrix(*shape) if reuse else np.empty(shape, dtype=np.float64, order="F")
    labels: list[pa.Array] = []
    lo = 0
    for group in groups:
        hi = lo + parquet.metadata.row_group(group).num_rows
        if hi > part.num_rows:  # the file changed since it was planned
            raise _replanned(part, parquet.metadata, groups)
        for j, name in enumerate(features):
            with _reading(part):
                table = parquet.read_row_group(group, columns=[name], use_threads=False)
            if fill_features(table, [name], X[lo:hi, j : j + 1]) is not None:
                # counted over the whole partition, as the message says
                with _reading(part):
                    column = parquet.read_row_groups(groups, columns=[name], use_threads=False)
                raise bad_feature(part.path, name, column.column(name))
        if label is not None:
            with _reading(part):
                table = parquet.read_row_group(group, columns=[label], use_threads=False)
            labels.extend(table.column(label).chunks)
        lo = hi
    if lo != part.num_rows:
        raise _replanned(part, parquet.metadata, groups)
    if label is None:
        return X, None
    column = pa.chunked_array(labels, type=parquet.schema_arrow.field(label).type)
    return X, label_vector(column, label, part.path)


def _replanned(part: PartitionSpec, metadata: pq.FileMetaData, groups: list[int]) -> DataError:
    """A file whose rows differ from its footer's when the job was planned."""
    rows = sum(metadata.row_group(g).num_rows for g in groups if g < metadata.num_row_groups)
    return DataError(
        f"{part.path}: has {rows} rows, {part.num_rows} when it was planned (the file "
        "changed after the job read its footer)"
    )


#: Arrow's primitive numeric types (as ``str(type)`` spells them) and their numpy dtypes.
_NUMPY_DTYPES = {
    "int8": "i1", "int16": "i2", "int32": "i4", "int64": "i8",
    "uint8": "u1", "uint16": "u2", "uint32": "u4", "uint64": "u8",
    "halffloat": "f2", "float": "f4", "double": "f8",
}  # fmt: skip


def chunk_values(chunk: pa.Array) -> np.ndarray | None:
    """A numeric chunk without nulls as a read-only numpy view of its Arrow buffer.

    ``None`` where pyarrow's own conversion is needed (nulls, booleans, other types).
    pyarrow's ``to_numpy`` imports pandas on first use (~40 MB per worker process); the
    read path, which runs on every worker, does not need it.
    """
    dtype = _NUMPY_DTYPES.get(str(chunk.type))
    if dtype is None or chunk.null_count:
        return None
    width = np.dtype(dtype).itemsize
    return np.frombuffer(
        chunk.buffers()[1], dtype=dtype, count=len(chunk), offset=chunk.offset * width
    )


def chunk_views(column: pa.ChunkedArray) -> list[np.ndarray] | None:
    """Every chunk of ``column`` as a numpy view, or None if any chunk needs pyarrow."""
    views = [chunk_values(chunk) for chunk in column.chunks]
    return None if any(view is None for view in views) else views  # type: ignore[return-value]


def column_values(column: pa.ChunkedArray) -> np.ndarray:
    """A column as one numpy array (a copy): views of numeric chunks without nulls, pyarrow's
    ``to_numpy`` otherwise."""
    views = chunk_views(column)
    return column.to_numpy() if not views else np.concatenate(views)


class _Scratch(threading.local):
    buffer: np.ndarray | None = None


def _references(holder: _Scratch) -> int:
    """The reference count of ``holder.buffer`` as this code path sees it."""
    return sys.getrefcount(holder.buffer)


_SCRATCH = _Scratch()
#: What :func:`_references` reports when only the holder keeps the buffer, measured through
#: the same path (reference counts seen by ``sys.getrefcount`` differ between Python versions).
_calibration = _Scratch()
_calibration.buffer = np.empty(1)
_ALONE = _references(_calibration)
del _calibration


def scratch_matrix(rows: int, cols: int) -> np.ndarray:
    """A ``(rows, cols)`` Fortran-order float64 matrix in this thread's reusable buffer.

    A streaming pass reads every partition into a matrix it drops after one function: fresh
    memory each time (above glibc's mmap threshold) is page-faulted in every time, which cost
    as much as decoding the file. The buffer is reused only when nothing still holds a view of
    it (its reference count: every numpy view keeps the owning array alive), so a partition
    that escapes its pass is never overwritten; a new buffer is made instead.
    """
    size = rows * cols
    # counted before any local name refers to the buffer, as in the calibration
    if _SCRATCH.buffer is None or _SCRATCH.buffer.size < size or _references(_SCRATCH) > _ALONE:
        _SCRATCH.buffer = np.empty(max(size, 1), dtype=np.float64)
    return _SCRATCH.buffer[:size].reshape((rows, cols), order="F")


def feature_matrix(
    table: pa.Table, features: list[str], path: str, reuse: bool = False
) -> np.ndarray:
    """Features as a float64 matrix (Fortran order: one contiguous copy per column); with
    ``reuse``, in this thread's scratch buffer (:func:`scratch_matrix`)."""
    shape = (table.num_rows, len(features))
    X = scratch_matrix(*shape) if reuse else np.empty(shape, dtype=np.float64, order="F")
    bad = fill_features(table, features, X)
    if bad is not None:
        raise bad_feature(path, bad, table.column(bad))
    return X


def fill_features(table: pa.Table, features: list[str], X: np.ndarray) -> str | None:
    """Copy ``table``'s feature columns into the rows of ``X`` (float64); the name of the
    first column holding a missing, NaN or infinite value (None when all are finite)."""
    for j, name in enumerate(features):
        column = table.column(name)
        views = chunk_views(column)
        if views is None:  # nulls or an unusual type: pyarrow converts (NaN, refused below)
            X[:, j] = column.to_numpy()
        else:
            start = 0
            for view in views:  # each chunk straight into its rows of X: no concatenated copy
                X[start : start + len(view), j] = view
                start += len(view)
        # a sum is finite unless a value is NaN/infinite (or huge finite values overflow):
        # one pass, no temporary; the exact check runs only to report a bad column
        if not np.isfinite(X[:, j].sum()) and not np.isfinite(X[:, j]).all():
            return name
    return None


def bad_feature(path: str, name: str, column: pa.ChunkedArray) -> DataError:
    """The error for a feature column with missing or non-finite values in ``column``."""
    values = np.asarray(column_values(column), dtype=np.float64)
    bad = int((~np.isfinite(values)).sum())
    return DataError(
        f"{path}: column '{name}' has {bad} missing, NaN or infinite value(s); "
        "impute or drop them before training"
    )


def feature_frame(table: pa.Table, features: list[str], path: str) -> dict[str, np.ndarray]:
    """Raw feature columns for a pipeline: numbers as float64 with NaN for missing values,
    strings as an object array with None for missing ones. Infinities are still an error."""
    frame: dict[str, np.ndarray] = {}
    for name in features:
        column = table.column(name)
        kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            frame[name] = np.asarray(column.cast(pa.string()).to_pylist(), dtype=object)
            continue
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        if np.isinf(values).any():
            raise DataError(
                f"{path}: column '{name}' has {int(np.isinf(values).sum())} infinite value(s)"
            )
        frame[name] = values
    return frame


def label_vector(column: pa.ChunkedArray, label: str, path: str) -> np.ndarray:
    """The label column as numpy (strings as ``str``), refusing missing or non-finite values."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        if column.null_count:
            raise DataError(
                f"{path}: label column '{label}' has {column.null_count} missing value(s)"
            )
        return np.asarray(column.to_pylist(), dtype=str)
    y = column_values(column)
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        bad = int((~np.isfinite(y)).sum())
        raise DataError(
            f"{path}: label column '{label}' has {bad} missing, NaN or infinite value(s)"
        )
    return y


def load_partition(
    uri: str,
    part: PartitionSpec,
    features: list[str],
    label: str | None,
    split: Split | None = None,
    n_total: int = 0,
    keep_source: bool = False,
    raw: bool = False,
    reuse: bool = False,
) -> tuple[Partition, Partition | None]:
    """Read a partition and split it: ``(train, test)``; ``test`` is None without a split.

    With ``keep_source`` the test part (or the whole partition, without a split)
    keeps every input column for writing predictions. With ``raw`` the features
    stay as they are in ``Partition.frame`` (see :func:`feature_frame`). With ``reuse``
    the features go into this thread's scratch buffer (a streaming pass's partitions).
    """
    wanted = features + ([label] if label is not None else [])
    by_groups = None if raw or keep_source else read_matrix(uri, part, features, label, reuse)
    if by_groups is not None:  # the usual case: no table of the whole partition kept
        X, y = by_groups
        table, frame = None, None
    else:
        table = read_table(uri, part, None if keep_source else wanted)
        frame = feature_frame(table, features, part.path) if raw else None
        X = (
            np.empty((table.num_rows, 0))
            if raw
            else feature_matrix(table, features, part.path, reuse=reuse)
        )
        y = label_vector(table.column(label), label, part.path) if label is not None else None
    if split is None:
        source = table if keep_source else None
        return Partition(X, y, part.row_offset, part.index, source, frame), None
    row_ids = np.arange(part.row_offset, part.row_offset + part.num_rows, dtype=np.int64)
    test = split.test_mask(n_total, row_ids)
    train = ~test

    def take(mask: np.ndarray, with_source: bool) -> Partition:
        source: Any = table.filter(arrow_array(mask)) if with_source else None
        return Partition(
            np.asfortranarray(X[mask]),
            None if y is None else y[mask],
            row_ids[mask],
            part.index,
            source,
            None if frame is None else {name: col[mask] for name, col in frame.items()},
        )

    return take(train, False), take(test, keep_source)


class PartitionReader:
    """Reads a partition where it runs — one side of the split (0 train, 1 test) — and applies
    derivations: the partitions of a streaming engine, re-read on every pass."""

    def __init__(self, load: dict[str, Any], which: int, steps: tuple[Any, ...] = ()) -> None:
        self.load = load  # load_partition's keyword arguments, all but ``part``
        self.which = which
        self.steps = steps

    def then(self, fn: Any, broadcast: tuple[Any, ...]) -> PartitionReader:
        return PartitionReader(self.load, self.which, (*self.steps, (fn, broadcast)))

    def __call__(self, spec: PartitionSpec, reuse: bool = False) -> Partition:
        pair = load_partition(part=spec, **self.load, reuse=reuse)
        part = pair[self.which]
        assert part is not None
        for fn, broadcast in self.steps:
            part = fn(part, *broadcast)
        return part


class ReadThenApply:
    """``fn(reader(spec), *broadcast)``: one streaming pass's work on one partition."""

    def __init__(self, reader: PartitionReader, fn: Any, broadcast: tuple[Any, ...]) -> None:
        self.reader, self.fn, self.broadcast = reader, fn, broadcast

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, broadcast=realigned(state["broadcast"]))

    def __call__(self, spec: PartitionSpec) -> Any:
        try:
            return self.fn(self.reader(spec, reuse=True), *self.broadcast)
        finally:
            # the partition's Arrow buffers are free now: hand their pages back, or the pool
            # (mimalloc) keeps ~50 MB per worker between passes, which a memory-capped worker
            # streaming bigger-than-memory data cannot spare
            pa.default_memory_pool().release_unused()
