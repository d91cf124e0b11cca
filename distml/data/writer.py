"""Writing predictions: the input's columns plus ``prediction`` (and ``probability``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from distml.algorithms.engine import Partition
from distml.data.arrow import arrow_array
from distml.data.storage import Location, writable


def prediction_table(source: pa.Table, prediction: np.ndarray, probability: Any = None) -> pa.Table:
    table = source.append_column("prediction", arrow_array(prediction))
    if probability is not None:
        probs = np.asarray(probability, dtype=np.float64)
        values = arrow_array(probs.ravel())
        table = table.append_column(
            "probability", pa.FixedSizeListArray.from_arrays(values, probs.shape[1])
        )
    return table


def write_partition_predictions(part: Partition, model: Any, out_dir: str | Location) -> list[str]:
    """Predict one partition and write ``part-NNNNN.parquet`` into ``out_dir`` (a worker-side call)."""
    if part.source is None or part.n_rows == 0:
        return []
    prediction = model.predict(part.X) if part.n_rows else np.zeros(0)
    probability = model.predict_proba(part.X) if hasattr(model, "predict_proba") else None
    # made on the worker's machine (which may not be the client's), or an object store's key
    fs, path = writable(out_dir, f"part-{part.index:05d}.parquet")
    pq.write_table(prediction_table(part.source, prediction, probability), path, filesystem=fs)
    return [path]
