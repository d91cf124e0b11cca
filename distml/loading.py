"""``load_model``: any model folder distml writes, an estimator or a pipeline.

It sits above :mod:`distml.models` and :mod:`distml.preprocess` (a pipeline wraps an
estimator folder), so neither layer imports the other to load a model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from distml.models.base import load_fitted, read_metadata


def load_model(path: str | os.PathLike[str], scikit_learn: bool = True) -> Any:
    """Load a model saved by ``save`` (``model.json`` + ``arrays.npz``; never executes code);
    ``path`` may be an ``s3://`` URL (read whole into a temporary folder).

    The model is a scikit-learn estimator (or a pipeline around one); with
    ``scikit_learn=False`` it is distml's own :class:`~distml.models.base.Model` — the same
    parameters, attributes and kernel without importing scikit-learn (what
    ``distml predict`` and ``distml serve`` use: they score with the kernel).
    """
    from distml.remote_output import as_url, local_copy

    url = as_url(path)
    if url is not None:
        with local_copy(url) as local:
            return load_model(local, scikit_learn)
    path = Path(path)
    metadata = read_metadata(path)
    if metadata["type"] == "pipeline":
        from distml.preprocess.pipeline import Pipeline

        model: Any = Pipeline.load(path, metadata)
    else:
        model = load_fitted(path, metadata)
    return as_user_model(model) if scikit_learn else model


def as_user_model(model: Any) -> Any:
    """A fitted model as users get it back: a :class:`~distml.models.base.Model` becomes its
    scikit-learn estimator (a pipeline's model too); anything else (a Keras model, None)
    stays as it is."""
    from distml.models.base import Model
    from distml.preprocess.pipeline import Pipeline

    if isinstance(model, Pipeline):
        model.model = as_user_model(model.model)
    elif isinstance(model, Model):
        from distml.models.estimators import as_estimator

        return as_estimator(model)
    return model
