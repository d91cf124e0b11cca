"""The exact tiny datasets of the article's examples 1–3 that distml grew from.

1. linear regression: ``X = [[1], [2], [3], [4], [5]]``, ``y = [1, 3, 2, 3, 5]``
2. logistic regression: ``X = [[1, 2], [2, 3], [3, 4], [4, 5], [5, 6]]``, ``y = [0, 0, 1, 1, 1]``
3. k-means: ``X = [[1, 2], [1, 4], [1, 0], [4, 2], [4, 4], [4, 0]]``, two clusters

Examples 1 and 2 use ``train_test_split(X, y, test_size=0.2, random_state=42)``;
example 3 uses ``KMeans(n_clusters=2, random_state=0)`` on all rows.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from distml.atomic import atomic_dir
from distml.errors import DataError

EXAMPLES: dict[str, dict[str, list]] = {
    "example1": {"x": [1.0, 2.0, 3.0, 4.0, 5.0], "y": [1.0, 3.0, 2.0, 3.0, 5.0]},
    "example2": {
        "x1": [1.0, 2.0, 3.0, 4.0, 5.0],
        "x2": [2.0, 3.0, 4.0, 5.0, 6.0],
        "y": [0, 0, 1, 1, 1],
    },
    "example3": {"x1": [1.0, 1.0, 1.0, 4.0, 4.0, 4.0], "x2": [2.0, 4.0, 0.0, 2.0, 4.0, 0.0]},
}


def write_example(name: str, out: str | os.PathLike[str]) -> Path:
    """Write one example as a one-file Parquet folder (atomically)."""
    if name not in EXAMPLES:
        raise DataError(f"unknown example '{name}'; choose one of {', '.join(EXAMPLES)}")
    with atomic_dir(out) as tmp:
        pq.write_table(pa.table(EXAMPLES[name]), tmp / "part-00000.parquet")
    return Path(out)


def write_examples(out: str | os.PathLike[str]) -> list[Path]:
    """Write all examples into ``out/example1`` ... ``out/example3``."""
    return [write_example(name, Path(out) / name) for name in EXAMPLES]
