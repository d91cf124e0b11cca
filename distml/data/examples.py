"""The exact tiny datasets of the article's examples 1–3 that distml grew from.

Copied from the article's code (``shared/seed/``; a test holds them against it):

1. linear regression: ``X = [[1], [2], [3], [4], [5]]``, ``y = [2, 4, 5, 4, 5]``
2. logistic regression: ``X = [[1, 2], [2, 3], [3, 1], [4, 3], [5, 3]]``, ``y = [0, 0, 1, 1, 1]``
3. k-means: ``X = [[1, 2], [1.5, 1.8], [5, 8], [8, 8], [1, 0.6], [9, 11]]``

Examples 1 and 2 use ``train_test_split(X, y, test_size=0.2, random_state=42)``;
example 3 uses ``KMeans(n_clusters=2, random_state=0, n_init=10)`` on all rows.
Integer arrays stay integer columns, as ``np.array`` makes them in the article.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from distml.errors import DataError
from distml.outputs import atomic_dir

EXAMPLES: dict[str, dict[str, list]] = {
    "example1": {"x": [1, 2, 3, 4, 5], "y": [2, 4, 5, 4, 5]},
    "example2": {
        "x1": [1, 2, 3, 4, 5],
        "x2": [2, 3, 1, 3, 3],
        "y": [0, 0, 1, 1, 1],
    },
    "example3": {"x1": [1.0, 1.5, 5.0, 8.0, 1.0, 9.0], "x2": [2.0, 1.8, 8.0, 8.0, 0.6, 11.0]},
}


def example_arrays(name: str) -> tuple[list[list[float]], list[int] | None]:
    """``(X, y)`` of one example as the article writes them (``y`` is None for example 3)."""
    columns = dict(EXAMPLES[name])
    y = columns.pop("y", None)
    X = [list(row) for row in zip(*columns.values(), strict=True)]
    return X, y


def write_example(name: str, out: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write one example as a one-file Parquet folder (atomically)."""
    if name not in EXAMPLES:
        raise DataError(f"unknown example '{name}'; choose one of {', '.join(EXAMPLES)}")
    with atomic_dir(out, kind="dataset", overwrite=overwrite) as tmp:
        pq.write_table(pa.table(EXAMPLES[name]), tmp / "part-00000.parquet")
    return Path(out)


def write_examples(out: str | os.PathLike[str], overwrite: bool = False) -> list[Path]:
    """Write all examples into ``out/example1`` ... ``out/example3``."""
    return [write_example(name, Path(out) / name, overwrite) for name in EXAMPLES]
