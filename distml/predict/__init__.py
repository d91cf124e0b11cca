"""Batch prediction: ``distml predict`` scores partitioned Parquet where it lives.

``runner`` checks and publishes (atomic output, ``_SUCCESS``, ``_manifest.json``),
``loading`` turns saved models into scorers, ``inputs`` lists the files to score,
``scorers`` and ``task`` run on the workers (numpy, pyarrow and distml only), ``spec``
and ``submit`` are the predict job spec and its submission to a cluster. The package
imports nothing heavy itself: workers import ``task`` without the driver's modules.
"""

from __future__ import annotations

from typing import Any

__all__ = ["predict"]


def __getattr__(name: str) -> Any:
    if name == "predict":
        from distml.predict.runner import predict

        return predict
    raise AttributeError(name)
