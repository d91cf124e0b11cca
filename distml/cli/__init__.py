"""The ``distml`` command line: parse, call the library, print.

One module per command group (``run``, ``data``, ``bench``, ``cluster``/``submit``/``jobs``,
``report``, ``demo``); :mod:`distml.cli.app` holds the group, its error handling and
signals. The CLI imports the library, never the reverse.
"""

from distml.cli import bench, cluster, data, demo, predict, report, run  # noqa: F401 - registers
from distml.cli import serve  # noqa: F401 - registers distml serve
from distml.cli.app import main

__all__ = ["main"]
