"""Counter-based random numbers keyed by global row number.

A row's random draw depends only on ``(seed, stream, row_id)``, never on which
partition holds the row or in what order partitions are visited. That is what
makes splits and k-means|| sampling identical on every engine and partitioning.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(values: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser: a bijective, well-mixed hash of uint64 values."""
    with np.errstate(over="ignore"):
        z = np.asarray(values, dtype=np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def row_keys(seed: int, stream: int, row_ids: np.ndarray) -> np.ndarray:
    """Uniformly distributed uint64 keys for rows, one independent stream per ``stream``."""
    base = splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    base = splitmix64(base ^ np.uint64(stream & 0xFFFFFFFFFFFFFFFF))
    return splitmix64(np.asarray(row_ids, dtype=np.uint64) ^ base)


def row_uniforms(seed: int, stream: int, row_ids: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) for rows (53 random bits each)."""
    return (row_keys(seed, stream, row_ids) >> np.uint64(11)).astype(np.float64) * 2.0**-53
