"""The input pipeline: Parquet image files streamed into ``tf.data`` and across replicas.

Files are read record batch by record batch (pyarrow), so memory holds one
shuffle window, never the data set. Shuffling is a window shuffle done in numpy:
each epoch visits the files in a fresh order, interleaves them record batch by
record batch, and permutes every window of ``shuffle_buffer`` rows before cutting
batches — tf.data's per-element ``unbatch().shuffle().batch()`` does the same job
several times slower. The order depends only on ``(seed, epoch)``, so a run resumed
from a checkpoint sees the epochs it would have seen. Batches are global batches
(per-replica batch × replicas); the strategy splits each between its replicas.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distml.data.dataset import PARQUET_SUFFIXES, Dataset
from distml.data.storage import StorageOptions, is_object_store
from distml.errors import DataError, did_you_mean

READ_ROWS = 1024  # rows per pyarrow record batch
CHUNK_ROWS = 4096  # rows per element crossing from Python into tf.data (then rebatched)
PIXELS = "pixels"
INDEX = "index"

Batch = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class ImageFiles:
    """Parquet files of flattened images and integer labels, validated from their footers."""

    path: str
    files: tuple[str, ...]
    rows: tuple[int, ...]
    label: str
    pixels: str
    width: int
    classes: int
    has_index: bool
    #: ``None`` for local files; the object store's filesystem for ``s3://``, ``gs://`` and
    #: ``abfs://`` data (``files`` are then paths inside it)
    filesystem: Any = field(default=None, compare=False, repr=False)
    storage: StorageOptions | None = field(default=None, compare=False, repr=False)

    @property
    def num_rows(self) -> int:
        return sum(self.rows)

    def parquet(self, file: str) -> pq.ParquetFile:
        """One of :attr:`files`, opened for reading."""
        return pq.ParquetFile(file, filesystem=self.filesystem)


def open_images(
    path: str | os.PathLike[str],
    label: str = "label",
    pixels: str = PIXELS,
    storage: StorageOptions | dict[str, Any] | None = None,
) -> ImageFiles:
    """Discover and check the Parquet files at ``path`` (reads footers only): a local
    folder or file, or an object-store URL reached with ``storage``.

    ``pixels`` must be ``fixed_size_binary`` (what ``distml data mnist`` writes) or
    ``fixed_size_list<uint8>``, and ``label`` an integer column without nulls or negative values; every
    fault is a :class:`DataError` naming the file and column.
    """
    path = str(path)
    filesystem: Any = None
    if is_object_store(path):
        folder = _ImageFolder(path, storage_options=storage)
        files, filesystem, storage = folder.paths, folder.filesystem, folder.storage
    else:
        files = _discover(path)
    rows: list[int] = []
    width = 0
    top = -1
    has_index = True
    for file in files:
        try:
            metadata = pq.read_metadata(file, filesystem=filesystem)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{file}: not a readable Parquet file ({exc})") from None
        schema = metadata.schema.to_arrow_schema()
        file_width = _check_pixels(file, schema, pixels)
        if width and file_width != width:
            raise DataError(
                f"{file}: column '{pixels}' holds {file_width} values per row, "
                f"but {width} in {files[0]}"
            )
        width = file_width
        if _leaf_nulls(metadata, pixels):
            raise DataError(f"{file}: column '{pixels}' has missing pixel values")
        _check_label(file, schema, label)
        top = max(top, _label_max(file, metadata, label, filesystem))
        has_index = has_index and INDEX in schema.names
        rows.append(metadata.num_rows)
    if sum(rows) == 0:
        raise DataError(f"{path}: the dataset has no rows")
    return ImageFiles(
        path,
        tuple(files),
        tuple(rows),
        label,
        pixels,
        width,
        top + 1,
        has_index,
        filesystem,
        storage if filesystem is not None else None,
    )


def iter_batches(
    data: ImageFiles,
    batch_size: int,
    *,
    shuffle_buffer: int = 0,
    seed: int = 0,
    epoch: int = 0,
    with_index: bool = False,
) -> Iterator[Batch]:
    """One epoch of ``(pixels uint8 [n, width], label int64 [n][, index int64 [n]])`` batches.

    Every row appears exactly once; all batches are full but the last. With
    ``shuffle_buffer`` > 0 the order is a function of ``(seed, epoch)``; without,
    it is file order.
    """
    if with_index and not data.has_index:
        raise DataError(f"{data.path}: no '{INDEX}' column to trace rows by")
    columns = [data.pixels, data.label] + ([INDEX] if with_index else [])
    shuffle = shuffle_buffer > 0
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(data.files)) if shuffle else range(len(data.files))
    readers = [
        _read(data.parquet(data.files[i]), data.files[i], columns, data.width) for i in order
    ]
    stream = _round_robin(readers) if shuffle else itertools.chain.from_iterable(readers)
    window = max(shuffle_buffer, batch_size)
    pending: list[Batch] = []
    held = 0
    for chunk in stream:
        pending.append(chunk)
        held += len(chunk[0])
        if held < window:
            continue
        arrays = _concat(pending, rng if shuffle else None)
        full = held - held % batch_size
        yield from _cut(arrays, 0, full, batch_size)
        pending = [tuple(a[full:] for a in arrays)]
        held -= full
    if held:
        arrays = _concat(pending, rng if shuffle else None)
        yield from _cut(arrays, 0, held, batch_size)


def batches_per_epoch(data: ImageFiles, batch_size: int) -> int:
    """How many batches :func:`iter_batches` yields per epoch."""
    return math.ceil(data.num_rows / batch_size)


def make_dataset(
    data: ImageFiles,
    batch_size: int,
    *,
    shuffle_buffer: int = 0,
    seed: int = 0,
    epochs: range = range(1),
    with_index: bool = False,
) -> Any:
    """A ``tf.data.Dataset`` of :func:`iter_batches` batches for each epoch in ``epochs``,
    one epoch after another, prefetched.

    Each epoch has its own ``(seed, epoch)`` order and its own last, partial batch
    (:func:`epoch_after_epoch`), so one iterator serves every epoch of ``model.fit``
    (given ``steps_per_epoch``). Python hands tf.data chunks of :data:`CHUNK_ROWS` rows,
    cut into batches by ``rebatch``: one Python call per batch would cost about a
    millisecond each, more than a small model's training step.
    """
    from distml.deep.devices import import_tensorflow

    tf = import_tensorflow()
    signature = (
        tf.TensorSpec([None, data.width], tf.uint8),
        tf.TensorSpec([None], tf.int64),
    ) + ((tf.TensorSpec([None], tf.int64),) if with_index else ())

    def generate(epoch: Any) -> Iterator[Batch]:
        yield from iter_batches(
            data,
            CHUNK_ROWS,
            shuffle_buffer=shuffle_buffer,
            seed=seed,
            epoch=int(epoch),
            with_index=with_index,
        )

    dataset = epoch_after_epoch(generate, signature, batch_size, epochs)
    batches = len(epochs) * batches_per_epoch(data, batch_size)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))
    return dataset.prefetch(tf.data.AUTOTUNE)


def epoch_after_epoch(
    generate: Callable[[Any], Iterator[Batch]], signature: tuple, batch_size: int, epochs: range
) -> Any:
    """One ``tf.data.Dataset`` of every epoch in ``epochs``: ``generate(epoch)`` yields that
    epoch's rows in chunks, cut into ``batch_size`` batches epoch by epoch (each epoch's
    last, partial batch stays its own). One dataset, and so one iterator, serves a whole
    run: a new one per epoch stalled the next epoch's start (``docs/keras_multiworker.md``).
    The single-process pipeline and the workers' shards both build on it."""
    from distml.deep.devices import import_tensorflow

    tf = import_tensorflow()

    def one_epoch(epoch: Any) -> Any:
        rows = tf.data.Dataset.from_generator(generate, args=(epoch,), output_signature=signature)
        return rows.rebatch(batch_size)

    return tf.data.Dataset.range(epochs.start, epochs.stop).flat_map(one_epoch)


