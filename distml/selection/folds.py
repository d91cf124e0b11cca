"""K-fold assignment by global row number: the same folds on every engine and partitioning.

A training row's fold is ``floor(u · K)`` for its counter-based uniform draw ``u``
(seeded, keyed by the row's global number, like the train/test split), so folds
need no shuffle and no driver-side index; scikit-learn gets the very same folds
through ``PredefinedSplit(test_fold=fold_of(row_ids))``. Fold sizes follow a
multinomial distribution around ``n / K``.
"""

from __future__ import annotations

import numpy as np

from distml.algorithms.engine import Partition
from distml.algorithms.random import row_uniforms

_FOLD_STREAM = 0xF01D5


def fold_of(row_ids: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold (0 … ``folds``-1) of each global row number."""
    u = row_uniforms(seed, _FOLD_STREAM, row_ids)
    return np.minimum((u * folds).astype(np.int64), folds - 1)


def fold_rows(part: Partition, folds: int, seed: int, fold: int, validation: bool) -> Partition:
    """The partition's rows of ``fold`` (``validation``) or of every other fold (training)."""
    chosen = fold_of(part.row_ids, folds, seed) == fold
    if not validation:
        chosen = ~chosen
    frame = None if part.frame is None else {name: col[chosen] for name, col in part.frame.items()}
    source = None if part.source is None else part.source.filter(chosen)
    return Partition(
        np.asfortranarray(part.X[chosen]),
        None if part.y is None else part.y[chosen],
        part.row_ids[chosen],
        part.index,
        source,
        frame,
        part.label_dtype,
    )
