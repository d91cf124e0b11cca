"""``distml predict`` on Spark: ordinary tasks over the input files, the model broadcast.

Scoring reads each file once, so the partition service (:mod:`.service`), which
keeps partitions in long-lived tasks for iterative passes, would only hold executor
slots for nothing. Plain tasks over the file list (a few per slot, each scoring its
files one after the other, every file still its own output) let Spark schedule, retry and
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


#: Scoring tasks per task slot: each Spark task costs ~0.1 s of scheduling and Python-worker
#: round trips here, as much as scoring a 156,000-row file (benchmarks/predict_profile.py),
#: so files are grouped — a few tasks per slot still balance uneven files.
TASKS_PER_SLOT = 4


def score_files(backend: Any, files: list[Any], job: Any) -> list[int]:
    """Rows written per file, in ``files`` order."""
    from distml.backends.spark.session import slots

    sc = backend.spark.sparkContext
    shared = sc.broadcast(job)
    try:
        backend.progress.start("scoring")
        with backend.exclusive():  # the partition service must not hold the slots
            tasks = min(len(files), max(1, slots(sc)) * TASKS_PER_SLOT)
            outcomes = sc.parallelize(files, tasks).map(_ScoreWith(shared)).collect()
        backend.progress.finish()
    finally:
        shared.destroy()
    for ok, value in outcomes:
        if not ok:
            raise value
    return [value for _, value in outcomes]
