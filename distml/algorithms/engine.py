"""The narrow waist between algorithms and engines.

Algorithms see data only as an :class:`Engine`: a list of cached partitions of
numpy arrays and :meth:`Engine.map_reduce`, which applies a function to every
partition and combines the results with :func:`tree_reduce` — a fixed pairing
order that every engine reproduces, so floating-point sums (and therefore
models) are the same on local threads, Dask workers and Spark executors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from distml.progress import Progress

#: Rows a kernel works on at a time (8,192 x 20 float64: 1.3 MB): a block is read from
#: memory once and used for every step of the kernel while it is in cache, instead of one
#: sweep over the whole partition per step.
BLOCK_ROWS = 8192


def contiguous_rows(X: np.ndarray, lo: int, block: np.ndarray) -> np.ndarray:
    """Rows ``lo : lo + BLOCK_ROWS`` of ``X`` copied into ``block`` (a reused Fortran-order
    buffer), for products taken with ``np.dot``.

    ``matmul`` (``@``) holds the GIL while BLAS computes, so the local backend's threads
    took turns on every product (numpy#11821; measured by ``benchmarks/kernel_threads.py``);
    ``np.dot`` releases it but copies a strided operand such as a slice of a partition's
    rows first, at 2-4x the product's cost. One copy into a cache-sized buffer per block,
    then GIL-free products, lets the threads run at once.
    """
    rows = X[lo : lo + BLOCK_ROWS]
    n, d = rows.shape
    # the first n*d values of the buffer: contiguous also for a short last block, where
    # block[:n] would keep the full block's column stride (and np.dot would copy it again)
    out = block.reshape(-1, order="F")[: n * d].reshape((n, d), order="F")
    np.copyto(out, rows)
    return out


class Partition:
    """A block of rows as numpy arrays.

    ``X`` is float64 (rows × features), ``y`` the label (or ``None``), and
    ``row_ids`` the global row numbers, which key per-row randomness: given as an array,
    or as the first row's number for a contiguous block (a whole file's rows), whose
    numbers are then computed on each use instead of cached (8 bytes a row: 76 MiB of a
    10⁷-row cache). ``index`` is the partition's position in the dataset order.
    ``source`` optionally keeps the raw input rows (a pyarrow Table) for writing
    predictions; algorithms never touch it. ``frame`` holds the raw feature columns
    (numeric with NaN for missing values, or strings) when a preprocessing pipeline will
    build ``X``; ``X`` then has no columns until it does.

    Integer labels are kept in the narrowest integer type that holds them
    (:func:`compact_labels`: class labels 0–9 take 1 byte a row instead of 8, 33 MiB less
    per 5 M cached rows); ``label_dtype`` is the label column's own type, and
    :meth:`labels` gives them back in it wherever labels leave the kernels (classes,
    samples, scikit-learn's solvers), so nothing outside sees the narrower type.
    """

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray | None,
        row_ids: np.ndarray | int,
        index: int = 0,
        source: Any = None,
        frame: dict[str, np.ndarray] | None = None,
        label_dtype: np.dtype | None = None,
    ) -> None:
        self.X = X
        self.label_dtype = (
            None if y is None else np.dtype(y.dtype if label_dtype is None else label_dtype)
        )
        self.y = None if y is None else compact_labels(y)
        self._row_ids = row_ids if isinstance(row_ids, np.ndarray) else int(row_ids)
        self.index = index
        self.source = source
        self.frame = frame

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled arrays realigned: a partition sent between processes (a Dask worker
        fetching it from another) can land at any byte of a merged message buffer."""
        self.__dict__.update({name: realigned(value) for name, value in state.items()})

    def __repr__(self) -> str:
        return f"Partition(index={self.index}, rows={self.n_rows}, features={self.X.shape[1]})"

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    @property
    def row_ids(self) -> np.ndarray:
        """The global row numbers (int64), one per row."""
        if isinstance(self._row_ids, np.ndarray):
            return self._row_ids
        return np.arange(self._row_ids, self._row_ids + self.n_rows, dtype=np.int64)

    def labels(self, rows: Any = slice(None)) -> np.ndarray | None:
        """The labels (of ``rows``) in the label column's own type, or None without a label."""
        if self.y is None:
            return None
        return self.y[rows].astype(self.label_dtype, copy=False)

    def with_features(self, X: np.ndarray) -> Partition:
        """The same rows (label, row numbers, source) with the feature matrix ``X`` and no
        raw frame: what a preprocessing pipeline's stages build."""
        return Partition(X, self.y, self._row_ids, self.index, self.source, None, self.label_dtype)


def compact_labels(y: np.ndarray) -> np.ndarray:
    """Integer labels in the narrowest signed integer type that holds them (``y`` itself
    when none is narrower, or for any other kind of label)."""
    if y.dtype.kind not in "iu" or y.dtype.itemsize == 1 or not len(y):
        return y
    lo, hi = int(y.min()), int(y.max())
    for narrow in (np.int8, np.int16, np.int32):
        limits = np.iinfo(narrow)
        if np.dtype(narrow).itemsize >= y.dtype.itemsize:
            break
        if limits.min <= lo and hi <= limits.max:
            return y.astype(narrow)
    return y


def aligned(array: np.ndarray) -> np.ndarray:
    """``array``, or an aligned copy of it if its data is not aligned to its item size.

    numpy's matmul calls BLAS only for aligned arrays; its fallback loop sums in another
    order, so the same data gave a logistic-regression gradient one ulp apart depending on
    where the bytes happened to land (seen on Dask, where a 4-row fit then differed from the
    local backend's by an ulp in about a third of the runs).
    """
    return array if array.flags.aligned else array.copy(order="K")  # the same layout


def realigned(value: Any) -> Any:
    """``value`` with every numpy array in it (through tuples, lists and dicts) aligned.

    For what a task receives from another process: Dask hands numpy arrays over as views of
    its message frames (no copy), which can start at any byte; a logistic regression's
    weights arrived unaligned about half the time, and ``X @ w`` then skipped BLAS.
    """
    if isinstance(value, np.ndarray):
        return aligned(value)
    if isinstance(value, tuple | list):
        return type(value)(realigned(v) for v in value)
    if isinstance(value, dict):
        return {k: realigned(v) for k, v in value.items()}
    return value


def add(a: Any, b: Any) -> Any:
    """Element-wise sum of nested tuples/lists/dicts of numbers and arrays (the default combine)."""
    if isinstance(a, dict):
        return {k: add(a[k], b[k]) for k in a}
    if isinstance(a, (tuple, list)):
        return type(a)(add(x, y) for x, y in zip(a, b, strict=True))
    return a + b


def concat(a: list[Any], b: list[Any]) -> list[Any]:
    """Combine for functions that return lists (kept in partition order)."""
    return a + b


def tree_reduce(values: Sequence[Any], combine: Callable[[Any, Any], Any] = add) -> Any:
    """Combine ``values`` pairwise, ``(0,1), (2,3), ...`` level by level.

    The fixed order makes the result independent of which engine ran the map.
    """
    if not values:
        raise ValueError("tree_reduce of no values")
    level = list(values)
    while len(level) > 1:
        nxt = [combine(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


class Engine(ABC):
    """Cached partitions plus ``map_reduce``: all an algorithm may use.

    Engines implement :meth:`_map_reduce`; :meth:`map_reduce` adds one step to
    ``progress`` (a backend's :class:`~distml.progress.Progress`) per pass.
    """

    progress: Progress | None = None

    @property
    @abstractmethod
    def partition_sizes(self) -> list[int]:
        """Rows in each partition, in partition order."""

    @property
    @abstractmethod
    def n_features(self) -> int:
        """Number of feature columns."""

    def map_reduce(
        self,
        fn: Callable[..., Any],
        *broadcast: Any,
        combine: Callable[[Any, Any], Any] = add,
    ) -> Any:
        """``tree_reduce([fn(p, *broadcast) for p in partitions], combine)``, run where the data is."""
        result = self._map_reduce(fn, broadcast, combine)
        if self.progress is not None:
            self.progress.step(detail=getattr(fn, "__name__", None))
        return result

    @abstractmethod
    def derive(self, fn: Callable[..., Partition], *broadcast: Any) -> Engine:
        """A new engine whose partitions are ``fn(partition, *broadcast)``, built where the
        data lives: kept there when this engine caches, applied on every read when it streams."""

    def release(self) -> None:  # noqa: B027 - engines holding nothing remote keep the default
        """Free what this engine holds where the data lives (derived engines, folds)."""

    @abstractmethod
    def _map_reduce(
        self, fn: Callable[..., Any], broadcast: tuple[Any, ...], combine: Callable[[Any, Any], Any]
    ) -> Any:
        """One pass: ``fn`` over every partition, results combined in :func:`tree_reduce` order."""

    @property
    def n_rows(self) -> int:
        return int(sum(self.partition_sizes))

    @property
    def num_partitions(self) -> int:
        return len(self.partition_sizes)

    @property
    def can_cache(self) -> bool:
        """Whether all partitions stay in memory between passes (iterative solvers need it)."""
        return True


class InMemoryEngine(Engine):
    """Partitions held in this process, mapped sequentially: numpy input and tests."""

    def __init__(self, partitions: Sequence[Partition], n_features: int | None = None) -> None:
        self.partitions = list(partitions)
        self._n_features = (
            n_features if n_features is not None else int(self.partitions[0].X.shape[1])
        )

    @classmethod
    def from_arrays(
        cls, X: np.ndarray, y: np.ndarray | None = None, n_partitions: int = 1
    ) -> InMemoryEngine:
        """Split arrays into ``n_partitions`` contiguous blocks of rows."""
        X = np.asarray(X, dtype=np.float64)
        bounds = np.linspace(0, X.shape[0], n_partitions + 1).astype(int)
        parts = [
            Partition(
                X=X[lo:hi],
                y=None if y is None else y[lo:hi],
                row_ids=int(lo),
                index=i,
            )
            for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
        ]
        return cls(parts, n_features=X.shape[1])

    @property
    def partition_sizes(self) -> list[int]:
        return [p.n_rows for p in self.partitions]

    @property
    def n_features(self) -> int:
        return self._n_features

    def derive(self, fn, *broadcast):  # type: ignore[no-untyped-def]
        parts = [fn(p, *broadcast) for p in self.partitions]
        return InMemoryEngine(parts, n_features=int(parts[0].X.shape[1]))

    def _map_reduce(self, fn, broadcast, combine):  # type: ignore[no-untyped-def]
        return tree_reduce([fn(p, *broadcast) for p in self.partitions], combine)
