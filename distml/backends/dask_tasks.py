"""What Dask workers run for distml's graphs, kept apart from the backend module.

Dask pickles these by reference; a worker imports this module (numpy and distml's
engine types only), not :mod:`distml.backends.dask`, which pulls in the driver's side.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from distml.algorithms.engine import Partition, realigned


class _Apply:
    """``fn(partition, *broadcast)`` as one opaque callable.

    Embedding ``broadcast`` in a task tuple would let Dask traverse it: a tuple
    that starts with a callable would run as a nested task, a string equal to a
    key would be replaced by that key's value.
    """

    def __init__(self, fn: Any, broadcast: tuple[Any, ...]) -> None:
        self.fn = fn
        self.broadcast = broadcast

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, broadcast=realigned(state["broadcast"]))

    def __call__(self, part: Partition) -> Any:
        return self.fn(part, *self.broadcast)


def _apply_each(call: _Apply, parts: list[Partition]) -> list[Any]:
    """One task's share of a pass: ``call`` on each of the partitions its worker holds."""
    return [call(part) for part in parts]


def _pick(pair: tuple[Partition, Partition | None], which: int) -> Partition:
    part = pair[which]
    assert part is not None
    return part


def _n_rows(part: Partition) -> int:
    return part.n_rows


def _shape(part: Partition) -> tuple[int, int]:
    return part.X.shape


def _shape_list(part: Partition) -> list[tuple[int, int]]:
    return [part.X.shape]


def _X(part: Partition) -> np.ndarray:
    return part.X


def _y(part: Partition) -> np.ndarray:
    labels = part.labels()
    assert labels is not None
    return labels


def release_arrow_pages() -> None:
    """After a cached read, on every worker: the decoded Parquet buffers are free, but
    Arrow's pool (mimalloc) keeps their pages, ~50 MB a worker for as long as it lives."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
