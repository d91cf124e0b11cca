"""MNIST as partitioned Parquet: from Keras's downloader or a folder of IDX files.

The four standard IDX files (``train-images-idx3-ubyte`` etc., gzip-compressed or
not) are parsed and checked here — magic number, declared sizes against the bytes
present, images against labels — so a bad file is a :class:`DataError` naming it,
never a reshape error later. The Parquet layout is what :mod:`distml.deep` streams:
``train/`` and ``test/``, each a few files with ``pixels`` (``fixed_size_binary(784)``: one
value of 784 bytes per image, which Parquet decodes ~5× faster than a list of uint8;
row-major 28×28), ``label`` (int64) and ``index`` (int64, the row's position in its
split, so every example can be traced through a pipeline).
"""

from __future__ import annotations

import gzip
import logging
import os
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from distml.atomic import OutputDir
from distml.errors import DataError

log = logging.getLogger(__name__)

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SIDE = 28
WIDTH = SIDE * SIDE
CLASSES = 10
ROW_GROUP_ROWS = 4096  # bounds what a streaming reader holds per file


class MnistArrays(NamedTuple):
    """MNIST in memory: ``uint8`` images ``(n, 28, 28)`` and ``uint8`` labels, per split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def read_idx(path: str | os.PathLike[str], magic: int) -> np.ndarray:
    """One IDX file (gzip or raw) as a ``uint8`` array, checked against ``magic``.

    ``magic`` is :data:`IMAGES_MAGIC` or :data:`LABELS_MAGIC`; a different magic
    number, a short header, missing or surplus data bytes are a :class:`DataError`
    naming the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
        opener = gzip.open if compressed else open
        with opener(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a readable IDX file ({exc})") from None
    if len(data) < 4:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        kind = "image" if magic == IMAGES_MAGIC else "label"
        raise DataError(
            f"{path}: not an MNIST {kind} file (magic number {found}, expected {magic})"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header ({len(data)} of {header} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64))
    present = len(data) - header
    if present < expected:
        raise DataError(
            f"{path}: truncated: {present:,} data bytes, the header declares "
            f"{' x '.join(map(str, shape))} = {expected:,}"
        )
    if present > expected:
        raise DataError(
            f"{path}: {present - expected:,} unexpected bytes after the "
            f"{' x '.join(map(str, shape))} data the header declares"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load_idx_folder(folder: str | os.PathLike[str]) -> MnistArrays:
    """The four standard MNIST IDX files in ``folder`` (any of them may be gzipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of MNIST IDX files (or pass --source keras)")
    paths = {key: _find_idx(folder, stem) for key, stem in IDX_FILES.items()}
    arrays = []
    for split in ("train", "test"):
        images = read_idx(paths[f"{split}_images"], IMAGES_MAGIC)
        labels = read_idx(paths[f"{split}_labels"], LABELS_MAGIC)
        _check_pair(paths[f"{split}_images"], images, paths[f"{split}_labels"], labels)
        arrays += [images, labels]
    return MnistArrays(*arrays)


def load_keras() -> MnistArrays:
    """``keras.datasets.mnist.load_data()``: downloads once, then reads Keras's cache."""
    from distml.deep.devices import import_tensorflow

    import_tensorflow()  # Keras imports TensorFlow: keep its start-up noise out
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:  # noqa: BLE001 - urllib, HTTP and hash errors all mean the same
        reason = " ".join(str(exc).split())[:200]
        raise DataError(
            f"keras.datasets.mnist.load_data() could not fetch MNIST ({reason}); "
            "without internet access pass a folder of MNIST IDX files: --source DIR"
        ) from None
    return MnistArrays(x_train, y_train, x_test, y_test)


def load_mnist(source: str | os.PathLike[str] = "keras") -> MnistArrays:
    """MNIST from ``"keras"`` (Keras's downloader/cache) or a folder of IDX files."""
    if str(source) == "keras":
        return load_keras()
    return load_idx_folder(source)


def write_mnist(
    out: str | os.PathLike[str],
    source: str | os.PathLike[str] = "keras",
    partitions: int = 4,
    overwrite: bool = False,
) -> Path:
    """Write MNIST as ``out/train/`` and ``out/test/`` Parquet (atomically).

    Each split goes into ``partitions`` files of consecutive rows (fewer when a
    split has fewer rows); the whole folder appears only when both are written.
    """
    if partitions < 1:
        raise DataError(f"--partitions must be >= 1, got {partitions}")
    local = [] if str(source) == "keras" else [source]
    output = OutputDir(out, "dataset", overwrite=overwrite, inputs=local)  # before reading
    arrays = load_mnist(source)
    for name, images in (("train", arrays.x_train), ("test", arrays.x_test)):
        if images.shape[1:] != (SIDE, SIDE):
            raise DataError(
                f"{source}: {name} images are {' x '.join(map(str, images.shape[1:]))}, "
                f"MNIST's are {SIDE} x {SIDE}"
            )
    with output as tmp:
        for name, images, labels in (
            ("train", arrays.x_train, arrays.y_train),
            ("test", arrays.x_test, arrays.y_test),
        ):
            _write_split(tmp / name, images, labels, partitions)
    log.info(
        "wrote MNIST (%d train, %d test images) to %s", len(arrays.y_train), len(arrays.y_test), out
    )
    return Path(out)


def mnist_table(images: np.ndarray, labels: np.ndarray, first_index: int = 0) -> pa.Table:
    """Rows of the Parquet layout: ``pixels``, ``label`` and ``index``."""
    pixels = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1)
    return pa.table(
        {
            # one fixed-size binary value per image: Parquet decodes it ~5x faster than a
            # list<uint8> column (no repetition/definition levels per pixel) and numpy views it
            "pixels": pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(pixels.shape[1]),
                len(pixels),
                [None, pa.py_buffer(np.ascontiguousarray(pixels, dtype=np.uint8))],
            ),
            "label": pa.array(labels.astype(np.int64)),
            "index": pa.array(np.arange(first_index, first_index + len(labels), dtype=np.int64)),
        }
    )


def _write_split(folder: Path, images: np.ndarray, labels: np.ndarray, partitions: int) -> None:
    folder.mkdir()
    files = max(1, min(partitions, len(labels)))
    bounds = np.linspace(0, len(labels), files + 1).astype(int)
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        table = mnist_table(images[lo:hi], labels[lo:hi], first_index=int(lo))
        pq.write_table(table, folder / f"part-{i:05d}.parquet", row_group_size=ROW_GROUP_ROWS)


def _find_idx(folder: Path, stem: str) -> Path:
    dotted = stem.replace("-idx", ".idx")  # train-images.idx3-ubyte, as some mirrors name it
    for name in (stem, f"{stem}.gz", dotted, f"{dotted}.gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(
        f"{folder}: {stem}[.gz] not found; an MNIST IDX folder holds "
        + ", ".join(f"{s}[.gz]" for s in IDX_FILES.values())
    )


def _check_pair(
    images_path: Path, images: np.ndarray, labels_path: Path, labels: np.ndarray
) -> None:
    if images.ndim != 3:
        raise DataError(f"{images_path}: images must have 3 dimensions, got {images.ndim}")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images):,} images but {labels_path} holds "
            f"{len(labels):,} labels"
        )
    if len(labels) == 0:
        raise DataError(f"{labels_path}: no labels")
    if int(labels.max()) >= CLASSES:
        row = int(np.argmax(labels >= CLASSES))
        raise DataError(
            f"{labels_path}: label {int(labels[row])} at row {row} is not a digit 0-{CLASSES - 1}"
        )