def distribute(
    strategy: Any,
    data: ImageFiles,
    global_batch: int,
    *,
    shuffle_buffer: int = 0,
    seed: int = 0,
    epochs: range = range(1),
    with_index: bool = False,
) -> Any:
    """:func:`make_dataset` in global batches, each split between the replicas by ``strategy``.

    ``strategy.experimental_distribute_dataset`` keeps one step per global batch,
    so Keras counts steps (and its progress bar) right; each epoch's last, partial
    batch is split as evenly as the rows allow. Its iterators are dropped off the
    caller's thread (:mod:`distml.deep.iterators`).
    """
    from distml.deep.devices import import_tensorflow
    from distml.deep.iterators import released_in_background

    tf = import_tensorflow()
    dataset = make_dataset(
        data,
        global_batch,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        epochs=epochs,
        with_index=with_index,
    )
    options = tf.data.Options()  # one machine, one input pipeline: nothing to shard
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    distributed = strategy.experimental_distribute_dataset(dataset.with_options(options))
    return released_in_background(distributed)  # dropping an iterator can wait a minute


# -- helpers --------------------------------------------------------------------------------------
class _ImageFolder(Dataset):
    """The Parquet files under an object-store URL, found (and the store's errors reported)
    the way :class:`~distml.data.Dataset` finds them; the image checks are ``open_images``'s."""

    allow_empty = True

    def _resolve_features(self, features: list[str] | None) -> list[str]:
        return []

    def _plan_partitions(self, fragments: list[Any]) -> list[Any]:
        self.paths = [fragment.path for fragment in fragments]
        return []


def _discover(path: str) -> list[str]:
    root = Path(path)
    if root.is_file():
        return [str(root)]
    if not root.is_dir():
        raise DataError(
            f"{path}: no such file or directory (write MNIST there with `distml data mnist`)"
        )
    files = sorted(
        str(p)
        for p in root.rglob("*")
        if p.is_file()
        and p.name.endswith(PARQUET_SUFFIXES)
        and not any(part.startswith((".", "_")) for part in p.relative_to(root).parts)
    )
    if not files:
        raise DataError(f"{path}: no Parquet files (*.parquet) in this folder")
    return files


