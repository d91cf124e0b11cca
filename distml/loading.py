"""``load_model``: any model folder distml writes, an estimator or a pipeline.

It sits above :mod:`distml.models` and :mod:`distml.preprocess` (a pipeline wraps an
estimator folder), so neither layer imports the other to load a model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from distml.models.base import load_estimator, read_metadata


def load_model(path: str | os.PathLike[str]) -> Any:
    """Load a model saved by ``save`` (``model.json`` + ``arrays.npz``; never executes code);
    ``path`` may be an ``s3://`` URL (read whole into a temporary folder)."""
    from distml.remote_output import as_url, local_copy

    url = as_url(path)
    if url is not None:
        with local_copy(url) as local:
            return load_model(local)
    path = Path(path)
    metadata = read_metadata(path)
    if metadata["type"] == "pipeline":
        from distml.preprocess.pipeline import Pipeline

        return Pipeline.load(path, metadata)
    return load_estimator(path, metadata)
