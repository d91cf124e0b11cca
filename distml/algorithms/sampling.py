"""A stratified sample of rows that is the same on every engine and partitioning.

Solvers that want a small copy of the data on the driver — the Newton solver's Hessian
(:mod:`distml.algorithms.logistic`), k-means‖ seeding on a sample
(:mod:`distml.algorithms.kmeans`) — take one row from each stratum of ``stride``
consecutive rows (global positions in dataset order), at an offset keyed by the stratum's
number (:func:`~distml.algorithms.random.row_keys`). A partition needs only its first row's
global position to find its share: no list of positions is shipped to the workers, and the
sample does not depend on where the partitions' boundaries fall.
"""

from __future__ import annotations

import numpy as np

from distml.algorithms.engine import Engine, InMemoryEngine, Partition
from distml.algorithms.random import row_keys

#: Rows brought to the driver: ~17 MB at 20 features; every row of smaller data.
SAMPLE_ROWS = 100_000
_STREAM = 0x4E57  # a key stream of its own


def sample_stride(n_rows: int, rows: int | None = None) -> int:
    """Rows per stratum so that about ``rows`` (default :data:`SAMPLE_ROWS`) are sampled;
    1 (every row) when the data has no more."""
    return max(1, -(-int(n_rows) // (SAMPLE_ROWS if rows is None else rows)))


def dataset_offsets(engine: Engine) -> np.ndarray:
    """Each partition's first global position (dataset order), and the total at the end."""
    return np.concatenate([[0], np.cumsum(engine.partition_sizes)]).astype(np.int64)


def sample_positions(lo: int, n_rows: int, stride: int, seed: int) -> np.ndarray:
    """The sampled positions among ``lo .. lo + n_rows - 1``, ascending.

    Every row is drawn with probability ``1 / stride``: a last, partial stratum keeps its
    pick only when the pick falls among its rows.
    """
    if n_rows == 0:
        return np.zeros(0, dtype=np.int64)
    strata = np.arange(lo // stride, (lo + n_rows - 1) // stride + 1, dtype=np.int64)
    offsets = (row_keys(seed, _STREAM, strata) % np.uint64(stride)).astype(np.int64)
    positions = strata * stride + offsets
    return positions[(positions >= lo) & (positions < lo + n_rows)]


def local_sample(part: Partition, offsets: np.ndarray, stride: int, seed: int) -> np.ndarray:
    """Indices (within ``part``) of its sampled rows."""
    lo = int(offsets[part.index])
    return sample_positions(lo, part.n_rows, stride, seed) - lo


def sampled_rows(part: Partition, offsets: np.ndarray, stride: int, seed: int) -> tuple:
    """This partition's sampled rows: ``([global positions], [features], [labels])`` (the
    labels' list empty for unlabelled data), combined across partitions by :func:`join_lists`."""
    local = local_sample(part, offsets, stride, seed)
    labels = [] if part.y is None else [part.labels(local)]
    return [local + int(offsets[part.index])], [part.X[local]], labels


def join_lists(a: tuple, b: tuple) -> tuple:
    """Combine tuples of lists element by element (partition order kept)."""
    return tuple(x + y for x, y in zip(a, b, strict=True))


def as_engine(rows: tuple, n_features: int) -> InMemoryEngine:
    """What :func:`sampled_rows` brought back, as a one-partition engine on the driver: its
    rows keep their global row numbers (keyed draws on it are those the full data would
    make for them), so a solver runs on the sample with the same kernels as on the data."""
    positions, X, y = rows
    return InMemoryEngine(
        [Partition(np.concatenate(X), np.concatenate(y) if y else None, np.concatenate(positions))],
        n_features,
    )


def fetch(engine: Engine, stride: int, seed: int) -> InMemoryEngine:
    """The sample of ``engine``'s rows (one pass), as :func:`as_engine` gives it."""
    rows = engine.map_reduce(
        sampled_rows, dataset_offsets(engine), stride, seed, combine=join_lists
    )
    return as_engine(rows, engine.n_features)