def _check_pixels(file: str, schema: pa.Schema, pixels: str) -> int:
    if pixels not in schema.names:
        raise DataError(
            f"{file}: image column '{pixels}' not found{did_you_mean(pixels, schema.names)}; "
            f"columns: {', '.join(schema.names)}"
        )
    dtype = schema.field(pixels).type
    if pa.types.is_fixed_size_binary(dtype):  # what `distml data mnist` writes: fastest to decode
        return int(dtype.byte_width)
    if not (pa.types.is_fixed_size_list(dtype) and pa.types.is_uint8(dtype.value_type)):
        raise DataError(
            f"{file}: column '{pixels}' has type {dtype}; expected fixed_size_binary or "
            "fixed_size_list<uint8> (one row of pixel values per image, as `distml data mnist` writes)"
        )
    return int(dtype.list_size)


def pixel_matrix(pixels: pa.Array | pa.ChunkedArray, width: int) -> np.ndarray:
    """``(rows, width)`` uint8 images from a pixels column: a view of a fixed_size_binary
    column's buffer (no copy), or the flattened fixed_size_list<uint8>."""
    if isinstance(pixels, pa.ChunkedArray):
        pixels = pixels.combine_chunks()
    if pa.types.is_fixed_size_binary(pixels.type):
        data = np.frombuffer(pixels.buffers()[1], dtype=np.uint8)
        start = pixels.offset * width
        return data[start : start + len(pixels) * width].reshape(-1, width)
    return pixels.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)


def _check_label(file: str, schema: pa.Schema, label: str) -> None:
    if label not in schema.names:
        raise DataError(
            f"{file}: label column '{label}' not found{did_you_mean(label, schema.names)}; "
            f"columns: {', '.join(schema.names)}"
        )
    if not pa.types.is_integer(schema.field(label).type):
        raise DataError(
            f"{file}: label column '{label}' has type {schema.field(label).type}; "
            "expected integer class ids 0, 1, ..."
        )


def _label_max(file: str, metadata: pq.FileMetaData, label: str, filesystem: Any = None) -> int:
    """The largest label, from row-group statistics (the column is read only without them)."""
    column = metadata.schema.names.index(label)
    low, high, nulls = None, -1, 0
    for g in range(metadata.num_row_groups):
        stats = metadata.row_group(g).column(column).statistics
        if stats is None or not stats.has_min_max or stats.null_count is None:
            values = pq.read_table(file, columns=[label], filesystem=filesystem).column(0)
            nulls = values.null_count
            low = pc.min(values).as_py()
            high = pc.max(values).as_py()
            break
        nulls += stats.null_count
        low = stats.min if low is None else min(low, stats.min)
        high = max(high, stats.max)
    if nulls:
        raise DataError(f"{file}: label column '{label}' has {nulls} missing value(s)")
    if low is not None and low < 0:
        raise DataError(f"{file}: label column '{label}' has negative value {low}")
    return -1 if high is None else int(high)


def _leaf_nulls(metadata: pq.FileMetaData, name: str) -> int:
    """Missing values under column ``name`` per the footer's statistics (0 when unrecorded)."""
    nulls = 0
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for i in range(group.num_columns):
            column = group.column(i)
            if column.path_in_schema.split(".")[0] == name and column.statistics is not None:
                nulls += column.statistics.null_count or 0
    return nulls


def _read(parquet: pq.ParquetFile, file: str, columns: list[str], width: int) -> Iterator[Batch]:
    for batch in parquet.iter_batches(batch_size=READ_ROWS, columns=columns):
        pixels = batch.column(0)
        if pixels.null_count:
            raise DataError(f"{file}: column '{columns[0]}' has missing images")
        flat = pixel_matrix(pixels, width)
        rest = [batch.column(i).to_numpy(zero_copy_only=False) for i in range(1, len(columns))]
        yield (flat, *(r.astype(np.int64, copy=False) for r in rest))


def _round_robin(readers: list[Iterator[Batch]]) -> Iterator[Batch]:
    live = list(readers)
    while live:
        for reader in list(live):
            chunk = next(reader, None)
            if chunk is None:
                live.remove(reader)
            else:
                yield chunk


def _concat(chunks: list[Batch], rng: np.random.Generator | None) -> Batch:
    arrays = tuple(np.concatenate(parts) for parts in zip(*chunks, strict=True))
    if rng is None:
        return arrays
    permutation = rng.permutation(len(arrays[0]))
    return tuple(a[permutation] for a in arrays)


def _cut(arrays: Batch, start: int, stop: int, batch_size: int) -> Iterator[Batch]:
    for lo in range(start, stop, batch_size):
        yield tuple(a[lo : min(lo + batch_size, stop)] for a in arrays)
