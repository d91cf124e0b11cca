"""numpy arrays as Arrow arrays without pandas.

``pa.array(ndarray)`` imports pandas (0.2 s, ~60 MB) to ask whether its input is a pandas
object. Workers and short commands build their columns here instead, from the array's
buffer (the reverse direction is :func:`distml.data.reader.chunk_values`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def arrow_array(values: np.ndarray) -> pa.Array:
    """A 1-D numeric or boolean numpy array as an Arrow array (sharing numeric memory;
    a copy when strided); other kinds go through ``pa.array``."""
    values = np.asarray(values)
    if values.ndim != 1 or values.dtype.kind not in "fiub":
        return pa.array(values)  # strings, objects: pyarrow's own conversion
    if values.dtype.kind == "b":
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(
        pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)]
    )
