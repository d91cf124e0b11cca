"""``distml predict`` on Spark: one ordinary task per input file, the model broadcast.

Scoring reads each file once, so the partition service (:mod:`.service`), which
keeps partitions in long-lived tasks for iterative passes, would only hold executor
slots for nothing. Plain tasks over the file list let Spark schedule, retry and
speculate them as usual. The job — the model's scorer — is a broadcast variable:
shipped to each executor once and deserialised once per Python worker (PySpark
reuses its workers), not once per file. Errors come back as values and are raised
on the driver with their class (a ``DataError`` naming the file stays one).
"""

from __future__ import annotations

from typing import Any

from distml.backends.spark.service import portable_exception


class _ScoreWith:
    """``score_file(file, broadcast.value)`` in a Spark task, its exception as a value."""

    def __init__(self, shared: Any) -> None:
        self.shared = shared

    def __call__(self, file: Any) -> tuple[bool, Any]:
        from distml.predict.task import score_file

        try:
            return True, score_file(file, self.shared.value)
        except Exception as exc:  # noqa: BLE001 - re-raised on the driver with its class
            return False, portable_exception(exc)


def score_files(backend: Any, files: list[Any], job: Any) -> list[int]:
    """Rows written per file, in ``files`` order."""
    sc = backend.spark.sparkContext
    shared = sc.broadcast(job)
    try:
        backend.progress.start("scoring")
        with backend.exclusive():  # the partition service must not hold the slots
            outcomes = sc.parallelize(files, len(files)).map(_ScoreWith(shared)).collect()
        backend.progress.finish()
    finally:
        shared.destroy()
    for ok, value in outcomes:
        if not ok:
            raise value
    return [value for _, value in outcomes]
