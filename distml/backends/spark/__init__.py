"""The Spark backend (:mod:`distml.backends.spark.backend`) and what its executors run.

This package is imported on every Spark Python worker that runs a distml task
(``service``, ``wire``), so it imports nothing itself: ``SparkBackend`` loads on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SparkBackend"]


def __getattr__(name: str) -> Any:
    if name == "SparkBackend":
        from distml.backends.spark.backend import SparkBackend

        return SparkBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
