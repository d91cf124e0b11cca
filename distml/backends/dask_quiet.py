"""Dask workers that stay quiet about errors distml reports itself.

A task that raises one of distml's own errors (bad data found while reading, a label
that does not fit the model) makes the worker log "Compute Failed" with a traceback,
while the driver prints the same error as one line. On the workers of a LocalCluster,
whose stderr is the user's terminal, that log record is dropped, and so is a heartbeat's
traceback when the driver's scheduler has gone; anything else a worker logs is kept.
"""

from __future__ import annotations

import logging
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from distml import errors


def _distml_error_names() -> tuple[str, ...]:
    names, todo = [], [errors.DistmlError]
    while todo:
        cls = todo.pop()
        names.append(cls.__name__ + "(")
        todo.extend(cls.__subclasses__())
    return tuple(names)


# A LocalCluster's scheduler lives in the driver process: when a worker cannot reach it, the
# driver is stopping (Ctrl-C, an error) and says so in its own line; the worker's traceback
# (a heartbeat racing the cluster's close) is noise on the user's terminal.
SCHEDULER_GONE = "Failed to communicate with scheduler during heartbeat."


class _DropReportedErrors(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._names = _distml_error_names()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == SCHEDULER_GONE:
            return False
        if not str(record.msg).startswith("Compute Failed") or not record.args:
            return True
        exception_text = str(record.args[3]) if len(record.args) > 3 else ""  # type: ignore[arg-type]
        return not exception_text.startswith(self._names)


class QuietDistmlErrors(WorkerPlugin):
    """Installs the filter on each worker's ``distributed.worker`` logger."""

    name = "distml-quiet-errors"

    def setup(self, worker: Any) -> None:
        logger = logging.getLogger("distributed.worker")
        if not any(isinstance(f, _DropReportedErrors) for f in logger.filters):
            logger.addFilter(_DropReportedErrors())


class _DropSyncCancelRace(logging.Filter):
    """Drops tornado's report of distributed's ``sync()`` cancel racing a Ctrl-C.

    When the interrupt reaches the driver before ``sync()`` has created its future,
    distributed's ``cancel`` callback reads the unassigned variable and tornado logs a
    ``NameError`` traceback (distributed 2026.8: ``future`` is only annotated). The run
    stops as it should; the traceback is noise on the user's terminal. Anything else
    tornado reports is kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (
            isinstance(error, NameError)
            and "'future'" in str(error)
            and "sync.<locals>.cancel" in record.getMessage()
        )


def quiet_sync_cancel_race() -> None:
    """Install :class:`_DropSyncCancelRace` on tornado's callback logger (once)."""
    logger = logging.getLogger("tornado.application")
    if not any(isinstance(f, _DropSyncCancelRace) for f in logger.filters):
        logger.addFilter(_DropSyncCancelRace())
