"""Deterministic train/test split that selects the same rows on every engine.

Up to :data:`EXACT_SPLIT_MAX_ROWS` rows the test rows are exactly those of
scikit-learn's ``train_test_split(..., test_size, random_state=seed)`` (the same
permutation of global row numbers), so small examples print the same numbers.
Above it, each row goes to the test set when its counter-based random draw is
below ``test_size``: no global shuffle, no driver-side permutation, and the
test fraction is ``test_size`` up to binomial noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from distml.algorithms.random import row_uniforms
from distml.data.dataset import PartitionSpec
from distml.errors import SpecError

EXACT_SPLIT_MAX_ROWS = 1_000_000
_SPLIT_STREAM = 0x5B117


@dataclass(frozen=True)
class Split:
    """``test_size`` (a fraction in (0, 1)) and ``seed`` of a train/test split."""

    test_size: float = 0.2
    seed: int = 42

    def __post_init__(self) -> None:
        if not 0.0 < float(self.test_size) < 1.0:
            raise SpecError(f"split.test_size must be between 0 and 1, got {self.test_size}")

    def n_test(self, n_total: int) -> int:
        """scikit-learn's test-set size for ``n_total`` rows (``ceil``)."""
        return math.ceil(self.test_size * n_total)

    def test_mask(self, n_total: int, row_ids: np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``row_ids`` (global row numbers) are test rows."""
        if n_total <= EXACT_SPLIT_MAX_ROWS:
            return _exact_test_flags(self.seed, n_total, self.n_test(n_total))[row_ids]
        return row_uniforms(self.seed, _SPLIT_STREAM, row_ids) < self.test_size


@lru_cache(maxsize=4)
def _exact_test_flags(seed: int, n_total: int, n_test: int) -> np.ndarray:
    # ShuffleSplit: permutation = RandomState(seed).permutation(n); test = permutation[:n_test]
    permutation = np.random.RandomState(seed).permutation(n_total)
    flags = np.zeros(n_total, dtype=bool)
    flags[permutation[:n_test]] = True
    flags.setflags(write=False)
    return flags


def split_sizes(
    partitions: Sequence[PartitionSpec], split: Split | None, n_total: int
) -> list[tuple[int, int]]:
    """``(train rows, test rows)`` of each partition, from the split alone (no data read)."""
    sizes = []
    for spec in partitions:
        if split is None:
            sizes.append((spec.num_rows, 0))
            continue
        ids = np.arange(spec.row_offset, spec.row_offset + spec.num_rows)
        test = int(split.test_mask(n_total, ids).sum())
        sizes.append((spec.num_rows - test, test))
    return sizes
